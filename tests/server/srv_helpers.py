"""Server-test helpers: a Ledger on a manual clock, demo orgs, prices, the in-process API wrapper.

Plain code; the fixtures using it are in conftest.py."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from support import prices

from act3_server import db
from act3_server.ledger import Actor, Ledger

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)

    def set(self, when: datetime) -> None:
        self.now = when


@dataclass
class Books:
    """A ledger on a manual clock with one org and a member of every role."""

    ledger: Ledger
    clock: ManualClock
    org_id: int
    actors: dict[str, Actor] = field(default_factory=dict)
    worker: str = "test-worker"

    @property
    def owner(self) -> Actor:
        return self.actors["owner"]

    @property
    def editor(self) -> Actor:
        return self.actors["editor"]

    def account(self) -> dict[str, Any]:
        return self.ledger.account_row(self.org_id)

    def run_all(self) -> list[int]:
        """Render every queued shot (all complete); returns the credits charged, shot by shot."""
        charged = []
        while (claim := self.ledger.claim_next_shot(self.worker)) is not None:
            assert self.ledger.complete_shot(claim)
            charged.append(claim.credits)
        return charged

    def job(
        self, *specs: dict[str, Any], actor: Actor | None = None, key: str | None = None, project: str | None = None
    ) -> dict[str, Any]:
        return self.ledger.create_job(actor or self.editor, "batch", list(specs), key, project=project).body

    def assert_books_balance(self) -> None:
        acct = self.account()
        replay = self.ledger.replay_journal(self.org_id)
        assert replay == {
            "monthly": acct["monthly_remaining"],
            "bank_rolled": acct["bank_rolled"],
            "bank_purchased": acct["bank_purchased"],
            "held": acct["held"],
        }


def make_books(ledger: Ledger, clock: ManualClock, plan: str = "pro", billing_day: int = 1, name: str = "") -> Books:
    org_id = ledger.create_org(name or f"Studio {plan} {billing_day} {clock.now.isoformat()}", plan, billing_day)
    actors = {}
    for role, who in (("owner", "Ana"), ("admin", "Ben"), ("editor", "Cleo"), ("viewer", "Dev")):
        member_id = ledger.add_member(org_id, f"{who} ({role})", role)
        actors[role] = Actor(org_id, member_id, f"{who} ({role})", role)
    return Books(ledger, clock, org_id, actors)


def shot(name: str = "sh010", engine: str = "veo-3.1", tier: str = "standard", duration_s: float = 8) -> dict[str, Any]:
    return {"name": name, "engine": engine, "tier": tier, "duration_s": duration_s}


def price(spec: dict[str, Any]) -> int:
    """What the price list says the shot costs (worked out in support.prices, not by the product)."""
    return prices.credits(spec)


def shots_costing(target: int, allowed_tiers: tuple[str, ...] = ("draft", "standard", "high")) -> list[dict[str, Any]]:
    return [dict(s) for s in _shots_costing(target, allowed_tiers)]


@functools.lru_cache(maxsize=64)
def _shots_costing(target: int, allowed_tiers: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """Shot specs whose prices add up to exactly `target` credits (greedy, then exact change)."""
    menu: dict[int, dict[str, Any]] = {}  # credits -> a shot costing that much on the price list
    for e in prices.ENGINES:
        for t in allowed_tiers:
            for d in prices.DURATIONS[e]:
                menu.setdefault(prices.cost(e, t, d), shot(f"fill-{e}-{t}-{d}", e, t, d))
    coins = sorted(menu)
    out: list[dict[str, Any]] = []
    while target > 10_000:
        out.append(dict(menu[coins[-1]]))
        target -= coins[-1]
    best: dict[int, tuple[int, int]] = {0: (0, 0)}  # amount -> (fewest shots, last coin)
    for amount in range(1, target + 1):
        options = [(best[amount - c][0] + 1, c) for c in coins if c <= amount and amount - c in best]
        if options:
            best[amount] = min(options)
    assert target in best, f"cannot make {target} exactly"
    while target:
        c = best[target][1]
        out.append(dict(menu[c]))
        target -= c
    return tuple(out)


def count_rows(engine: Any) -> dict[str, int]:
    tables = (db.jobs, db.shots, db.transactions, db.journal, db.idempotency, db.purchases, db.events)
    with db.read_tx(engine) as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables}


@dataclass
class Api:
    """The real FastAPI app in-process (no runner thread), on the test's database."""

    client: TestClient
    ledger: Ledger
    orgs: dict[str, Any]

    def key(self, plan: str = "pro", role: str = "owner") -> str:
        return str(next(o for o in self.orgs["orgs"] if o["plan"] == plan)["keys"][role])

    def headers(self, plan: str = "pro", role: str = "owner", idem: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.key(plan, role)}"}
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

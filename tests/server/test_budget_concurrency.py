"""Many threads, and two `serve` processes on one PostgreSQL, against one `refuse` budget and one
member cap: neither is ever passed, and the jobs stop only when the next shot no longer fits.

Numbers by hand: a shot (veo-3.1 standard 8 s) is 2,080 credits. A cap of 25,000 fits 12 shots
(24,960; 13 would be 27,040); a budget of 60,000 fits 28 (58,240; 29 would be 60,320).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import requests
from srv_helpers import Books, make_books

from act3_server.ledger import Ledger, LedgerError

SHOT = {"engine": "veo-3.1", "tier": "standard", "duration_s": 8}
CAP, CAP_USED = 25_000, 12 * 2_080
BUDGET, BUDGET_USED = 60_000, 28 * 2_080


def spend_until_refused(send: Callable[[int, str], str | None], t: int, codes: set[str]) -> None:
    """Send jobs of 3, 2 and 1 shots; a refusal makes the next job smaller; stop when even one
    shot is refused. `send(n, key)` returns None when the job was made, else the error code."""
    n, size = 0, 3
    while size:
        code = send(size, f"t{t}-{n}")
        n += 1
        if code is not None:
            codes.add(code)
            size -= 1


def run_threads(target: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            target(t)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def test_threads_never_pass_a_refuse_budget_or_a_member_cap(ledger: Ledger, books: Books) -> None:
    org = make_books(ledger, books.clock, "pro", name="budget threads")
    ledger.budgets.put(org.owner, "spot", BUDGET, "billing_period", "refuse")
    ledger.budgets.set_cap(org.owner, org.editor.member_id, CAP)
    codes: dict[str, set[str]] = {"editor": set(), "admin": set()}

    def spend(t: int) -> None:
        # Even threads: the editor, no project (the cap alone); odd: the admin, project "spot".
        role, project = ("editor", None) if t % 2 == 0 else ("admin", "spot")

        def send(size: int, key: str) -> str | None:
            shots = [dict(SHOT, name=f"{key}-{i}") for i in range(size)]
            try:
                ledger.create_job(org.actors[role], key, shots, key, project=project)
            except LedgerError as err:
                return err.code
            return None

        spend_until_refused(send, t, codes[role])
        while (claim := ledger.claim_next_shot(f"w{t}")) is not None:  # charges change nothing here
            ledger.complete_shot(claim)

    run_threads(spend, 8)
    assert codes == {"editor": {"member_cap_exceeded"}, "admin": {"budget_exceeded"}}
    spot = ledger.budgets.list_budgets(org.owner)["budgets"][0]
    assert (spot["spent"] + spot["held"], spot["left"]) == (BUDGET_USED, BUDGET - BUDGET_USED)
    cap = ledger.me(org.editor)["member"]["cap"]
    assert (cap["spent"] + cap["held"], cap["left"]) == (CAP_USED, CAP - CAP_USED)
    org.assert_books_balance()
    acct = org.account()
    assert acct["held"] == 0 and acct["monthly_remaining"] == 875_000 - BUDGET_USED - CAP_USED


def test_two_serve_processes_on_one_postgres_never_pass_a_budget_or_a_cap(
    live_server_factory: Any, fresh_postgres_url: str
) -> None:
    a = live_server_factory(database_url=fresh_postgres_url, render_speed=0.01)
    b = live_server_factory(database_url=fresh_postgres_url, render_speed=0.01)
    assert a.orgs == b.orgs  # init-demo twice on one database: the same org and keys
    owner = a.auth("pro", "owner")
    r = requests.put(
        a.url + "/budgets/spot",
        json={"credits": BUDGET, "period": "billing_period", "action": "refuse"},
        headers=owner,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    editor_id = b.get("/me", role="editor").json()["member"]["id"]
    r = requests.put(b.url + f"/members/{editor_id}/cap", json={"credits_per_period": CAP}, headers=owner, timeout=30)
    assert r.status_code == 200, r.text
    codes: dict[str, set[str]] = {"editor": set(), "admin": set()}
    servers = itertools.cycle([a, b])
    lock = threading.Lock()

    def spend(t: int) -> None:
        role, project = ("editor", None) if t % 2 == 0 else ("admin", "spot")
        session = requests.Session()

        def send(size: int, key: str) -> str | None:
            with lock:
                srv = next(servers)  # each job to the other process than the last
            body: dict[str, Any] = {"name": key, "shots": [dict(SHOT, name=f"{key}-{i}") for i in range(size)]}
            if project:
                body["project"] = project
            headers = {**srv.auth("pro", role), "Idempotency-Key": key}
            r = session.post(srv.url + "/jobs", json=body, headers=headers, timeout=60)
            if r.status_code == 201:
                return None
            assert r.status_code == 402, r.text
            return str(r.json()["error"]["code"])

        spend_until_refused(send, t, codes[role])

    run_threads(spend, 6)
    assert codes == {"editor": {"member_cap_exceeded"}, "admin": {"budget_exceeded"}}
    spot = a.get("/budgets").json()["budgets"][0]
    assert spot["spent"] + spot["held"] == BUDGET_USED
    cap = b.get("/me", role="editor").json()["member"]["cap"]
    assert cap["spent"] + cap["held"] == CAP_USED

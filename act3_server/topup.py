"""Auto top-up (issue 11, item 5): buy a pack when `available` falls below a threshold.

The owner sets it (`PUT /v1/account/auto-top-up`); any member reads it. When a hold (or a charge)
takes `available` from at least `below` to under it (a crossing), the service buys the pack in the
same transaction as that hold, charged to the card on file like any purchase, unless the auto
top-ups of this billing period would then cost more than `max_per_period_cents`.

Why the same transaction: the purchase commits with the hold that crossed or not at all, so it can
neither be lost nor made twice, and nothing runs afterwards to be retried. Each one is also a row
of `auto_top_ups` unique per (org, crossing), the crossing named by the billing period and the
account version the hold produced, so no path can buy twice for one crossing.

Cost when it is off: `accounts.auto_top_up_below` is NULL, the driver's hold already returns it
with the balances (one more column of the row it locks), and the general paths read it from the
account row they locked: one comparison, no extra statement. When it is on, a hold that crosses
leaves the driver's path for the general one, which buys in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from act3_credits.core import pricing

from . import rules
from .db import accounts, auto_top_up, auto_top_ups, iso, members, read_tx, to_db

if TYPE_CHECKING:
    from .ledger import Actor, Ledger, Org

OWNER_ONLY = "owner"


def _error(code: str, message: str, **extra: Any) -> Exception:
    from .ledger import LedgerError  # ledger imports this module

    return LedgerError(code, message, **extra)


def crosses(before: int, after: int, below: int) -> bool:
    """The change took `available` from `below` or more to under it."""
    return after < below <= before


def after_hold(ledger: Ledger, conn: Connection, org: Org, acct: dict[str, Any], before: int, now: datetime) -> None:
    """Called after a hold or a charge inside its transaction (account locked): buy the pack if
    this change crossed the threshold."""
    below = acct.get("auto_top_up_below")
    if below is None or not crosses(before, rules.available(acct), below):
        return
    setting = conn.execute(select(auto_top_up).where(auto_top_up.c.org_id == org.id)).first()
    if setting is None or not setting.enabled:
        return
    try:
        pack = pricing.pack(setting.pack_id)
    except pricing.PricingError:  # a pack no longer sold: nothing to buy
        return
    period = acct["period_start"]
    if spent_cents(conn, org.id, period) + pack.price_cents > setting.max_per_period_cents:
        return  # the period's cap: never past it
    crossing = f"{period.isoformat()}/v{acct['version']}"
    owner = conn.execute(select(members.c.name).where(members.c.id == setting.set_by_member_id)).scalar_one()
    number, _balance = ledger._buy_in(conn, org, acct, setting.set_by_member_id, owner, pack, now, auto=True)
    conn.execute(
        auto_top_ups.insert().values(
            org_id=org.id,
            crossing=crossing,
            period_start=period,
            purchase_number=number,
            price_cents=pack.price_cents,
            at=to_db(now),
        )
    )


def spent_cents(conn: Connection, org_id: int, period: Any) -> int:
    return int(
        conn.execute(
            select(func.coalesce(func.sum(auto_top_ups.c.price_cents), 0)).where(
                auto_top_ups.c.org_id == org_id, auto_top_ups.c.period_start == period
            )
        ).scalar_one()
    )


def _setting_json(conn: Connection, org_id: int, period: Any) -> dict[str, Any]:
    row = conn.execute(
        select(auto_top_up, members.c.name.label("set_by_name"))
        .join(members, members.c.id == auto_top_up.c.set_by_member_id)
        .where(auto_top_up.c.org_id == org_id)
    ).first()
    spent = spent_cents(conn, org_id, period)
    if row is None:
        return {
            "enabled": False,
            "below": None,
            "pack_id": None,
            "max_per_period_cents": None,
            "set_by": None,
            "set_at": None,
            "period_start": period.isoformat(),
            "spent_this_period_cents": spent,
        }
    return {
        "enabled": bool(row.enabled),
        "below": int(row.below),
        "pack_id": row.pack_id,
        "max_per_period_cents": int(row.max_per_period_cents),
        "set_by": {"id": row.set_by_member_id, "name": row.set_by_name},
        "set_at": iso(row.set_at),
        "period_start": period.isoformat(),
        "spent_this_period_cents": spent,
    }


def read(ledger: Ledger, actor: Actor) -> dict[str, Any]:
    """`GET /v1/account/auto-top-up`: the setting, who set it and when, and this period's spend."""
    ledger.credits(actor.org_id)  # a refill that is due starts the new period (and its cap) first
    with read_tx(ledger.engine) as conn:
        period = conn.execute(select(accounts.c.period_start).where(accounts.c.org_id == actor.org_id)).scalar_one()
        return _setting_json(conn, actor.org_id, period)


def write(
    ledger: Ledger, actor: Actor, enabled: bool, below: int, pack_id: str, max_per_period_cents: int
) -> dict[str, Any]:
    """`PUT /v1/account/auto-top-up` (the owner only). Checked whole before anything is written;
    setting it buys nothing by itself, even when `available` is already under `below`."""
    if actor.role != OWNER_ONLY:
        raise _error("forbidden", f"The {actor.role} role cannot set auto top-up; only the owner can.")
    for name, value in (("below", below), ("max_per_period_cents", max_per_period_cents)):
        if type(value) is not int or value < 0:
            raise _error(
                "validation_error",
                f"{name} must be a whole number of 0 or more.",
                details=[{"loc": ["body", name], "msg": "must be >= 0"}],
            )
    try:
        pack = pricing.pack(pack_id)
    except pricing.PricingError as exc:
        raise _error(exc.code, exc.message) from None
    now = ledger.now()
    with ledger._write() as conn:
        _org, acct = ledger._touch(conn, actor.org_id, now)
        values = {
            "enabled": bool(enabled),
            "below": below,
            "pack_id": pack.id,
            "max_per_period_cents": max_per_period_cents,
            "set_by_member_id": actor.member_id,
            "set_at": to_db(now),
        }
        exists = conn.execute(select(auto_top_up.c.org_id).where(auto_top_up.c.org_id == actor.org_id)).first()
        if exists is None:
            conn.execute(auto_top_up.insert().values(org_id=actor.org_id, **values))
        else:
            conn.execute(auto_top_up.update().where(auto_top_up.c.org_id == actor.org_id).values(**values))
        # The copy the charge path reads, under the same lock as every balance change.
        acct["auto_top_up_below"] = below if enabled else None
        conn.execute(
            accounts.update()
            .where(accounts.c.org_id == actor.org_id)
            .values(auto_top_up_below=acct["auto_top_up_below"])
        )
        return _setting_json(conn, actor.org_id, acct["period_start"])

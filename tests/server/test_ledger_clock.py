"""The dev clock jumping decades: refills stay exactly once per billing date and add up to what a
period-by-period replay gives, in a bounded number of statements; only owners and admins move it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
from srv_helpers import Books, shots_costing

from act3_credits.core import pricing
from act3_server import billing, db
from act3_server.clock import DbClock
from act3_server.errors import ApiError
from act3_server.ledger import Ledger


def replay(plan: pricing.Plan, monthly: int, rolled: int, periods: int) -> tuple[int, int, int, int]:
    """The rules applied one billing date at a time: (monthly, rolled, total rolled over, total expired)."""
    total_rolled = total_expired = 0
    for _ in range(periods):
        moved = min(monthly, max(0, plan.rollover_cap - rolled))
        rolled += moved
        total_rolled += moved
        total_expired += monthly - moved
        monthly = plan.monthly_allocation
    return monthly, rolled, total_rolled, total_expired


def statements_during(ledger: Ledger, fn: object) -> int:
    count = 0

    def seen(*_a: object) -> None:
        nonlocal count
        count += 1

    event.listen(ledger.engine, "before_cursor_execute", seen)
    try:
        fn()  # type: ignore[operator]
    finally:
        event.remove(ledger.engine, "before_cursor_execute", seen)
    return count


@pytest.mark.parametrize("years", [30, 200])
def test_a_jump_of_decades_refills_every_period_once_in_a_few_statements(books: Books, years: int) -> None:
    ledger, clock = books.ledger, books.clock
    plan = pricing.plan("pro")
    books.job(*shots_costing(300_000))
    books.run_all()
    ledger.purchase(books.owner, "pack-50k")
    before = books.account()
    start = before["period_start"]
    clock.set(datetime(clock.now.year + years, 6, 15, 9, 0, tzinfo=UTC))
    due = billing.periods_due(start, clock.now, 1)
    assert due == years * 12 - 5  # from the period of 2026-11 to June

    n = statements_during(ledger, lambda: ledger.refill_due(books.org_id))
    assert n < 60, n  # not thousands: the repeated periods are one refill

    acct = books.account()
    monthly, rolled, total_rolled, total_expired = replay(plan, before["monthly_remaining"], before["bank_rolled"], due)
    assert (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"]) == (monthly, rolled, 50_000)
    assert acct["bank_rolled"] == plan.rollover_cap
    assert acct["period_start"] == billing.period_start(clock.now.date(), 1)
    books.assert_books_balance()
    with db.read_tx(ledger.engine) as conn:
        rows = conn.execute(select(db.refills).where(db.refills.c.org_id == books.org_id)).all()
    assert sum(r.periods for r in rows) == due + 1  # every billing date once, plus the first allocation
    assert sum(r.rolled_over for r in rows) == total_rolled and sum(r.expired for r in rows) == total_expired
    run = max(rows, key=lambda r: r.periods)
    assert run.periods > 1 and run.period_start == acct["period_start"]

    # The history reads as before: newest first, the run as one expiry and one refill of its sum.
    page = ledger.history(books.org_id, limit=5)["items"]
    assert [i["kind"] for i in page[:2]] == ["refill", "expiry"]
    assert page[0]["credits"] == -page[1]["credits"] == plan.monthly_allocation * run.periods
    assert page[0]["at"] == f"{acct['period_start'].isoformat()}T00:00:00Z"

    # Nothing more is due, and the next billing date is an ordinary refill again.
    assert ledger.refill_due(books.org_id) == []
    clock.set(datetime(clock.now.year + 1, 1, 2, tzinfo=UTC))
    applied = ledger.refill_due(books.org_id)
    assert [a["periods"] for a in applied] == [7]  # July to January, all alike
    books.assert_books_balance()


def test_the_jump_is_one_billing_event_with_its_periods(books: Books) -> None:
    ledger, clock = books.ledger, books.clock
    clock.set(datetime(2226, 11, 25, tzinfo=UTC))
    with db.read_tx(ledger.engine) as conn:
        last = conn.execute(select(func.max(db.events.c.seq))).scalar_one()
    ledger.credits(books.org_id)  # lazily, as any request would
    events = ledger.events_after(books.org_id, last)
    refilled = [e for e in events if e["type"] == "billing.refilled"]
    assert 2 <= len(refilled) <= 6  # the first periods fill the bank, then one event for the rest
    assert sum(e["data"].get("periods", 1) for e in refilled) == 2400
    assert refilled[-1]["data"]["first_period_start"] < refilled[-1]["data"]["period_start"] == "2226-11-01"


def test_a_jump_refilled_by_racing_processes_happens_once(books: Books) -> None:
    ledger, clock = books.ledger, books.clock
    clock.set(datetime(2066, 3, 3, tzinfo=UTC))
    errors: list[BaseException] = []

    def go() -> None:
        try:
            Ledger(ledger.engine, clock).refill_due(books.org_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.read_tx(ledger.engine) as conn:
        periods = conn.execute(
            select(func.sum(db.refills.c.periods)).where(db.refills.c.org_id == books.org_id)
        ).scalar_one()
    assert periods == 1 + billing.periods_due(datetime(2026, 11, 1).date(), clock.now, 1)
    books.assert_books_balance()


def test_only_owners_and_admins_move_the_clock(books: Books) -> None:
    clock = DbClock(books.ledger.engine)
    later = datetime(2030, 1, 1, tzinfo=UTC)
    for role in ("viewer", "editor"):
        with pytest.raises(ApiError) as err:
            clock.set(later, actor=books.actors[role])
        assert err.value.code == "forbidden" and err.value.status == 403
        assert "owner or an admin" in err.value.message
    assert clock().year < 2030  # refused before anything moved
    assert clock.set(later, actor=books.actors["admin"]).year == 2030
    assert clock.set(datetime(2031, 1, 1, tzinfo=UTC), actor=books.owner).year == 2031
    assert clock.set(datetime(2032, 1, 1, tzinfo=UTC)).year == 2032  # the service itself (CLI, tests)

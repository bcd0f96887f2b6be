"""Jobs deferred to the next billing period (issue 11, item 3).

`POST /v1/jobs` with `"start": "next_period"` makes a `scheduled` job: its shots are priced and
stored, but nothing is held. The refill of the next period starts it, in the refill's own
transaction (Ledger._apply_refills calls `start_scheduled` once the due refills are applied): in
creation order each scheduled job holds its estimate and is queued, or, if it no longer fits, is
paused with the reason. A job leaves `scheduled` only there (or canceled), under the account's
lock, so a refill starts it exactly once, also when a clock jump replays many periods at once.

A job paused at its refill holds nothing; `hold_before_resume` holds what its open shots need when
it is resumed (402 if that is not available).

Lock order: the ledger locks a job before its account. The refill already holds the account when
it gets here, so it locks the scheduled jobs with SKIP LOCKED: a job some other transaction holds
(a cancel of that very job, waiting for the account) is left for the next refill rather than
deadlocking with it; that transaction ends it or leaves it scheduled.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from act3_credits.core import pricing
from act3_credits.core.shots import shortfall_message
from act3_credits.core.vocabulary import Status, Verdict

from . import billing, rules, topup
from .db import accounts, jobs, read_tx, shots, to_db

if TYPE_CHECKING:
    from .ledger import Ledger, Org

NEXT_PERIOD = "next_period"

_SCHEDULED = (
    select(jobs.c.id, jobs.c.number, jobs.c.member_id, jobs.c.project, jobs.c.estimated_credits)
    .where(jobs.c.org_id == bindparam("org_id"), jobs.c.status == Status.SCHEDULED.value)
    .order_by(jobs.c.number)
    .with_for_update(skip_locked=True)
)
_SCHEDULED_TOTALS = (
    select(jobs.c.estimated_credits)
    .where(jobs.c.org_id == bindparam("org_id"), jobs.c.status == Status.SCHEDULED.value)
    .order_by(jobs.c.number)
)
_SHOT_COSTS = select(shots.c.credits).where(shots.c.job_id == bindparam("job_id")).order_by(shots.c.idx)
_OPEN_CREDITS = select(func.coalesce(func.sum(shots.c.credits), 0)).where(
    shots.c.job_id == bindparam("job_id"), shots.c.status.in_((Status.QUEUED.value, Status.PROCESSING.value))
)


def _error(code: str, message: str, **extra: Any) -> Exception:
    from .ledger import LedgerError  # ledger imports this module

    return LedgerError(code, message, **extra)


def wants_next_period(value: str | None) -> bool:
    """`start` of a job / `when` of an estimate: None or "now" (the default), or "next_period"."""
    if value is None or value == "now":
        return False
    if value == NEXT_PERIOD:
        return True
    raise _error(
        "validation_error",
        f'{value!r} is not a start: send "now" or "next_period".',
        details=[{"loc": ["body", "start"], "msg": "not now or next_period"}],
    )


def refusal(
    conn: Connection, org: Org, acct: dict[str, Any], job: Any, costs: list[int], now: datetime
) -> tuple[str | None, int | None]:
    """Why `job` cannot hold `costs` (its open shots' credits) in the period of `now`: the reason
    word ("member_cap", "budget", "insufficient_credits") or None; and, under a `pause` budget, the
    shot it stops before. The same checks, in the same order, as a job sent now."""
    from . import budgets as spend_limits  # budgets imports the ledger, which imports this module

    period = billing.period_start(now.date(), org.billing_day)
    found = spend_limits.assess(conn, org.id, job.member_id, "", job.project, costs, period)
    if found.cap_verdict == Verdict.REFUSE:
        return "member_cap", None
    if found.budget_verdict == Verdict.REFUSE:
        return "budget", None
    if sum(costs) > rules.available(acct):
        return "insufficient_credits", None
    return None, found.pause_before if found.budget_verdict == Verdict.PAUSE else None


def start_scheduled(ledger: Ledger, conn: Connection, org: Org, acct: dict[str, Any], now: datetime) -> None:
    """Inside the refill's transaction, after the refills: every scheduled job of the org, oldest
    first, holds and is queued, or is paused with the reason it could not start."""
    for job in conn.execute(_SCHEDULED, {"org_id": org.id}).all():
        before = rules.available(acct)
        costs = [int(c) for c in conn.execute(_SHOT_COSTS, {"job_id": job.id}).scalars()]
        reason, pause_before = refusal(conn, org, acct, job, costs, now)
        if reason is not None:
            conn.execute(
                jobs.update().where(jobs.c.id == job.id).values(status=Status.PAUSED.value, updated_at=to_db(now))
            )
            data = {"job_id": job.number, "status": Status.PAUSED.value, "reason": reason}
            ledger._event(conn, acct, "job.status", data, now)
            continue
        conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id)
            .values(
                status=Status.QUEUED.value,
                held=job.estimated_credits,
                # It counts against the period it starts in (budgets and caps), and a pause budget
                # stops it before the shot that would cross, as for a job sent now.
                period_start=billing.period_start(now.date(), org.billing_day),
                pause_before=pause_before,
                updated_at=to_db(now),
            )
        )
        ledger._hold(conn, org, acct, job.id, job.estimated_credits, now)
        data = {"job_id": job.number, "status": Status.QUEUED.value, "reason": "refill"}
        ledger._event(conn, acct, "job.status", data, now)
        topup.after_hold(ledger, conn, org, acct, before, now)


def hold_before_resume(
    ledger: Ledger, conn: Connection, org: Org, acct: dict[str, Any], job: Any, now: datetime
) -> None:
    """A paused job holds what its open shots still need before it resumes: nothing for a job
    paused by hand (it kept its hold), everything for one its refill could not start."""
    missing = int(conn.execute(_OPEN_CREDITS, {"job_id": job.id}).scalar_one()) - job.held
    if missing <= 0:
        return
    before = rules.available(acct)
    reason, _pause = refusal(conn, org, acct, job, [missing], now)
    if reason == "insufficient_credits":
        raise _error(
            "insufficient_credits", shortfall_message(missing, before), required_credits=missing, current_balance=before
        )
    if reason is not None:
        words = {"member_cap": "your member cap", "budget": f"the budget of project {job.project!r}"}[reason]
        raise _error(f"{reason}_exceeded", f"Job {job.number} cannot resume: it would go past {words}.")
    # Only a job its refill paused gets here (others kept their hold): it counts from this period on.
    period = billing.period_start(now.date(), org.billing_day)
    conn.execute(jobs.update().where(jobs.c.id == job.id).values(held=job.held + missing, period_start=period))
    ledger._hold(conn, org, acct, job.id, missing, now)
    topup.after_hold(ledger, conn, org, acct, before, now)


def refuse_if_scheduled(conn: Connection, org_id: int, job_id: int, verb: str) -> None:
    """Pause and resume do not apply to a scheduled job. Read without a lock, so a refused call
    never holds the job's row while its refill wants it."""
    from .ledger import MAX_DB_INT

    if not 1 <= job_id <= MAX_DB_INT:
        return  # no such job: the caller's lookup answers 404
    status = conn.execute(select(jobs.c.status).where(jobs.c.org_id == org_id, jobs.c.number == job_id)).scalar()
    if status == Status.SCHEDULED.value:
        raise _error(
            "invalid_state",
            f"Job {job_id} is scheduled for the next billing period; it cannot be {verb}. Cancel it instead.",
        )


def next_period(ledger: Ledger, org: Org) -> dict[str, Any]:
    """What will be available right after the next refill, for `POST /v1/estimates` with
    `"when": "next_period"`: the refill's own arithmetic applied to today's balances (the month's
    allocation, plus the bank after rollover up to the cap), less what is held now and what the
    jobs already scheduled will hold first (in their order, as the refill starts them).

    What is held now is taken as still held at the refill; if it is charged before, it comes out
    of this month first and never leaves less than this.
    """
    now = ledger.now()
    ledger.credits(org.id)  # a refill that is due is applied first, as any read does
    with read_tx(ledger.engine) as conn:
        acct = dict(conn.execute(select(accounts).where(accounts.c.org_id == org.id)).one()._mapping)
        scheduled = [int(t) for t in conn.execute(_SCHEDULED_TOTALS, {"org_id": org.id}).scalars()]
    plan = pricing.plan(org.plan)
    step = rules.refill(acct["monthly_remaining"], acct["bank_rolled"], plan.monthly_allocation, plan.rollover_cap)
    after_refill = rules.available({**acct, **step.after(acct)})
    starting = 0
    for total in scheduled:
        if total <= after_refill - starting:  # one that does not fit is paused and holds nothing
            starting += total
    return {
        "starts_on": billing.next_billing_date(now.date(), org.billing_day).isoformat(),
        "monthly_allocation": plan.monthly_allocation,
        "rolled_over": step.rolled,
        "expired": step.expired,
        "held": acct["held"],
        "scheduled": starting,
        "available": after_refill - starting,
    }

"""ACT3 Credits for pipeline scripts and other add-ons.

Inside Blender import it as ``bl_ext.<repository>.act3_credits.api`` (for example
``bl_ext.user_default.act3_credits.api``)::

    from bl_ext.user_default.act3_credits import api

    api.refresh(wait=10)              # works in `blender -b` too: it drains the sync itself
    print(api.header_text())          # "245,000 cr", exactly what the top bar shows
    c = api.credits()                 # CreditsInfo: available, held, total, billing_date, stale ...
    for row in api.history(limit=20, tier="high")["items"]:
        print(row["at"], row["shot"], row["credits"])

Two ways to call what asks the service (`history`, `credit_packs`, `buy`, `estimate`, `submit`,
`jobs`, `job`, `pause`, `resume`, `cancel`, `auto_top_up`, `set_auto_top_up`, `test_connection`):

- with `callback=fn`: the call returns a `Ticket` at once and never blocks; `fn(ticket)` runs on
  Blender's main thread when the answer has arrived (`ticket.ok`, `ticket.result`, `ticket.error`).
  This is the way for operators and other add-ons in the UI: the add-on's timer delivers it. In
  `blender -b`, where timers never fire, `api.wait(ticket, seconds)` (or any waiting call) does.
- without a callback: the call waits, blocking the calling script only while it drains the sync
  worker itself (up to `wait` seconds), returns the answer or raises an `Act3Error` subclass
  (`OfflineError`, `ForbiddenError`, `InsufficientCreditsError`, ...). Fine in pipeline scripts and
  `blender -b`; never from draw code or an operator in the UI.

Never wait: `credits`, `header_text`, `refresh()` without `wait`, `subscribe`, `unsubscribe`.

Call everything from Blender's main thread (or the one thread of a plain-Python script).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, cast

from . import runtime
from .core import submission
from .core.client import (
    Act3Error,
    AuthError,
    ConflictError,
    ForbiddenError,
    HistoryPage,
    InsufficientCreditsError,
    InvalidRequestError,
    NotConfiguredError,
    NotFoundError,
    OfflineError,
    PurchaseResult,
    ServerError,
    TierNotAllowedError,
    new_idempotency_key,
)
from .core.contract import Job, ServiceEstimate, ServiceEvent
from .core.sync import Ticket

Callback = Callable[[Ticket], None]

__all__ = [
    "Act3Error",
    "AuthError",
    "ConflictError",
    "CreditsInfo",
    "ForbiddenError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "NotConfiguredError",
    "NotFoundError",
    "OfflineError",
    "PurchaseResult",
    "ServerError",
    "TierNotAllowedError",
    "auto_top_up",
    "buy",
    "cancel",
    "credit_packs",
    "credits",
    "estimate",
    "header_text",
    "history",
    "job",
    "jobs",
    "new_idempotency_key",
    "pause",
    "refresh",
    "resume",
    "set_auto_top_up",
    "submit",
    "subscribe",
    "test_connection",
    "unsubscribe",
    "wait",
]

WAIT_S = 15.0  # how long a waiting call waits for the service by default


@dataclass(frozen=True)
class CreditsInfo:
    """What the top bar and the credits panel show. Numbers are None before anything is known."""

    total: int | None
    monthly_remaining: int | None
    monthly_allocation: int | None
    rollover_bank: int | None
    rollover_purchased: int | None
    rollover_cap: int | None
    held: int | None
    available: int | None
    billing_date: str | None
    as_of: str | None
    stale: bool  # not confirmed by the service lately (cached, offline, or older than a minute)
    last_error: str | None  # why not, in one line
    connection: str  # "ok", "connecting", "offline", "auth", "disabled", "unconfigured"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def refresh(wait: float | None = None) -> bool:
    """Ask for fresh numbers. With `wait`, block up to that many seconds until they arrive.

    Returns whether the state is fresh (confirmed by the service) when it returns.
    """
    worker = runtime.worker()
    ticket = worker.request("refresh")
    if wait:
        worker.wait(ticket, wait)
    else:
        worker.drain()
    return not runtime.state().is_stale()


def credits() -> CreditsInfo:
    """The numbers as the add-on holds them now (never waits; see `refresh`)."""
    s = runtime.state()
    c = s.credits
    return CreditsInfo(
        total=c.total if c else None,
        monthly_remaining=c.monthly_remaining if c else None,
        monthly_allocation=c.monthly_allocation if c else None,
        rollover_bank=c.rollover_bank if c else None,
        rollover_purchased=c.rollover_purchased if c else None,
        rollover_cap=c.rollover_cap if c else None,
        held=c.held if c else None,
        available=c.available if c else None,
        billing_date=c.billing_date if c else None,
        as_of=c.as_of if c else None,
        stale=s.is_stale(),
        last_error=s.last_error,
        connection=s.connection,
    )


def header_text() -> str:
    """Exactly what the top bar reads, e.g. "245,000 cr"."""
    return runtime.state().header_text()


def history(
    limit: int = 50,
    cursor: str | None = None,
    tier: str | None = None,
    shot: str | None = None,
    *,
    kind: str | None = None,
    wait: float = WAIT_S,
    callback: Callback | None = None,
) -> Any:
    """One page of the transaction history as the API gives it: `{"items": [...], "next_cursor"}`.

    Items are newest first, plain dicts (`id`, `at`, `kind`, `shot`, `engine`, `tier`, `duration_s`,
    `credits`, `monthly_delta`, `bank_delta`, `job_id`, `member`); pass `next_cursor` back as
    `cursor` for the next page (None: no more). `tier` and `kind` match exactly, `shot` is a
    case-insensitive part of the shot name. Waits.
    """
    return _call(
        "history_page",
        wait,
        callback,
        _history_json,
        limit=limit,
        cursor=cursor,
        tier=tier,
        shot=shot,
        kind=kind,
    )


def _history_json(page: HistoryPage) -> dict[str, Any]:
    return {"items": [row.to_json() for row in page.rows], "next_cursor": page.next_cursor}


def credit_packs(wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """The packs on sale: `[{"id", "credits", "price_cents", "currency", "price"}]`."""
    return _call("packs", wait, callback, lambda answer: list(answer["packs"]))


def buy(
    pack_id: str, *, idempotency_key: str | None = None, wait: float = 30.0, callback: Callback | None = None
) -> Any:
    """Buy a credit pack with the organisation's card on file (owner and admin only): a `PurchaseResult`.

    When the answer is lost (no answer in time, a dropped connection, a gateway error) the purchase
    may still have gone through: every error it raises (or puts on the ticket) carries
    `extra["idempotency_key"]`; calling `buy` again with it cannot buy twice.
    """
    key = idempotency_key or new_idempotency_key()
    return _call("buy", wait, callback, pack_id=pack_id, idempotency_key=key)


def estimate(
    shots: Iterable[Any], when: str | None = None, wait: float = WAIT_S, callback: Callback | None = None
) -> Any:
    """The service's price for these shots (dicts with name, engine, tier, duration_s, or `Shot`s), as the
    API gives it: `{"shots", "total", "available", "balance_after", "affordable", "shortfall", "blocked"}`.

    `when="next_period"`: compared with what will be available right after the next refill (the
    answer adds `when` and `next_period`, which says when that is and how it adds up)."""
    extra = {"when": when} if when else {}
    return _call("estimate", wait, callback, ServiceEstimate.to_json, shots=_shots(shots), **extra)


def submit(
    shots: Iterable[Any],
    name: str = "",
    *,
    force: bool = False,
    start: str | None = None,
    idempotency_key: str | None = None,
    wait: float = 30.0,
    callback: Callback | None = None,
) -> Any:
    """Send a batch to render; the answer is the Job, as the API gives it (a dict: `id`, `status`, ...).

    `start="next_period"` defers it: the job is `scheduled`, holds nothing now, and the next refill
    starts it (or pauses it if it no longer fits); it is checked against the next period's estimate.
    List deferred jobs with `jobs(status="scheduled")`; `cancel` one like any job.

    The same rules as the Cost Estimate's Confirm (`core.submission`): the service's estimate
    first, and a batch it refuses (a shot, InsufficientCreditsError when the available balance
    does not cover it) is not sent; `force=True` lets the service decide about the balance (it
    still refuses a hold that does not fit). One idempotency key is made per call (or pass your
    own to retry safely), so a lost answer never submits twice.

    With `callback`, returns the submission at once: ticket-shaped (`done`, `ok`, `result`: the
    job, `error`), it is handed to `callback` when the job is sent or refused.
    """
    sending = submission.Submission(
        runtime.worker(),
        name=name or "Blender batch",
        shots_json=_shots(shots),
        idempotency_key=idempotency_key or new_idempotency_key(),
        force=force,
        start=start,
        on_done=cast(Callable[[submission.Submission], None] | None, callback),  # a Submission is ticket-shaped
    ).start()
    if callback is not None:
        return sending
    if not sending.wait(wait):
        raise _carry_key(
            OfflineError(
                f"No answer from the ACT3 service within {wait:g} s; it may still be working on it.", code="timeout"
            ),
            {"idempotency_key": sending.idempotency_key},
        )
    if sending.error is not None:
        raise sending.error
    return sending.result


def jobs(status: str | None = None, limit: int = 50, wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """The organisation's jobs, newest first (dicts, as the API gives them)."""
    return _call("jobs", wait, callback, _jobs_json, status=status, limit=limit)


def _jobs_json(jobs: list[Job]) -> list[dict[str, Any]]:
    return [j.to_json() for j in jobs]


def job(job_id: int, wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """One job as the API gives it: `{"id", "name", "status", "estimated_credits", "charged_credits", "held", "shots", ...}`."""
    return _call("job", wait, callback, Job.to_json, job_id=int(job_id))


def pause(job_id: int, wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """Pause: a shot already rendering finishes (and is charged), then the job stops."""
    return _call("pause_job", wait, callback, Job.to_json, job_id=int(job_id))


def resume(job_id: int, wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    return _call("resume_job", wait, callback, Job.to_json, job_id=int(job_id))


def cancel(job_id: int, wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """Cancel now: a rendering shot is not charged, everything still held is released."""
    return _call("cancel_job", wait, callback, Job.to_json, job_id=int(job_id))


def auto_top_up(wait: float = WAIT_S, callback: Callback | None = None) -> Any:
    """Auto top-up as set: `{"enabled", "below", "pack_id", "max_per_period_cents", "set_by",
    "set_at", "period_start", "spent_this_period_cents"}`."""
    return _call("auto_top_up", wait, callback)


def set_auto_top_up(
    enabled: bool,
    below: int,
    pack_id: str,
    max_per_period_cents: int,
    wait: float = WAIT_S,
    callback: Callback | None = None,
) -> Any:
    """Turn auto top-up on or off (the owner's key only; `ForbiddenError` otherwise): buy `pack_id`
    when a hold takes `available` under `below`, at most `max_per_period_cents` a billing period."""
    params = {"enabled": enabled, "below": below, "pack_id": pack_id, "max_per_period_cents": max_per_period_cents}
    return _call("set_auto_top_up", wait, callback, **params)


def test_connection(wait: float = WAIT_S) -> str:
    """One line saying who the key belongs to and what is available. Waits."""
    _call("test_connection", wait, None)
    return runtime.state().last_message or ""


def wait(ticket: Ticket | submission.Submission, timeout: float = WAIT_S) -> bool:
    """Drain the sync until `ticket` (or what `submit` returned) is answered, or `timeout` passes.

    For scripts and `blender -b`; in the UI the add-on's timer delivers answers by itself.
    """
    if isinstance(ticket, submission.Submission):
        return ticket.wait(timeout)
    return runtime.worker().wait(ticket, timeout)


# A script's callback and what the worker calls for it: the typed event handed on as (type, data dict).
_subscribed: dict[Callable[[str, dict[str, Any]], None], Callable[[ServiceEvent], None]] = {}


def subscribe(callback: Callable[[str, dict[str, Any]], None]) -> None:
    """`callback(event_type, data)` for every service event ("balance.changed", "job.status", ...).

    `data` is the event's `data` as docs/api.md describes it. It runs on the main thread, when the
    add-on's timer (or a waiting call) drains the sync.
    """
    relay = _subscribed.get(callback)
    if relay is None:

        def relay(event: ServiceEvent) -> None:
            callback(str(event.type), event.data())

        _subscribed[callback] = relay
    runtime.worker().subscribe(relay)


def unsubscribe(callback: Callable[[str, dict[str, Any]], None]) -> None:
    relay = _subscribed.pop(callback, None)
    if relay is not None:
        runtime.worker().unsubscribe(relay)


def _shots(shots: Iterable[Any]) -> list[dict[str, Any]]:
    return [s.request_json() if hasattr(s, "request_json") else dict(s) for s in shots]


def _call(
    kind: str,
    wait: float,
    callback: Callback | None,
    shape: Callable[[Any], Any] | None = None,
    /,
    **params: Any,
) -> Any:
    """Ask the worker; with a callback return the Ticket at once, else wait for the answer."""
    worker = runtime.worker()
    if callback is not None:
        if shape is None and "idempotency_key" not in params:
            return worker.request(kind, callback=callback, **params)

        def shaped(ticket: Ticket) -> None:
            if ticket.ok and shape is not None:
                ticket.result = shape(ticket.result)
            _carry_key(ticket.error, params)
            callback(ticket)

        return worker.request(kind, callback=shaped, **params)
    ticket: Ticket = worker.request(kind, **params)
    if not worker.wait(ticket, wait):
        raise _carry_key(
            OfflineError(
                f"No answer from the ACT3 service within {wait:g} s; it may still be working on it.", code="timeout"
            ),
            params,
        )
    if ticket.error is not None:
        raise _carry_key(ticket.error, params)
    return shape(ticket.result) if shape is not None else ticket.result


def _carry_key(error: Any, params: dict[str, Any]) -> Any:
    """A write that failed (a time-out, a dropped answer: it may have happened) says which key to retry it with."""
    if isinstance(error, Act3Error) and "idempotency_key" in params:
        error.extra.setdefault("idempotency_key", params["idempotency_key"])
    return error

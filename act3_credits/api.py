"""ACT3 Credits for pipeline scripts and other add-ons.

Inside Blender import it as ``bl_ext.<repository>.act3_credits.api`` (for example
``bl_ext.user_default.act3_credits.api``)::

    from bl_ext.user_default.act3_credits import api

    api.refresh(wait=10)              # works in `blender -b` too: it drains the sync itself
    print(api.header_text())          # "245,000 cr", exactly what the top bar shows
    c = api.credits()                 # CreditsInfo: available, held, total, billing_date, stale ...
    for row in api.history(limit=20, tier="high")["items"]:
        print(row["at"], row["shot"], row["credits"])

Calls that WAIT (they block the calling script, draining the sync worker themselves, and raise an
`Act3Error` subclass such as `OfflineError`, `ForbiddenError` or `InsufficientCreditsError` when
the service says no): `refresh(wait=...)`, `history`, `credit_packs`, `buy`, `estimate`, `submit`,
`jobs`, `job`, `pause`, `resume`, `cancel`, `test_connection`. Do not call them from draw code or
an operator's `execute` in the UI: they freeze Blender for up to `wait` seconds. Calls that never
wait: `credits`, `header_text`, `refresh()` without `wait`, `subscribe`, `unsubscribe`.

Call everything from Blender's main thread (or the one thread of a plain-Python script).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from . import runtime
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
from .core.sync import Ticket

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
    "submit",
    "subscribe",
    "test_connection",
    "unsubscribe",
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
) -> dict[str, Any]:
    """One page of the transaction history as the API gives it: `{"items": [...], "next_cursor"}`.

    Items are newest first, plain dicts (`id`, `at`, `kind`, `shot`, `engine`, `tier`, `duration_s`,
    `credits`, `monthly_delta`, `bank_delta`, `job_id`, `member`); pass `next_cursor` back as
    `cursor` for the next page (None: no more). `tier` and `kind` match exactly, `shot` is a
    case-insensitive part of the shot name. Waits.
    """
    page: HistoryPage = _call("history_page", wait, limit=limit, cursor=cursor, tier=tier, shot=shot, kind=kind)
    return {"items": [row.to_json() for row in page.rows], "next_cursor": page.next_cursor}


def credit_packs(wait: float = WAIT_S) -> list[dict[str, Any]]:
    """The packs on sale: `[{"id", "credits", "price_cents", "currency", "price"}]`. Waits."""
    return list(_call("packs", wait)["packs"])


def buy(pack_id: str, *, idempotency_key: str | None = None, wait: float = 30.0) -> PurchaseResult:
    """Buy a credit pack with the organisation's card on file (owner and admin only). Waits.

    When no answer comes in time the purchase may still go through: the raised `OfflineError`
    carries `extra["idempotency_key"]`; calling `buy` again with it cannot buy twice.
    """
    key = idempotency_key or new_idempotency_key()
    return _call("buy", wait, pack_id=pack_id, idempotency_key=key)


def estimate(shots: Iterable[Any], wait: float = WAIT_S) -> dict[str, Any]:
    """The service's price for these shots (dicts with name, engine, tier, duration_s, or `Shot`s). Waits."""
    return _call("estimate", wait, shots=_shots(shots))


def submit(
    shots: Iterable[Any],
    name: str = "",
    *,
    force: bool = False,
    idempotency_key: str | None = None,
    wait: float = 30.0,
) -> dict[str, Any]:
    """Send a batch to render; returns the Job. Waits.

    First asks the service for the estimate and refuses (InsufficientCreditsError, or the
    tier/role refusal) a batch the available balance does not cover; `force=True` skips that check
    and lets the service decide (it still refuses a hold that does not fit).
    """
    body = _shots(shots)
    if not force:
        answer = estimate(body, wait=wait)
        for blocked in answer.get("blocked") or []:
            cls = TierNotAllowedError if blocked.get("code") == "tier_not_allowed" else ForbiddenError
            raise cls(str(blocked.get("reason") or "This shot cannot be rendered."), code=str(blocked.get("code")))
        if int(answer.get("shortfall") or 0) > 0:
            raise InsufficientCreditsError(
                f"This batch needs {answer['total']:,} cr but only {answer['available']:,} cr are available.",
                required_credits=int(answer["total"]),
                current_balance=int(answer["available"]),
            )
    key = idempotency_key or new_idempotency_key()
    return _call("submit_job", wait, name=name or "Blender batch", shots=body, idempotency_key=key)


def jobs(status: str | None = None, limit: int = 50, wait: float = WAIT_S) -> list[dict[str, Any]]:
    """The organisation's jobs, newest first. Waits."""
    return list(_call("jobs", wait, status=status, limit=limit))


def job(job_id: int, wait: float = WAIT_S) -> dict[str, Any]:
    return _call("job", wait, job_id=int(job_id))


def pause(job_id: int, wait: float = WAIT_S) -> dict[str, Any]:
    """Pause: a shot already rendering finishes (and is charged), then the job stops. Waits."""
    return _call("pause_job", wait, job_id=int(job_id))


def resume(job_id: int, wait: float = WAIT_S) -> dict[str, Any]:
    return _call("resume_job", wait, job_id=int(job_id))


def cancel(job_id: int, wait: float = WAIT_S) -> dict[str, Any]:
    """Cancel now: a rendering shot is not charged, everything still held is released. Waits."""
    return _call("cancel_job", wait, job_id=int(job_id))


def test_connection(wait: float = WAIT_S) -> str:
    """One line saying who the key belongs to and what is available. Waits."""
    _call("test_connection", wait)
    return runtime.state().last_message or ""


def subscribe(callback: Callable[[str, dict[str, Any]], None]) -> None:
    """`callback(event_type, data)` for every service event ("balance.changed", "job.status", ...).

    It runs on the main thread, when the add-on's timer (or a waiting call) drains the sync.
    """
    runtime.worker().subscribe(callback)


def unsubscribe(callback: Callable[[str, dict[str, Any]], None]) -> None:
    runtime.worker().unsubscribe(callback)


def _shots(shots: Iterable[Any]) -> list[dict[str, Any]]:
    return [s.request_json() if hasattr(s, "request_json") else dict(s) for s in shots]


def _call(kind: str, wait: float, /, **params: Any) -> Any:
    worker = runtime.worker()
    ticket: Ticket = worker.request(kind, **params)
    if not worker.wait(ticket, wait):
        raise OfflineError(
            f"No answer from the ACT3 service within {wait:g} s; it may still be working on it.",
            code="timeout",
            **({"idempotency_key": params["idempotency_key"]} if "idempotency_key" in params else {}),
        )
    if ticket.error is not None:
        raise ticket.error
    return ticket.result

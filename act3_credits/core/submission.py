"""What may be sent to ACT3, and how: every sending rule of the add-on and of `act3_credits.api`.

- Before anything is sent, `shots.estimate` prices the shots from the cached rate card and
  `Estimate.why_not` says why Confirm may not send them (the dialog's rule, no network).
- On Confirm (and in `api.submit`) a `Submission` asks the service's estimate first, then
  `refusal()` decides: a shot the service refuses, a rate card that changed since the dialog
  opened, a member cap or a project budget that refuses it, or a balance that does not cover the
  batch (unless `force`, where the service decides).
  Only then is the job sent, under one idempotency key made before the first try.
- A confirmation whose answer was lost keeps its key in `KeyBook`: confirming the same shots again
  reuses it, so the service replays the job instead of rendering and charging it twice.

Each refusal has one wording, here; the dialog, the operators' reports and the scripting API all
read it. No bpy here: the worker's answers arrive on the main thread through `SyncWorker.drain`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from . import formatting
from .client import (
    Act3Error,
    BudgetExceededError,
    ConflictError,
    ForbiddenError,
    InsufficientCreditsError,
    MemberCapExceededError,
    TierNotAllowedError,
)
from .client import new_idempotency_key as _new_key
from .contract import Job, ServiceEstimate
from .logs import log
from .shots import shortfall_message
from .sync import SyncWorker, Ticket
from .vocabulary import Status

SHORTFALL_HINT = "Fit to budget, switch to Draft, or buy credits."
NOTHING_SENT = "Nothing was sent."


def estimate_changed_message(total: int, shown: int) -> str:
    return (
        f"The service estimates {formatting.credits(total)}, not the {formatting.credits(shown)} shown: "
        "the rate card changed. Open the estimate again."
    )


def refusal(answer: ServiceEstimate, *, shown_total: int | None = None, force: bool = False) -> Act3Error | None:
    """Why the service's estimate (`POST /v1/estimates`) says this batch must not be sent, or None.

    `shown_total` is what the Cost Estimate showed (None from a script: there was no dialog to
    disagree with); `force` lets the service decide about the balance (it still refuses a hold
    that does not fit).
    """
    for blocked in answer.blocked:
        reason = blocked.reason or f"The service refuses shot {blocked.name}."
        cls = TierNotAllowedError if blocked.code == "tier_not_allowed" else ForbiddenError
        return cls(reason, code=blocked.code)
    total, available = answer.total, answer.available
    if shown_total is not None and total != shown_total:
        return ConflictError(estimate_changed_message(total, shown_total), code="estimate_changed")
    # Limits the organisation set itself: the service would refuse the job the same way (force or not).
    cap = answer.member_cap or {}
    if cap.get("verdict") == "refuse":
        return MemberCapExceededError(
            str(cap.get("message") or "This batch is past your cap for the billing period."),
            code="member_cap_exceeded",
            cap=cap.get("credits_per_period"),
            spent=cap.get("spent"),
            held=cap.get("held"),
            needed=total,
        )
    budget = answer.budget or {}
    if budget.get("verdict") == "refuse":
        return BudgetExceededError(
            str(budget.get("message") or f"This batch is past the budget of project {budget.get('project')}."),
            code="budget_exceeded",
            project=budget.get("project"),
            budget=budget.get("credits"),
            spent=budget.get("spent"),
            held=budget.get("held"),
            needed=total,
        )
    if answer.shortfall > 0 and not force:
        return InsufficientCreditsError(
            shortfall_message(total, available),
            code="insufficient_credits",
            required_credits=total,
            current_balance=available,
        )
    return None


class Submission:
    """One confirmation: the service's estimate first, then the job.

    Shaped like a `Ticket` (`done`, `ok`, `result`: the job, `error`: an `Act3Error`), so a script
    waits on it as on any request; `message` is the one line the artist reads either way.
    """

    def __init__(
        self,
        worker: SyncWorker,
        *,
        name: str,
        shots_json: list[dict[str, Any]],
        idempotency_key: str,
        force: bool = False,
        shown_total: int | None = None,
        on_done: Callable[[Submission], None] | None = None,
        project: str | None = None,
        start: str | None = None,
    ) -> None:
        self.worker = worker
        self.project = project or None  # the project whose budget the job counts against
        self.name = name
        self.shots_json = shots_json
        self.idempotency_key = idempotency_key
        self.force = force
        self.shown_total = shown_total
        self.on_done = on_done
        self.start_at = start  # "next_period": a scheduled job, estimated against the next refill
        self.done = False
        self.ok = False
        self.message = ""
        self.error: Act3Error | None = None
        self.job: Job | None = None
        self.estimate: ServiceEstimate | None = None
        self.tickets: list[Ticket] = []

    @property
    def result(self) -> dict[str, Any] | None:
        """The job as the API gives it (a dict), as `act3_credits.api` promises scripts; `job` is the typed one."""
        return self.job.to_json() if self.job is not None else None

    @property
    def error_code(self) -> str | None:
        return self.error.code if self.error is not None else None

    def start(self) -> Submission:
        self.tickets.append(
            self.worker.request(
                "estimate",
                shots=self.shots_json,
                # a deferred batch meets its budget at the refill, not now: asked without it
                project=None if self.start_at else self.project,
                when=self.start_at,
                callback=self._estimated,
            )
        )
        return self

    def _estimated(self, ticket: Ticket) -> None:
        if ticket.error is not None:
            return self._fail(ticket.error)
        self.estimate = ticket.result
        refused = refusal(ticket.result, shown_total=self.shown_total, force=self.force)
        if refused is not None:
            if refused.code == "estimate_changed":
                self.worker.request("refresh")  # the cached rate card is out of date: fetch the new one
            return self._fail(refused, refused_here=True)
        self.tickets.append(
            self.worker.request(
                "submit_job",
                name=self.name,
                shots=self.shots_json,
                idempotency_key=self.idempotency_key,
                project=self.project,
                start=self.start_at,
                callback=self._submitted,
            )
        )

    def _submitted(self, ticket: Ticket) -> None:
        if ticket.error is not None:
            return self._fail(ticket.error)
        job: Job = ticket.result
        self.job = job
        count = len(job.shots)
        held = formatting.credits(job.estimated_credits)
        shots = f"{count} shot{'s' if count != 1 else ''}"
        name = formatting.one_line(job.name or self.name)
        if job.status == Status.SCHEDULED:
            next_period = self.estimate.next_period if self.estimate is not None else None
            starts = (next_period or {}).get("starts_on") or "the next refill"
            message = f"Scheduled {name} (job {job.id}) to start on {starts}: {shots}, {held} held then."
            return self._finish(True, message)
        said = f"Sent {name} to ACT3 (job {job.id}): {shots}, {held} held."
        warnings = " ".join(str(w.get("message") or "") for w in job.warnings)
        self._finish(True, f"{said} {warnings}".strip())

    def _fail(self, error: Act3Error, refused_here: bool = False) -> None:
        # A write that failed may still have happened (a lost answer): its key lets it be retried safely.
        error.extra.setdefault("idempotency_key", self.idempotency_key)
        self.error = error
        if not refused_here:
            return self._finish(False, str(error))
        hint = f" {SHORTFALL_HINT}" if error.code == "insufficient_credits" else ""
        self._finish(False, f"{error} {NOTHING_SENT}{hint}")

    def _finish(self, ok: bool, message: str) -> None:
        self.done, self.ok, self.message = True, ok, message
        self.worker.state.say(message, "INFO" if ok else "WARNING")
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:
                log.exception("ACT3: after sending %s", self.name)

    def wait(self, timeout: float) -> bool:
        """Block the calling script (never the UI) until the job is sent or refused."""
        deadline = time.monotonic() + timeout
        while not self.done and time.monotonic() < deadline:
            pending = [t for t in self.tickets if not t.done]
            if pending:
                self.worker.wait(pending[-1], max(0.0, deadline - time.monotonic()))
            else:
                self.worker.drain()
                time.sleep(0.01)
        return self.done


class KeyBook:
    """Idempotency keys of confirmations that did not end in a job we know of, by what they sent.

    Any failure counts, not only the ones that look like a lost answer (a gateway's 504, a
    time-out, a reconnect while it was on its way...): a refusal stores nothing under the key, so
    reusing it is safe, and a job that was made is replayed instead of made twice.
    """

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    @staticmethod
    def _what(name: str, shots_json: list[dict[str, Any]]) -> str:
        return json.dumps([name, shots_json], sort_keys=True)

    def key_for(self, name: str, shots_json: list[dict[str, Any]]) -> str:
        """A lost confirmation's key for exactly these shots, or a new one."""
        return self._keys.get(self._what(name, shots_json)) or _new_key()

    def settle(self, sub: Submission) -> None:
        """After the service answered: a job forgets its key, anything else keeps it for a retry."""
        what = self._what(sub.name, sub.shots_json)
        if sub.ok:
            self._keys.pop(what, None)
        else:
            self._keys[what] = sub.idempotency_key

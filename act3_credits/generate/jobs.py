"""Watching what was sent: the budget guard and the news that is not a job's (no bpy here).

Sending itself is `core.submission` (the rules Confirm and `act3_credits.api` share). The guard
follows the worker's events in `drain()`, on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..core import formatting, shots
from ..core.contract import BalanceChanged, BillingRefilled, JobStatusChanged, ServiceEvent, ShotCompleted, ShotFailed
from ..core.logs import log
from ..core.sync import SyncWorker

# ---------------------------------------------------------------------------------------- budget guard


class BudgetGuard:
    """Pauses a batch sent from here when the balance falls below the artist's minimum, or when the job
    has been charged more than its estimate. Runs in `drain()` (an event subscriber), on the main thread."""

    def __init__(self) -> None:
        self.watched: dict[int, int] = {}  # job id -> what the add-on estimated at Confirm
        self.charged: dict[int, int] = {}  # job id -> credits charged, from job.shot_completed events
        self.paused: set[int] = set()  # paused by the guard (not paused again)
        self.reasons: dict[int, str] = {}  # why the guard paused a job, for the Render Queue
        self.let_run: set[int] = set()  # resumed by the artist after the guard paused them
        self.settings: Callable[[], tuple[bool, int, bool]] = lambda: (False, 0, False)
        self.notify: Callable[[str], None] = lambda _message: None
        self.announce: Callable[[str], None] = lambda _message: None  # news that is not a warning
        self.on_shot_completed: Callable[[int, str, int], None] = lambda _job, _shot, _credits: None
        self._worker: SyncWorker | None = None

    def reset(self) -> None:
        """Forget every job (the add-on was enabled again)."""
        self.detach()
        self.watched.clear()
        self.charged.clear()
        self.paused.clear()
        self.reasons.clear()
        self.let_run.clear()

    def attach(self, worker: SyncWorker | None) -> None:
        """Follow the events of this worker (once; a new worker after a restart is followed anew)."""
        if worker is None:
            return
        if worker is self._worker:
            return
        self.detach()
        worker.subscribe(self.on_event)
        self._worker = worker

    def detach(self) -> None:
        if self._worker is not None:
            self._worker.unsubscribe(self.on_event)
            self._worker = None

    def watch(self, job_id: int, estimate: int) -> None:
        self.watched[int(job_id)] = int(estimate)

    def resumed(self, job_id: int) -> None:
        if job_id in self.paused:
            self.paused.discard(job_id)
            self.reasons.pop(job_id, None)
            self.let_run.add(job_id)

    def on_event(self, event: ServiceEvent) -> None:
        if isinstance(event, ShotCompleted):
            jid = event.job_id
            self.charged[jid] = self.charged.get(jid, 0) + event.credits
            try:
                self.on_shot_completed(jid, event.shot, event.credits)
            except Exception:
                log.exception("ACT3: recording the cost of shot %s", event.shot)
        if isinstance(event, BillingRefilled):
            self.announce(refill_message(event))
        if isinstance(event, (BalanceChanged, ShotCompleted, ShotFailed, JobStatusChanged)):
            self.check()

    def check(self) -> list[str]:
        """Pause every watched job the guard says must stop; the reasons, for tests and reports."""
        enabled, min_balance, over_estimate = self.settings()
        worker = self._worker
        if not enabled or worker is None:
            return []
        state = worker.state
        total = state.credits.total if state.credits is not None else None
        reasons = []
        for job_id, estimate in list(self.watched.items()):
            job = state.jobs.get(job_id)
            if job is None or job_id in self.paused or job_id in self.let_run:
                continue
            view = replace(job, charged_credits=max(job.charged_credits, self.charged.get(job_id, 0)))
            reason = shots.guard_decision(
                job=view,
                balance_total=total,
                min_balance=min_balance,
                pause_over_estimate=over_estimate,
                estimate=estimate,
            )
            if reason is None:
                continue
            self.paused.add(job_id)
            self.reasons[job_id] = reason
            worker.request("pause_job", job_id=job_id)
            state.say(reason, "WARNING")
            reasons.append(reason)
            self.notify(reason)
        return reasons


def refill_message(event: BillingRefilled) -> str:
    """'Monthly refill: +875,000 cr. 120,000 cr rolled into the Rollover Bank; 30,000 cr over its cap expired.'"""
    parts = [f"Monthly refill: +{formatting.credits(event.monthly_allocation)}."]
    rolled, expired = event.rolled_over, event.expired
    if rolled:
        parts.append(f"{formatting.credits(rolled)} unused last period rolled into the Rollover Bank.")
    if expired:
        parts.append(f"{formatting.credits(expired)} over the bank's cap expired.")
    if not rolled and not expired:
        parts.append("Nothing was left over from last period.")
    return " ".join(parts)


guard = BudgetGuard()

"""The job runner: background threads in every serve process that render (simulate) shots.

A shot takes duration_s x render_speed seconds and fails with probability fail_rate, or for sure when
its position in the job is a multiple of fail_every (the 3rd, 6th, ... for 3: a failure a test or a
demo can count on). Each worker
leases one shot at a time (Ledger.claim_next_shot, or the charge of its last shot leases the next
in the same transaction: Ledger.complete_and_claim); the lease is short and renewed while rendering,
so a shot whose process died is rendered by another process within about two seconds.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid

from .errors import is_database_unavailable
from .ledger import Claim, Ledger

log = logging.getLogger("act3_server.runner")

IDLE_WORKER_S = 5.0  # an idle worker that is not the scout looks by itself this often at most

# A lease is short and renewed often: a shot whose process died (SIGKILL, power) is rendered by
# another process LEASE_S + poll_s after its last renewal at most (about 2.2 s), while a renewal
# may come 1.5 s late (a busy database) before the lease is lost. Leases compare real time
# (time.time()) across processes: serve processes on several machines need synchronised clocks.
LEASE_S = 2.0
RENEW_S = 0.5


class Runner:
    def __init__(
        self,
        ledger: Ledger,
        render_speed: float = 1.0,
        fail_rate: float = 0.0,
        fail_every: int = 0,
        workers: int = 4,
        poll_s: float = 0.2,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        rng: random.Random | None = None,
        process_id: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.render_speed = render_speed
        self.fail_rate = fail_rate
        self.fail_every = fail_every
        self.workers = workers
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.renew_s = min(renew_s, lease_s / 2)
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._scout = threading.Lock()
        self._db_down = False
        self._threads: list[threading.Thread] = []
        # A lease names its holder: host, serve process (the render process's own, see renderproc.py),
        # and this runner; an expired lease is taken over whoever held it.
        self._id = f"{socket.gethostname()}:{process_id or os.getpid()}:{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, args=(f"{self._id}:{i}",), name=f"act3-runner-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        """Something changed locally (a job queued or resumed): look for work now."""
        self._wake.set()

    def _loop(self, worker: str) -> None:
        claim: Claim | None = None  # a shot leased by the charge of the one before it
        while not self._stop.is_set():
            if claim is None:
                try:
                    claim = self.ledger.claim_next_shot(worker, self.lease_s)
                    self._db_down = False
                except Exception as exc:
                    if not is_database_unavailable(exc):
                        log.exception("claiming a shot failed; retrying")
                    elif not self._db_down:  # one line per outage, not one per worker per second
                        self._db_down = True
                        log.warning("the database is unavailable; the runner retries every second")
                    claim = None
                    self._stop.wait(1.0)
                if claim is None:
                    self._idle()
                    continue
            self._wake.set()  # there may be more: idle workers look too
            shot, claim = claim, None
            try:
                claim = self._render(shot)
            except Exception as exc:
                # The lease runs out and another worker picks the shot up again.
                if is_database_unavailable(exc):
                    log.warning("shot %s of job %s: the database is unavailable", shot.shot_index, shot.job_id)
                else:
                    log.exception("rendering shot %s of job %s failed", shot.shot_index, shot.job_id)
        if claim is not None:  # leased by the last charge and not started: back to the queue now
            try:
                self.ledger.requeue(claim)
            except Exception:  # its lease runs out and another process renders it
                log.warning("shot %s of job %s: not handed back; its lease runs out", claim.shot_index, claim.job_id)

    def _idle(self) -> None:
        """Wait for work. One idle worker (the scout) looks every `poll_s` (work queued by another
        process, a lease that ran out); the others sleep until it, a local change or a claim wakes
        them, so an idle process reads once per `poll_s`, not once per worker."""
        if self._scout.acquire(blocking=False):
            try:
                self._wake.wait(self.poll_s)
            finally:
                self._scout.release()
        else:
            self._wake.wait(IDLE_WORKER_S)
        if not self._stop.is_set():  # once stopping, every worker must see the wake-up stop() gave
            self._wake.clear()

    def _render(self, claim: Claim) -> Claim | None:
        """Render `claim` and charge it (or fail it); the shot the charge leased next, if any."""
        seconds = claim.duration_s * self.render_speed
        end = time.monotonic() + seconds
        renewed = time.monotonic()
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            if self._stop.wait(min(left, 0.1)):
                self.ledger.requeue(claim)  # shutting down: hand the shot back at once
                return None
            if time.monotonic() - renewed >= self.renew_s:
                if not self.ledger.renew_lease(claim, self.lease_s):
                    return None  # canceled (or re-queued after our lease ran out): charge nothing
                renewed = time.monotonic()
            elif not self.ledger.still_rendering(claim):
                return None
        if self._fails(claim):
            self.ledger.fail_shot(claim, "simulated render failure")
            return None
        return self.ledger.complete_and_claim(claim, self.lease_s)[1]

    def _fails(self, claim: Claim) -> bool:
        if self.fail_every > 0 and (claim.shot_index + 1) % self.fail_every == 0:
            return True
        return bool(self.fail_rate) and self.rng.random() < self.fail_rate

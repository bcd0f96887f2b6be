"""Group commit: writes that arrive together share one transaction.

Sixteen artists' holds on one organisation all want its account row; one at a time, each waits for
the previous one's lock, round trips and commit, and every commit wakes every waiter. Here the first
caller of a lane leads: it takes what is queued in that lane (its own item first, at most `limit`),
runs them through `run_batch` in one transaction, hands each its answer, and passes the lead to the
oldest item still queued, whose thread then does the same. A caller that is not leading sleeps until
its item is answered or it is handed the lead, so nobody waits for more than the batch in front of
it plus its own.

The ledger runs its holds (`Ledger._hold_batch`) and its runner's charges (`Ledger._charge_batch`)
through one each. A lane is what must not run twice at once: an organisation on PostgreSQL (its
account row), the whole database on SQLite (one writer at a time anyway).

`run_batch` sets each item's `result` or `error` and writes all or nothing. When it raises for a
batch of several (a database error, or an item that must undo what it wrote), the batch is run
again one item at a time, so each item gets exactly the answer it would have had alone; an
exception for a single item is that item's error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class Item:
    """One caller's write, its answer, and how its thread is woken."""

    __slots__ = ("payload", "result", "error", "_woken", "_leads", "_answered")

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.result: Any = None
        self.error: BaseException | None = None
        self._woken = threading.Event()
        self._leads = False
        self._answered = False

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error, self._answered = result, error, True


class GroupCommit:
    """Callers of `run` in one lane are served in batches, one batch at a time, in arrival order."""

    def __init__(self, run_batch: Callable[[list[Item]], None], limit: int = 32) -> None:
        self._run_batch = run_batch
        self._limit = limit
        self._lock = threading.Lock()
        self._queues: dict[Hashable, list[Item]] = {}  # a lane is in here while someone leads it

    def run(self, lane: Hashable, payload: Any) -> Any:
        """`payload` written in a batch of its lane; its result, or its error raised here."""
        item = Item(payload)
        with self._lock:
            queue = self._queues.get(lane)
            if queue is None:
                self._queues[lane] = queue = []
                item._leads = True
            queue.append(item)
        if not item._leads:
            item._woken.wait()
        if not item._answered:  # handed the lead: this item is now at the head of the queue
            self._lead(lane, queue)
        if item.error is not None:
            raise item.error
        return item.result

    def _lead(self, lane: Hashable, queue: list[Item]) -> None:
        with self._lock:
            batch = queue[: self._limit]
            del queue[: self._limit]
        try:
            self._run(batch)
        finally:
            for it in batch:
                if not it._answered:  # run_batch broke its contract: say so rather than hang
                    it.answer(error=RuntimeError("a group commit left a write unanswered"))
            with self._lock:
                if queue:
                    queue[0]._leads = True
                    queue[0]._woken.set()
                else:
                    del self._queues[lane]
            for it in batch:
                it._woken.set()

    def _run(self, batch: list[Item]) -> None:
        try:
            self._run_batch(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].answer(error=exc)
                return
            for it in batch:
                it.result, it.error, it._answered = None, None, False  # the rolled-back batch's answers
                self._run([it])
        except BaseException as exc:  # interrupted: nothing is retried
            for it in batch:
                if not it._answered:
                    it.answer(error=exc)

"""A few threads of the fast paths' own, for the short blocking calls they make from the event loop.

`loop.run_in_executor` with a ThreadPoolExecutor makes a concurrent Future, wraps it in an asyncio
Future, chains the two and copies the result across: about a tenth of what an idle long poll costs
the event loop (docs/benchmarks.md, "Idle long polls"). Here the call goes on a queue with the
asyncio Future itself, and the worker hands the result back with one `call_soon_threadsafe`.

Threads start only as they are needed (none is idle when a call comes), up to `max_workers`, and
then stay: the long polls' key check keeps a database connection per thread
(`KeyCheck.authenticate_pinned`), so a busy moment leaves at most `max_workers` of those.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Workers:
    def __init__(self, max_workers: int, name: str) -> None:
        self.max_workers = max_workers
        self.name = name
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by each worker as it finishes a call
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in one of the threads; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        if not self._idle.acquire(blocking=False):
            self._grow()
        return await future

    def _grow(self) -> None:
        with self._lock:
            if len(self._threads) < self.max_workers:
                t = threading.Thread(target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def _work(self) -> None:
        # A new thread takes the call that started it without a token; each finished call gives
        # one back, so `_idle` counts the threads waiting (or about to) and `run` grows the pool
        # whenever none is.
        while True:
            loop, future, fn, args = self._calls.get()
            if future.cancelled():  # its caller went away before it started: never run it
                self._idle.release()
                continue
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # handed to the caller, who raises it
                result, error = None, exc
            self._idle.release()  # before the answer: its caller may ask again at once
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for it any more
                pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled (its client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)

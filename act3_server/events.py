"""Long-poll wake-ups.

Events are rows written in the same transaction as the change (see ledger.py). A waiting long poll
neither holds a database connection nor blocks the event loop: it re-reads the events table every
`recheck_s` (which catches events committed by any other serve process on the same database) and
is woken at once by `notify()` for commits made in this process.
"""

from __future__ import annotations

import asyncio
import threading


class EventBus:
    def __init__(self, recheck_s: float = 0.1) -> None:
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        """Called from any thread after a local commit that wrote events."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # that loop is closed
                pass

    async def wait(self, timeout: float) -> None:
        """Sleep until a local notify or `timeout` seconds (capped at the re-check interval)."""
        ev = asyncio.Event()
        entry = (asyncio.get_running_loop(), ev)
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(ev.wait(), timeout=max(0.0, min(timeout, self.recheck_s)))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)

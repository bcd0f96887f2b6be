"""Coarse deadlines for many connections on one event loop, with one loop timer between them.

A thousand idle Blender sessions each hold a long poll open; every poll used to put four timers on
asyncio's heap (the head and body deadlines, uvicorn's keep-alive and the poll's own wait), three of
them cancelled within milliseconds. asyncio leaves a cancelled timer in its heap until it reaches the
top, and orders the heap by calling `TimerHandle.__lt__` in Python, so those timers were about a
tenth of what an idle poll cost the event loop (docs/benchmarks.md, "Idle long polls").

Here a deadline is a slot of `resolution` seconds (a dict entry), the slots are ordered by their
number in a heap of ints (compared in C), and one asyncio timer waits for the earliest slot. Making
or cancelling a deadline touches no asyncio timer; a deadline fires up to `resolution` late, never
early. Fit for time-outs of seconds, not for exact timing.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable

RESOLUTION_S = 0.05


class Deadline:
    """What `Ticks.call_later` returns: `cancel()` it (any number of times) before it fires."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        self.callback = None

    def cancelled(self) -> bool:
        return self.callback is None


class Ticks:
    """The coarse deadlines of one event loop (`ticks()` gives the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolution: float = RESOLUTION_S) -> None:
        # Weakly: `ticks()` keeps one Ticks per loop in a WeakKeyDictionary, which a strong
        # reference back to its key would keep for ever.
        self._loop = weakref.ref(loop)
        self.resolution = resolution
        self._slots: dict[int, list[Deadline]] = {}
        self._order: list[int] = []  # the slot numbers of `_slots`, a heap
        self._armed: int | None = None  # the slot the loop timer is set for
        self._timer: asyncio.TimerHandle | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the event loop of these deadlines is gone")
        return loop

    def call_later(self, delay: float, callback: Callable[[], object]) -> Deadline:
        """Call `callback()` on the loop `delay` seconds from now, or up to `resolution` later."""
        deadline = Deadline(callback)
        slot = math.ceil((self.loop.time() + delay) / self.resolution)
        due = self._slots.get(slot)
        if due is None:
            self._slots[slot] = [deadline]
            heapq.heappush(self._order, slot)
            if self._armed is None or slot < self._armed:
                self._arm(slot)
        else:
            due.append(deadline)
        return deadline

    def pending(self) -> int:
        """Deadlines not yet fired, cancelled ones included (for tests)."""
        return sum(len(d) for d in self._slots.values())

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = slot
        self._timer = self.loop.call_at(slot * self.resolution, self._fire)

    def _fire(self) -> None:
        self._timer = self._armed = None
        # asyncio may run a timer a clock tick early: a slot is due once its start is (about) now.
        now = math.floor(self.loop.time() / self.resolution + 1e-6)
        while self._order and self._order[0] <= now:
            for deadline in self._slots.pop(heapq.heappop(self._order)):
                callback, deadline.callback = deadline.callback, None
                if callback is None:
                    continue
                try:
                    callback()
                except Exception as exc:  # one failing callback never stops the others
                    self.loop.call_exception_handler(
                        {"message": "a deadline's callback failed", "exception": exc, "callback": callback}
                    )
        if self._order:
            self._arm(self._order[0])


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Ticks] = weakref.WeakKeyDictionary()


def ticks(loop: asyncio.AbstractEventLoop | None = None) -> Ticks:
    """The coarse deadlines of `loop` (the running loop by default), made on first use."""
    loop = loop or asyncio.get_running_loop()
    found = _LOOPS.get(loop)
    if found is None:
        found = _LOOPS[loop] = Ticks(loop)
    return found

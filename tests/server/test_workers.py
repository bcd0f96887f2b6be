"""The fast paths' own threads (act3_server.workers): results and errors come back, threads start only
when none is idle, and never more than the limit."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from act3_server.workers import Workers


def test_results_and_errors_come_back_and_one_caller_at_a_time_needs_one_thread() -> None:
    w = Workers(max_workers=4, name="t-serial")

    def fail() -> None:
        raise ValueError("bad key")

    async def scenario() -> None:
        names = {await w.run(lambda: threading.current_thread().name) for _ in range(50)}
        assert names == {"t-serial_0"}  # a thread was idle every time: no second one
        assert await w.run(divmod, 17, 5) == (3, 2)
        with pytest.raises(ValueError, match="bad key"):
            await w.run(fail)
        assert await w.run(sum, [1, 2, 3]) == 6  # the thread lives on after an error

    asyncio.run(scenario())


def test_a_burst_grows_to_the_limit_and_no_further() -> None:
    w = Workers(max_workers=3, name="t-burst")
    running = 0
    most = 0
    lock = threading.Lock()

    def slow(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return i * i

    async def scenario() -> list[int]:
        return await asyncio.gather(*(w.run(slow, i) for i in range(12)))

    assert asyncio.run(scenario()) == [i * i for i in range(12)]
    assert most == 3 and len(w._threads) == 3


def test_a_pool_that_has_served_still_grows_when_all_its_threads_are_busy() -> None:
    # Found in review: a worker counted itself idle on starting, so a pool that had grown once
    # thought a thread was free when none was, and two calls ran one after the other.
    w = Workers(max_workers=4, name="t-regrow")

    async def scenario() -> float:
        await w.run(int, "1")  # one thread, now idle
        t0 = time.monotonic()
        await asyncio.gather(w.run(time.sleep, 0.3), w.run(time.sleep, 0.3))
        first = time.monotonic() - t0
        await asyncio.gather(*(w.run(time.sleep, 0.3) for _ in range(3)))  # and again, wider
        return first

    assert asyncio.run(scenario()) < 0.5  # side by side (one after the other takes 0.6 s)
    assert len(w._threads) == 3


def test_a_cancelled_caller_leaves_the_workers_serving() -> None:
    w = Workers(max_workers=1, name="t-cancel")

    async def scenario() -> None:
        slow = asyncio.create_task(w.run(time.sleep, 0.2))
        await asyncio.sleep(0.05)
        slow.cancel()  # its client went away while the call ran
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await asyncio.wait_for(w.run(str.upper, "next"), 2) == "NEXT"

        # A call whose caller went away before a thread took it is never run.
        ran: list[str] = []
        blocker = asyncio.create_task(w.run(time.sleep, 0.2))
        await asyncio.sleep(0.02)
        queued = asyncio.create_task(w.run(ran.append, "late"))
        await asyncio.sleep(0.02)
        queued.cancel()
        await blocker
        assert await w.run(str.lower, "AFTER") == "after"
        assert ran == []

    asyncio.run(scenario())

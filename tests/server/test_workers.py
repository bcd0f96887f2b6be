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


def test_a_cancelled_caller_leaves_the_workers_serving() -> None:
    w = Workers(max_workers=1, name="t-cancel")

    async def scenario() -> None:
        slow = asyncio.create_task(w.run(time.sleep, 0.2))
        await asyncio.sleep(0.05)
        slow.cancel()  # its client went away while the call ran
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await asyncio.wait_for(w.run(str.upper, "next"), 2) == "NEXT"

    asyncio.run(scenario())

"""The coarse deadlines (act3_server.ticks) the connections' time-outs and the long polls' waits use."""

from __future__ import annotations

import asyncio

from act3_server.ticks import Ticks, ticks


def test_deadlines_fire_in_order_never_early_and_at_most_one_resolution_late() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        t = Ticks(loop, resolution=0.05)
        fired: dict[str, float] = {}
        start = loop.time()
        for name, delay in (("c", 0.30), ("a", 0.10), ("b", 0.20), ("a2", 0.10)):
            t.call_later(delay, lambda name=name: fired.setdefault(name, loop.time() - start))
        await asyncio.sleep(0.5)
        assert list(fired) == ["a", "a2", "b", "c"]
        for name, delay in (("a", 0.10), ("a2", 0.10), ("b", 0.20), ("c", 0.30)):
            assert delay <= fired[name] <= delay + 0.05 + 0.03  # the resolution, and the loop's own lag
        assert t.pending() == 0

    asyncio.run(scenario())


def test_a_thousand_deadlines_use_one_asyncio_timer_and_cancelled_ones_never_fire() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        t = ticks()
        assert ticks() is t  # one per loop
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        fired: list[int] = []
        handles = [t.call_later(0.05 + (i % 7) * 0.01, lambda i=i: fired.append(i)) for i in range(1000)]
        # Seven distinct times, one timer on asyncio's heap between them.
        assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
        for h in handles[::2]:
            h.cancel()
            h.cancel()  # twice is fine
        assert all(h.cancelled() for h in handles[::2])
        await asyncio.sleep(0.25)
        assert sorted(fired) == list(range(1, 1000, 2))
        assert len(loop._scheduled) == before  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_failing_callback_is_reported_and_the_others_still_fire() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict] = []
        loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        t = Ticks(loop)
        fired: list[str] = []

        def boom() -> None:
            raise RuntimeError("boom")

        t.call_later(0.05, lambda: fired.append("before"))
        t.call_later(0.05, boom)
        t.call_later(0.05, lambda: fired.append("after"))
        t.call_later(0.12, lambda: fired.append("later"))  # a later slot is still armed afterwards
        await asyncio.sleep(0.3)
        assert fired == ["before", "after", "later"]
        assert [type(r["exception"]) for r in reported] == [RuntimeError]

    asyncio.run(scenario())


def test_a_finished_loop_is_not_kept_alive_by_its_deadlines() -> None:
    import gc
    import weakref

    from act3_server import ticks as ticks_module

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def scenario() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        ticks().call_later(0.01, lambda: None)
        await asyncio.sleep(0.1)

    for _ in range(3):
        asyncio.run(scenario())
    gc.collect()
    assert all(ref() is None for ref in loops)
    assert not any(ref() in ticks_module._LOOPS for ref in loops)

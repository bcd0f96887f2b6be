"""The shared long-poll waiter (act3_server.events.EventBus) on real databases.

One background thread per process reads for every waiter: nothing while nobody waits, one query per
re-check or notification however many wait, and only the waiters of an organisation that got events
are woken. On PostgreSQL, processes wake each other through LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time

import pytest
from srv_helpers import Books, ManualClock, make_books

from act3_server import db, migrate
from act3_server.events import EventBus
from act3_server.ledger import Ledger


async def _waiters(bus: EventBus, org_id: int, after: int, n: int, timeout: float) -> list[asyncio.Task[bool]]:
    tasks = [asyncio.create_task(bus.wait(org_id, after, timeout)) for _ in range(n)]
    while bus.waiting() < n + 0:  # all registered
        await asyncio.sleep(0.005)
    return tasks


def _buy(books: Books, key: str) -> None:
    assert books.ledger.purchase(books.owner, "pack-50k", key).status == 201


def test_an_idle_bus_reads_nothing_and_many_waiters_cost_one_read_per_recheck(
    ledger: Ledger, books: Books, clock: ManualClock
) -> None:
    other = make_books(ledger, clock, "starter", name="other")
    bus = EventBus(ledger.engine, recheck_s=0.1, backstop_s=0.1, linger_s=0.2)
    ledger.on_event = bus.notify
    bus.start()
    try:
        time.sleep(0.5)
        assert bus.reads == 0  # nobody waits: no reads at all

        async def scenario() -> None:
            last = ledger.last_seq(books.org_id)
            mine = await _waiters(bus, books.org_id, last, 300, timeout=10)
            theirs = await _waiters(bus, other.org_id, ledger.last_seq(other.org_id), 1, timeout=10)
            await asyncio.sleep(0.25)  # the bus has read for the orgs it now follows
            checks, reads = bus.checks, bus.reads
            await asyncio.sleep(1.0)
            # 301 waiters of two orgs for 1 s at a 0.1 s re-check: about 10 checks, not 3,000.
            assert 5 <= bus.checks - checks <= 15
            if ledger.engine.dialect.name == "sqlite":
                # Nobody committed: SQLite's data_version says so, and nothing is read.
                assert bus.reads == reads
            else:
                assert 5 <= bus.reads - reads <= 15
            assert not any(t.done() for t in mine + theirs)

            t0 = time.monotonic()
            await asyncio.to_thread(_buy, books, "one")
            done, _ = await asyncio.wait(mine, timeout=2)
            assert len(done) == 300 and all(t.result() for t in done)
            assert time.monotonic() - t0 < 0.5
            await asyncio.sleep(0.3)
            assert not theirs[0].done()  # another org's waiter sleeps on
            theirs[0].cancel()

        asyncio.run(scenario())
        assert bus.waiting() == 0
        time.sleep(0.3)  # the orgs stay followed for linger_s (0.2 s) after their last waiter
        reads = bus.reads
        time.sleep(0.4)
        assert bus.reads == reads  # idle again
    finally:
        bus.stop()


def test_a_commit_the_bus_is_not_told_of_is_found_by_the_recheck(ledger: Ledger, books: Books) -> None:
    """Another process's commit (here: a commit whose notification nobody hears) wakes the waiters
    at the next re-check, on SQLite through its data_version, on PostgreSQL through the backstop."""
    bus = EventBus(ledger.engine, recheck_s=0.1, backstop_s=0.1, listen=False)
    bus.start()
    try:

        async def scenario() -> None:
            last = ledger.last_seq(books.org_id)
            (task,) = await _waiters(bus, books.org_id, last, 1, timeout=10)
            await asyncio.sleep(0.5)  # several re-checks of an unchanged database
            assert not task.done()
            t0 = time.monotonic()
            await asyncio.to_thread(_buy, books, "unheard")  # ledger.on_event is not the bus's
            assert await asyncio.wait_for(task, 2) is True
            assert time.monotonic() - t0 < 0.5

        asyncio.run(scenario())
    finally:
        bus.stop()


def test_a_local_commit_wakes_at_once_without_any_recheck(ledger: Ledger, books: Books) -> None:
    """With re-checks a minute apart, only the commit's notification can wake the waiter in time."""
    bus = EventBus(ledger.engine, recheck_s=60, backstop_s=60)
    ledger.on_event = bus.notify
    bus.start()
    try:

        async def scenario() -> None:
            last = ledger.last_seq(books.org_id)
            (task,) = await _waiters(bus, books.org_id, last, 1, timeout=20)
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            await asyncio.to_thread(_buy, books, "local")
            assert await asyncio.wait_for(task, 2) is True
            assert time.monotonic() - t0 < 0.3
            # The seq is now known: a waiter that has not seen it returns at once, one that has waits.
            assert await bus.wait(books.org_id, last, 5) is True
            assert await bus.wait(books.org_id, ledger.last_seq(books.org_id), 0.3) is False

        asyncio.run(scenario())
    finally:
        bus.stop()


def test_a_notify_without_new_events_wakes_nobody(ledger: Ledger, books: Books) -> None:
    bus = EventBus(ledger.engine, recheck_s=60, backstop_s=60)
    bus.start()
    try:

        async def scenario() -> None:
            (task,) = await _waiters(bus, books.org_id, ledger.last_seq(books.org_id), 1, timeout=0.8)
            for _ in range(5):
                bus.notify()
                await asyncio.sleep(0.05)
            assert await task is False  # timed out: the notifications found nothing new for it

        asyncio.run(scenario())
        assert bus.reads >= 1
    finally:
        bus.stop()


def test_shutdown_wakes_every_waiter(ledger: Ledger, books: Books) -> None:
    bus = EventBus(ledger.engine)
    bus.start()

    async def scenario() -> None:
        tasks = await _waiters(bus, books.org_id, ledger.last_seq(books.org_id), 5, timeout=30)
        t0 = time.monotonic()
        await asyncio.to_thread(bus.stop)
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
        assert time.monotonic() - t0 < 2

    asyncio.run(scenario())


@pytest.mark.postgres
def test_processes_on_one_postgres_wake_each_other_through_notify(fresh_postgres_url: str) -> None:
    """Two engines stand for two serve processes; B re-checks only every minute."""
    engine_a = db.make_engine(fresh_postgres_url, pool_size=3)
    engine_b = db.make_engine(fresh_postgres_url, pool_size=3)
    migrate.upgrade(engine_a)
    clock = ManualClock()
    ledger_a = Ledger(engine_a, clock)
    books = make_books(ledger_a, clock, "pro")
    bus_a = EventBus(engine_a, recheck_s=60, backstop_s=60)
    bus_b = EventBus(engine_b, recheck_s=60, backstop_s=60)
    ledger_a.on_event = bus_a.notify
    bus_a.start()
    bus_b.start()
    try:
        deadline = time.monotonic() + 10
        while not (bus_a.listening and bus_b.listening):
            assert time.monotonic() < deadline, "LISTEN never came up"
            time.sleep(0.02)

        async def scenario() -> list[float]:
            took = []
            for i in range(5):
                last = ledger_a.last_seq(books.org_id)
                (task,) = await _waiters(bus_b, books.org_id, last, 1, timeout=20)
                await asyncio.sleep(0.05)
                t0 = time.monotonic()
                await asyncio.to_thread(_buy, books, f"pg-{i}")
                assert await asyncio.wait_for(task, 5) is True
                took.append(time.monotonic() - t0)
            return took

        took = asyncio.run(scenario())
        assert max(took) < 0.3, took
        assert bus_a.notifies_sent >= 5 and bus_b.notifies_heard >= 5
        assert bus_a.notifies_heard == 0  # its own NOTIFYs are not news to it
    finally:
        bus_a.stop()
        bus_b.stop()
        engine_a.dispose()
        engine_b.dispose()

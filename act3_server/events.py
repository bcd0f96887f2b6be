"""Long-poll wake-ups: one shared waiter per serve process.

Events are rows written in the same transaction as the change (see ledger.py). A waiting long poll
holds no database connection, no thread and no timer of its own beyond its deadline: it registers
(org, the seq it has seen) with the process's `EventBus` and sleeps on an `asyncio.Event`.

One background thread ("act3-events") does all the reading for every waiter of the process:

- When nobody waits it reads nothing at all.
- A local commit that wrote events (the ledger's `on_event` hook calls `notify()`) makes it read at
  once: one query giving the newest seq of each organisation that has waiters (an index lookup per
  organisation), and it wakes only the waiters of organisations whose seq passed theirs.
- Other processes on the same database: on PostgreSQL each process `LISTEN`s on one channel and
  sends a `NOTIFY` after each local commit with events, so processes wake each other at once; a
  slow re-check (`backstop_s`) also catches writers that send no NOTIFY (the `billing run` command,
  an older server) and the gap while the listening connection reconnects. On SQLite (one machine)
  the same query runs every `recheck_s` while someone waits.

Notifications carry no organisation (the ledger's hook does not say which), so a notification costs
one query for the organisations that have waiters, never one per waiter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from .db import own_connection
from .ticks import ticks

log = logging.getLogger("act3_server.events")

CHANNEL = "act3_events"


@dataclass(eq=False)
class Waiter:
    """One registered long poll. `event` is set when its org's newest seq may have passed `after`.

    `tracked` says the org was already followed when it registered (it has had waiters without a
    break since a read of the bus): the bus then knows of every commit that the caller could have
    read, so the caller may skip its own first read and just wait."""

    org_id: int
    after: int
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)
    tracked: bool = False
    woken: bool = False  # by the bus (`event` is also set by its owner's own time-out)

    def wake(self) -> None:
        """On the waiter's loop."""
        self.woken = True
        self.event.set()

    async def sleep(self, timeout: float) -> bool:
        """Until woken or `timeout` seconds (up to 50 ms more); True when woken. Cheaper than
        asyncio.wait_for, which makes a task per call: a coarse deadline (ticks.py, no timer of its
        own on asyncio's heap) sets the same event."""
        if not self.woken:
            timer = ticks(self.loop).call_later(timeout, self.event.set)
            try:
                await self.event.wait()
            finally:
                timer.cancel()
        return self.woken


class EventBus:
    """The process's shared long-poll waiter.

    `engine=None` gives a bus that is woken only by `notify()` and by time-outs (for code that has no
    database); the service always passes its engine.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        recheck_s: float = 0.1,
        backstop_s: float = 2.0,
        linger_s: float = 2.0,
        listen: bool = True,
    ) -> None:
        self.engine = engine
        self.recheck_s = recheck_s
        self.backstop_s = backstop_s
        self._pg = engine is not None and engine.dialect.name == "postgresql" and listen
        self._sqlite = engine is not None and engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = {}
        # org -> (newest seq, epoch): what the last read found, for orgs that have waiters. An org's
        # epoch changes each time it gets waiters after having none; a value read in an earlier
        # epoch may miss commits made while nobody waited, so it does not make the org tracked.
        self._newest: dict[int, tuple[int, int]] = {}
        self._epoch: dict[int, int] = {}
        self._epochs = 0
        self._linger: dict[int, float] = {}  # org -> until when it stays followed without waiters
        self.linger_s = linger_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._local = False  # a local commit wrote events since the last read
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()  # the LISTEN connection is up
        self._sender: Any = None  # psycopg connection used for NOTIFY (owned by the waiter thread)
        self._reader: Any = None  # the driver connection `_read` uses (owned by the waiter thread)
        self._newest_sql: dict[int, str] = {}  # `_read`'s statement, by the number of orgs
        self._listen_conn: Any = None
        # SQLite: the database's data_version when `_read` last read, and for which followed orgs.
        self._read_version: int | None = None
        self._read_epochs: dict[int, int] = {}
        self.checks = 0  # re-checks and notifications looked at (for tests and the benchmark)
        self.reads = 0  # queries of the newest seqs made
        self.notifies_sent = 0
        self.notifies_heard = 0

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self.engine is None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="act3-events", daemon=True)
            self._thread.start()
            if self._pg:
                self._listener = threading.Thread(target=self._listen, name="act3-events-listen", daemon=True)
                self._listener.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in (self._thread, self._listener):
            if t is not None:
                t.join(timeout)
        self._thread = self._listener = None
        self._close_sender()
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
        for w in waiters:  # nobody sleeps past shutdown
            _set(w)

    @property
    def listening(self) -> bool:
        """PostgreSQL only: the LISTEN connection is up (other processes wake us at once)."""
        return self._listening.is_set()

    # --- the two ends ------------------------------------------------------------------------------

    def notify(self) -> None:
        """Called from any thread after a local commit that wrote events."""
        self._local = True
        if self._sqlite and not (self._waiters or self._linger):
            # Nobody follows an org, so there is nothing to read for: no wake-up per commit (a
            # waiter that registers later reads for itself, and wakes the thread when it was idle).
            return
        if self._thread is None and self.engine is None:
            # No database to read: wake everyone, they re-read themselves.
            with self._lock:
                waiters = [w for ws in self._waiters.values() for w in ws]
            for w in waiters:
                _set(w)
            return
        self._wake.set()

    def register(self, org_id: int, after: int) -> Waiter:
        """Follow `org_id` for a waiter that has seen `after`; `unregister` it when done.

        Register first and read afterwards: an event committed in between is then seen by this
        waiter's check, never lost. Its `event` may already be set (the bus knows of newer events)."""
        self.start()
        waiter = Waiter(org_id, after, asyncio.get_running_loop())
        with self._lock:
            idle = not self._waiters and not self._linger
            ws = self._waiters.get(org_id)
            if ws is None:
                ws = self._waiters[org_id] = set()
                if self._linger.pop(org_id, None) is None:  # not followed until now: a new epoch
                    self._epochs += 1
                    self._epoch[org_id] = self._epochs
                    self._newest.pop(org_id, None)
            ws.add(waiter)
            known = self._newest.get(org_id)
            if known is not None and known[1] == self._epoch[org_id]:
                waiter.tracked = True
                if known[0] > after:
                    waiter.wake()
        # Every commit with events makes the thread read after it (at once for local commits and
        # NOTIFYs, else at the next re-check) with this waiter registered by then, so nothing has
        # to be read for it now. Only a thread sleeping without a deadline (nobody waited) must be
        # woken to start its re-checks.
        if idle:
            self._wake.set()
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        with self._lock:
            ws = self._waiters.get(waiter.org_id)
            if ws is None:
                return
            ws.discard(waiter)
            if not ws:
                # Keep following the org a little: its sessions ask again at once, and then find it
                # tracked and need not read.
                del self._waiters[waiter.org_id]
                self._linger[waiter.org_id] = time.monotonic() + self.linger_s

    async def wait(self, org_id: int, after: int, timeout: float) -> bool:
        """Register, sleep until woken or `timeout` seconds, unregister. True when woken (a hint:
        the caller re-reads and may find nothing), False on time-out."""
        if timeout <= 0:
            return False
        waiter = self.register(org_id, after)
        try:
            return await waiter.sleep(timeout)
        finally:
            self.unregister(waiter)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(ws) for ws in self._waiters.values())

    # --- the waiter thread -------------------------------------------------------------------------

    def _followed(self) -> dict[int, int]:
        """org -> epoch of every org followed now (waiters, or lingering); forgets the others."""
        now = time.monotonic()
        with self._lock:
            for org_id in [o for o, until in self._linger.items() if until <= now]:
                del self._linger[org_id]
                self._epoch.pop(org_id, None)
                self._newest.pop(org_id, None)
            return dict(self._epoch)

    def _interval(self) -> float | None:
        with self._lock:
            anyone = bool(self._waiters or self._linger)
        if self._pg:
            # Local commits must still be announced to other processes, waiters here or not.
            if not anyone:
                return None
            return self.backstop_s if self.listening else self.recheck_s
        return self.recheck_s if anyone else None

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._close_reader()

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            self._wake.wait(self._interval())
            self._wake.clear()
            if self._stop.is_set():
                break
            local, self._local = self._local, False
            if local and self._pg:
                self._send_notify()
            epochs = self._followed()
            if not epochs:
                continue
            try:
                self.checks += 1
                if not local and epochs == self._read_epochs and self._unchanged():
                    continue
                newest = self._read(epochs)
            except Exception as exc:  # the database is away: keep the waiters, try again later
                if not failing:
                    log.warning("long-poll check failed (%s); retrying every second", type(exc).__name__)
                failing = True
                self._stop.wait(1.0)
                self._wake.set()
                continue
            if failing:
                log.info("long-poll checks work again")
                failing = False
            self._apply(newest, epochs)
            self._read_epochs = epochs

    def _read(self, org_ids: Iterable[int]) -> dict[int, int]:
        """The newest seq of each org: one statement on a driver connection this thread keeps
        (the bus reads every 0.1 s on SQLite while anyone waits; SQLAlchemy's execution and the
        pool's check-out cost about ten times the query itself). A correlated max() per org, which
        both databases answer from the (org_id, seq) index without scanning the org's events. A
        connection that failed is dropped and the next read makes a new one."""
        assert self.engine is not None
        ids = list(org_ids)
        self.reads += 1
        sql = self._newest_sql.get(len(ids))
        if sql is None:
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            sql = self._newest_sql[len(ids)] = (
                "SELECT orgs.id, (SELECT max(events.seq) FROM events WHERE events.org_id = orgs.id) "
                f"FROM orgs WHERE orgs.id IN ({', '.join([mark] * len(ids))})"
            )
        try:
            if self._reader is None:
                self._reader = self._connect()
            cur = self._reader.cursor()
            try:
                if self._sqlite:  # before the read: a commit in between makes the next check read
                    version = cur.execute("PRAGMA data_version").fetchone()[0]
                cur.execute(sql, tuple(ids))
                rows = cur.fetchall()
            finally:
                cur.close()
        except Exception:
            self._close_reader()
            raise
        if self._sqlite:
            self._read_version = version
        return {int(org_id): int(seq or 0) for org_id, seq in rows}

    def _unchanged(self) -> bool:
        """SQLite only: nobody has committed to the database since `_read` last read, so the newest
        seqs it found still hold. `PRAGMA data_version` changes whenever another connection, in this
        process or any other, commits; asking costs a few microseconds where the read costs tenths of
        a millisecond, ten times a second while anyone waits. (PostgreSQL re-checks only every
        `backstop_s`, LISTEN/NOTIFY does the rest.)"""
        if not self._sqlite or self._reader is None or self._read_version is None:
            return False
        try:
            cur = self._reader.cursor()
            try:
                version = cur.execute("PRAGMA data_version").fetchone()[0]
            finally:
                cur.close()
        except Exception:
            self._close_reader()
            raise
        return bool(version == self._read_version)

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        self._read_version = None
        if reader is not None:
            try:
                reader.close()
            except Exception:
                pass

    def _apply(self, newest: dict[int, int], epochs: dict[int, int]) -> None:
        wake: list[Waiter] = []
        with self._lock:
            for org_id, seq in newest.items():
                if self._epoch.get(org_id) != epochs[org_id]:
                    continue  # forgotten (and maybe followed anew) while we read
                self._newest[org_id] = (seq, epochs[org_id])
                for w in self._waiters.get(org_id, ()):
                    if seq > w.after:
                        wake.append(w)
        for w in wake:
            _set(w)

    # --- PostgreSQL: NOTIFY out, LISTEN in ---------------------------------------------------------

    def _connect(self) -> Any:
        """psycopg's for NOTIFY and reads, sqlite3's for reads: `db.own_connection`."""
        assert self.engine is not None
        return own_connection(self.engine)

    def _send_notify(self) -> None:
        for attempt in (1, 2):  # a dropped connection is re-made once
            try:
                if self._sender is None:
                    self._sender = self._connect()
                self._sender.execute("NOTIFY " + CHANNEL)
                self.notifies_sent += 1
                return
            except Exception as exc:
                self._close_sender()
                if attempt == 2:
                    log.warning("could not NOTIFY other serve processes (%s)", type(exc).__name__)

    def _close_sender(self) -> None:
        conn, self._sender = self._sender, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _listen(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute("LISTEN " + CHANNEL)
                self._listen_conn = conn
                self._listening.set()
                self._wake.set()  # whatever happened while we were not listening: read now
                delay = 0.1
                while not self._stop.is_set():
                    for n in conn.notifies(timeout=0.5):
                        if n.pid != self._sender_pid():
                            self.notifies_heard += 1
                            self._wake.set()
                    if conn.closed:
                        raise ConnectionError("LISTEN connection closed")
            except Exception as exc:
                if not self._stop.is_set() and delay == 0.1:  # once per outage, not per retry
                    log.warning(
                        "LISTEN for events lost (%s); re-checking every %.1f s", type(exc).__name__, self.recheck_s
                    )
            finally:
                self._listening.clear()
                self._listen_conn = None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)

    def _sender_pid(self) -> int | None:
        sender = self._sender
        try:
            return int(sender.info.backend_pid) if sender is not None else None
        except Exception:
            return None


def _set(w: Waiter) -> None:
    try:
        w.loop.call_soon_threadsafe(w.wake)
    except RuntimeError:  # that loop is closed
        pass

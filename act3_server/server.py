"""Wiring: engine + migrations + ledger + runner + event bus -> the FastAPI app that `serve` runs."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from . import migrate
from .app import create_app
from .clock import DbClock, utcnow
from .db import make_engine
from .events import EventBus
from .ledger import Ledger
from .runner import Runner

log = logging.getLogger("act3_server")


class Biller:
    """Applies billing-date refills as they fall due, so that a refill (and its `billing.refilled`
    event, which wakes every waiting long poll) happens at the billing date even when nobody asks
    for that organisation. Requests still refill lazily; the ledger makes each period happen once,
    whichever process or path gets there first."""

    def __init__(self, ledger: Ledger, interval_s: float = 30.0) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="act3-billing", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def nudge(self) -> None:
        """The (dev) clock moved: look now."""
        self._nudge.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.ledger.refill_due()
            except Exception:  # a database hiccup must not end billing for good
                log.exception("billing refills failed; retrying")
            self._nudge.wait(self.interval_s)
            self._nudge.clear()


@dataclass
class Service:
    engine: Engine
    ledger: Ledger
    runner: Runner | None
    bus: EventBus
    app: FastAPI


def open_ledger(database_url: str, dev_clock: bool = True) -> tuple[Ledger, DbClock]:
    """An engine with the schema migrated and a ledger on the shared (dev) clock."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    clock = DbClock(engine)
    return Ledger(engine, clock if dev_clock else utcnow), clock


def build_service(
    database_url: str,
    *,
    dev_clock: bool = False,
    render_speed: float = 1.0,
    fail_rate: float = 0.0,
    workers: int = 4,
    run_jobs: bool = True,
) -> Service:
    ledger, clock = open_ledger(database_url, dev_clock)
    bus = EventBus()
    runner = Runner(ledger, render_speed=render_speed, fail_rate=fail_rate, workers=workers) if run_jobs else None
    # Background work (rendering, billing) runs in `serve`; tests that drive the ledger by hand opt out.
    biller = Biller(ledger) if run_jobs else None

    def on_start() -> None:
        if runner is not None:
            runner.start()
        if biller is not None:
            biller.start()

    def on_stop() -> None:
        if biller is not None:
            biller.stop()
        if runner is not None:
            runner.stop()

    def on_event() -> None:
        bus.notify()
        if runner is not None:
            runner.wake()

    ledger.on_event = on_event
    app = create_app(
        ledger,
        dev_clock=clock if dev_clock else None,
        bus=bus,
        on_start=on_start,
        on_stop=on_stop,
    )
    return Service(ledger.engine, ledger, runner, bus, app)

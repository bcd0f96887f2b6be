"""Wiring: engine + migrations + ledger + runner + event bus -> the FastAPI app that `serve` runs."""

from __future__ import annotations

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

    def on_event() -> None:
        bus.notify()
        if runner is not None:
            runner.wake()

    ledger.on_event = on_event
    app = create_app(
        ledger,
        dev_clock=clock if dev_clock else None,
        bus=bus,
        on_start=runner.start if runner else None,
        on_stop=runner.stop if runner else None,
    )
    return Service(ledger.engine, ledger, runner, bus, app)

"""Server-test fixtures: a Ledger on a manual clock, a demo org, the app in-process."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

with warnings.catch_warnings():
    # starlette's TestClient asks for httpx2 on import; the pinned httpx works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from srv_helpers import Api, Books, ManualClock, make_books

from act3_server import db, migrate
from act3_server.demo import init_demo
from act3_server.ledger import Ledger
from act3_server.server import build_service


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    engine = db.make_engine(database_url, pool_size=5)
    migrate.upgrade(engine)
    yield Ledger(engine, clock)
    engine.dispose()


@pytest.fixture
def books(ledger: Ledger, clock: ManualClock) -> Books:
    return make_books(ledger, clock, "pro")


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    service = build_service(database_url, dev_clock=True, run_jobs=False)
    orgs = init_demo(service.ledger)
    with TestClient(service.app, raise_server_exceptions=False) as client:
        yield Api(client, service.ledger, orgs)
    service.engine.dispose()

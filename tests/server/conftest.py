"""Server-test fixtures: a Ledger on a manual clock, a demo org, the app in-process."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

# starlette.testclient warns that it wants httpx2; httpx is what is pinned, and it works.
warnings.filterwarnings("ignore", message="Using `httpx` with", category=DeprecationWarning)
from fastapi.testclient import TestClient  # noqa: E402
from srv_helpers import Api, Books, ManualClock, make_books  # noqa: E402

from act3_server import db, migrate  # noqa: E402
from act3_server.demo import init_demo  # noqa: E402
from act3_server.ledger import Ledger  # noqa: E402
from act3_server.server import build_service  # noqa: E402


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

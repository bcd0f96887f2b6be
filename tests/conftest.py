"""Fixtures shared by the whole suite: real databases and a real act3-server.

`tests/` is put on sys.path so helpers import as `from support.servers import LiveServer`.

- `postgres_cluster` (session): the embedded PostgreSQL (support.servers.PostgresCluster).
- `postgres_url` (session): one database on it for the session.
- `fresh_postgres_url`: a new empty database for one test.
- `database_url`: parametrized ["sqlite", "postgres"], a fresh empty database each test.
- `live_server_factory(database_url=None, dev_clock=True, render_speed=0.01, fail_rate=0.0,
  extra_args=()) -> LiveServer`: init-demo + `act3-server serve` on a free port (SQLite in tmp_path
  when database_url is None); every server it started is stopped at teardown.
- `live_server`: the factory's default (SQLite, dev clock, render_speed 0.01).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from support.servers import LiveServer, PostgresCluster, sqlite_url  # noqa: E402


@pytest.fixture(scope="session")
def postgres_cluster() -> PostgresCluster:
    return PostgresCluster.shared()


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.new_database()


@pytest.fixture
def fresh_postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    url = postgres_cluster.new_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


LiveServerFactory = Callable[..., LiveServer]


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator[LiveServerFactory]:
    started: list[LiveServer] = []

    def factory(
        database_url: str | None = None,
        dev_clock: bool = True,
        render_speed: float = 0.01,
        fail_rate: float = 0.0,
        fail_every: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> LiveServer:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        srv = LiveServer(
            database_url=database_url or sqlite_url(tmp_path, f"live{len(started)}.db"),
            dev_clock=dev_clock,
            render_speed=render_speed,
            fail_every=fail_every,
            fail_rate=fail_rate,
            extra_args=tuple(extra_args),
            workdir=workdir,
        )
        started.append(srv)
        return srv.start()

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def live_server(live_server_factory: LiveServerFactory) -> LiveServer:
    return live_server_factory()

"""The per-request key check (act3_server/keys.py) on a real database, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from act3_server.auth import new_random_key
from act3_server.db import orgs, write_tx
from act3_server.keys import KeyCheck, list_keys, revoke_key
from act3_server.ledger import Actor, Ledger
from act3_server.server import open_ledger


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    ledger, _clock = open_ledger(database_url, dev_clock=False)
    yield ledger
    ledger.engine.dispose()


def test_a_key_names_its_member_until_revoked_and_leaves_the_pool_transactional(ledger: Ledger) -> None:
    org_id = ledger.create_org("Key Check Studio", "pro", 1)
    member_id = ledger.add_member(org_id, "Cleo (editor)", "editor")
    key = new_random_key()
    ledger.add_key(member_id, key, "test")
    check = KeyCheck(ledger.engine)

    assert check.authenticate(key) == Actor(org_id, member_id, "Cleo (editor)", "editor")
    assert check.authenticate(key + "x") is None
    (info,) = list_keys(ledger.engine, org_id=org_id)
    revoke_key(ledger.engine, info.id, ledger.now())
    assert check.authenticate(key) is None  # the very next check

    # The connections the checks borrowed went back to the pool as they came: a transaction on
    # them that fails still leaves nothing behind (on PostgreSQL the check itself runs in
    # autocommit, and must not leave it on).
    for _ in range(3):
        with pytest.raises(RuntimeError), write_tx(ledger.engine) as conn:
            conn.execute(orgs.update().where(orgs.c.id == org_id).values(name="renamed"))
            raise RuntimeError("fail after the write")
        with write_tx(ledger.engine) as conn:
            assert conn.execute(select(orgs.c.name).where(orgs.c.id == org_id)).scalar() == "Key Check Studio"
        assert check.authenticate(key) is None


def test_the_long_polls_pinned_check_keeps_one_connection_per_thread_and_refuses_a_revoked_key(
    ledger: Ledger,
) -> None:
    org_id = ledger.create_org("Pinned Check Studio", "pro", 1)
    member_id = ledger.add_member(org_id, "Ida (viewer)", "viewer")
    key = new_random_key()
    ledger.add_key(member_id, key, "test")
    check = KeyCheck(ledger.engine)
    checked_out = ledger.engine.pool.checkedout()  # type: ignore[attr-defined]

    who = Actor(org_id, member_id, "Ida (viewer)", "viewer")
    assert [check.authenticate_pinned(key) for _ in range(3)] == [who] * 3
    assert check.authenticate_pinned(key + "x") is None
    conn = check._pinned.conn
    # The thread's own connection, kept between checks and not borrowed from the pool.
    assert check.authenticate_pinned(key) == who and check._pinned.conn is conn
    assert ledger.engine.pool.checkedout() == checked_out  # type: ignore[attr-defined]
    (info,) = list_keys(ledger.engine, org_id=org_id)
    revoke_key(ledger.engine, info.id, ledger.now())
    assert check.authenticate_pinned(key) is None  # the very next check, on the same connection
    assert check._pinned.conn is conn

    # Another thread has its own.
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append((check.authenticate_pinned(key), check._pinned.conn)))
    other.start()
    other.join()
    assert seen[0][0] is None and seen[0][1] is not conn  # type: ignore[index]

"""API keys on the service side: the per-request key check, and `keys list` / `keys revoke`.

Every request checks its key against the database, so a revoked key is refused from the next
request on, in every serve process, with nothing cached. The check is the hottest read of the
service (an idle Blender session's long poll makes one every 10 s), so it runs as one prepared
statement on the driver's connection from the pool: a few tens of microseconds where the same query
through SQLAlchemy's execution layer costs about ten times more.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from .auth import hash_key
from .db import api_keys, iso, members, orgs, own_connection, read_tx, to_db, write_tx
from .ledger import Actor

# The columns of an Actor, for a key that is not revoked.
_AUTH = (
    select(members.c.id, members.c.org_id, members.c.name, members.c.role)
    .select_from(api_keys.join(members, members.c.id == api_keys.c.member_id))
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)


class KeyCheck:
    """`authenticate(key)`: the Actor of a valid, unrevoked key, else None (as Ledger.authenticate)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        compiled = _AUTH.compile(dialect=engine.dialect)
        self._sql = compiled.string
        self._positional = bool(compiled.positional)
        # psycopg opens a transaction with its own BEGIN round trip before the first statement, and
        # the pool's reset sends a ROLLBACK for it on return: three round trips for one read. In
        # autocommit the SELECT is the only one (its snapshot is the statement's, as in a transaction
        # of one statement). sqlite3 opens no transaction for a SELECT either way.
        self._autocommit = engine.dialect.name == "postgresql"
        self._pinned = threading.local()  # authenticate_pinned's connection, per thread

    def _invalidate(self, conn: Any, exc: Exception) -> None:
        """Never reuse a connection that failed. When the database dropped it (restarted, went
        away), every pooled connection is as dead: have the pool replace them all, as SQLAlchemy's
        own execution does for a disconnect, rather than fail one request per pooled connection."""
        dbapi_conn = conn.dbapi_connection
        disconnect = False
        try:
            disconnect = bool(self.engine.dialect.is_disconnect(exc, dbapi_conn, None))  # type: ignore[arg-type]
        except Exception:
            pass
        pool_invalidate = getattr(self.engine.pool, "_invalidate", None)
        if disconnect and pool_invalidate is not None:
            pool_invalidate(conn, exc)
        else:
            conn.invalidate(exc)

    def authenticate_pinned(self, key: str | None) -> Actor | None:
        """`authenticate` on a driver connection the calling thread keeps for itself: no pool
        check-out and check-in (with the pool's reset), which cost more than the query. For the
        long polls' few reader threads only (longpoll._READERS), so they hold a handful of
        connections per process; the same statement, so a revoked key is refused just as soon."""
        if not key:
            return None
        conn = getattr(self._pinned, "conn", None)
        if conn is None:
            conn = self._pinned.conn = own_connection(self.engine)
        h = hash_key(key)
        try:
            cur = conn.cursor()  # type: ignore[union-attr]
            try:
                cur.execute(self._sql, (h,) if self._positional else {"key_hash": h})
                row = cur.fetchone()
            finally:
                cur.close()
        except Exception:
            self._pinned.conn = None  # a failed connection is never used again
            try:
                conn.close()  # type: ignore[union-attr]
            except Exception:
                pass
            raise
        return _actor(row)

    def authenticate(self, key: str | None) -> Actor | None:
        if not key:
            return None
        h = hash_key(key)
        params: Any = (h,) if self._positional else {"key_hash": h}
        conn = self.engine.raw_connection()  # from the pool; returned (and rolled back) on close
        try:
            if self._autocommit:
                conn.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            cur = conn.cursor()
            try:
                cur.execute(self._sql, params)
                row = cur.fetchone()
            finally:
                cur.close()
            if self._autocommit:  # the pool's other users expect transactions
                conn.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        except Exception as exc:
            self._invalidate(conn, exc)
            raise
        finally:
            conn.close()
        return _actor(row)


def _actor(row: Any) -> Actor | None:
    if row is None:
        return None
    member_id, org_id, name, role = row
    return Actor(org_id=int(org_id), member_id=int(member_id), member_name=str(name), role=str(role))


# --- keys list / keys revoke -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    id: int
    org_id: int
    org: str
    member_id: int
    member: str
    role: str
    label: str
    created: str | None
    revoked: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "org_id": self.org_id,
            "org": self.org,
            "member_id": self.member_id,
            "member": self.member,
            "role": self.role,
            "label": self.label,
            "created": self.created,
            "revoked": self.revoked,
        }


def list_keys(
    engine: Engine, org_id: int | None = None, include_revoked: bool = True, key_id: int | None = None
) -> list[KeyInfo]:
    """Every key's id, owner and dates: never the key, never its hash (neither is selected)."""
    stmt = (
        select(
            api_keys.c.id,
            members.c.org_id,
            orgs.c.name.label("org"),
            members.c.id.label("member_id"),
            members.c.name.label("member"),
            members.c.role,
            api_keys.c.label,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
        )
        .select_from(
            api_keys.join(members, members.c.id == api_keys.c.member_id).join(orgs, orgs.c.id == members.c.org_id)
        )
        .order_by(members.c.org_id, api_keys.c.id)
    )
    if org_id is not None:
        stmt = stmt.where(members.c.org_id == org_id)
    if key_id is not None:
        stmt = stmt.where(api_keys.c.id == key_id)
    if not include_revoked:
        stmt = stmt.where(api_keys.c.revoked_at.is_(None))
    with read_tx(engine) as conn:
        rows = conn.execute(stmt).all()
    return [
        KeyInfo(r.id, r.org_id, r.org, r.member_id, r.member, r.role, r.label, iso(r.created_at), iso(r.revoked_at))
        for r in rows
    ]


class KeyNotFound(LookupError):
    pass


def revoke_key(engine: Engine, key_id: int, at: datetime) -> tuple[KeyInfo, bool]:
    """Revoke key `key_id` as of `at`. Returns its info and whether this call revoked it (False
    when it already was: revoking twice changes nothing, the first date stays)."""
    with write_tx(engine) as conn:
        done = conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=to_db(at))
        ).rowcount
        exists = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).scalar()
    if exists is None:
        raise KeyNotFound(key_id)
    (info,) = list_keys(engine, key_id=key_id)
    return info, done == 1

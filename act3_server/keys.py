"""API keys on the service side: the per-request key check.

Every request checks its key against the database, so a revoked key is refused from the next
request on, in every serve process, with nothing cached. The check is the hottest read of the
service (an idle Blender session's long poll makes one every 10 s), so it runs as one prepared
statement on the driver's connection from the pool: a few tens of microseconds where the same query
through SQLAlchemy's execution layer costs about ten times more.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine

from .auth import hash_key
from .db import api_keys, members
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

    def authenticate(self, key: str | None) -> Actor | None:
        if not key:
            return None
        h = hash_key(key)
        params: Any = (h,) if self._positional else {"key_hash": h}
        conn = self.engine.raw_connection()  # from the pool; returned (and rolled back) on close
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._sql, params)
                row = cur.fetchone()
            finally:
                cur.close()
        except Exception as exc:
            conn.invalidate(exc)  # maybe a connection the database dropped: never reuse it
            raise
        finally:
            conn.close()
        if row is None:
            return None
        member_id, org_id, name, role = row
        return Actor(org_id=int(org_id), member_id=int(member_id), member_name=str(name), role=str(role))

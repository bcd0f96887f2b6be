"""Clocks. The dev clock's offset lives in the database so every serve process on it shares it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from act3_credits.core.vocabulary import ErrorCode

from .db import read_tx, settings, write_tx
from .errors import ApiError

CLOCK_KEY = "dev_clock_offset_us"
CLOCK_ROLES = ("owner", "admin")  # the dev clock moves every org's billing dates: not for any key


def utcnow() -> datetime:
    return datetime.now(UTC)


class ClockMovedBack(ValueError):
    pass


class DbClock:
    """Real time plus an offset stored in `settings`, re-read at most every `ttl` seconds."""

    def __init__(self, engine: Engine, ttl: float = 0.1) -> None:
        self.engine = engine
        self.ttl = ttl
        self._lock = threading.Lock()
        self._offset_us = 0
        self._read_at = float("-inf")

    def _offset(self) -> int:
        with self._lock:
            if time.monotonic() - self._read_at < self.ttl:
                return self._offset_us
        with read_tx(self.engine) as conn:
            value = conn.execute(select(settings.c.value).where(settings.c.key == CLOCK_KEY)).scalar()
        with self._lock:
            self._offset_us = int(value) if value is not None else 0
            self._read_at = time.monotonic()
            return self._offset_us

    def __call__(self) -> datetime:
        return utcnow() + timedelta(microseconds=self._offset())

    def set(self, new_now: datetime, actor: Any = None) -> datetime:
        """Move the shared clock forward to `new_now`; moving it back raises ClockMovedBack.

        `actor` is who asks (an Actor, from the request's key): only an owner or an admin may move
        the clock of every organisation on the database; anyone else is refused (403 forbidden).
        None is the service itself (the CLI, tests).
        """
        if actor is not None and getattr(actor, "role", None) not in CLOCK_ROLES:
            raise ApiError(
                ErrorCode.FORBIDDEN,
                f"The {getattr(actor, 'role', 'unknown')} role cannot move the clock; ask the owner or an admin.",
            )
        if new_now.tzinfo is None:
            new_now = new_now.replace(tzinfo=UTC)
        with write_tx(self.engine) as conn:
            value = conn.execute(select(settings.c.value).where(settings.c.key == CLOCK_KEY)).scalar()
            real = utcnow()
            current = real + timedelta(microseconds=int(value) if value is not None else 0)
            if new_now < current - timedelta(seconds=1):
                raise ClockMovedBack(f"The clock is at {current:%Y-%m-%dT%H:%M:%SZ}; it only moves forward.")
            offset = max(0, int((new_now - real) / timedelta(microseconds=1)))
            if value is None:
                conn.execute(settings.insert().values(key=CLOCK_KEY, value=str(offset)))
            else:
                conn.execute(settings.update().where(settings.c.key == CLOCK_KEY).values(value=str(offset)))
        with self._lock:
            self._offset_us = offset
            self._read_at = time.monotonic()
        return real + timedelta(microseconds=offset)

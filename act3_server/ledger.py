"""The accounting: balances, holds, charges, refills, purchases, history and the journal.

Plain Python over SQLAlchemy Core, so tests drive it directly and the HTTP layer is a thin shell.
Rules that keep the books right:
- every balance change runs in one write transaction that first locks the org's account row
  (BEGIN IMMEDIATE on SQLite; SELECT ... FOR UPDATE, or UPDATE ... RETURNING, on PostgreSQL) and
  applies any due refill (or, on the driver path, finds none due);
- a job row is always locked before its org's account row (one lock order, no deadlocks);
- job ids, purchase ids and event numbers are counted per org on the account row, under its lock,
  so they commit in order for each org and show nothing of other orgs; events are written in the
  same transaction as their change;
- every movement of a bucket (monthly, bank_rolled, bank_purchased, held) is a journal row, so the
  balances can be replayed from the journal.
The hold, the claim and the charge have a second implementation on the driver (`_create_job_fast`,
`_claim_fast`, `_complete_fast`, see _Fallback) for their common case; the general methods
(`_create_job`, `_claim`, `_complete`) are the reference and take every other case.
Credits are integers everywhere; every price comes from act3_credits.core.pricing. The arithmetic
(spending order, rollover, what is available) is act3_server/rules.py; the JSON answers are shaped
by act3_server/shapes.py; statuses, event types and history kinds are act3_credits.core.vocabulary's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    String,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from act3_credits.core import pricing, vocabulary
from act3_credits.core.shots import shortfall_message
from act3_credits.core.vocabulary import Event, Kind, Reason, Status

from . import billing, groupcommit, rules, schedule, shapes, topup, usage
from . import budgets as spend_limits
from .auth import hash_key
from .clock import utcnow
from .db import (
    BUCKETS,
    NOT_RENDER,
    DriverSql,
    RawTx,
    accounts,
    api_keys,
    events,
    from_db,
    history_shots,
    idempotency,
    jobs,
    journal,
    members,
    orgs,
    purchases,
    raw_write_tx,
    read_tx,
    refills,
    shots,
    to_db,
    transactions,
    write_tx,
)
from .shapes import encode_cursor

# The vocabulary's sets as tuples in one order, for SQL's IN.
ENDED = tuple(sorted(vocabulary.ENDED))
# Ids and event sequence numbers are INTEGER columns (32-bit on PostgreSQL): a bigger number from a
# client can name no row, and must not reach the database (it would fail there, as a 500).
MAX_DB_INT = 2**31 - 1
RUNNABLE = tuple(sorted(vocabulary.RUNNING))


class LedgerError(Exception):
    """A refusal the client can act on; `code` maps to an HTTP status in errors.py."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@dataclass(frozen=True)
class Actor:
    org_id: int
    member_id: int
    member_name: str
    role: str

    @property
    def can_spend(self) -> bool:
        return self.role in pricing.ROLES_THAT_SPEND

    @property
    def can_buy(self) -> bool:
        return self.role in pricing.ROLES_THAT_BUY


@dataclass(frozen=True)
class Org:
    id: int
    name: str
    plan: str
    billing_day: int
    payment_brand: str
    payment_last4: str


@dataclass(frozen=True)
class Claim:
    """A shot a worker has leased for rendering."""

    worker: str
    job_id: int
    org_id: int
    shot_id: int
    shot_index: int
    duration_s: int
    credits: int
    job_number: int = 0  # the job's id in its org, as the API and events show it


@dataclass(frozen=True)
class Result:
    """An answer that may have been replayed from an Idempotency-Key."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass
class _TxBuffers:
    """What a write transaction writes at its end: the accounts it locked (their dicts carry the
    new balances and counters), journal rows and events."""

    accounts: dict[int, dict[str, Any]] = field(default_factory=dict)
    read: dict[int, tuple[Any, ...]] = field(default_factory=dict)  # each account as it was read
    journal: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _PendingHold:
    """A hold waiting for its group commit: everything made before the account row is locked."""

    actor: Actor
    org: Org
    name: str
    total: int
    shot_rows: list[dict[str, Any]]
    name_rows: list[dict[str, Any]]
    key: str | None
    request_hash: str
    project: str | None
    wrote: bool = False  # its hold is written (a fallback after this must undo it)


def _buffers(conn: Connection) -> _TxBuffers:
    tx = conn.info.get("act3_tx")
    if tx is None:
        raise RuntimeError("ledger writes run inside Ledger._write()")
    return tx  # type: ignore[no-any-return]


_ACCOUNT_STATE = (
    "monthly_remaining",
    "monthly_allocation",
    "bank_rolled",
    "bank_purchased",
    "held",
    "period_start",
    "version",
    "last_job_number",
    "last_purchase_number",
    "last_event_seq",
)


def _account_state(acct: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(acct[k] for k in _ACCOUNT_STATE)


_LOCK_ACCOUNT = select(accounts).where(accounts.c.org_id == bindparam("org_id")).with_for_update()
_SAVE_ACCOUNT = (
    accounts.update()
    .where(accounts.c.org_id == bindparam("key_org_id"))
    .values({name: bindparam(name) for name in _ACCOUNT_STATE})
)
_INSERT_JOURNAL = journal.insert()
_INSERT_EVENTS = events.insert()


def _flush(conn: Connection, tx: _TxBuffers) -> int:
    """Write what the transaction gathered; returns how many events it wrote."""
    if tx.journal:
        conn.execute(_INSERT_JOURNAL, tx.journal)
    for org_id, acct in tx.accounts.items():
        if _account_state(acct) != tx.read.get(org_id):
            conn.execute(_SAVE_ACCOUNT, {"key_org_id": org_id, **{k: acct[k] for k in _ACCOUNT_STATE}})
    if tx.events:
        conn.execute(_INSERT_EVENTS, tx.events)
    return len(tx.events)


# --- the charge path on the driver ------------------------------------------------------------------
# create_job, claim_next_shot and complete_shot run these, built once, on the DBAPI cursor
# (db.raw_write_tx). Each covers the common case in as few statements as it can (UPDATE ...
# RETURNING takes the account's lock, checks it and changes it at once); anything else (a refill
# due, a 402 to explain, a replay, an expired lease, a job ending with credits still held) raises
# _Fallback, which rolls the transaction back and runs the general method instead.


class _Fallback(Exception):
    pass


_BUDGET_PAUSED = object()  # budgets: what `_claim_once` returns after pausing a job at its budget


def _bp(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_) if type_ is not None else bindparam(name)


_A = accounts
_STATE_COLUMNS = [_A.c[k] for k in _ACCOUNT_STATE]
_QUEUED: Any = literal_column(f"'{Status.QUEUED}'")
_PROCESSING: Any = literal_column(f"'{Status.PROCESSING}'")
_RUNNABLE_SQL = or_(jobs.c.status == _QUEUED, jobs.c.status == _PROCESSING)

# The hold: lock the account, check the refill is done and the credits are there, hold them, and
# take the job's number and two event numbers, in one statement.
_HOLD_UPDATE = (
    _A.update()
    .where(
        _A.c.org_id == _bp("org_id"),
        _A.c.period_start >= _bp("due", _A.c.period_start.type),
        _A.c.monthly_remaining + _A.c.bank_rolled + _A.c.bank_purchased - _A.c.held >= _bp("total", BigInteger()),
        _A.c.spend_limits == literal_column("0"),  # budgets: an org with budgets or caps goes the general way
    )
    .values(
        held=_A.c.held + _bp("total", BigInteger()),
        version=_A.c.version + 1,
        last_job_number=_A.c.last_job_number + 1,
        last_event_seq=_A.c.last_event_seq + 2,
    )
    # + auto top-up's threshold (NULL while it is off): the one check the hold makes for it.
    .returning(*_STATE_COLUMNS, _A.c.auto_top_up_below)
)
_HOLD = DriverSql(_HOLD_UPDATE)
# PostgreSQL: the hold and the job's row in one statement (data-modifying WITHs), so the account row
# is locked one round trip later and released one sooner; no row back: a refill is due, or a 402.
_HELD = _HOLD_UPDATE.cte("held")
# The columns a new job writes, on both hold paths (the SQLite insert and the PostgreSQL CTE).
_JOB_COLUMNS = (
    "org_id",
    "number",
    "member_id",
    "member_name",
    "name",
    "status",
    "created_at",
    "updated_at",
    "estimated_credits",
    "charged_credits",
    "held",
    "project",
    "period_start",
)
_NEW_JOB = (
    jobs.insert()
    .from_select(
        list(_JOB_COLUMNS),
        select(
            _bp("org_id", Integer()),
            _HELD.c.last_job_number,
            _bp("member_id", Integer()),
            _bp("member_name", String()),
            _bp("name", String()),
            _QUEUED,
            _bp("created_at", jobs.c.created_at.type),
            _bp("created_at", jobs.c.created_at.type),
            _bp("total", BigInteger()),
            literal_column("0"),
            _bp("total", BigInteger()),
            _bp("project", String()),
            _HELD.c.period_start,
        ),
    )
    .returning(jobs.c.id)
    .cte("new_job")
)
_HOLD_AND_JOB = DriverSql(select(_NEW_JOB.c.id, *[_HELD.c[k] for k in _ACCOUNT_STATE], _HELD.c.auto_top_up_below))
_KNOWN_KEY = DriverSql(
    select(literal_column("1")).where(idempotency.c.org_id == _bp("org_id"), idempotency.c.key == _bp("key"))
)
# PostgreSQL: which of a group commit's keys (one org's) are already known, in one round trip.
_KNOWN_KEYS = DriverSql(
    select(idempotency.c.key).where(
        idempotency.c.org_id == _bp("org_id"), idempotency.c.key == func.any(_bp("keys", ARRAY(String())))
    )
)
_INSERT_JOB = DriverSql(jobs.insert().values({c: _bp(c, jobs.c[c].type) for c in _JOB_COLUMNS}).returning(jobs.c.id))
_SHOT_COLUMNS = (
    "job_id",
    "idx",
    "name",
    "engine",
    "tier",
    "requested_duration_s",
    "duration_s",
    "credits",
    "status",
    "attempts",
)
_INSERT_SHOTS = DriverSql(shots.insert().values({c: _bp(c, shots.c[c].type) for c in _SHOT_COLUMNS}))
_INSERT_JOURNAL_ROWS = DriverSql(
    journal.insert().values(
        {
            c: _bp(c, journal.c[c].type)
            for c in ("org_id", "transaction_id", "job_id", "bucket", "delta", "reason", "at")
        }
    )
)
_INSERT_EVENT_ROWS = DriverSql(
    events.insert().values({c: _bp(c, events.c[c].type) for c in ("org_id", "seq", "type", "at", "data")})
)
_INSERT_IDEMPOTENCY = DriverSql(
    idempotency.insert().values(
        {
            c: _bp(c, idempotency.c[c].type)
            for c in ("org_id", "key", "request_hash", "status_code", "response", "created_at")
        }
    )
)
_SAVE_ACCOUNT_ROW = DriverSql(_SAVE_ACCOUNT)

# The claim: the first runnable job without a live lease, skipping jobs another worker holds.
_PROBE_RUNNABLE = DriverSql(
    select(jobs.c.id)
    .where(_RUNNABLE_SQL, or_(jobs.c.current_shot_id.is_(None), jobs.c.lease_expires < _bp("real", Float())))
    .limit(literal_column("1"))
)
_CLAIM_JOB = DriverSql(
    select(jobs.c.id, jobs.c.org_id, jobs.c.number, jobs.c.status, jobs.c.current_shot_id, jobs.c.pause_before)
    .where(_RUNNABLE_SQL, or_(jobs.c.current_shot_id.is_(None), jobs.c.lease_expires < _bp("real", Float())))
    .order_by(jobs.c.id)
    .limit(literal_column("1"))
    .with_for_update(skip_locked=True)
)
_NEXT = shots.alias("next_shot")
_START_SHOT = DriverSql(
    shots.update()
    .where(
        shots.c.id
        == select(_NEXT.c.id)
        .where(_NEXT.c.job_id == _bp("job_id"), _NEXT.c.status == _QUEUED)
        .order_by(_NEXT.c.idx)
        .limit(literal_column("1"))
        .scalar_subquery()
    )
    .values(status=_PROCESSING, attempts=shots.c.attempts + 1)
    .returning(shots.c.id, shots.c.idx, shots.c.duration_s, shots.c.credits)
)
_LEASE_JOB = DriverSql(
    jobs.update()
    .where(jobs.c.id == _bp("job_id"))
    .values(
        status=_PROCESSING,
        current_shot_id=_bp("shot_id", Integer()),
        lease_owner=_bp("worker", String()),
        lease_expires=_bp("expires", Float()),
        updated_at=_bp("now", jobs.c.updated_at.type),
    )
)
# Event numbers for a change that does not touch the balances: the account row is locked only
# from here to the commit, one statement later.
_TAKE_EVENT_SEQ = DriverSql(
    _A.update()
    .where(_A.c.org_id == _bp("org_id"))
    .values(last_event_seq=_A.c.last_event_seq + 1)
    .returning(_A.c.last_event_seq)
)

# PostgreSQL: the same, numbered and written by one statement (a data-modifying WITH).
_NEXT_SEQ = (
    _A.update()
    .where(_A.c.org_id == _bp("org_id"))
    .values(last_event_seq=_A.c.last_event_seq + 1)
    .returning(_A.c.last_event_seq)
    .cte("next_seq")
)
_INSERT_NUMBERED_EVENT = DriverSql(
    events.insert().from_select(
        ["org_id", "seq", "type", "at", "data"],
        select(
            _bp("org_id", Integer()),
            _NEXT_SEQ.c.last_event_seq,
            _bp("type", String()),
            _bp("at", events.c.at.type),
            _bp("data", events.c.data.type),
        ),
    )
)

# The charge.
_LOCK_CLAIMED_JOB = DriverSql(
    select(
        jobs.c.id,
        jobs.c.number,
        jobs.c.status,
        jobs.c.current_shot_id,
        jobs.c.lease_owner,
        jobs.c.held,
        jobs.c.charged_credits,
        jobs.c.member_name,
        jobs.c.project,
    )
    .where(jobs.c.id == _bp("job_id"))
    .with_for_update()
)
# PostgreSQL: a charge batch's job rows, locked in id order before any account row.
_LOCK_JOBS = DriverSql(
    select(jobs.c.id).where(jobs.c.id == func.any(_bp("ids", ARRAY(Integer())))).order_by(jobs.c.id).with_for_update()
)
_COMPLETE_SHOT = DriverSql(
    shots.update()
    .where(shots.c.id == _bp("shot_id"), shots.c.status == _PROCESSING)
    .values(status=literal_column(f"'{Status.COMPLETED}'"), completed_at=_bp("now", shots.c.completed_at.type))
    .returning(shots.c.idx, shots.c.name, shots.c.engine, shots.c.tier, shots.c.duration_s, shots.c.credits)
)
_OPEN_SHOTS = DriverSql(
    select(func.count()).where(
        shots.c.job_id == _bp("job_id"), or_(shots.c.status == _QUEUED, shots.c.status == _PROCESSING)
    )
)
_LOCK_FOR_CHARGE = DriverSql(
    _A.update()
    .where(_A.c.org_id == _bp("org_id"), _A.c.period_start >= _bp("due", _A.c.period_start.type))
    .values(version=_A.c.version + 1, last_event_seq=_A.c.last_event_seq + _bp("events", BigInteger()))
    .returning(*_STATE_COLUMNS)
)
# The columns a render row writes, on both charge paths (and scripts/seed_history.py's rows).
RENDER_COLUMNS = (
    "org_id",
    "at",
    "kind",
    "shot",
    "engine",
    "tier",
    "duration_s",
    "credits",
    "monthly_delta",
    "bank_delta",
    "job_id",
    "shot_id",
    "member",
)
_INSERT_RENDER = DriverSql(
    transactions.insert()
    .values({c: _bp(c, transactions.c[c].type) for c in RENDER_COLUMNS})
    .returning(transactions.c.id)
)
# PostgreSQL: the render and its journal rows in one statement (the rows' transaction_id from the
# render's RETURNING); buckets that did not move are left out.
_RENDER = (
    transactions.insert()
    .values({c: _bp(c, transactions.c[c].type) for c in RENDER_COLUMNS})
    .returning(transactions.c.id)
    .cte("render")
)
_MOVES = (
    select(literal_column("'monthly'").label("bucket"), _bp("d_monthly", BigInteger()).label("delta"))
    .union_all(
        select(literal_column("'bank_rolled'"), _bp("d_bank_rolled", BigInteger())),
        select(literal_column("'bank_purchased'"), _bp("d_bank_purchased", BigInteger())),
        select(literal_column("'held'"), _bp("d_held", BigInteger())),
    )
    .subquery("moves")
)
_RENDER_AND_JOURNAL = DriverSql(
    journal.insert().from_select(
        ["org_id", "transaction_id", "job_id", "bucket", "delta", "reason", "at"],
        select(
            _bp("org_id", Integer()),
            _RENDER.c.id,
            _bp("journal_job_id", Integer()),
            _MOVES.c.bucket,
            _MOVES.c.delta,
            literal_column(f"'{Kind.RENDER}'"),
            _bp("at", journal.c.at.type),
        )
        .select_from(_RENDER.join(_MOVES, true()))
        .where(_MOVES.c.delta != 0),
    )
)
_CHARGE_JOB = DriverSql(
    jobs.update()
    .where(jobs.c.id == _bp("job_id"))
    .values(
        charged_credits=jobs.c.charged_credits + _bp("cost", BigInteger()),
        held=jobs.c.held - _bp("cost", BigInteger()),
        status=_bp("status", String()),
        current_shot_id=None,
        lease_owner=None,
        lease_expires=None,
        updated_at=_bp("now", jobs.c.updated_at.type),
    )
)


def _account_from_row(tx: RawTx, org_id: int, row: Sequence[Any]) -> dict[str, Any]:
    acct = dict(zip(_ACCOUNT_STATE, row, strict=True))
    acct["org_id"] = org_id
    if tx.sqlite and isinstance(acct["period_start"], str):
        acct["period_start"] = date.fromisoformat(acct["period_start"])
    return acct


def _save_account_params(acct: Mapping[str, Any]) -> dict[str, Any]:
    return {"key_org_id": acct["org_id"], **{k: acct[k] for k in _ACCOUNT_STATE}}


def _insert_id(conn: Connection, stmt: Any) -> int:
    pk = conn.execute(stmt).inserted_primary_key
    assert pk is not None
    return int(pk[0])


def _canonical_hash(op: str, payload: Any) -> str:
    return hashlib.sha256(json.dumps([op, payload], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _job_request_hash(
    name: str,
    names: Sequence[str],
    prices: Sequence[pricing.ShotPrice],
    project: str | None,
    start: str | None = None,
) -> str:
    payload: dict[str, Any] = {
        "name": name,
        "shots": [[n, p.engine, p.tier, p.requested_s] for n, p in zip(names, prices, strict=True)],
    }
    if project is not None:  # budgets: keys stored before projects existed hash as they did
        payload["project"] = project
    if start is not None:
        payload["start"] = start
    return _canonical_hash("jobs", payload)


class Ledger:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime] = utcnow,
        card: pricing.RateCard = pricing.DEFAULT_RATE_CARD,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.card = card
        self.on_event = on_event
        self._orgs: dict[int, Org] = {}
        self._orgs_lock = threading.Lock()
        self._refilled_through: dict[int, date] = {}  # org -> newest period_start seen (a hint)
        self.budgets = spend_limits.Budgets(self)  # budgets: /v1/budgets and /v1/members
        self._holds = groupcommit.GroupCommit(self._hold_batch)
        self._charges = groupcommit.GroupCommit(self._charge_batch)

    # --- plumbing ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return as_utc(self.clock())

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; wakes local long polls after it commits events.

        Journal rows, events and the accounts' new balances and counters are gathered while the
        transaction runs and written at its end, each table in one statement (`_flush`).
        """
        wrote = 0
        with write_tx(self.engine) as conn:
            conn.info["act3_tx"] = tx = _TxBuffers()
            try:
                yield conn
                wrote = _flush(conn, tx)
            finally:
                conn.info.pop("act3_tx", None)
        if wrote and self.on_event is not None:
            self.on_event()

    def org(self, org_id: int, conn: Connection | None = None) -> Org:
        with self._orgs_lock:
            cached = self._orgs.get(org_id)
        if cached is not None:
            return cached
        stmt = select(orgs).where(orgs.c.id == org_id)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with read_tx(self.engine) as c:
                row = c.execute(stmt).first()
        if row is None:
            raise LedgerError("not_found", f"Organisation {org_id} does not exist.")
        org = Org(row.id, row.name, row.plan, row.billing_day, row.payment_brand, row.payment_last4)
        with self._orgs_lock:
            self._orgs[org_id] = org  # orgs never change plan or billing day here
        return org

    def _lock_account(self, conn: Connection, org_id: int) -> dict[str, Any]:
        """The org's account row, locked for the transaction; changes to the dict are written at
        its end (`_flush`)."""
        tx = _buffers(conn)
        acct = tx.accounts.get(org_id)
        if acct is not None:
            return acct
        row = conn.execute(_LOCK_ACCOUNT, {"org_id": org_id}).first()
        if row is None:
            raise LedgerError("not_found", f"Organisation {org_id} has no account.")
        acct = tx.accounts[org_id] = dict(row._mapping)
        tx.read[org_id] = _account_state(acct)
        return acct

    def _touch(self, conn: Connection, org_id: int, now: datetime) -> tuple[Org, dict[str, Any]]:
        """Lock the org's account and apply every refill that is due before anything else."""
        acct = self._lock_account(conn, org_id)
        org = self.org(org_id, conn)
        self._apply_refills(conn, org, acct, now)
        return org, acct

    def _event(
        self, conn: Connection, acct: dict[str, Any], type_: str, data: Mapping[str, Any], now: datetime
    ) -> None:
        """An event of the account's org, numbered from its counter (the row is locked)."""
        acct["last_event_seq"] += 1
        _buffers(conn).events.append(
            {
                "org_id": acct["org_id"],
                "seq": acct["last_event_seq"],
                "type": type_,
                "at": to_db(now),
                "data": json.dumps(data),
            }
        )

    def _save_account(
        self, conn: Connection, org: Org, acct: dict[str, Any], now: datetime, reason: str
    ) -> dict[str, Any]:
        """The balances changed: a new version, and its `balance.changed` event."""
        acct["version"] += 1
        balance = shapes.credits_json(org, acct, now)
        self._event(conn, acct, Event.BALANCE_CHANGED, {"balance": balance, "reason": reason}, now)
        return balance

    def _history(
        self,
        conn: Connection,
        org_id: int,
        at: datetime,
        kind: str,
        credits: int,
        deltas: Mapping[str, int],
        reason: str,
        journal_job: int | None = None,
        **fields: Any,
    ) -> int:
        """One history item plus one journal row per bucket it moved (`journal_job`: jobs.id)."""
        monthly = deltas.get("monthly", 0)
        bank = deltas.get("bank_rolled", 0) + deltas.get("bank_purchased", 0)
        tx_id = _insert_id(
            conn,
            transactions.insert().values(
                org_id=org_id,
                at=to_db(at),
                kind=kind,
                credits=credits,
                monthly_delta=monthly,
                bank_delta=bank,
                **fields,
            ),
        )
        for bucket, delta in deltas.items():
            if delta:
                self._journal(conn, org_id, bucket, delta, reason, at, transaction_id=tx_id, job_id=journal_job)
        return int(tx_id)

    def _journal(
        self,
        conn: Connection,
        org_id: int,
        bucket: str,
        delta: int,
        reason: str,
        at: datetime,
        transaction_id: int | None = None,
        job_id: int | None = None,
    ) -> None:
        assert bucket in BUCKETS
        _buffers(conn).journal.append(
            {
                "org_id": org_id,
                "transaction_id": transaction_id,
                "job_id": job_id,
                "bucket": bucket,
                "delta": delta,
                "reason": reason,
                "at": to_db(at),
            }
        )

    # --- set-up ------------------------------------------------------------------------------------

    def create_org(
        self, name: str, plan_id: str, billing_day: int, payment_brand: str = "Visa", payment_last4: str = "4242"
    ) -> int:
        with self._write() as conn:
            return self.create_org_in(conn, name, plan_id, billing_day, payment_brand, payment_last4)

    def create_org_in(
        self, conn: Connection, name: str, plan_id: str, billing_day: int, payment_brand: str, payment_last4: str
    ) -> int:
        plan = pricing.plan(plan_id)
        if not 1 <= billing_day <= 31:
            raise ValueError("billing_day must be 1-31")
        now = self.now()
        org_id = int(
            _insert_id(
                conn,
                orgs.insert().values(
                    name=name,
                    plan=plan.id,
                    billing_day=billing_day,
                    payment_brand=payment_brand,
                    payment_last4=payment_last4,
                    created_at=to_db(now),
                ),
            )
        )
        conn.execute(
            accounts.insert().values(
                org_id=org_id,
                monthly_remaining=0,
                monthly_allocation=0,
                bank_rolled=0,
                bank_purchased=0,
                held=0,
                period_start=billing.period_start(now.date(), billing_day),
                version=0,
            )
        )
        # The first allocation is a refill like any other, so the journal explains every credit.
        acct = self._lock_account(conn, org_id)
        self._refill_one(conn, self.org(org_id, conn), acct, acct["period_start"], now, initial=True)
        return org_id

    def add_member(self, org_id: int, name: str, role: str) -> int:
        with self._write() as conn:
            return self.add_member_in(conn, org_id, name, role)

    def add_member_in(self, conn: Connection, org_id: int, name: str, role: str) -> int:
        if role not in ("owner", "admin", "editor", "viewer"):
            raise ValueError(f"unknown role {role!r}")
        return _insert_id(conn, members.insert().values(org_id=org_id, name=name, role=role))

    def add_key(self, member_id: int, key: str, label: str = "random") -> None:
        with self._write() as conn:
            self.add_key_in(conn, member_id, key, label)

    def add_key_in(self, conn: Connection, member_id: int, key: str, label: str) -> None:
        conn.execute(
            api_keys.insert().values(
                member_id=member_id, key_hash=hash_key(key), label=label, created_at=to_db(self.now())
            )
        )

    def authenticate(self, key: str | None) -> Actor | None:
        if not key:
            return None
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(members.c.id, members.c.org_id, members.c.name, members.c.role)
                .select_from(api_keys.join(members, members.c.id == api_keys.c.member_id))
                .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
            ).first()
        if row is None:
            return None
        return Actor(org_id=row.org_id, member_id=row.id, member_name=row.name, role=row.role)

    # --- refills -----------------------------------------------------------------------------------

    def _apply_refills(self, conn: Connection, org: Org, acct: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """Every refill due at `now`, oldest first, in closed form once the periods repeat.

        A period rolls what is left of the month into the bank up to the cap and expires the rest.
        With nothing spent in between (a clock that jumped), the month is full at every refill, so
        once the rolled-over bank is at its cap every further period expires the whole allocation
        and refills it: those are recorded as one refill of `periods` periods (one row in `refills`
        under its last billing date, an expiry and a refill item of the summed credits, one event),
        so a jump of 200 years costs a few statements instead of 2,400 periods of them.
        """
        plan = pricing.plan(org.plan)
        due = billing.periods_due(acct["period_start"], now, org.billing_day)
        last_start = acct["period_start"]
        applied = []
        for n in range(1, due + 1):
            start = billing.nth_period_after(last_start, n, org.billing_day)
            left = due - n + 1
            repeats = rules.refills_repeat(
                acct["monthly_remaining"], acct["bank_rolled"], plan.monthly_allocation, plan.rollover_cap
            )
            if repeats and left >= 2:
                end = billing.nth_period_after(last_start, due, org.billing_day)
                applied.append(self._refill_repeated(conn, org, acct, start, end, left, now))
                break
            applied.append(self._refill_one(conn, org, acct, start, now))
        if applied:  # --- hook (issue 11): jobs deferred to this period hold and start now
            schedule.start_scheduled(self, conn, org, acct, now)
        return applied

    def _refill_repeated(
        self, conn: Connection, org: Org, acct: dict[str, Any], first: Any, last: Any, periods: int, now: datetime
    ) -> dict[str, Any]:
        """`periods` identical refills from `first` to `last`: each expires the full month (the
        bank is at its cap) and refills it; the balances end as they began."""
        plan = pricing.plan(org.plan)
        at = datetime.combine(last, dtime(0), UTC)
        expired = rules.repeated_expiry(plan.monthly_allocation, periods)
        conn.execute(
            refills.insert().values(
                org_id=org.id,
                period_start=last,
                periods=periods,
                monthly_allocation=plan.monthly_allocation,
                rolled_over=0,
                expired=expired,
                applied_at=to_db(now),
            )
        )
        if expired:
            self._history(conn, org.id, at, Kind.EXPIRY, -expired, {"monthly": -expired}, "expiry")
            self._history(conn, org.id, at, Kind.REFILL, expired, {"monthly": expired}, "refill")
        acct["period_start"] = last
        balance = self._save_account(conn, org, acct, now, "refill")
        info = {
            "period_start": last.isoformat(),
            "monthly_allocation": plan.monthly_allocation,
            "rolled_over": 0,
            "expired": expired,
            "periods": periods,
            "first_period_start": first.isoformat(),
            "balance": balance,
        }
        self._event(conn, acct, Event.BILLING_REFILLED, info, now)
        return info

    def _refill_one(
        self, conn: Connection, org: Org, acct: dict[str, Any], start: Any, now: datetime, initial: bool = False
    ) -> dict[str, Any]:
        plan = pricing.plan(org.plan)
        at = datetime.combine(start, dtime(0), UTC)
        step = rules.refill(acct["monthly_remaining"], acct["bank_rolled"], plan.monthly_allocation, plan.rollover_cap)
        rolled, expired = step.rolled, step.expired
        # The unique (org, period_start) row: a period refills once even if two processes race.
        conn.execute(
            refills.insert().values(
                org_id=org.id,
                period_start=start,
                monthly_allocation=plan.monthly_allocation,
                rolled_over=rolled,
                expired=expired,
                applied_at=to_db(now),
            )
        )
        if rolled:
            self._history(
                conn, org.id, at, Kind.ROLLOVER, rolled, {"monthly": -rolled, "bank_rolled": rolled}, "rollover"
            )
        if expired:
            self._history(conn, org.id, at, Kind.EXPIRY, -expired, {"monthly": -expired}, "expiry")
        self._history(
            conn, org.id, at, Kind.REFILL, plan.monthly_allocation, {"monthly": plan.monthly_allocation}, "refill"
        )
        acct.update(step.after(acct), period_start=start)
        balance = self._save_account(conn, org, acct, now, "refill")
        info = {
            "period_start": start.isoformat(),
            "monthly_allocation": plan.monthly_allocation,
            "rolled_over": rolled,
            "expired": expired,
            "balance": balance,
        }
        if not initial:
            self._event(conn, acct, Event.BILLING_REFILLED, info, now)
        return info

    def _refill_is_due(self, org_id: int, now: datetime) -> bool:
        with read_tx(self.engine) as conn:
            return self._refill_due_in(conn, org_id, now)

    def _refill_due_in(self, conn: Connection, org_id: int, now: datetime) -> bool:
        """Whether `now` is past a billing date the org has not refilled for yet.

        Refills only move forward, so once this process has seen an org refilled for the period of
        `now` it need not read the account again until the next billing date.
        """
        org = self.org(org_id, conn)
        due = billing.period_start(now.date(), org.billing_day)
        if self._refilled_through.get(org_id, date.min) >= due:
            return False
        start = conn.execute(select(accounts.c.period_start).where(accounts.c.org_id == org_id)).scalar_one()
        self._note_refilled(org_id, start)
        return bool(start < due)

    def _note_refilled(self, org_id: int, start: date) -> None:
        if self._refilled_through.get(org_id, date.min) < start:
            self._refilled_through[org_id] = start

    def refill_due(self, org_id: int | None = None, at: datetime | None = None) -> list[dict[str, Any]]:
        """Apply every billing-date refill due at `at` (default now) for one org or all; idempotent."""
        # Billing dates are UTC dates: 2027-01-01T02:00+05:00 is still 31 December.
        now = as_utc(at) if at is not None else self.now()
        if org_id is None:
            with read_tx(self.engine) as conn:
                org_ids = list(conn.execute(select(orgs.c.id).order_by(orgs.c.id)).scalars())
        else:
            org_ids = [org_id]
        applied: list[dict[str, Any]] = []
        for oid in org_ids:
            if not self._refill_is_due(oid, now):
                continue
            with self._write() as conn:
                acct = self._lock_account(conn, oid)
                for info in self._apply_refills(conn, self.org(oid, conn), acct, now):
                    applied.append({"org_id": oid, **info})
        return applied

    # --- reads -------------------------------------------------------------------------------------

    def credits(self, org_id: int) -> dict[str, Any]:
        """The balance: one read, unless a billing date passed since the org's last refill."""
        now = self.now()
        org = self.org(org_id)
        acct = self._read_account(org_id)
        if acct["period_start"] < billing.period_start(now.date(), org.billing_day):
            self.refill_due(org_id, now)
            acct = self._read_account(org_id)
        return shapes.credits_json(org, acct, now)

    def _read_account(self, org_id: int) -> dict[str, Any]:
        with read_tx(self.engine) as conn:
            row = conn.execute(select(accounts).where(accounts.c.org_id == org_id)).first()
        if row is None:
            raise LedgerError("not_found", f"Organisation {org_id} has no account.")
        self._note_refilled(org_id, row.period_start)
        return dict(row._mapping)

    def account_row(self, org_id: int) -> dict[str, Any]:
        with read_tx(self.engine) as conn:
            return dict(conn.execute(select(accounts).where(accounts.c.org_id == org_id)).one()._mapping)

    def replay_journal(self, org_id: int) -> dict[str, int]:
        """Every bucket's balance recomputed from the journal alone."""
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                select(journal.c.bucket, func.coalesce(func.sum(journal.c.delta), 0))
                .where(journal.c.org_id == org_id)
                .group_by(journal.c.bucket)
            ).all()
        out = dict.fromkeys(BUCKETS, 0)
        out.update({bucket: int(total) for bucket, total in rows})
        return out

    def me(self, actor: Actor) -> dict[str, Any]:
        org = self.org(actor.org_id)
        cap = self.budgets.my_cap(actor)  # budgets: the member's cap and what is left of it
        return {
            "org": {"id": org.id, "name": org.name, "plan": org.plan},
            "member": {"id": actor.member_id, "name": actor.member_name, "role": actor.role, "cap": cap},
            "allowed_tiers": list(pricing.plan(org.plan).allowed_tiers),
            "can_spend": actor.can_spend,
            "can_buy": actor.can_buy,
            "payment_method": {"brand": org.payment_brand, "last4": org.payment_last4},
        }

    # --- pricing -----------------------------------------------------------------------------------

    def price_shots(self, shot_specs: Sequence[Mapping[str, Any]]) -> list[pricing.ShotPrice]:
        if not shot_specs:
            raise LedgerError("empty_batch", "A batch needs at least one shot.")
        if len(shot_specs) > pricing.MAX_SHOTS_PER_BATCH:
            raise LedgerError(
                "batch_too_large",
                f"A batch holds at most {pricing.MAX_SHOTS_PER_BATCH} shots; this one has {len(shot_specs)}.",
                max_shots=pricing.MAX_SHOTS_PER_BATCH,
            )
        out = []
        for i, spec in enumerate(shot_specs):
            try:
                out.append(self.card.price(spec["engine"], spec["tier"], spec["duration_s"]))
            except pricing.PricingError as exc:
                raise LedgerError(
                    exc.code, f"Shot {i + 1} ({spec.get('name', '')}): {exc.message}", shot_index=i
                ) from None
        return out

    def _blocked_reason(self, actor: Actor, org: Org, tier: str) -> tuple[str, str] | None:
        if not actor.can_spend:
            return ("forbidden", f"The {actor.role} role cannot render; ask an editor, admin or the owner.")
        refusal = pricing.tier_refusal(self.card, tier, org.plan)
        if refusal:
            return ("tier_not_allowed", refusal)
        return None

    def estimate(
        self,
        actor: Actor,
        shot_specs: Sequence[Mapping[str, Any]],
        project: str | None = None,
        when: str | None = None,
    ) -> dict[str, Any]:
        """The shots' prices against what is available now, or with `when="next_period"` against
        what will be available right after the next refill (schedule.next_period)."""
        if project is not None:
            spend_limits.check_project(project, ["body", "project"])
        next_period = schedule.wants_next_period(when)
        prices = self.price_shots(shot_specs)
        org = self.org(actor.org_id)
        outlook = schedule.next_period(self, org) if next_period else None
        available = outlook["available"] if outlook else self.credits(actor.org_id)["available"]
        out_shots, blocked = [], []
        for spec, p in zip(shot_specs, prices, strict=True):
            why = self._blocked_reason(actor, org, p.tier)
            name = str(spec.get("name", ""))
            if why:
                blocked.append({"name": name, "code": why[0], "reason": why[1]})
            out_shots.append(
                {
                    "name": name,
                    "engine": p.engine,
                    "tier": p.tier,
                    "requested_duration_s": p.requested_s,
                    "duration_s": p.duration_s,
                    "credits": p.credits,
                    "blocked_reason": why[1] if why else None,
                }
            )
        total = pricing.batch_total(prices)
        shortfall = rules.shortfall(total, available)
        # budgets: what the member's cap and the project's budget would do with this batch
        limits = self.budgets.assess_estimate(actor, project, [p.credits for p in prices])
        answer = {
            "shots": out_shots,
            "total": total,
            "available": available,
            "balance_after": available - total,
            "affordable": shortfall == 0 and not blocked and not limits.refused,
            "shortfall": shortfall,
            "blocked": blocked,
            "project": project,
            **limits.to_json(),
        }
        if outlook:
            answer["when"] = schedule.NEXT_PERIOD
            answer["next_period"] = outlook
        return answer

    # --- idempotency -------------------------------------------------------------------------------

    def _replay(self, conn: Connection, org_id: int, key: str | None, request_hash: str) -> Result | None:
        if key is None:
            return None
        row = conn.execute(select(idempotency).where(idempotency.c.org_id == org_id, idempotency.c.key == key)).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise LedgerError(
                "idempotency_conflict", "This Idempotency-Key was already used with a different request body."
            )
        return Result(row.status_code, json.loads(row.response), replayed=True)

    def _remember(
        self, conn: Connection, org_id: int, key: str | None, request_hash: str, result: Result, now: datetime
    ) -> None:
        if key is not None:
            conn.execute(
                idempotency.insert().values(
                    org_id=org_id,
                    key=key,
                    request_hash=request_hash,
                    status_code=result.status,
                    response=json.dumps(result.body),
                    created_at=to_db(now),
                )
            )

    # --- jobs --------------------------------------------------------------------------------------

    def create_job(
        self,
        actor: Actor,
        name: str,
        shot_specs: Sequence[Mapping[str, Any]],
        idempotency_key: str | None = None,
        project: str | None = None,
        start: str | None = None,
    ) -> Result:
        """Check every shot, then hold the whole estimate and queue the shots in one transaction.

        `start="next_period"` schedules the job instead: it holds nothing now and the refill of
        the next billing period starts it (act3_server/schedule.py)."""
        if project is not None:
            spend_limits.check_project(project, ["body", "project"])
        scheduled = schedule.wants_next_period(start)
        prices = self.price_shots(shot_specs)
        org = self.org(actor.org_id)
        for p in prices:
            why = self._blocked_reason(actor, org, p.tier)
            if why:
                extra = {"tier": p.tier, "plan": org.plan} if why[0] == "tier_not_allowed" else {}
                raise LedgerError(why[0], why[1], **extra)
        if scheduled:
            return self._create_job(actor, name, shot_specs, idempotency_key, project, scheduled=True)
        try:
            hold = self._pending_hold(actor, org, name, shot_specs, prices, idempotency_key, project)
            return self._create_job_fast(hold)
        except (_Fallback, IntegrityError):  # a replay, a refill or a 402 to explain, a key raced, budgets
            return self._create_job(actor, name, shot_specs, idempotency_key, project)

    def _create_job(
        self,
        actor: Actor,
        name: str,
        shot_specs: Sequence[Mapping[str, Any]],
        idempotency_key: str | None = None,
        project: str | None = None,
        scheduled: bool = False,
    ) -> Result:
        """create_job, every case (the reference for `_create_job_fast`); `scheduled`: a job
        deferred to the next period, which holds nothing now."""
        prices = self.price_shots(shot_specs)
        org = self.org(actor.org_id)
        for p in prices:
            why = self._blocked_reason(actor, org, p.tier)
            if why:
                extra = {"tier": p.tier, "plan": org.plan} if why[0] == "tier_not_allowed" else {}
                raise LedgerError(why[0], why[1], **extra)
        total = pricing.batch_total(prices)
        names = [str(spec.get("name", "")) for spec in shot_specs]
        # the same key with and without "start" is a different request
        request_hash = _job_request_hash(name, names, prices, project, schedule.NEXT_PERIOD if scheduled else None)
        now = self.now()
        with self._write() as conn:
            org, acct = self._touch(conn, actor.org_id, now)
            replay = self._replay(conn, org.id, idempotency_key, request_hash)
            if replay is not None:
                return self._job_as_it_is_now(conn, org.id, replay)
            available = rules.available(acct)
            if total > available and not scheduled:
                raise LedgerError(
                    "insufficient_credits",
                    shortfall_message(total, available),
                    required_credits=total,
                    current_balance=available,
                )
            # budgets: the member's cap and the project's budget, under the account's lock (a 402,
            # or where a pause budget stops the job, and the answer's warnings)
            limits = spend_limits.assess(
                conn,
                org.id,
                actor.member_id,
                actor.member_name,
                project,
                [p.credits for p in prices],
                acct["period_start"],
            )
            # A scheduled job holds nothing now, so it uses no budget or cap yet: its refill is
            # where it meets them (merge of budgets11 and defer11).
            warnings = [] if scheduled else spend_limits.enforce(limits)
            status = Status.SCHEDULED if scheduled else Status.PAUSED if limits.pause_before == 0 else Status.QUEUED
            acct["last_job_number"] += 1
            number = acct["last_job_number"]
            job_id = int(
                _insert_id(
                    conn,
                    jobs.insert().values(
                        org_id=org.id,
                        number=number,
                        member_id=actor.member_id,
                        member_name=actor.member_name,
                        name=name,
                        status=status,
                        created_at=to_db(now),
                        updated_at=to_db(now),
                        estimated_credits=total,
                        charged_credits=0,
                        held=0 if scheduled else total,
                        project=project,
                        period_start=acct["period_start"],
                        pause_before=None if scheduled else (limits.pause_before or None),
                    ),
                )
            )
            conn.execute(
                shots.insert(),
                [
                    {
                        "job_id": job_id,
                        "idx": i,
                        "name": n,
                        "engine": p.engine,
                        "tier": p.tier,
                        "requested_duration_s": p.requested_s,
                        "duration_s": p.duration_s,
                        "credits": p.credits,
                        "status": Status.QUEUED,
                        "attempts": 0,
                    }
                    for i, (n, p) in enumerate(zip(names, prices, strict=True))
                ],
            )
            self._note_shot_names(conn, org.id, names)
            if scheduled:
                self._event(conn, acct, Event.JOB_STATUS, {"job_id": number, "status": status, "reason": None}, now)
            else:
                self._hold(conn, org, acct, job_id, total, now)
                reason = Reason.BUDGET if status == Status.PAUSED else None
                self._event(conn, acct, Event.JOB_STATUS, {"job_id": number, "status": status, "reason": reason}, now)
                topup.after_hold(self, conn, org, acct, available, now)  # --- hook (issue 11): auto top-up
            body = self._job_json(conn, job_id)
            if warnings:
                body["warnings"] = warnings
            result = Result(201, body)
            self._remember(conn, org.id, idempotency_key, request_hash, result, now)
            return result

    def _hold(self, conn: Connection, org: Org, acct: dict[str, Any], job_id: int, amount: int, now: datetime) -> None:
        """Hold `amount` more for the job (jobs.id); the caller checked it is available."""
        acct["held"] += amount
        self._journal(conn, org.id, "held", amount, "hold", now, job_id=job_id)
        self._save_account(conn, org, acct, now, "hold")

    def _job_as_it_is_now(self, conn: Connection, org_id: int, replay: Result) -> Result:
        """A replayed `POST /v1/jobs` answers the job as it is now (paused, canceled, rendered...),
        still marked as a replay: the stored first answer said "queued", which a client retrying
        after a time-out would take for the truth."""
        row = conn.execute(select(jobs).where(jobs.c.org_id == org_id, jobs.c.number == replay.body.get("id"))).first()
        if row is None:  # cannot happen (jobs are never deleted): the stored answer, as before
            return replay
        body = self._job_rows(conn, [row])[0]
        if "warnings" in replay.body:  # budgets: what the first answer warned about still holds
            body["warnings"] = replay.body["warnings"]
        return Result(replay.status, body, replayed=True)

    def _note_shot_names(self, conn: Connection, org_id: int, names: Sequence[str]) -> None:
        """Count the job's shot names into `history_shots`, which `shot=` searches first."""
        counts = Counter(names)
        conn.execute(
            shot_names_upsert(conn.dialect.name),
            [{"org_id": org_id, "shot": n, "shot_key": n.lower(), "shots": c} for n, c in counts.items()],
        )

    def _job_rows(self, conn: Connection, job_rows: Sequence[Any]) -> list[dict[str, Any]]:
        ids = [j.id for j in job_rows]
        by_job: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            for s in conn.execute(select(shots).where(shots.c.job_id.in_(ids)).order_by(shots.c.job_id, shots.c.idx)):
                by_job[s.job_id].append(shapes.shot_json(s))
        return [shapes.job_json(j, by_job[j.id]) for j in job_rows]

    def _job_json(self, conn: Connection, job_id: int) -> dict[str, Any]:
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        assert row is not None
        return self._job_rows(conn, [row])[0]

    def get_job(self, actor: Actor, job_id: int) -> dict[str, Any]:
        if not 1 <= job_id <= MAX_DB_INT:
            raise LedgerError("not_found", f"Job {job_id} was not found.")
        with read_tx(self.engine) as conn:
            row = conn.execute(select(jobs).where(jobs.c.org_id == actor.org_id, jobs.c.number == job_id)).first()
            if row is None:
                raise LedgerError("not_found", f"Job {job_id} was not found.")  # also another org's job
            return self._job_rows(conn, [row])[0]

    def list_jobs(self, actor: Actor, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        stmt = select(jobs).where(jobs.c.org_id == actor.org_id)
        if status:
            stmt = stmt.where(jobs.c.status == status)
        with read_tx(self.engine) as conn:
            rows = conn.execute(stmt.order_by(jobs.c.number.desc()).limit(limit)).all()
            return self._job_rows(conn, rows)

    def _lock_job(self, conn: Connection, actor: Actor, job_id: int) -> Any:
        """The actor's org's job numbered `job_id` (the API's id), locked."""
        if not 1 <= job_id <= MAX_DB_INT:
            raise LedgerError("not_found", f"Job {job_id} was not found.")
        row = conn.execute(
            select(jobs).where(jobs.c.org_id == actor.org_id, jobs.c.number == job_id).with_for_update()
        ).first()
        if row is None:
            raise LedgerError("not_found", f"Job {job_id} was not found.")
        return row

    def _set_job(self, conn: Connection, job_id: int, now: datetime, **values: Any) -> None:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(updated_at=to_db(now), **values))

    def pause(self, actor: Actor, job_id: int) -> dict[str, Any]:
        """Stop before the next shot; a shot already rendering finishes and is charged."""
        self._require_spender(actor)
        now = self.now()
        with self._write() as conn:
            schedule.refuse_if_scheduled(conn, actor.org_id, job_id, "paused")  # --- hook (issue 11)
            job = self._lock_job(conn, actor, job_id)
            if job.status in ENDED:
                raise LedgerError("invalid_state", f"Job {job_id} already ended ({job.status}); it cannot be paused.")
            if job.status != Status.PAUSED:
                _org, acct = self._touch(conn, actor.org_id, now)
                self._set_job(conn, job.id, now, status=Status.PAUSED)
                reason = f"paused by {actor.member_name}"
                self._event(
                    conn, acct, Event.JOB_STATUS, {"job_id": job_id, "status": Status.PAUSED, "reason": reason}, now
                )
            return self._job_json(conn, job.id)

    def resume(self, actor: Actor, job_id: int) -> dict[str, Any]:
        self._require_spender(actor)
        now = self.now()
        with self._write() as conn:
            schedule.refuse_if_scheduled(conn, actor.org_id, job_id, "resumed")  # --- hook (issue 11)
            job = self._lock_job(conn, actor, job_id)
            if job.status != Status.PAUSED:
                raise LedgerError(
                    "invalid_state", f"Job {job_id} is {job.status}, not paused; only a paused job resumes."
                )
            org, acct = self._touch(conn, actor.org_id, now)
            # --- hook (issue 11): a job paused at its refill because it did not fit holds now, or 402
            schedule.hold_before_resume(self, conn, org, acct, job, now)
            started = conn.execute(
                select(func.count()).where(shots.c.job_id == job.id, shots.c.status != Status.QUEUED)
            ).scalar_one()
            status = Status.PROCESSING if started else Status.QUEUED
            self._set_job(conn, job.id, now, status=status)
            self._event(conn, acct, Event.JOB_STATUS, {"job_id": job_id, "status": status, "reason": "resumed"}, now)
            return self._job_json(conn, job.id)

    def cancel(self, actor: Actor, job_id: int) -> dict[str, Any]:
        """Stop now: a shot rendering is canceled and not charged; everything still held is released."""
        self._require_spender(actor)
        now = self.now()
        with self._write() as conn:
            job = self._lock_job(conn, actor, job_id)
            if job.status in ENDED:
                raise LedgerError("invalid_state", f"Job {job_id} already ended ({job.status}); it cannot be canceled.")
            org, acct = self._touch(conn, actor.org_id, now)
            if job.status == Status.SCHEDULED:  # --- hook (issue 11): the refill just applied may have started it
                job = self._lock_job(conn, actor, job_id)
            reason = f"canceled by {actor.member_name}"
            # The shot being rendered leaves a history row; queued shots never started, so none.
            rendering = select(shots).where(shots.c.job_id == job.id, shots.c.status == Status.PROCESSING)
            for shot in conn.execute(rendering):
                self._uncharged(conn, org.id, now, Kind.CANCELED, shot, job, reason)
            conn.execute(
                shots.update()
                .where(shots.c.job_id == job.id, shots.c.status.in_(RUNNABLE))
                .values(status=Status.CANCELED, error="canceled")
            )
            self._set_job(conn, job.id, now, status=Status.CANCELED, held=0, current_shot_id=None, lease_owner=None)
            if job.held:
                self._release(conn, org, acct, job.id, job.held, now)
            self._event(
                conn, acct, Event.JOB_STATUS, {"job_id": job_id, "status": Status.CANCELED, "reason": reason}, now
            )
            return self._job_json(conn, job.id)

    def _uncharged(
        self, conn: Connection, org_id: int, now: datetime, kind: str, shot: Any, job: Any, reason: str
    ) -> None:
        """A history row (credits 0, with the reason) for a shot that ended without a charge."""
        # No bucket moved, so no journal row: the hold's release is journaled on its own.
        conn.execute(
            transactions.insert().values(
                org_id=org_id, at=to_db(now), kind=kind, credits=0, monthly_delta=0, bank_delta=0, shot=shot.name,
                engine=shot.engine, tier=shot.tier, duration_s=shot.duration_s, job_id=job.number,
                member=job.member_name, reason=reason[:200],
            )
        )  # fmt: skip

    def _require_spender(self, actor: Actor) -> None:
        if not actor.can_spend:
            raise LedgerError(
                "forbidden", f"The {actor.role} role cannot change jobs; ask an editor, admin or the owner."
            )

    def _release(
        self, conn: Connection, org: Org, acct: dict[str, Any], job_id: int, amount: int, now: datetime
    ) -> None:
        acct["held"] -= amount
        self._journal(conn, org.id, "held", -amount, "release", now, job_id=job_id)
        self._save_account(conn, org, acct, now, "release")

    # --- the runner's side -------------------------------------------------------------------------

    def has_runnable(self) -> bool:
        """Kept for callers that ask first: the claim now makes that check itself (on SQLite a
        read before it takes the write lock, on PostgreSQL the claim's SKIP LOCKED select), so a
        separate read would only be a second round trip."""
        return True

    def claim_next_shot(self, worker: str, lease_s: float = 10.0) -> Claim | None:
        """Lease the next queued shot of a runnable job that has no live shot rendering.

        One shot per job at a time (a job's shots render in order); different jobs in parallel.
        A shot whose lease expired (its worker died) goes back to the queue and is claimed again.
        """
        try:
            return self._claim_fast(worker, lease_s)
        except _Fallback:  # an expired lease to take over, or a job with nothing left to render
            return self._claim(worker, lease_s)

    def _claim(self, worker: str, lease_s: float = 10.0) -> Claim | None:
        """claim_next_shot, every case (the reference for `_claim_fast`)."""
        while (claim := self._claim_once(worker, lease_s)) is _BUDGET_PAUSED:
            pass  # budgets: that job stopped at its pause budget; look for the next one
        return claim  # type: ignore[return-value]

    def _claim_once(self, worker: str, lease_s: float) -> Claim | None | object:
        now = self.now()
        with self._write() as conn:
            real = time.time()
            job = conn.execute(
                select(jobs)
                .where(
                    jobs.c.status.in_(RUNNABLE),
                    or_(jobs.c.current_shot_id.is_(None), jobs.c.lease_expires < real),
                )
                .order_by(jobs.c.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if job is None:
                return None
            org, acct = self._touch(conn, job.org_id, now)
            if job.current_shot_id is not None:
                conn.execute(
                    shots.update()
                    .where(shots.c.id == job.current_shot_id, shots.c.status == Status.PROCESSING)
                    .values(status=Status.QUEUED)
                )
            shot = conn.execute(
                select(shots)
                .where(shots.c.job_id == job.id, shots.c.status == Status.QUEUED)
                .order_by(shots.c.idx)
                .limit(1)
            ).first()
            if shot is None:  # nothing left to render: settle the job instead
                self._set_job(conn, job.id, now, current_shot_id=None, lease_owner=None, lease_expires=None)
                self._finish_if_done(conn, org, acct, job.id, job.number, now)
                return None
            if job.pause_before is not None and shot.idx >= job.pause_before:
                # budgets: a pause budget stops the job before the shot that would cross it; a resume
                # (someone's decision) then runs it on.
                self._set_job(
                    conn, job.id, now, status=Status.PAUSED, pause_before=None, current_shot_id=None, lease_owner=None
                )
                data = {"job_id": job.number, "status": Status.PAUSED, "reason": Reason.BUDGET}
                self._event(conn, acct, Event.JOB_STATUS, data, now)
                return _BUDGET_PAUSED
            conn.execute(
                shots.update().where(shots.c.id == shot.id).values(status=Status.PROCESSING, attempts=shot.attempts + 1)
            )
            self._set_job(
                conn,
                job.id,
                now,
                status=Status.PROCESSING,
                current_shot_id=shot.id,
                lease_owner=worker,
                lease_expires=real + lease_s,
            )
            if job.status != Status.PROCESSING:
                self._event(
                    conn,
                    acct,
                    Event.JOB_STATUS,
                    {"job_id": job.number, "status": Status.PROCESSING, "reason": None},
                    now,
                )
            return Claim(worker, job.id, org.id, shot.id, shot.idx, shot.duration_s, shot.credits, job.number)

    def requeue(self, claim: Claim) -> None:
        """Give a leased shot back to the queue (this process is shutting down)."""
        with self._write() as conn:
            if self._lock_claimed(conn, claim) is None:
                return
            conn.execute(shots.update().where(shots.c.id == claim.shot_id).values(status=Status.QUEUED))
            conn.execute(
                jobs.update()
                .where(jobs.c.id == claim.job_id)
                .values(current_shot_id=None, lease_owner=None, lease_expires=None)
            )

    def renew_lease(self, claim: Claim, lease_s: float = 10.0) -> bool:
        """Extend the lease; False when the shot is no longer ours (canceled, or re-queued)."""
        with self._write() as conn:
            n = conn.execute(
                jobs.update()
                .where(
                    jobs.c.id == claim.job_id,
                    jobs.c.current_shot_id == claim.shot_id,
                    jobs.c.lease_owner == claim.worker,
                    jobs.c.status.not_in(ENDED),
                )
                .values(lease_expires=time.time() + lease_s)
            ).rowcount
        return n == 1

    def still_rendering(self, claim: Claim) -> bool:
        with read_tx(self.engine) as conn:
            row = conn.execute(
                select(jobs.c.current_shot_id, jobs.c.lease_owner, jobs.c.status).where(jobs.c.id == claim.job_id)
            ).first()
        return (
            row is not None
            and row.current_shot_id == claim.shot_id
            and row.lease_owner == claim.worker
            and row.status not in ENDED
        )

    def _lock_claimed(self, conn: Connection, claim: Claim) -> Any:
        """The job row, locked, if this claim still owns its shot; else None (canceled or re-queued)."""
        job = conn.execute(select(jobs).where(jobs.c.id == claim.job_id).with_for_update()).first()
        if job is None or job.current_shot_id != claim.shot_id or job.lease_owner != claim.worker:
            return None
        shot = conn.execute(select(shots.c.status).where(shots.c.id == claim.shot_id)).scalar_one()
        return job if shot == Status.PROCESSING else None

    def complete_shot(self, claim: Claim) -> bool:
        """Charge the shot its estimate from the job's hold: monthly first, then the bank."""
        return self.complete_and_claim(claim, None)[0]

    def complete_and_claim(self, claim: Claim, lease_s: float | None = 10.0) -> tuple[bool, Claim | None]:
        """complete_shot, and the same worker's next shot leased in the charge's own transaction
        (what `claim_next_shot` would lease, one transaction fewer a shot for the runner): whether
        the shot was charged, and the next claim or None. None does not mean there is nothing to
        render: only the common case is leased here (SQLite, a charge on the fast path, a job
        with no pause budget, no lease to take over), so on None the worker claims as before.
        `lease_s=None`: charge only."""
        try:
            return self._complete_fast(claim, lease_s)  # type: ignore[no-any-return]
        except _Fallback:  # a refill due first, or a job that ends with credits still held
            return self._complete(claim), None

    def _complete(self, claim: Claim) -> bool:
        """complete_shot, every case (the reference for `_complete_fast`)."""
        now = self.now()
        with self._write() as conn:
            job = self._lock_claimed(conn, claim)
            if job is None:
                return False
            org, acct = self._touch(conn, claim.org_id, now)
            available_before = rules.available(acct)
            shot = conn.execute(select(shots).where(shots.c.id == claim.shot_id)).one()
            cost = shot.credits
            if cost > job.held:  # the CHECK constraints would refuse it anyway
                raise RuntimeError(f"shot {shot.id} costs {cost} but job {job.id} holds {job.held}")
            deltas = self._take(acct, cost)
            acct["held"] -= cost
            tx_id = self._history(
                conn,
                org.id,
                now,
                Kind.RENDER,
                -cost,
                deltas,
                "render",
                shot=shot.name,
                engine=shot.engine,
                tier=shot.tier,
                duration_s=shot.duration_s,
                job_id=job.number,
                journal_job=job.id,
                shot_id=shot.id,
                member=job.member_name,
            )
            usage.count_charge(
                conn, org.id, now, billing.period_start(now.date(), org.billing_day), tier=shot.tier,
                engine=shot.engine, member=job.member_name, job_number=job.number, shot=shot.name, credits=cost,
                duration_s=shot.duration_s, project=job.project or "",
            )  # fmt: skip
            self._journal(conn, org.id, "held", -cost, "render", now, transaction_id=tx_id, job_id=job.id)
            conn.execute(
                shots.update().where(shots.c.id == shot.id).values(status=Status.COMPLETED, completed_at=to_db(now))
            )
            self._set_job(
                conn,
                job.id,
                now,
                charged_credits=job.charged_credits + cost,
                held=job.held - cost,
                current_shot_id=None,
                lease_owner=None,
                lease_expires=None,
            )
            balance = self._save_account(conn, org, acct, now, "render")
            self._event(
                conn,
                acct,
                Event.SHOT_COMPLETED,
                {"job_id": job.number, "shot_index": shot.idx, "shot": shot.name, "credits": cost, "balance": balance},
                now,
            )
            self._finish_if_done(conn, org, acct, job.id, job.number, now)
            # --- hook (issue 11): auto top-up. A charge comes out of its own hold, so `available`
            # does not move here today and `_complete_fast` has no such check; kept for the day a
            # charge can differ from its hold.
            topup.after_hold(self, conn, org, acct, available_before, now)
        return True

    # --- the charge path on the driver (see _HOLD and _Fallback) ----------------------------------

    def _event_row(self, org_id: int, seq: int, type_: str, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        return {"org_id": org_id, "seq": seq, "type": type_, "at": to_db(now), "data": json.dumps(data)}

    def _create_job_fast(self, hold: _PendingHold) -> Result:
        """The hold's common case, in a group commit (`_holds`): holds that arrive together share
        one transaction, each applied as if alone (`_hold_in`)."""
        lane = 0 if self.engine.dialect.name == "sqlite" else hold.org.id
        return self._holds.run(lane, hold)  # type: ignore[no-any-return]

    def _pending_hold(
        self,
        actor: Actor,
        org: Org,
        name: str,
        shot_specs: Sequence[Mapping[str, Any]],
        prices: Sequence[pricing.ShotPrice],
        idempotency_key: str | None,
        project: str | None,
    ) -> _PendingHold:
        names = [str(spec.get("name", "")) for spec in shot_specs]
        # What does not depend on the account row is made before it is locked (on PostgreSQL the
        # row is held from the hold's UPDATE to the COMMIT, and other holds of the org wait on it).
        shot_rows = [
            {
                "job_id": None,
                "idx": i,
                "name": n,
                "engine": p.engine,
                "tier": p.tier,
                "requested_duration_s": float(p.requested_s),
                "duration_s": p.duration_s,
                "credits": p.credits,
                "status": Status.QUEUED,
                "attempts": 0,
            }
            for i, (n, p) in enumerate(zip(names, prices, strict=True))
        ]
        return _PendingHold(
            actor=actor,
            org=org,
            name=name,
            total=pricing.batch_total(prices),
            shot_rows=shot_rows,
            name_rows=[
                {"org_id": org.id, "shot": n, "shot_key": n.lower(), "shots": c} for n, c in Counter(names).items()
            ],
            key=idempotency_key,
            request_hash=_job_request_hash(name, names, prices, project) if idempotency_key is not None else "",
            project=project,
        )

    def _hold_batch(self, items: list[groupcommit.Item]) -> None:
        """One transaction for the holds of a group commit. A hold that cannot take the fast path
        before it writes anything (a replay, a refill due, a 402 to explain) answers `_Fallback`
        and the others go on; anything else (a hold that must undo what it wrote, a database
        error) rolls the batch back and each hold runs again in a transaction of its own, so each
        answers exactly what it would have alone (`GroupCommit` runs a batch that raises again,
        one hold at a time)."""
        done: list[tuple[groupcommit.Item, Result]] = []
        skipped: list[groupcommit.Item] = []
        with raw_write_tx(self.engine) as tx, tx.pipeline():
            keys = [item.payload.key for item in items if item.payload.key is not None]
            known: set[str] | None = None
            if not tx.sqlite and len(keys) > 1:  # one org's lane: its keys asked at once
                rows = tx.execute(_KNOWN_KEYS, {"org_id": items[0].payload.org.id, "keys": keys}).fetchall()
                known = {r[0] for r in rows}
            for i, item in enumerate(items):
                try:
                    done.append((item, self._hold_in(tx, item.payload, commit=i == len(items) - 1, known=known)))
                except _Fallback:
                    if item.payload.wrote:
                        raise
                    skipped.append(item)
        for item in skipped:
            item.answer(error=_Fallback())
        for item, result in done:
            item.answer(result)
        if done:
            self._events_written()

    def _hold_in(self, tx: RawTx, h: _PendingHold, commit: bool, known: set[str] | None = None) -> Result:
        """One hold inside the group commit's transaction (`commit`: the transaction's last
        statements, so on PostgreSQL the COMMIT goes in their pipeline). `known`: the batch's
        Idempotency-Keys the database had when it began (each hold adds its own)."""
        org = h.org
        now = self.now()
        at = to_db(now)
        h.wrote = False
        if h.key is not None:
            if known is None:
                seen = tx.one(_KNOWN_KEY, {"org_id": org.id, "key": h.key}) is not None
            else:
                seen = h.key in known
            if seen:
                raise _Fallback  # a replay (or a conflict): the general path answers it
        hold = {"org_id": org.id, "due": billing.period_start(now.date(), org.billing_day), "total": h.total}
        job = {
            "org_id": org.id,
            "member_id": h.actor.member_id,
            "member_name": h.actor.member_name,
            "name": h.name,
            "status": Status.QUEUED,
            "created_at": at,
            "updated_at": at,
            "estimated_credits": h.total,
            "charged_credits": 0,
            "held": h.total,
            "project": h.project,
        }
        if tx.sqlite:
            row = tx.one(_HOLD, hold)
            if row is None:
                raise _Fallback  # a refill is due first, or the credits are not there (a 402 to explain)
            h.wrote = True
            acct = _account_from_row(tx, org.id, row[:-1])
            job_id = tx.one(
                _INSERT_JOB, {**job, "number": acct["last_job_number"], "period_start": acct["period_start"]}
            )[0]
        else:
            row = tx.one(_HOLD_AND_JOB, {**hold, **job})
            if row is None:
                raise _Fallback  # as above
            h.wrote = True
            job_id, acct = row[0], _account_from_row(tx, org.id, row[1:-1])
        if row[-1] is not None and topup.crosses(rules.available(acct) + h.total, rules.available(acct), row[-1]):
            raise _Fallback  # auto top-up is on and this hold crosses its threshold: bought with it
        number = acct["last_job_number"]
        shot_rows = [{**r, "job_id": job_id} for r in h.shot_rows]
        with tx.batch(commit=commit):  # nothing below needs an answer: one round trip on PostgreSQL
            tx.executemany(_INSERT_SHOTS, shot_rows)
            tx.executemany(_SHOT_NAMES_UPSERT[tx.dialect.name], h.name_rows)
            tx.execute(
                _INSERT_JOURNAL_ROWS,
                {
                    "org_id": org.id,
                    "transaction_id": None,
                    "job_id": job_id,
                    "bucket": "held",
                    "delta": h.total,
                    "reason": "hold",
                    "at": at,
                },
            )
            seq = acct["last_event_seq"]
            balance = shapes.credits_json(org, acct, now)
            tx.executemany(
                _INSERT_EVENT_ROWS,
                [
                    self._event_row(
                        org.id, seq - 1, Event.BALANCE_CHANGED, {"balance": balance, "reason": "hold"}, now
                    ),
                    self._event_row(
                        org.id, seq, Event.JOB_STATUS, {"job_id": number, "status": Status.QUEUED, "reason": None}, now
                    ),
                ],
            )
            body = shapes.queued_job_json(number, h.name, h.actor.member_name, h.total, now, shot_rows, h.project)
            if h.key is not None:
                tx.execute(
                    _INSERT_IDEMPOTENCY,
                    {
                        "org_id": org.id,
                        "key": h.key,
                        "request_hash": h.request_hash,
                        "status_code": 201,
                        "response": json.dumps(body),
                        "created_at": at,
                    },
                )
                if known is not None:
                    known.add(h.key)  # a later hold of this batch with the same key is its replay
        return Result(201, body)

    def _events_written(self) -> None:
        if self.on_event is not None:
            self.on_event()

    def _claim_fast(self, worker: str, lease_s: float) -> Claim | None:
        real = time.time()
        if self.engine.dialect.name == "sqlite" and not self._anything_runnable(real):
            return None  # idle: no write lock taken just to find nothing
        with raw_write_tx(self.engine) as tx:
            claim, wrote = self._claim_in(tx, worker, lease_s, real, budgeted=True)
        if wrote:
            self._events_written()
        return claim

    def _claim_in(
        self, tx: RawTx, worker: str, lease_s: float, real: float, budgeted: bool
    ) -> tuple[Claim | None, bool]:
        """The fast claim's statements in `tx`: the claim or None, and whether an event was
        written. Raises _Fallback for the general path. `budgeted=False` (a claim that shares a
        transaction it must not roll back) raises it for a job with a pause budget before anything
        is written; otherwise the budget is checked against the shot's index after its update."""
        now = self.now()
        job = tx.one(_CLAIM_JOB, {"real": real})
        if job is None:
            return None, False
        job_id, org_id, number, status, current, pause_before = job
        if current is not None:
            raise _Fallback  # its lease ran out: the general path puts that shot back first
        if pause_before is not None and not budgeted:
            raise _Fallback
        shot = tx.one(_START_SHOT, {"job_id": job_id})
        if shot is None:
            raise _Fallback  # nothing left to render: the general path settles the job
        shot_id, idx, duration_s, credits = shot
        if pause_before is not None and idx >= pause_before:
            raise _Fallback  # budgets: a pause budget stops the job here; the general path pauses it
        lease = {
            "job_id": job_id,
            "shot_id": shot_id,
            "worker": worker,
            "expires": real + lease_s,
            "now": to_db(now),
        }
        wrote = status != Status.PROCESSING
        data = {"job_id": number, "status": Status.PROCESSING, "reason": None}
        if tx.sqlite:
            tx.execute(_LEASE_JOB, lease)
            if wrote:
                seq = tx.one(_TAKE_EVENT_SEQ, {"org_id": org_id})[0]
                tx.execute(_INSERT_EVENT_ROWS, self._event_row(org_id, seq, Event.JOB_STATUS, data, now))
        else:
            with tx.batch(commit=True):  # the lease and the event (numbered in SQL): one round trip
                tx.execute(_LEASE_JOB, lease)
                if wrote:
                    tx.execute(_INSERT_NUMBERED_EVENT, self._event_row(org_id, 0, Event.JOB_STATUS, data, now))
        return Claim(worker, job_id, org_id, shot_id, idx, duration_s, credits, number), wrote

    def _anything_runnable(self, real: float) -> bool:
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            dialect = self.engine.dialect
            cursor.execute(_PROBE_RUNNABLE.compiled(dialect)[0], _PROBE_RUNNABLE.bind(dialect, {"real": real}))
            found = cursor.fetchone() is not None
            cursor.close()
            return found
        finally:
            raw.close()

    def _complete_fast(self, claim: Claim, lease_s: float | None) -> tuple[bool, Claim | None]:
        """The charge's common case, in a group commit (`_charges`) like the holds': charges of
        one org that finish together (the database's, on SQLite) share one transaction. On SQLite
        that transaction then leases each charged worker's next shot (`lease_s` not None)."""
        lane = 0 if self.engine.dialect.name == "sqlite" else claim.org_id
        return self._charges.run(lane, (claim, lease_s))  # type: ignore[no-any-return]

    def _charge_batch(self, items: list[groupcommit.Item]) -> None:
        """One transaction for the charges of a group commit. On PostgreSQL the batch's job rows
        are locked first, in id order, before any account row: every other writer takes a job's
        row before its account's (or skips a locked job), so a batch never holds the account while
        it waits for a job. Any fallback or error rolls the batch back, and `GroupCommit` runs each
        charge again alone, so each answers what it would alone."""
        with raw_write_tx(self.engine) as tx, tx.pipeline():
            if not tx.sqlite and len(items) > 1:
                tx.execute(_LOCK_JOBS, {"ids": sorted(item.payload[0].job_id for item in items)}).fetchall()
            last = len(items) - 1
            charged = [self._complete_in(tx, item.payload[0], commit=i == last) for i, item in enumerate(items)]
            # SQLite: each charged worker's next shot, leased in this transaction (one writer's
            # turn, BEGIN and COMMIT fewer a shot). What the fast claim cannot take before it
            # writes is left to the worker's own claim_next_shot.
            leased: list[Claim | None] = [None] * len(items)
            if tx.sqlite:
                real = time.time()
                for i, item in enumerate(items):
                    claim, lease_s = item.payload
                    if charged[i] and lease_s is not None:
                        try:
                            leased[i] = self._claim_in(tx, claim.worker, lease_s, real, budgeted=False)[0]
                        except _Fallback:
                            pass
        for item, done, nxt in zip(items, charged, leased, strict=True):
            item.answer((done, nxt))
        if any(charged):
            self._events_written()

    def _complete_in(self, tx: RawTx, claim: Claim, commit: bool) -> bool:
        """Charge one claimed shot in `tx` (`commit`: its statements end the transaction)."""
        now = self.now()
        at = to_db(now)
        org = self.org(claim.org_id)
        job = tx.one(_LOCK_CLAIMED_JOB, {"job_id": claim.job_id})
        if job is None:
            return False
        job_id, number, status, current, owner, held, _charged, member, project = job
        if current != claim.shot_id or owner != claim.worker:
            return False  # canceled, or re-queued after the lease ran out: charge nothing
        shot = tx.one(_COMPLETE_SHOT, {"shot_id": claim.shot_id, "now": at})
        if shot is None:
            return False
        idx, shot_name, engine, tier, duration_s, cost = shot
        if cost > held:  # the CHECK constraints would refuse it anyway
            raise RuntimeError(f"shot {claim.shot_id} costs {cost} but job {job_id} holds {held}")
        finishing = tx.one(_OPEN_SHOTS, {"job_id": job_id})[0] == 0
        if finishing and held != cost:
            raise _Fallback  # the job ends with credits still held: the general path releases them
        row = tx.one(
            _LOCK_FOR_CHARGE,
            {
                "org_id": org.id,
                "due": billing.period_start(now.date(), org.billing_day),
                "events": 3 if finishing else 2,
            },
        )
        if row is None:
            raise _Fallback  # a refill is due first
        acct = _account_from_row(tx, org.id, row)
        deltas = self._take(acct, cost)
        acct["held"] -= cost
        render = {
            "org_id": org.id,
            "at": at,
            "kind": Kind.RENDER,
            "shot": shot_name,
            "engine": engine,
            "tier": tier,
            "duration_s": duration_s,
            "credits": -cost,
            "monthly_delta": deltas.get("monthly", 0),
            "bank_delta": deltas.get("bank_rolled", 0) + deltas.get("bank_purchased", 0),
            "job_id": number,
            "shot_id": claim.shot_id,
            "member": member,
        }
        if tx.sqlite:
            tx_id = tx.one(_INSERT_RENDER, render)[0]
            moves = [*deltas.items(), ("held", -cost)]
            journal_rows = [
                {
                    "org_id": org.id,
                    "transaction_id": tx_id,
                    "job_id": job_id,
                    "bucket": bucket,
                    "delta": delta,
                    "reason": "render",
                    "at": at,
                }
                for bucket, delta in moves
            ]
        with tx.batch(commit=commit):  # nothing below needs an answer: one round trip on PostgreSQL
            if tx.sqlite:
                tx.executemany(_INSERT_JOURNAL_ROWS, journal_rows)
            else:  # the render and its journal rows in one statement
                moved = {f"d_{b}": deltas.get(b, 0) for b in ("monthly", "bank_rolled", "bank_purchased")}
                tx.execute(_RENDER_AND_JOURNAL, {**render, **moved, "d_held": -cost, "journal_job_id": job_id})
            tx.execute(
                _CHARGE_JOB,
                {"job_id": job_id, "cost": cost, "status": Status.COMPLETED if finishing else status, "now": at},
            )
            for stmt, counted in usage.charge_rows(
                self.engine.dialect.name, org.id, now, billing.period_start(now.date(), org.billing_day),
                tier=tier, engine=engine, member=member, job_number=number, shot=shot_name, credits=cost,
                duration_s=duration_s, project=project or "",
            ):  # fmt: skip
                tx.execute(stmt, counted)
            tx.execute(_SAVE_ACCOUNT_ROW, _save_account_params(acct))
            seq = acct["last_event_seq"] - (3 if finishing else 2)
            balance = shapes.credits_json(org, acct, now)
            rows = [
                self._event_row(org.id, seq + 1, Event.BALANCE_CHANGED, {"balance": balance, "reason": "render"}, now),
                self._event_row(
                    org.id,
                    seq + 2,
                    Event.SHOT_COMPLETED,
                    {"job_id": number, "shot_index": idx, "shot": shot_name, "credits": cost, "balance": balance},
                    now,
                ),
            ]
            if finishing:
                data = {"job_id": number, "status": Status.COMPLETED, "reason": None}
                rows.append(self._event_row(org.id, seq + 3, Event.JOB_STATUS, data, now))
            tx.executemany(_INSERT_EVENT_ROWS, rows)
        return True

    def fail_shot(self, claim: Claim, error: str = "render failed") -> bool:
        """A failed shot is charged nothing; its part of the hold is released."""
        now = self.now()
        with self._write() as conn:
            job = self._lock_claimed(conn, claim)
            if job is None:
                return False
            org, acct = self._touch(conn, claim.org_id, now)
            shot = conn.execute(select(shots).where(shots.c.id == claim.shot_id)).one()
            conn.execute(shots.update().where(shots.c.id == shot.id).values(status=Status.FAILED, error=error))
            self._uncharged(conn, org.id, now, Kind.FAILED, shot, job, error)
            self._set_job(
                conn,
                job.id,
                now,
                held=job.held - shot.credits,
                current_shot_id=None,
                lease_owner=None,
                lease_expires=None,
            )
            acct["held"] -= shot.credits
            self._journal(conn, org.id, "held", -shot.credits, "release", now, job_id=job.id)
            balance = self._save_account(conn, org, acct, now, "release")
            self._event(
                conn,
                acct,
                Event.SHOT_FAILED,
                {"job_id": job.number, "shot_index": shot.idx, "shot": shot.name, "error": error, "balance": balance},
                now,
            )
            self._finish_if_done(conn, org, acct, job.id, job.number, now)
        return True

    def _finish_if_done(
        self, conn: Connection, org: Org, acct: dict[str, Any], job_id: int, number: int, now: datetime
    ) -> None:
        counts: dict[str, int] = dict(
            conn.execute(
                select(shots.c.status, func.count()).where(shots.c.job_id == job_id).group_by(shots.c.status)
            ).all()
        )
        if counts.get(Status.QUEUED) or counts.get(Status.PROCESSING):
            return
        job = conn.execute(select(jobs.c.held, jobs.c.status).where(jobs.c.id == job_id)).one()
        if job.status in ENDED:
            return
        status = Status.COMPLETED if counts.get(Status.COMPLETED) else Status.FAILED
        if job.held:  # estimate == charge makes this zero; release whatever is left so nothing stays held
            self._release(conn, org, acct, job_id, job.held, now)
        self._set_job(conn, job_id, now, status=status, held=0)
        self._event(conn, acct, Event.JOB_STATUS, {"job_id": number, "status": status, "reason": None}, now)

    @staticmethod
    def _take(acct: dict[str, Any], amount: int) -> dict[str, int]:
        """Spend `amount` in the spending order (rules.spend) and move the account's buckets."""
        deltas = rules.spend(acct, amount)  # held <= total makes an overdraft unreachable
        rules.apply(acct, deltas)
        return deltas

    # --- purchases ---------------------------------------------------------------------------------

    def credit_packs(self, actor: Actor) -> dict[str, Any]:
        org = self.org(actor.org_id)
        return {
            "packs": [p.to_json() for p in pricing.CREDIT_PACKS],
            "payment_method": {"brand": org.payment_brand, "last4": org.payment_last4},
        }

    def purchase(self, actor: Actor, pack_id: str, idempotency_key: str | None = None) -> Result:
        """Buy a pack into the bank (never cut by the cap), charged to the card on file (simulated)."""
        if not actor.can_buy:
            raise LedgerError(
                "forbidden", f"The {actor.role} role cannot buy credits; ask the owner or an admin to buy a pack."
            )
        try:
            pack = pricing.pack(pack_id)
        except pricing.PricingError as exc:
            raise LedgerError(exc.code, exc.message) from None
        request_hash = _canonical_hash("purchases", {"pack_id": pack_id})
        now = self.now()
        with self._write() as conn:
            org, acct = self._touch(conn, actor.org_id, now)
            replay = self._replay(conn, org.id, idempotency_key, request_hash)
            if replay is not None:
                return replay
            purchase_id, balance = self._buy_in(conn, org, acct, actor.member_id, actor.member_name, pack, now)
            body = shapes.purchase_json(purchase_id, pack, org.payment_brand, org.payment_last4, now, balance)
            result = Result(201, body)
            self._remember(conn, org.id, idempotency_key, request_hash, result, now)
            return result

    def _buy_in(
        self,
        conn: Connection,
        org: Org,
        acct: dict[str, Any],
        member_id: int,
        member_name: str,
        pack: pricing.CreditPack,
        now: datetime,
        auto: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """A purchase inside a write transaction (the account locked): the pack goes into the
        purchased bank. `auto`: bought by auto top-up. Returns (its number in the org, balance)."""
        acct["last_purchase_number"] += 1
        purchase_id = acct["last_purchase_number"]  # the purchase's id in its org
        conn.execute(
            purchases.insert().values(
                org_id=org.id,
                number=purchase_id,
                member_id=member_id,
                pack_id=pack.id,
                credits=pack.credits,
                price_cents=pack.price_cents,
                currency=pack.currency,
                payment_brand=org.payment_brand,
                payment_last4=org.payment_last4,
                at=to_db(now),
            )
        )
        self._history(
            conn,
            org.id,
            now,
            Kind.PURCHASE,
            pack.credits,
            {"bank_purchased": pack.credits},
            "purchase",
            member=member_name,
            auto=True if auto else None,
        )
        acct["bank_purchased"] += pack.credits
        balance = self._save_account(conn, org, acct, now, "purchase")
        data = {"purchase_id": purchase_id, "pack_id": pack.id, "credits": pack.credits, "balance": balance}
        if auto:
            data["auto"] = True
        self._event(conn, acct, Event.PURCHASE_COMPLETED, data, now)
        return purchase_id, balance

    # --- history -----------------------------------------------------------------------------------

    def history(
        self,
        org_id: int,
        limit: int = 50,
        cursor: str | None = None,
        tier: str | None = None,
        shot: str | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        """Newest first (`at` desc, `id` desc), keyset-paginated; one read transaction unless a
        refill is due first (then that refill's write, and the read after it)."""
        after = decode_cursor(cursor) if cursor else None  # refused before the database is asked
        now = self.now()
        with read_tx(self.engine) as conn:
            if not self._refill_due_in(conn, org_id, now):
                rows = history_page(conn, org_id, limit + 1, after, tier=tier, kind=kind, shot=shot)
                return shapes.history_json(rows, limit)
        self.refill_due(org_id, now)
        with read_tx(self.engine) as conn:
            rows = history_page(conn, org_id, limit + 1, after, tier=tier, kind=kind, shot=shot)
        return shapes.history_json(rows, limit)

    # --- events ------------------------------------------------------------------------------------

    def events_after(self, org_id: int, after: int, limit: int = 500) -> list[dict[str, Any]]:
        with read_tx(self.engine) as conn:
            rows = conn.execute(
                select(events)
                .where(events.c.org_id == org_id, events.c.seq > after)
                .order_by(events.c.seq)
                .limit(limit)
            ).all()
        return [shapes.event_json(r) for r in rows]

    def last_seq(self, org_id: int) -> int:
        with read_tx(self.engine) as conn:
            return int(
                conn.execute(
                    select(func.coalesce(func.max(events.c.seq), 0)).where(events.c.org_id == org_id)
                ).scalar_one()
            )


# --- history pages ---------------------------------------------------------------------------------

_T = transactions
HISTORY_COLUMNS = (
    _T.c.id,
    _T.c.at,
    _T.c.kind,
    _T.c.shot,
    _T.c.engine,
    _T.c.tier,
    _T.c.duration_s,
    _T.c.credits,
    _T.c.monthly_delta,
    _T.c.bank_delta,
    _T.c.job_id,
    _T.c.member,
    _T.c.reason,
    _T.c.auto,
)
_NEWEST_FIRST = (_T.c.at.desc(), _T.c.id.desc())
# How a shot search reads the history, once it knows how many names match (measured at 1M rows of
# one org, docs/benchmarks.md):
# - up to SHOT_DIRECT_NAMES names: straight from their `(org_id, shot, at, id)` ranges. SQLite
#   merges `shot IN (...) ORDER BY at, id LIMIT n` itself, leaving each name's range once it can
#   no longer place a row (about 7 µs a name); PostgreSQL does not, so there each name is its own
#   LATERAL range of at most n rows (about 0.1 ms a name).
# - more names than that (a short or common substring): first the newest SHOT_SCAN_BUDGET rows of
#   the page's range, filtered by name, which fills the page at once when the matches are common;
#   only if it does not, the direct way (SQLite), or on PostgreSQL the matching rows read by name
#   and sorted when the names' queued-shot counts say they are at most SHOT_SORT_ROWS, else the
#   LATERAL ranges.
SHOT_DIRECT_NAMES = {"sqlite": 300, "postgresql": 16}
SHOT_SCAN_BUDGET = 10_000
SHOT_SORT_ROWS = 20_000

_HS = history_shots
_MATCHING = (_HS.c.org_id == bindparam("org_id"), _HS.c.shot_key.like(bindparam("pattern"), escape="/"))
_COUNT_NAMES = select(func.count(), func.coalesce(func.sum(_HS.c.shots), 0)).where(*_MATCHING)
_MATCHING_NAMES = select(_HS.c.shot).where(*_MATCHING)


@functools.cache
def _page_stmt(tier: bool, kind: str | None, after: bool, route: str) -> Any:
    """One history statement per shape, built once; its values are bound at execution.

    `kind` is None, "render" or "other"; `route` is "plain" (no shot search), "in" (the
    matching names as a subquery), "in_names" (bound as a list), "scan", "sort" or "lateral"
    (see SHOT_DIRECT_NAMES).
    """
    conds: list[Any] = [_T.c.org_id == bindparam("org_id")]
    if tier:
        conds.append(_T.c.tier == bindparam("tier"))
    if kind:
        conds.append(_T.c.kind == bindparam("kind"))
        if kind == "other":
            conds.append(text(NOT_RENDER))  # the partial index's own predicate, word for word
    if after:
        # A row-value comparison: both databases read it as one index range, where the equivalent
        # `at < x OR (at = x AND id < y)` is a filter over everything newer.
        conds.append(
            tuple_(_T.c.at, _T.c.id)
            < tuple_(bindparam("after_at", type_=_T.c.at.type), bindparam("after_id", type_=_T.c.id.type))
        )
    n = bindparam("n", type_=Integer)
    if route == "plain":
        return select(*HISTORY_COLUMNS).where(*conds).order_by(*_NEWEST_FIRST).limit(n)
    if route in ("in", "in_names"):
        in_names = _T.c.shot.in_(bindparam("names", expanding=True) if route == "in_names" else _MATCHING_NAMES)
        return select(*HISTORY_COLUMNS).where(*conds, in_names).order_by(*_NEWEST_FIRST).limit(n)
    if route in ("scan", "scan_ordered"):
        # The newest rows of the range, in order, each checked against the names by a correlated
        # subquery with a LIMIT, which no planner turns into a join (a join with the names could
        # come out in the names' order, and the scan would stop at the wrong rows). PostgreSQL
        # knows the subquery's order, so its ORDER BY outside costs no sort ("scan_ordered");
        # SQLite would sort all `budget` rows for it, so there the scan's own order is used (the
        # caller sorts the rows it gets again).
        budget = bindparam("budget", type_=Integer)
        recent = select(*HISTORY_COLUMNS).where(*conds).order_by(*_NEWEST_FIRST).limit(budget).subquery()
        named = (
            select(literal_column("1"))
            .where(_HS.c.org_id == bindparam("org_id"), _HS.c.shot == recent.c.shot, _MATCHING[1])
            .limit(1)
            .scalar_subquery()
        )
        stmt = select(recent).where(named.is_not(None)).limit(n)
        return stmt.order_by(recent.c.at.desc(), recent.c.id.desc()) if route == "scan_ordered" else stmt
    if route == "sort":
        # Ordering by an expression keeps PostgreSQL from walking the whole history in order.
        return (
            select(*HISTORY_COLUMNS)
            .where(*conds, _T.c.shot.in_(_MATCHING_NAMES))
            .order_by((_T.c.at + literal_column("interval '0 seconds'")).desc(), _T.c.id.desc())
            .limit(n)
        )
    assert route == "lateral"
    wanted = _MATCHING_NAMES.subquery("wanted")
    per_name = (
        select(*HISTORY_COLUMNS)
        .where(*conds, _T.c.shot == wanted.c.shot)
        .order_by(*_NEWEST_FIRST)
        .limit(n)
        .lateral("per_name")
    )
    return (
        select(per_name)
        .select_from(wanted.join(per_name, true()))
        .order_by(per_name.c.at.desc(), per_name.c.id.desc())
        .limit(n)
    )


@functools.cache
def shot_names_upsert(dialect: str) -> Any:
    """Add shots to `history_shots` (executemany with org_id, shot, shot_key, shots)."""
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    stmt = insert(history_shots)
    return stmt.on_conflict_do_update(
        index_elements=[history_shots.c.org_id, history_shots.c.shot],
        set_={"shots": history_shots.c.shots + stmt.excluded.shots},
    )


_SHOT_NAMES_UPSERT = {d: DriverSql(shot_names_upsert(d)) for d in ("sqlite", "postgresql")}


def _like_pattern(needle: str) -> str:
    escaped = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def history_page(
    conn: Connection,
    org_id: int,
    n: int,
    after: tuple[datetime, int] | None,
    *,
    tier: str | None = None,
    kind: str | None = None,
    shot: str | None = None,
) -> Sequence[Any]:
    """Up to `n` history rows of one org, newest first, strictly before the keyset `after`."""
    params: dict[str, Any] = {"org_id": org_id, "n": n, "tier": tier, "kind": kind}
    if after is not None:
        params["after_at"], params["after_id"] = after
    shape = (bool(tier), None if not kind else "render" if kind == Kind.RENDER else "other", after is not None)
    if not shot:
        return conn.execute(_page_stmt(*shape, "plain"), params).all()
    params["pattern"] = _like_pattern(shot.lower())
    postgres = conn.dialect.name == "postgresql"
    direct = SHOT_DIRECT_NAMES.get(conn.dialect.name, 16)
    if postgres:
        names, shots_queued = conn.execute(_COUNT_NAMES, params).one()
    else:  # SQLite: the names themselves, bound into the page's IN (one scan of them, not two)
        params["names"] = conn.execute(_MATCHING_NAMES.limit(direct + 1), params).scalars().all()
        names, shots_queued = len(params["names"]), None
    if not names:
        return []
    if names > direct:
        scan = "scan_ordered" if postgres else "scan"
        found = conn.execute(_page_stmt(*shape, scan), {**params, "budget": SHOT_SCAN_BUDGET}).all()
        if len(found) == n:
            return sorted(found, key=lambda r: (r.at, r.id), reverse=True)
        if not postgres:
            return conn.execute(_page_stmt(*shape, "in"), params).all()
        if shots_queued <= SHOT_SORT_ROWS:
            return conn.execute(_page_stmt(*shape, "sort"), params).all()
    if postgres:
        return conn.execute(_page_stmt(*shape, "lateral"), params).all()
    return conn.execute(_page_stmt(*shape, "in_names"), params).all()


def as_utc(dt: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC), so that `.date()` is the UTC date."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (at, id) a cursor from `encode_cursor` names; anything else is a 400 `bad_request`.

    A cursor is opaque to clients but trivially forged, so every way it can be wrong must end here
    as a refusal, never in the database or as a 500: bad base64 or JSON, the wrong shape or types,
    an id the database column cannot hold, a date that is not ISO 8601, or one that cannot be moved
    to UTC (`0001-01-01T00:00:00+01:00` overflows `datetime`).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = json.loads(raw)
        if not isinstance(parsed, list) or len(parsed) != 2:
            raise ValueError("not a cursor")
        at_s, row_id = parsed
        if not isinstance(at_s, str) or type(row_id) is not int or not 0 <= row_id <= MAX_DB_INT:
            raise ValueError("not a cursor")
        return to_db(datetime.fromisoformat(at_s)), row_id
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise LedgerError(
            "bad_request",
            "cursor is not a cursor this service gave out; start again without one.",
            details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
        ) from exc


__all__ = [
    "MAX_DB_INT",
    "Actor",
    "Claim",
    "Ledger",
    "LedgerError",
    "Org",
    "Result",
    "decode_cursor",
    "encode_cursor",
    "from_db",
]

"""Tables, engine creation and the transaction helpers shared by every part of the service.

SQLAlchemy 2 Core only. The same code runs on SQLite (WAL, `BEGIN IMMEDIATE` for writes) and on
PostgreSQL (psycopg 3, `SELECT ... FOR UPDATE` on the org's account row for every balance change).
"""

from __future__ import annotations

import operator
import os
import stat
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - Windows: the threads of one process queue, processes meet the busy handler
    fcntl = None

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, Engine

from act3_credits.core.vocabulary import SHOT_STATUSES, Kind, Status

metadata = MetaData()


def _sql_list(words: Iterable[str]) -> str:
    """`'queued', 'processing', ...`: the vocabulary's words as an SQL list, in their order."""
    return ", ".join(f"'{w}'" for w in words)


# The predicate of the partial kind index; a query for another kind repeats it word for word, so
# that SQLite (which matches partial-index predicates by their terms) can use the index.
NOT_RENDER = f"kind <> '{Kind.RENDER}'"

# Settings: the per-database demo seed and the dev clock offset live here, so every serve process
# on one database shares them.
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

orgs = Table(
    "orgs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("plan", String(32), nullable=False),
    Column("billing_day", Integer, nullable=False),
    Column("payment_brand", String(32), nullable=False),
    Column("payment_last4", String(4), nullable=False),
    Column("created_at", DateTime, nullable=False),
    CheckConstraint("billing_day BETWEEN 1 AND 31", name="ck_orgs_billing_day"),
)

# One row per org: the balances. Every balance change locks this row first.
accounts = Table(
    "accounts",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("monthly_remaining", BigInteger, nullable=False),
    Column("monthly_allocation", BigInteger, nullable=False),
    Column("bank_rolled", BigInteger, nullable=False),  # rolled-over part of the bank (counts against the cap)
    Column("bank_purchased", BigInteger, nullable=False),  # purchased part (never cut by the cap)
    Column("held", BigInteger, nullable=False),
    Column("period_start", Date, nullable=False),  # the billing date the current allocation belongs to
    Column("version", BigInteger, nullable=False),
    # Per-org numbering (migration 0004): the last job id, purchase id and event seq given out.
    # Bumped under this row's lock, so the numbers of an org commit in order and show no other
    # org's volume.
    Column("last_job_number", BigInteger, nullable=False, server_default=text("0")),
    Column("last_purchase_number", BigInteger, nullable=False, server_default=text("0")),
    Column("last_event_seq", BigInteger, nullable=False, server_default=text("0")),
    # Budgets and member caps in force in the org (migration 0006). The driver's hold takes only
    # orgs with none; any other goes the general way, which checks them under this row's lock.
    Column("spend_limits", Integer, nullable=False, server_default=text("0")),
    # Auto top-up's threshold while it is on, else NULL (migration 0007): a copy of
    # auto_top_up.below kept here so the charge path reads it with the balances it already locks.
    Column("auto_top_up_below", BigInteger, nullable=True),
    CheckConstraint("monthly_remaining >= 0", name="ck_accounts_monthly"),
    CheckConstraint("bank_rolled >= 0", name="ck_accounts_bank_rolled"),
    CheckConstraint("bank_purchased >= 0", name="ck_accounts_bank_purchased"),
    CheckConstraint("held >= 0", name="ck_accounts_held"),
    CheckConstraint("held <= monthly_remaining + bank_rolled + bank_purchased", name="ck_accounts_held_le_total"),
)

members = Table(
    "members",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    # Credits the member may hold and spend per billing period (migration 0006); NULL: no cap.
    Column("cap_credits", BigInteger, nullable=True),
    CheckConstraint("role IN ('owner', 'admin', 'editor', 'viewer')", name="ck_members_role"),
)

# Only the sha256 of a key is stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("label", String(64), nullable=False),  # e.g. "demo" or "random"; never the key
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
)

# One row per (org, billing date): the refill of that period happened. The unique constraint makes
# a second refill of the same period impossible even if two processes race.
refills = Table(
    "refills",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("period_start", Date, nullable=False),  # the last billing date this row covers
    # How many billing dates, ending at period_start, this row covers: more than 1 only for a run of
    # identical periods (bank at its cap, nothing spent) passed at once by a jumping clock.
    Column("periods", Integer, nullable=False, server_default=text("1")),
    Column("monthly_allocation", BigInteger, nullable=False),
    Column("rolled_over", BigInteger, nullable=False),
    Column("expired", BigInteger, nullable=False),
    Column("applied_at", DateTime, nullable=False),
    UniqueConstraint("org_id", "period_start", name="uq_refills_org_period"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),  # internal; the API's job id is `number`
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("number", Integer, nullable=False),  # the job's id in its org: 1, 2, 3, ...
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("member_name", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("estimated_credits", BigInteger, nullable=False),
    Column("charged_credits", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),  # what is still held for the shots not ended yet
    # The shot being rendered and its lease (real time, epoch seconds). Kept on the job row so that
    # claiming with FOR UPDATE SKIP LOCKED re-checks it on the row it locks.
    Column("current_shot_id", Integer, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires", Float, nullable=True),
    # Migration 0006: the project the job is charged to (budgets), the billing period its hold was
    # taken in (a job counts against that period's budgets and caps, whenever its shots render),
    # and the index of the shot a `pause` budget stops it before (cleared when it stops there).
    Column("project", String(64), nullable=True),
    Column("period_start", Date, nullable=True),
    Column("pause_before", Integer, nullable=True),
    CheckConstraint("held >= 0", name="ck_jobs_held"),
    CheckConstraint("charged_credits >= 0", name="ck_jobs_charged"),
    CheckConstraint("charged_credits + held <= estimated_credits", name="ck_jobs_hold_bound"),
    CheckConstraint(f"status IN ({_sql_list(Status)})", name="ck_jobs_status"),
)
UniqueConstraint(jobs.c.org_id, jobs.c.number, name="uq_jobs_org_number")
Index("ix_jobs_status", jobs.c.status)
# What a project and a member have spent and hold in a period: sums over these ranges.
Index("ix_jobs_org_project_period", jobs.c.org_id, jobs.c.project, jobs.c.period_start)
Index("ix_jobs_member_period", jobs.c.member_id, jobs.c.period_start)

# A project's budget (migration 0006): `credits` per billing period or in total; what happens to a
# job that would take the project past it.
budgets = Table(
    "budgets",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("project", String(64), primary_key=True),
    Column("credits", BigInteger, nullable=False),
    Column("period", String(16), nullable=False),
    Column("action", String(8), nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    CheckConstraint("credits >= 0", name="ck_budgets_credits"),
    CheckConstraint("period IN ('billing_period', 'total')", name="ck_budgets_period"),
    CheckConstraint("action IN ('warn', 'pause', 'refuse')", name="ck_budgets_action"),
)

shots = Table(
    "shots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("engine", String(64), nullable=False),
    Column("tier", String(32), nullable=False),
    Column("requested_duration_s", Float, nullable=False),
    Column("duration_s", Integer, nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("completed_at", DateTime, nullable=True),
    UniqueConstraint("job_id", "idx", name="uq_shots_job_idx"),
    CheckConstraint("credits >= 0", name="ck_shots_credits"),
    CheckConstraint(f"status IN ({_sql_list(SHOT_STATUSES)})", name="ck_shots_status"),
)

# History items ("transactions"); `journal` holds their per-bucket movements.
transactions = Table(
    "transactions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("shot", String(200), nullable=True),
    Column("engine", String(64), nullable=True),
    Column("tier", String(32), nullable=True),
    Column("duration_s", Integer, nullable=True),
    Column("credits", BigInteger, nullable=False),
    Column("monthly_delta", BigInteger, nullable=False),
    Column("bank_delta", BigInteger, nullable=False),
    Column("job_id", Integer, nullable=True),  # the job's number in its org (the id the API shows)
    Column("shot_id", Integer, nullable=True, unique=True),  # a shot is charged at most once
    Column("member", String(200), nullable=True),
    # Why a shot ended uncharged (kinds 'failed' and 'canceled', migration 0005); None otherwise.
    Column("reason", String(200), nullable=True),
    Column("auto", Boolean, nullable=True),  # a purchase made by auto top-up (migration 0007)
    CheckConstraint(f"kind IN ({_sql_list(Kind)})", name="ck_transactions_kind"),
)
# History pages are keyset ranges `(at, id) < (:at, :id)` of one org (migration 0002 says why each).
Index("ix_transactions_org_at_id", transactions.c.org_id, transactions.c.at, transactions.c.id)
Index(
    "ix_transactions_org_tier_at_id", transactions.c.org_id, transactions.c.tier, transactions.c.at, transactions.c.id
)
Index(
    "ix_transactions_org_kind_at_id",
    transactions.c.org_id,
    transactions.c.kind,
    transactions.c.at,
    transactions.c.id,
    sqlite_where=text(NOT_RENDER),
    postgresql_where=text(NOT_RENDER),
)
Index(
    "ix_transactions_org_shot_at_id", transactions.c.org_id, transactions.c.shot, transactions.c.at, transactions.c.id
)

# Charged renders summed per UTC day and per everything usage groups or filters by except the shot
# name (migration 0005): `GET /v1/account/usage` and the forecast's pace read these instead of the
# render rows, so a period costs tens of rows a day, whatever was rendered. Written in the charge's
# own transaction (act3_server/usage.py); `credits` is positive. `job_id` is the job's number in
# its org (0: none); `project` is the job's project ('' until jobs carry one).
usage_days = Table(
    "usage_days",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("tier", String(32), primary_key=True),
    Column("engine", String(64), primary_key=True),
    Column("member", String(200), primary_key=True),
    Column("job_id", Integer, primary_key=True, autoincrement=False),
    Column("project", String(200), primary_key=True),
    Column("credits", BigInteger, nullable=False),
    Column("shots", BigInteger, nullable=False),
    Column("seconds", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Charged renders summed per billing period and shot name (migration 0005): `group_by=shot` over
# whole billing periods (the default range: the current one) reads these, a row per shot name,
# where a day-by-day sum would hold nearly a row per render. Written with `usage_days`.
usage_shots = Table(
    "usage_shots",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("period_start", Date, primary_key=True),  # the billing date the period began
    Column("shot", String(200), primary_key=True),
    Column("credits", BigInteger, nullable=False),
    Column("shots", BigInteger, nullable=False),
    Column("seconds", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Running totals by shot name at some UTC midnights ("marks", migration 0009): a row per org, mark
# and every shot name charged before the mark, holding what that name's renders cost in all before
# it. Usage by shot over a year is then two marks' rows apart (a few thousand rows) plus the render
# rows between each end of the range and its nearest mark, where `usage_shots` would be twelve
# periods of rows. A mark is written a day after its midnight, from the mark before it and
# the render rows between, with its `usage_marks` row in the same transaction: a mark is there whole
# or not at all (act3_server/usage.py, `write_marks`).
usage_marks = Table(
    "usage_marks",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("mark", Date, primary_key=True),  # the sums are of the renders before this day's 00:00 UTC
    sqlite_with_rowid=False,
)
usage_shot_marks = Table(
    "usage_shot_marks",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("mark", Date, primary_key=True),
    Column("shot", String(200), primary_key=True),
    Column("credits", BigInteger, nullable=False),
    Column("shots", BigInteger, nullable=False),
    Column("seconds", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Every shot name an org has queued, with its lower-case form (Python's, the same on both
# databases) and how many shots were queued under it: `shot=` searches this, then the history.
history_shots = Table(
    "history_shots",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("shot", String(200), primary_key=True),
    Column("shot_key", String(200), nullable=False),
    Column("shots", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

BUCKETS = ("monthly", "bank_rolled", "bank_purchased", "held")

journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False, index=True),
    Column("transaction_id", Integer, ForeignKey("transactions.id"), nullable=True),
    Column("job_id", Integer, nullable=True),  # jobs.id (internal)
    Column("bucket", String(16), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("reason", String(16), nullable=False),
    Column("at", DateTime, nullable=False),
    CheckConstraint("bucket IN ('monthly', 'bank_rolled', 'bank_purchased', 'held')", name="ck_journal_bucket"),
)

purchases = Table(
    "purchases",
    metadata,
    Column("id", Integer, primary_key=True),  # internal; the API's purchase id is `number`
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("pack_id", String(32), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_brand", String(32), nullable=False),
    Column("payment_last4", String(4), nullable=False),
    Column("at", DateTime, nullable=False),
    UniqueConstraint("org_id", "number", name="uq_purchases_org_number"),
)

# Auto top-up (migration 0007): one row per org once its owner has set it.
auto_top_up = Table(
    "auto_top_up",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("below", BigInteger, nullable=False),
    Column("pack_id", String(32), nullable=False),
    Column("max_per_period_cents", BigInteger, nullable=False),
    Column("set_by_member_id", Integer, ForeignKey("members.id"), nullable=False),
    Column("set_at", DateTime, nullable=False),
    CheckConstraint("below >= 0", name="ck_auto_top_up_below"),
    CheckConstraint("max_per_period_cents >= 0", name="ck_auto_top_up_max"),
)

# Every auto top-up bought: one per crossing of the threshold. The unique (org, crossing) makes a
# second purchase for the same crossing impossible, whichever path or process gets there.
auto_top_ups = Table(
    "auto_top_ups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("org_id", Integer, ForeignKey("orgs.id"), nullable=False),
    Column("crossing", String(64), nullable=False),
    Column("period_start", Date, nullable=False),  # the billing period whose cap it counts against
    Column("purchase_number", Integer, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("at", DateTime, nullable=False),
    UniqueConstraint("org_id", "crossing", name="uq_auto_top_ups_org_crossing"),
)
Index("ix_auto_top_ups_org_period", auto_top_ups.c.org_id, auto_top_ups.c.period_start)

# The first answer to an Idempotency-Key, stored in the same transaction as its write.
idempotency = Table(
    "idempotency",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

# Numbered per org (accounts.last_event_seq): `seq` is what `GET /v1/events?after=` compares.
events = Table(
    "events",
    metadata,
    Column("org_id", Integer, ForeignKey("orgs.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("data", Text, nullable=False),
)


# --- URLs and engines ------------------------------------------------------------------------------


def default_database_url() -> str:
    import platformdirs

    path = Path(platformdirs.user_data_dir("act3-server", appauthor=False)) / "act3.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _private_sqlite_file(Path(url[len("sqlite:///") :].split("?", 1)[0]))
        engine = create_engine(
            url,
            connect_args={"timeout": 60, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=60,
        )
        _install_sqlite_recipe(engine)
        return engine
    # No pre-ping: it was a round trip before every checkout. A connection that died (PostgreSQL
    # restarted) fails its first statement instead, as a disconnect, which invalidates the pool,
    # so the next checkout connects anew.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=60)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it.

    It holds the demo seed (from which the demo keys are derived), key hashes and every org's
    books: nobody but the service's user should read it. SQLite creates the -wal and -shm files
    with the database file's own permissions, so they are 0600 too. A file that already exists
    and is readable by others (made before this) loses those bits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            try:
                mode = existing.stat().st_mode
                if mode & 0o007:
                    os.chmod(existing, stat.S_IMODE(mode) & ~0o007)
            except OSError:  # not there (-wal, -shm) or not ours to change: SQLite says so on open
                pass
    else:
        os.close(fd)


def _install_sqlite_recipe(engine: Engine) -> None:
    """pysqlite's own transaction handling is off; we emit BEGIN (IMMEDIATE for writes) ourselves."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write takes the database write lock up front, so two writers never deadlock upgrading
        # a read lock; readers start a plain deferred transaction and never block writers (WAL).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("act3_write") else "BEGIN")


class WriterQueue:
    """SQLite's one writer at a time, as a queue instead of its busy handler's sleeps.

    Threads of one process queue on a lock; with a database file, the thread at the head then
    takes an exclusive `flock` on a file beside it (`<db>-writer`, 0600), so the serve processes
    of `serve --processes N` queue in the kernel too and the next writer is woken the moment the
    one before it commits. SQLite's own lock still guards the data: a writer that does not pass here
    (a migration, a script) is only slower to get in, never wrong.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._fd = -1
        self._pid = 0

    def acquire(self) -> None:
        self._lock.acquire()
        if self._path is None or fcntl is None:
            return
        try:
            if self._pid != os.getpid():  # first use, or a forked child: a lock file of its own
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:  # no lock file (a read-only directory): the busy handler queues instead
            self._path = None
        except BaseException:  # interrupted while waiting: not at the head, so not holding the queue
            self._lock.release()
            raise

    def __del__(self) -> None:
        # The engine it served is gone: its lock file descriptor goes too (a forked child's
        # inherited copy is the parent's to close).
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)

    def release(self) -> None:
        try:
            if self._path is not None and fcntl is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


_sqlite_writers: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()
_sqlite_writers_guard = threading.Lock()


def _sqlite_writer_lock(engine: Engine) -> WriterQueue:
    with _sqlite_writers_guard:
        lock = _sqlite_writers.get(engine)
        if lock is None:
            db = engine.url.database
            path = Path(db + "-writer") if db and db != ":memory:" and not db.startswith("file:") else None
            lock = _sqlite_writers[engine] = WriterQueue(path)
        return lock


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction: BEGIN IMMEDIATE on SQLite, READ COMMITTED + row locks on PostgreSQL.

    SQLite has one writer at a time. A BEGIN IMMEDIATE that finds the database locked does not
    queue: its busy handler sleeps and retries (up to 100 ms between tries), so under load a writer
    can lose the race again and again and wait seconds while the lock is free most of the time.
    Writers therefore queue in `WriterQueue` (threads and serve processes alike) and are woken the
    moment the writer before them commits.
    """
    lock = _sqlite_writer_lock(engine) if engine.dialect.name == "sqlite" else None
    if lock is not None:
        lock.acquire()
    try:
        with engine.connect() as conn:
            conn.execution_options(act3_write=True)
            with conn.begin():
                yield conn
    finally:
        if lock is not None:
            lock.release()


# --- the driver path -------------------------------------------------------------------------------
# The charge path (hold, claim, charge) runs its statements on the DBAPI cursor: each statement is
# built with SQLAlchemy Core once and compiled once per dialect, and a transaction is the pool's
# raw connection with BEGIN/COMMIT, which saves SQLAlchemy's ~40-80 us per statement and ~90 us per
# transaction (measured: docs/benchmarks.md). The same tables, constraints and locks as anywhere.


class DriverSql:
    """A Core statement compiled once per dialect into SQL text, its parameter order (positional
    drivers) and the values it carries itself (the 1 of `version + 1`), with `bind` to turn a
    statement's parameters into what the driver takes."""

    __slots__ = ("stmt", "_compiled", "_binders")

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        self._binders: dict[str, Callable[[dict[str, Any]], Any]] = {}

    def compiled(self, dialect: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            c = self.stmt.compile(dialect=dialect)
            own = {name: bp.effective_value for bp, name in c.bind_names.items() if not bp.required}
            found = (c.string, tuple(c.positiontup) if c.positional else None, own)
            self._compiled[dialect.name] = found
            if c.positional:
                dated = {name for bp, name in c.bind_names.items() if bp.type._type_affinity in (DateTime, Date)}
                self._binders[dialect.name] = _positional_binder(found[1], own, dated)  # type: ignore[arg-type]
            else:
                self._binders[dialect.name] = partial(_with_own, own) if own else _as_is
        return found

    def bind(self, dialect: Any, params: dict[str, Any]) -> Any:
        """The driver's parameters for `params` (named: a dict, with the statement's own values;
        positional: a tuple in order, dates and times in SQLAlchemy's text form on SQLite)."""
        binder = self._binders.get(dialect.name)
        if binder is None:
            self.compiled(dialect)
            binder = self._binders[dialect.name]
        return binder(params)


def _as_is(params: dict[str, Any]) -> dict[str, Any]:
    return params


def _with_own(own: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {**own, **params}


_DATED = (datetime, date)
_DATED_TYPES = frozenset(_DATED)


def _positional_binder(names: tuple[str, ...], own: dict[str, Any], dated: set[str]) -> Callable[[dict[str, Any]], Any]:
    """A tuple of the parameters in `names` order, taken in one C call (`itemgetter`); only the
    positions typed Date or DateTime are converted (`_sqlite_value`), and a date or time found
    anywhere else (an untyped parameter) sends the whole row the slow, per-value way."""
    take = operator.itemgetter(*names) if len(names) != 1 else (lambda p, n=names[0]: (p[n],))
    at = tuple(i for i, n in enumerate(names) if n in dated)

    def bind(params: dict[str, Any]) -> tuple[Any, ...]:
        values = take({**own, **params} if own else params) if names else ()
        if at:
            values = list(values)
            for i in at:
                values[i] = _sqlite_value(values[i])
        if not _DATED_TYPES.isdisjoint(map(type, values)):
            values = [_sqlite_value(v) for v in values]
        return tuple(values)

    return bind


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy's own storage format for DateTime and Date on SQLite (comparisons are on the text).
    if isinstance(value, datetime):
        if value.tzinfo is None:
            text_ = value.isoformat(" ")
            return text_ if value.microsecond else text_ + ".000000"
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


class RawTx:
    """A write transaction on the DBAPI connection (see `raw_write_tx`)."""

    __slots__ = ("dialect", "cursor", "sqlite", "piped")

    def __init__(self, dialect: Any, cursor: Any) -> None:
        self.dialect = dialect
        self.cursor = cursor
        self.sqlite = dialect.name == "sqlite"
        self.piped = False

    def execute(self, sql: DriverSql, params: dict[str, Any]) -> Any:
        self.cursor.execute(sql.compiled(self.dialect)[0], sql.bind(self.dialect, params))
        return self.cursor

    def one(self, sql: DriverSql, params: dict[str, Any]) -> Any:
        return self.execute(sql, params).fetchone()

    @contextmanager
    def batch(self, commit: bool = False) -> Iterator[None]:
        """Statements whose results are not needed, sent together: a psycopg pipeline on
        PostgreSQL (one round trip for all of them instead of one each), with the COMMIT in it
        when `commit` (the last thing the transaction does: its locks go one round trip sooner);
        SQLite runs them as they come (it has no round trips) and commits at the end as usual."""
        if self.sqlite:
            yield
            return
        connection = self.cursor.connection
        # Inside `pipeline()` the statements are queued with what follows and sent by the next read.
        with nullcontext() if self.piped else connection.pipeline():
            yield
            if commit:
                connection.commit()  # queued in the pipeline; raw_write_tx's own commit is then a no-op

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """PostgreSQL: the whole block in one psycopg pipeline, so what `batch()` queues goes to
        the server with the next statement whose answer is read (one round trip for both); no-op
        on SQLite."""
        if self.sqlite:
            yield
            return
        with self.cursor.connection.pipeline():
            self.piped = True
            try:
                yield
            finally:
                self.piped = False

    def executemany(self, sql: DriverSql, rows: list[dict[str, Any]]) -> None:
        if len(rows) == 1:
            self.execute(sql, rows[0])
            return
        text_ = sql.compiled(self.dialect)[0]
        self.cursor.executemany(text_, [sql.bind(self.dialect, r) for r in rows])


@contextmanager
def raw_write_tx(engine: Engine) -> Iterator[RawTx]:
    """`write_tx` on the driver: the same writer queue on SQLite, BEGIN IMMEDIATE there and
    READ COMMITTED on PostgreSQL; driver errors come out as SQLAlchemy's (DBAPIError subclasses,
    a lost connection marked as a disconnect and dropped from the pool), like any other path."""
    lock = _sqlite_writer_lock(engine) if engine.dialect.name == "sqlite" else None
    if lock is not None:
        lock.acquire()
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                if lock is not None:
                    cursor.execute("BEGIN IMMEDIATE")
                yield RawTx(engine.dialect, cursor)
                raw.commit()
            except BaseException as exc:
                try:
                    raw.rollback()
                except Exception:  # the connection is gone; the error below says so
                    pass
                _reraise_driver_error(engine, raw, cursor, exc)
                raise
            finally:
                cursor.close()
        finally:
            raw.close()
    finally:
        if lock is not None:
            lock.release()


def _reraise_driver_error(engine: Engine, raw: Any, cursor: Any, exc: BaseException) -> None:
    dbapi = engine.dialect.loaded_dbapi
    if not isinstance(exc, dbapi.Error):
        return
    from sqlalchemy.exc import DBAPIError

    disconnect = engine.dialect.is_disconnect(exc, raw.dbapi_connection, cursor)
    if disconnect:
        # What a Connection does on a disconnect: this connection and every older pooled one go.
        engine.pool._invalidate(raw, exc)
    raise DBAPIError.instance(None, None, exc, dbapi.Error, connection_invalidated=disconnect) from exc


def own_connection(engine: Engine) -> Any:
    """A driver connection of the caller's own, taken from the pool and never returned to it (for a
    thread that keeps one: the long-poll bus, the long polls' key check); in autocommit on
    PostgreSQL (sqlite3's connections here already run without an open transaction)."""
    raw = engine.raw_connection()
    raw.detach()
    conn = raw.dbapi_connection
    assert conn is not None
    if engine.dialect.name == "postgresql":
        conn.autocommit = True
    return conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


# --- time helpers ----------------------------------------------------------------------------------


def to_db(dt: datetime) -> datetime:
    """Timestamps are stored as naive UTC."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def from_db(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return from_db(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_date(d: date) -> str:
    return d.isoformat()

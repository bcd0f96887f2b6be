#!/usr/bin/env python3
"""Benchmark the reference service: concurrent clients against a live `act3-server serve`, and the
same writes done by the raw database driver in the same run.

    .venv/bin/python scripts/bench_service.py [--clients 16] [--jobs-per-client 40] [--wakes 30]
        [--backend sqlite|postgres|both] [--skip-latency] [--processes 1,2] [--rounds 1]

For each backend (SQLite file, embedded PostgreSQL) it makes one database and:

1. **Charge path vs raw** (render time 0, so the database and the service's own work are all
   there is): N clients each `POST /v1/jobs` (one 196 cr shot, its own Idempotency-Key) in a loop
   while the server's runner (4 threads) claims and charges them; the figure is jobs held, claimed
   and charged per second, from the first POST to the last charge. Once with every client on one
   org, once with each client on its own org (sixteen). Then the server is stopped and the same
   writes run straight on the driver (sqlite3 / psycopg, no SQLAlchemy, no HTTP) from N client
   threads and 4 runner threads on fresh orgs of the same database: the statements the service
   runs (the ledger's compiled SQL text), the same transactions per job (hold, claim, charge; on
   SQLite the charge leases the runner's next shot in its own transaction, so a job's claim
   mostly rides on the charge before it, in both), the same locking
   (SQLite: one writer at a time, queued on a lock, BEGIN IMMEDIATE; PostgreSQL: the account row
   lock, SKIP LOCKED claims). Between the two, the service's own ledger runs the same load in this
   process without HTTP (`Ledger.create_job` from N threads, claim + charge from 4), which tells the
   ledger's share from the HTTP layer's. It prints all three and the ratios to raw.
2. **Latency** (unless --skip-latency; render speed 0.001 as before): POST /v1/jobs p50/p95/max
   from N clients on one org, and the wake-up of a waiting long poll by a purchase.

Every run asserts that nothing was overspent: each org's balance is its allocation minus 196 cr per
job, nothing stays held, and every job was charged exactly once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from support.servers import LiveServer, PostgresCluster, sqlite_url  # noqa: E402

from act3_server import billing, usage  # noqa: E402
from act3_server import ledger as L  # noqa: E402
from act3_server.auth import new_random_key  # noqa: E402
from act3_server.db import DriverSql, make_engine, normalize_url  # noqa: E402
from act3_server.server import open_ledger  # noqa: E402

SHOT = {"name": "bench", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 196 cr
ALLOCATION = 5_000_000  # Enterprise
RUNNERS = 4  # the service's default render threads


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- orgs --------------------------------------------------------------------------------------------


def make_orgs(url: str, n: int, tag: str) -> list[dict[str, Any]]:
    """`n` fresh Enterprise orgs, each with an editor key."""
    ledger, _clock = open_ledger(url, dev_clock=False)
    out = []
    for i in range(n):
        org_id = ledger.create_org(f"bench {tag} {i} {uuid.uuid4().hex[:8]}", "enterprise", 1)
        member_id = ledger.add_member(org_id, "Cleo (editor)", "editor")
        key = new_random_key()
        ledger.add_key(member_id, key, "bench")
        out.append({"org_id": org_id, "member_id": member_id, "key": key})
    ledger.engine.dispose()
    return out


def check_books(url: str, orgs: list[dict[str, Any]], jobs_per_org: list[int]) -> None:
    """No overspend: each org lost exactly 196 cr per job it created, nothing is held, and every
    job has exactly one render in the history."""
    ledger, _clock = open_ledger(url, dev_clock=False)
    try:
        for org, n in zip(orgs, jobs_per_org, strict=True):
            acct = ledger.account_row(org["org_id"])
            total = acct["monthly_remaining"] + acct["bank_rolled"] + acct["bank_purchased"]
            assert acct["held"] == 0, acct
            assert total == ALLOCATION - 196 * n, (org, total, n)
            renders = ledger.history(org["org_id"], limit=200, kind="render")["items"]
            assert len(renders) == min(n, 200) and len({r["job_id"] for r in renders}) == len(renders)
            assert ledger.replay_journal(org["org_id"])["held"] == 0
    finally:
        ledger.engine.dispose()


# --- the service ----------------------------------------------------------------------------------


def start_service(url: str, processes: int, render_speed: float, dev_clock: bool) -> LiveServer:
    """`act3-server serve --processes N` with RUNNERS render threads in all (RUNNERS // N in each, so
    every run has the same four renderers), once every process has started."""
    extra = ("--processes", str(processes), "--workers", str(max(1, RUNNERS // processes)))
    srv = LiveServer(database_url=url, render_speed=render_speed, dev_clock=dev_clock, extra_args=extra)
    srv.start()
    deadline = time.monotonic() + 60
    while srv.read_log().count("Application startup complete") < processes:
        assert time.monotonic() < deadline, srv.read_log()
        time.sleep(0.05)
    return srv


class JobPoster:
    """One client's keep-alive HTTP/1.1 connection: `POST /v1/jobs` sent as prebuilt bytes (a fresh
    Idempotency-Key each time) and the answer read by a minimal parser. The clients run on the same
    two cores as the service, so what they cost is taken from it: `requests` spent about 2 ms of
    CPU per request (measured in session 3), this tens of microseconds, so the figures are the
    service's and not the benchmark's."""

    def __init__(self, api_url: str, key: str) -> None:
        url = urlsplit(api_url)
        self.sock = socket.create_connection((url.hostname, url.port or 80), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.body = json.dumps({"name": "bench", "shots": [SHOT]}).encode()
        self.head = (
            f"POST {url.path}/jobs HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\nIdempotency-Key: "
        ).encode()
        self.buf = b""

    def post(self) -> tuple[int, bytes]:
        self.sock.sendall(self.head + uuid.uuid4().hex.encode() + b"\r\n\r\n" + self.body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self.buf = rest[length:]
        return int(head[9:12]), rest[:length]

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the service closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


Run = tuple[float, list[int], list[float]]  # jobs/s, jobs per org, each hold's milliseconds


def service_run(srv: LiveServer, orgs: list[dict[str, Any]], clients: int, per_client: int) -> Run:
    """Jobs per second from the first POST to the last charge; how many jobs each org got; and each
    POST's milliseconds as its client saw them."""
    per_org = [0] * len(orgs)
    lock = threading.Lock()
    holds: list[float] = []

    def client(c: int) -> None:
        o = c % len(orgs)
        poster = JobPoster(srv.url, orgs[o]["key"])
        for _ in range(per_client):
            t0 = time.perf_counter()
            status, body = poster.post()
            holds.append(1000 * (time.perf_counter() - t0))
            assert status == 201, body
        poster.close()
        with lock:
            per_org[o] += per_client

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then until every job is charged: each org's balance is down 196 cr a job, nothing held. Read
    # from the database by this process, not asked of the service: a GET every 10 ms cost the
    # serve process a FastAPI request each (2-3 ms of its CPU) while its runner was finishing.
    ledger, _clock = open_ledger(srv.database_url, dev_clock=False)
    deadline = time.monotonic() + 300
    pending = list(range(len(orgs)))
    try:
        while pending and time.monotonic() < deadline:
            o = pending[0]
            acct = ledger.account_row(orgs[o]["org_id"])
            total = acct["monthly_remaining"] + acct["bank_rolled"] + acct["bank_purchased"]
            if acct["held"] == 0 and total == ALLOCATION - 196 * per_org[o]:
                pending.pop(0)
            else:
                time.sleep(0.01)
    finally:
        ledger.engine.dispose()
    elapsed = time.perf_counter() - start
    assert not pending, "jobs were not all charged in time"
    return clients * per_client / elapsed, per_org, holds


# --- the same writes on the raw driver ---------------------------------------------------------------


class RawDriver:
    """The service's transactions per job, straight on sqlite3 / psycopg: the ledger's own
    statements (their compiled SQL text, their parameters bound as the service binds them:
    `DriverSql.bind`), no SQLAlchemy, no HTTP, no service logic beyond what the writes need."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.sqlite = self.url.startswith("sqlite")
        # Only to turn the ledger's statements into this database's SQL text, as the service does.
        engine = make_engine(url, pool_size=1)
        with engine.connect():
            self.dialect = engine.dialect
        engine.dispose()
        self.writer = threading.Lock()  # SQLite: one writer at a time, queued (as db.write_tx)

    def connect(self) -> Any:
        if self.sqlite:
            import sqlite3

            conn = sqlite3.connect(self.url[len("sqlite:///") :], isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        import psycopg

        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))

    def sql(self, stmt: DriverSql) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        return stmt.compiled(self.dialect)

    def run(self, cur: Any, stmt: DriverSql, params: dict[str, Any]) -> Any:
        cur.execute(self.sql(stmt)[0], stmt.bind(self.dialect, params))
        return cur

    def many(self, cur: Any, stmt: DriverSql, rows: list[dict[str, Any]]) -> None:
        cur.executemany(self.sql(stmt)[0], [stmt.bind(self.dialect, r) for r in rows])

    @contextlib.contextmanager
    def batch(self, cur: Any, commit: bool = False) -> Any:
        """As RawTx.batch: a pipeline on PostgreSQL for the statements whose answers are not read,
        with the COMMIT in it when `commit`."""
        if self.sqlite:
            yield
            return
        with cur.connection.pipeline():
            yield
            if commit:
                cur.connection.commit()

    def tx(self, conn: Any, work: Callable[[Any], Any]) -> Any:
        if self.sqlite:
            with self.writer:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    out = work(cur)
                    conn.commit()
                    return out
                except BaseException:
                    conn.rollback()
                    raise
        cur = conn.cursor()
        try:
            out = work(cur)
            conn.commit()
            return out
        except BaseException:
            conn.rollback()
            raise

    def balance_json(self, org_id: int, acct: list[Any]) -> str:
        # The size and shape of the service's balance.changed payload.
        m, alloc, rolled, bought, held, _ps, version = acct[:7]
        total = m + rolled + bought
        return json.dumps(
            {
                "balance": {
                    "org_id": org_id,
                    "plan": "enterprise",
                    "total": total,
                    "monthly_remaining": m,
                    "monthly_allocation": alloc,
                    "rollover_bank": rolled + bought,
                    "rollover_purchased": bought,
                    "rollover_cap": 12_500_000,
                    "held": held,
                    "available": total - held,
                    "billing_date": "2026-12-01",
                    "as_of": "2026-11-30T12:00:00Z",
                    "version": version,
                },
                "reason": "render",
            }
        )

    # One job: the hold (a client's request) ...
    def create(self, cur: Any, org: dict[str, Any], key: str) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        due = billing.period_start(now.date(), 1)
        assert self.run(cur, L._KNOWN_KEY, {"org_id": org["org_id"], "key": key}).fetchone() is None
        hold = {"org_id": org["org_id"], "due": due, "total": 196}
        job = {
            "org_id": org["org_id"],
            "member_id": org["member_id"],
            "member_name": "Cleo (editor)",
            "name": "bench",
            "status": "queued",
            "created_at": now,
            "updated_at": now,
            "estimated_credits": 196,
            "charged_credits": 0,
            "held": 196,
            "project": None,
        }
        if self.sqlite:
            acct = self.run(cur, L._HOLD, hold).fetchone()
            job["number"] = acct[7]
            job_id = self.run(cur, L._INSERT_JOB, {**job, "period_start": acct[5]}).fetchone()[0]
        else:  # the hold and the job's row in one statement, as the service does there
            row = self.run(cur, L._HOLD_AND_JOB, {**hold, **job}).fetchone()
            job_id, acct = row[0], row[1:]
            job["number"] = acct[7]
        number, seq = acct[7], acct[9]
        shot = {
            "job_id": job_id,
            "idx": 0,
            "name": "bench",
            "engine": "veo-3.1-fast",
            "tier": "draft",
            "requested_duration_s": 4.0,
            "duration_s": 4,
            "credits": 196,
            "status": "queued",
            "attempts": 0,
        }
        with self.batch(cur, commit=True):
            self.run(cur, L._INSERT_SHOTS, shot)
            names = {"org_id": org["org_id"], "shot": "bench", "shot_key": "bench", "shots": 1}
            self.run(cur, L._SHOT_NAMES_UPSERT["sqlite" if self.sqlite else "postgresql"], names)
            row = {"org_id": org["org_id"], "transaction_id": None, "job_id": job_id, "bucket": "held"}
            self.run(cur, L._INSERT_JOURNAL_ROWS, {**row, "delta": 196, "reason": "hold", "at": now})
            data = self.balance_json(org["org_id"], list(acct))
            status = json.dumps({"job_id": number, "status": "queued", "reason": None})
            self.many(
                cur,
                L._INSERT_EVENT_ROWS,
                [
                    {"org_id": org["org_id"], "seq": seq - 1, "type": "balance.changed", "at": now, "data": data},
                    {"org_id": org["org_id"], "seq": seq, "type": "job.status", "at": now, "data": status},
                ],
            )
            answer = json.dumps({**job, "created_at": None, "updated_at": None, "shots": [shot]})
            self.run(
                cur,
                L._INSERT_IDEMPOTENCY,
                {
                    "org_id": org["org_id"],
                    "key": key,
                    "request_hash": "0" * 64,
                    "status_code": 201,
                    "response": answer,
                    "created_at": now,
                },
            )

    # ... the claim (a runner thread) ...
    def claim(self, conn: Any, worker: str) -> tuple[Any, ...] | None:
        real = time.time()
        if self.sqlite:  # the service reads first and takes the write lock only for work
            cur = conn.cursor()
            if self.run(cur, L._PROBE_RUNNABLE, {"real": real}).fetchone() is None:
                return None

        return self.tx(conn, lambda cur: self.lease(cur, worker, real))  # type: ignore[no-any-return]

    def lease(self, cur: Any, worker: str, real: float) -> tuple[Any, ...] | None:
        job = self.run(cur, L._CLAIM_JOB, {"real": real}).fetchone()
        if job is None:
            return None
        job_id, org_id, number, status, _current, _pause_before = job
        shot = self.run(cur, L._START_SHOT, {"job_id": job_id}).fetchone()
        now = datetime.now(UTC).replace(tzinfo=None)
        lease = {"job_id": job_id, "shot_id": shot[0], "worker": worker, "expires": real + 10, "now": now}
        data = json.dumps({"job_id": number, "status": "processing", "reason": None})
        event = {"org_id": org_id, "type": "job.status", "at": now, "data": data}
        if self.sqlite:
            self.run(cur, L._LEASE_JOB, lease)
            if status != "processing":
                seq = self.run(cur, L._TAKE_EVENT_SEQ, {"org_id": org_id}).fetchone()[0]
                self.run(cur, L._INSERT_EVENT_ROWS, {**event, "seq": seq})
        else:
            with self.batch(cur, commit=True):
                self.run(cur, L._LEASE_JOB, lease)
                if status != "processing":
                    self.run(cur, L._INSERT_NUMBERED_EVENT, event)
        return (job_id, org_id, number, shot[0], worker)

    # ... and the charge (the same runner thread), which on SQLite leases the worker's next shot
    # in its own transaction, as the service's runner does (Ledger.complete_and_claim).
    def complete_and_claim(self, cur: Any, claim: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self.complete(cur, claim)
        return self.lease(cur, claim[4], time.time()) if self.sqlite else None

    def complete(self, cur: Any, claim: tuple[Any, ...]) -> None:
        job_id, org_id, number, shot_id, worker = claim
        now = datetime.now(UTC).replace(tzinfo=None)
        job = self.run(cur, L._LOCK_CLAIMED_JOB, {"job_id": job_id}).fetchone()
        assert job[3] == shot_id and job[4] == worker
        shot = self.run(cur, L._COMPLETE_SHOT, {"shot_id": shot_id, "now": now}).fetchone()
        idx, name, engine, tier, duration_s, cost = shot
        finishing = self.run(cur, L._OPEN_SHOTS, {"job_id": job_id}).fetchone()[0] == 0
        due = billing.period_start(now.date(), 1)
        events = 3 if finishing else 2
        acct = list(self.run(cur, L._LOCK_FOR_CHARGE, {"org_id": org_id, "due": due, "events": events}).fetchone())
        take = min(cost, acct[0])
        acct[0] -= take
        acct[4] -= cost
        render = {
            "org_id": org_id,
            "at": now,
            "kind": "render",
            "shot": name,
            "engine": engine,
            "tier": tier,
            "duration_s": duration_s,
            "credits": -cost,
            "monthly_delta": -take,
            "bank_delta": 0,
            "job_id": number,
            "shot_id": shot_id,
            "member": "Cleo (editor)",
        }
        if self.sqlite:
            tx_id = self.run(cur, L._INSERT_RENDER, render).fetchone()[0]
        with self.batch(cur, commit=True):
            if self.sqlite:
                row = {"org_id": org_id, "transaction_id": tx_id, "job_id": job_id, "reason": "render", "at": now}
                self.many(
                    cur,
                    L._INSERT_JOURNAL_ROWS,
                    [{**row, "bucket": "monthly", "delta": -take}, {**row, "bucket": "held", "delta": -cost}],
                )
            else:  # the render and its journal rows in one statement, as the service does there
                moves = {"d_monthly": -take, "d_bank_rolled": 0, "d_bank_purchased": 0, "d_held": -cost}
                self.run(cur, L._RENDER_AND_JOURNAL, {**render, **moves, "journal_job_id": job_id})
            status = "completed" if finishing else "processing"
            self.run(cur, L._CHARGE_JOB, {"job_id": job_id, "cost": cost, "status": status, "now": now})
            for stmt, row in usage.charge_rows(
                "sqlite" if self.sqlite else "postgresql", org_id, now, due, tier=tier, engine=engine,
                member="Cleo (editor)", job_number=number, shot=name, credits=cost, duration_s=duration_s,
            ):  # fmt: skip
                self.run(cur, stmt, row)
            state = dict(zip(L._ACCOUNT_STATE, acct, strict=True))
            self.run(cur, L._SAVE_ACCOUNT_ROW, {"key_org_id": org_id, **state})
            seq = acct[9] - events
            data = self.balance_json(org_id, acct)
            done = json.dumps({"job_id": number, "shot_index": idx, "shot": name, "credits": cost, "balance": data})
            rows = [
                {"org_id": org_id, "seq": seq + 1, "type": "balance.changed", "at": now, "data": data},
                {"org_id": org_id, "seq": seq + 2, "type": "job.shot_completed", "at": now, "data": done},
            ]
            if finishing:
                status_data = json.dumps({"job_id": number, "status": "completed", "reason": None})
                rows.append({"org_id": org_id, "seq": seq + 3, "type": "job.status", "at": now, "data": status_data})
            self.many(cur, L._INSERT_EVENT_ROWS, rows)


def raw_run(url: str, orgs: list[dict[str, Any]], clients: int, per_client: int) -> Run:
    raw = RawDriver(url)
    per_org = [0] * len(orgs)
    created = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []
    holds: list[float] = []

    def client(c: int) -> None:
        try:
            o = c % len(orgs)
            conn = raw.connect()
            for _ in range(per_client):
                t0 = time.perf_counter()
                raw.tx(conn, lambda cur, o=o: raw.create(cur, orgs[o], uuid.uuid4().hex))
                holds.append(1000 * (time.perf_counter() - t0))
            conn.close()
            with lock:
                per_org[o] += per_client
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    charged = [0]

    def runner(w: int) -> None:
        try:
            conn = raw.connect()
            total = clients * per_client
            claim = None
            while True:
                claim = claim or raw.claim(conn, f"raw:{w}")
                if claim is None:
                    with lock:
                        if created.is_set() and charged[0] >= total:
                            break
                    time.sleep(0.001)
                    continue
                claim = raw.tx(conn, lambda cur, claim=claim: raw.complete_and_claim(cur, claim))
                with lock:
                    charged[0] += 1
            conn.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    start = time.perf_counter()
    runners = [threading.Thread(target=runner, args=(w,)) for w in range(RUNNERS)]
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in runners + threads:
        t.start()
    for t in threads:
        t.join()
    created.set()
    for t in runners:
        t.join(300)
    elapsed = time.perf_counter() - start
    assert not errors, errors
    return clients * per_client / elapsed, per_org, holds


def ledger_run(url: str, orgs: list[dict[str, Any]], clients: int, per_client: int) -> Run:
    """The service's own charge path without HTTP: `Ledger.create_job` from N client threads and
    claim + charge from 4 runner threads, in this process (what a serve process does per job,
    less FastAPI and uvicorn)."""
    from act3_server.db import make_engine as engine_for
    from act3_server.ledger import Actor, Ledger

    engine = engine_for(url, pool_size=clients + RUNNERS)
    ledger = Ledger(engine)
    per_org = [0] * len(orgs)
    lock = threading.Lock()
    created = threading.Event()
    charged = [0]
    errors: list[BaseException] = []
    total = clients * per_client
    holds: list[float] = []

    def client(c: int) -> None:
        try:
            o = c % len(orgs)
            actor = Actor(orgs[o]["org_id"], orgs[o]["member_id"], "Cleo (editor)", "editor")
            for _ in range(per_client):
                t0 = time.perf_counter()
                assert ledger.create_job(actor, "bench", [SHOT], uuid.uuid4().hex).status == 201
                holds.append(1000 * (time.perf_counter() - t0))
            with lock:
                per_org[o] += per_client
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def runner(w: int) -> None:
        try:
            claim = None
            while True:
                claim = claim or ledger.claim_next_shot(f"bench:{w}")
                if claim is None:
                    with lock:
                        if created.is_set() and charged[0] >= total:
                            return
                    time.sleep(0.001)
                    continue
                done, claim = ledger.complete_and_claim(claim)  # as the service's runner does
                assert done
                with lock:
                    charged[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    start = time.perf_counter()
    runners = [threading.Thread(target=runner, args=(w,)) for w in range(RUNNERS)]
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in runners + threads:
        t.start()
    for t in threads:
        t.join()
    created.set()
    for t in runners:
        t.join(300)
    elapsed = time.perf_counter() - start
    engine.dispose()
    assert not errors, errors
    return total / elapsed, per_org, holds


HOLD_LINES: list[str] = []  # the hold latencies of the charge-path runs, printed after their table


def charge_path(backend: str, url: str, args: argparse.Namespace) -> None:
    """One line per org count (one org, then one per client), or with `--rounds N` N lines each,
    every round running the service, the ledger and the raw path again on fresh orgs (so the three
    of a round share the machine's moment), then a line of the medians: each ratio's median over
    the rounds, not a ratio of medians."""
    for n_orgs in (1, args.clients):
        rounds: list[list[float]] = []
        for _ in range(args.rounds):
            rounds.append(charge_round(backend, url, args, n_orgs))
        if args.rounds > 1:
            width = len(args.processes) + 2  # jobs/s: each service run, the ledger, raw
            medians = [statistics.median(r[i] for r in rounds) for i in range(width)]
            ratios = [statistics.median(100 * r[i] / r[-1] for r in rounds) for i in range(width - 1)]
            lows = [min(100 * r[i] / r[-1] for r in rounds) for i in range(width - 1)]
            cells = [f"{v:.0f}" for v in medians] + [
                f"**{m:.0f} %** (min {lo:.0f})" for m, lo in zip(ratios, lows, strict=True)
            ]
            jobs = args.clients * args.jobs_per_client
            print(
                f"| {backend}, median of {args.rounds} | {n_orgs} | {args.clients} | {jobs} | "
                + " | ".join(cells)
                + " |",
                flush=True,
            )


def charge_round(backend: str, url: str, args: argparse.Namespace, n_orgs: int) -> list[float]:
    """The service (each --processes), the ledger in process and the raw path, one after the other
    on fresh orgs: prints their line and returns their jobs/s in that order."""
    jobs = args.clients * args.jobs_per_client
    services = []
    holds = []
    for processes in args.processes:
        service_orgs = make_orgs(url, n_orgs, f"service{processes}")
        srv = start_service(url, processes, render_speed=0.0, dev_clock=False)
        try:
            service, service_jobs, service_holds = service_run(srv, service_orgs, args.clients, args.jobs_per_client)
        finally:
            srv.stop()
            shutil.rmtree(srv.workdir, ignore_errors=True)
        check_books(url, service_orgs, service_jobs)
        services.append(service)
        holds.append(service_holds)
    ledger_orgs = make_orgs(url, n_orgs, "ledger")
    in_process, ledger_jobs, ledger_holds = ledger_run(url, ledger_orgs, args.clients, args.jobs_per_client)
    check_books(url, ledger_orgs, ledger_jobs)
    raw_orgs = make_orgs(url, n_orgs, "raw")
    raw, raw_jobs, raw_holds = raw_run(url, raw_orgs, args.clients, args.jobs_per_client)
    check_books(url, raw_orgs, raw_jobs)
    cells = [f"{v:.0f}" for v in services] + [f"{in_process:.0f}", f"{raw:.0f}"]
    cells += [f"{100 * v / raw:.0f} %" for v in services] + [f"{100 * in_process / raw:.0f} %"]
    print(f"| {backend} | {n_orgs} | {args.clients} | {jobs} | " + " | ".join(cells) + " |", flush=True)
    spans = [*holds, ledger_holds, raw_holds]
    HOLD_LINES.append(
        f"| {backend} | {n_orgs} | "
        + " | ".join(f"{statistics.median(h):.1f} / {pct(h, 95):.1f}" for h in spans)
        + " |"
    )
    return [*services, in_process, raw]


def bench_jobs(srv: LiveServer, clients: int, per_client: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    key = srv.auth("enterprise", "editor")["Authorization"].removeprefix("Bearer ")

    def client() -> None:
        poster = JobPoster(srv.url, key)
        mine = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            status, body = poster.post()
            mine.append(time.perf_counter() - t0)
            assert status == 201, body
            assert json.loads(body)["estimated_credits"] == 196
        poster.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "throughput_rps": len(latencies) / wall,
        "p50_ms": pct(latencies, 50) * 1000,
        "p95_ms": pct(latencies, 95) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def bench_wakes(srv: LiveServer, n: int) -> dict[str, float]:
    headers = srv.auth("enterprise", "owner")
    wakes = []
    for i in range(n):
        last = requests.get(srv.url + "/events", headers=headers, timeout=10).json()["last_seq"]
        got: dict[str, float] = {}

        def poll(after: int = last, got: dict[str, float] = got) -> None:
            while True:  # until the purchase's own event arrives
                answer = requests.get(srv.url + f"/events?after={after}&wait=10", headers=headers, timeout=20).json()
                if any(e["type"] == "purchase.completed" for e in answer["events"]):
                    got["at"] = time.perf_counter()
                    return
                after = answer["last_seq"]

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.15)
        sent = time.perf_counter()
        r = requests.post(
            srv.url + "/purchases",
            json={"pack_id": "pack-50k"},
            headers={**headers, "Idempotency-Key": f"w{i}-{uuid.uuid4().hex}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        t.join(15)
        # From sending the purchase to the long poll's answer: includes the purchase's own work, since
        # the event commits with it (the poll usually answers before the purchase response arrives).
        wakes.append(got["at"] - sent)
    return {"wakes": n, "p50_ms": pct(wakes, 50) * 1000, "p95_ms": pct(wakes, 95) * 1000}


def check_no_overspend(srv: LiveServer, jobs: int, purchases: int, start: int) -> None:
    headers = srv.auth("enterprise", "owner")
    deadline = time.monotonic() + 120
    while True:
        c = requests.get(srv.url + "/account/credits", headers=headers, timeout=10).json()
        if c["held"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert c["held"] == 0, c
    expected = start + purchases * 50_000 - jobs * 196
    # Every job held and was charged exactly its 196 cr estimate; nothing more left the account.
    assert c["total"] == expected and c["available"] == expected, (c, expected)


def latency(backend: str, url: str, args: argparse.Namespace, processes: int) -> str:
    srv = start_service(url, processes, render_speed=0.001, dev_clock=True)
    try:
        # The demo org of an earlier run on this database has spent already: count from here.
        start = requests.get(srv.url + "/account/credits", headers=srv.auth("enterprise", "owner"), timeout=10).json()
        jobs = bench_jobs(srv, args.clients, args.jobs_per_client)
        check_no_overspend(srv, jobs["requests"], 0, start["total"])  # waits until every job has rendered
        wakes = bench_wakes(srv, args.wakes) if args.wakes else {"p50_ms": float("nan"), "p95_ms": float("nan")}
        check_no_overspend(srv, jobs["requests"], args.wakes, start["total"])
    finally:
        srv.cleanup()
    return (
        f"| {backend} | {processes} | {args.clients} | {jobs['requests']} | {jobs['throughput_rps']:.0f} | "
        f"{jobs['p50_ms']:.1f} | {jobs['p95_ms']:.1f} | {jobs['max_ms']:.0f} | {wakes['p50_ms']:.1f} | "
        f"{wakes['p95_ms']:.1f} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--jobs-per-client", type=int, default=40)
    ap.add_argument("--wakes", type=int, default=30)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-charge", action="store_true", help="only the latency part")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="charge path: run service, ledger and raw this many times in turn and add a line of the "
        "median ratios (this machine is shared and noisy: one run's ratio moves by 10 points or more)",
    )
    ap.add_argument(
        "--processes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="serve processes of the service runs, comma-separated (default: 1,2: one run of each)",
    )
    args = ap.parse_args()
    backends: list[tuple[str, Callable[[], str], Callable[[str], None]]] = []
    if args.backend in ("sqlite", "both"):
        tmp = tempfile.mkdtemp(prefix="act3-bench-")
        backends.append(("SQLite (WAL)", lambda: sqlite_url(tmp), lambda _url: shutil.rmtree(tmp, ignore_errors=True)))
    if args.backend in ("postgres", "both"):
        cluster = PostgresCluster.shared()
        backends.append(("PostgreSQL 18", cluster.new_database, cluster.drop_database))
    heads = [f"service {p}p jobs/s" for p in args.processes] + ["ledger jobs/s", "raw jobs/s"]
    heads += [f"service {p}p / raw" for p in args.processes] + ["ledger / raw"]
    if not args.skip_charge:
        print("| backend | orgs | clients | jobs | " + " | ".join(heads) + " |")
        print("| --- " * (4 + len(heads)) + "|")
    latencies: list[str] = []
    for name, make, drop in backends:
        url = make()
        try:
            if not args.skip_charge:
                charge_path(name, url, args)
            if not args.skip_latency:
                for processes in args.processes:
                    latencies.append(latency(name, url, args, processes))
        finally:
            drop(url)
    if HOLD_LINES:
        print()
        print(
            "Each job's hold (POST /v1/jobs; ledger: create_job; raw: its transaction) under that load, p50 / p95 ms:"
        )
        print()
        print("| backend | orgs | " + " | ".join(f"service {p}p" for p in args.processes) + " | ledger | raw |")
        print("| --- " * (4 + len(args.processes)) + "|")
        for line in HOLD_LINES:
            print(line, flush=True)
    if latencies:
        print()
        print(
            "| backend | serve processes | clients | POST /v1/jobs | jobs/s | p50 ms | p95 ms | max ms "
            "| wake p50 ms | wake p95 ms |"
        )
        print("| --- " * 10 + "|")
        for line in latencies:
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

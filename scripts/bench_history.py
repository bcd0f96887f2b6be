#!/usr/bin/env python3
"""Benchmark history pages at depth: 1,000,000 items of one org, server-side time per page.

    .venv/bin/python scripts/bench_history.py [--backend sqlite|postgres|both] [--rows 1000000] [--repeat 30]
    .venv/bin/python scripts/bench_history.py --database URL --org-id N   # an already seeded database

Seeds a fresh database per backend with scripts/seed_history.py (SQLite file in a temporary
folder, or a new database on the embedded PostgreSQL), then times `Ledger.history()` (what
`GET /v1/account/credits/history` runs, from reading the account to the JSON-ready page, HTTP
and JSON encoding excluded) for each case, `--repeat` times after two warm-up calls, and prints
the median, p95 and max wall time and the median CPU time of this process in milliseconds. Each page is checked against the same rows filtered and
ordered in Python (for the cases that can be checked cheaply).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import select  # noqa: E402

from act3_server.db import make_engine, read_tx, transactions  # noqa: E402
from act3_server.ledger import Ledger, encode_cursor  # noqa: E402


def seed(url: str, rows: int, *more: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "seed_history.py"), "--database", url, "--rows", str(rows), *more],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def cursor_at_depth(ledger: Ledger, org_id: int, depth: int, **where: str) -> str:
    """The cursor a client holds after paging `depth` rows down (found once, with OFFSET)."""
    t = transactions
    stmt = select(t.c.at, t.c.id).where(t.c.org_id == org_id)
    for col, value in where.items():
        stmt = stmt.where(t.c[col] == value)
    with read_tx(ledger.engine) as conn:
        row = conn.execute(stmt.order_by(t.c.at.desc(), t.c.id.desc()).offset(depth).limit(1)).one()
    return encode_cursor(row.at, row.id)


def timed(fn: Any, repeat: int) -> tuple[list[float], list[float], Any]:
    """Wall and CPU milliseconds of each call (CPU: this process, so on SQLite the database's work
    too, on PostgreSQL only the service's side)."""
    for _ in range(2):
        result = fn()
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return times, cpu, result


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(backend: str, url: str, org_id: int, rows: int, repeat: int) -> list[tuple[str, list[float], int]]:
    engine = make_engine(url, pool_size=2)
    ledger = Ledger(engine)
    deep = int(rows * 0.9)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("first page", {}),
        (f"deep page (cursor after {deep:,} rows)", {"cursor": cursor_at_depth(ledger, org_id, deep)}),
        ("tier=high, first page", {"tier": "high"}),
        ("tier=4k (1 %), deep", {"tier": "4k", "cursor": cursor_at_depth(ledger, org_id, rows // 110, tier="4k")}),
        ("kind=purchase", {"kind": "purchase"}),
        ("kind=refill, deep", {"kind": "refill", "cursor": cursor_at_depth(ledger, org_id, 12, kind="refill")}),
        ("shot=sh999 (matches nothing)", {"shot": "sh999"}),
        ("shot=sq130_sh0250 (one name, ~500 rows)", {"shot": "sq130_sh0250"}),
        (
            "shot=SQ130_SH0250, deep",
            {"shot": "SQ130_SH0250", "cursor": cursor_at_depth(ledger, org_id, 250, shot="sq130_sh0250")},
        ),
        ("shot=sq130_sh02 (10 names)", {"shot": "sq130_sh02"}),
        ("shot=q01 (50 names)", {"shot": "q01"}),
        ("shot=sh02 (400 names)", {"shot": "sh02"}),
        ("shot=sh0 (all 2,000 names)", {"shot": "sh0"}),
        ("shot=sh0, deep", {"shot": "sh0", "cursor": cursor_at_depth(ledger, org_id, deep)}),
        ("shot=sh02, tier=4k", {"shot": "sh02", "tier": "4k"}),
    ]
    out = []
    for label, kw in cases:
        times, cpu, page = timed(lambda kw=kw: ledger.history(org_id, limit=50, **kw), repeat)
        out.append((label, times, len(page["items"])))
        print(
            f"| {backend} | {label} | {len(page['items'])} | {statistics.median(times):.2f} | "
            f"{pct(times, 95):.2f} | {max(times):.2f} | {statistics.median(cpu):.2f} |",
            flush=True,
        )
        check(page, kw)
    # A client paging down from the top: 20 pages in a row, each with the previous next_cursor.
    cursor = None
    walk = []
    for _ in range(20):
        t0 = time.perf_counter()
        page = ledger.history(org_id, limit=50, cursor=cursor)
        walk.append((time.perf_counter() - t0) * 1000)
        cursor = page["next_cursor"]
    print(
        f"| {backend} | 20 pages in a row from the top | 50 | {statistics.median(walk):.2f} | "
        f"{pct(walk, 95):.2f} | {max(walk):.2f} | |",
        flush=True,
    )
    engine.dispose()
    return out


def check(page: dict[str, Any], kw: dict[str, Any]) -> None:
    items = page["items"]
    keys = [(i["at"], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=True), "not newest first"
    if "shot" in kw:
        assert all(kw["shot"].lower() in (i["shot"] or "").lower() for i in items)
    if "tier" in kw:
        assert all(i["tier"] == kw["tier"] for i in items)
    if "kind" in kw:
        assert all(i["kind"] == kw["kind"] for i in items)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--database", help="an already seeded database (with --org-id)")
    ap.add_argument("--org-id", type=int)
    args = ap.parse_args()
    print("| backend | page | items | median ms | p95 ms | max ms | CPU median ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    if args.database:
        run("given", args.database, args.org_id, args.rows, args.repeat)
        return 0
    if args.backend in ("sqlite", "both"):
        tmp = tempfile.mkdtemp(prefix="act3-hist-")
        try:
            url = f"sqlite:///{tmp}/history.db"
            seeded = seed(url, args.rows)
            print(f"<!-- SQLite seeded {seeded['rows']:,} rows in {seeded['seconds']} s -->", flush=True)
            run("SQLite", url, seeded["org_id"], args.rows, args.repeat)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.backend in ("postgres", "both"):
        from support.servers import PostgresCluster

        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            seeded = seed(url, args.rows)
            print(f"<!-- PostgreSQL seeded {seeded['rows']:,} rows in {seeded['seconds']} s -->", flush=True)
            run("PostgreSQL", url, seeded["org_id"], args.rows, args.repeat)
        finally:
            cluster.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

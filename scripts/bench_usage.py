#!/usr/bin/env python3
"""Benchmark usage and the forecast at depth: 1,000,000 history items of one org, server-side time.

    .venv/bin/python scripts/bench_usage.py [--backend sqlite|postgres|both] [--rows 1000000] [--repeat 30]
    .venv/bin/python scripts/bench_usage.py --database URL --org-id N   # an already seeded database

Seeds a fresh database per backend with scripts/seed_history.py (two years of items up to now,
about 41,000 renders a month, and `usage_days` as the charges would have filled it; the org's
billing day 15 days back by default, so today is halfway through its billing period: a period's
first day would flatter every answer for the current period, and a year back from it would be
whole periods only), then times
what `GET /v1/account/usage` and `GET /v1/account/forecast` run (`usage.answer_usage` and
`usage.answer_forecast`: from reading the org to the JSON-ready answer; HTTP and JSON encoding
excluded), once alone (the first call: it fills the cache of settled billing periods that a year
by shot reads) and then `--repeat` times after two warm-up calls, and prints the first call's time,
the median, p95 and max wall time and the median CPU time of this process in milliseconds. Every answer's total is checked once
against the render rows summed directly (`SUM(credits)` over `transactions`), so a fast wrong
answer cannot pass.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_history import pct, seed, timed  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from act3_server import usage  # noqa: E402
from act3_server.db import make_engine, read_tx, to_db, transactions  # noqa: E402
from act3_server.ledger import Ledger  # noqa: E402


def direct_total(ledger: Ledger, org_id: int, start: datetime, end: datetime, **where: str) -> int:
    t = transactions
    stmt = select(func.coalesce(-func.sum(t.c.credits), 0)).where(
        t.c.org_id == org_id, t.c.kind == "render", t.c.at >= start, t.c.at < end
    )
    for col, value in where.items():
        stmt = stmt.where(t.c[col] == value)
    with read_tx(ledger.engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def fresh_first_call(url: str, org_id: int, args: dict[str, Any] | None) -> float:
    """The answer's first call in a new process (ms): what a serve process started a moment ago
    takes, with nothing of this answer in memory (the org already read, as a request's key check
    would have)."""
    out = subprocess.run(
        [sys.executable, __file__, "--first-call", json.dumps({"url": url, "org_id": org_id, "args": args})],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def first_call(spec: dict[str, Any]) -> None:
    engine = make_engine(spec["url"], pool_size=2)
    ledger = Ledger(engine)
    ledger.org(spec["org_id"])
    t0 = time.perf_counter()
    if spec["args"] is None:
        usage.answer_forecast(ledger, spec["org_id"])
    else:
        usage.answer_usage(ledger, spec["org_id"], **spec["args"])
    print(f"{1000 * (time.perf_counter() - t0):.3f}")


def print_row(
    backend: str, label: str, groups: str, fresh: list[float], first: float, times: list[float], cpu: list[float]
) -> None:
    new_process = f"{statistics.median(fresh):.2f} ({max(fresh):.2f})" if fresh else "-"
    print(
        f"| {backend} | {label} | {groups} | {new_process} | {first:.2f} | {statistics.median(times):.2f} | "
        f"{pct(times, 95):.2f} | {max(times):.2f} | {statistics.median(cpu):.2f} |",
        flush=True,
    )


def run(backend: str, url: str, org_id: int, repeat: int, fresh_runs: int) -> None:
    engine = make_engine(url, pool_size=2)
    ledger = Ledger(engine)
    now = to_db(ledger.now())
    year_ago = (now - timedelta(days=365)).date().isoformat()
    today = now.date().isoformat()
    part = (now - timedelta(days=30, hours=5)).isoformat(timespec="seconds")
    up_to_now = now.isoformat(timespec="seconds")
    cases: list[tuple[str, dict[str, Any]]] = [
        (f"period, group_by={g}", {"group_by": g})
        for g in ("day", "week", "tier", "engine", "member", "job", "project")
    ]
    cases += [
        ("period, group_by=shot", {"group_by": "shot"}),
        ("period, group_by=tier, tier=high, engine=kling-3", {"group_by": "tier", "tier": "high", "engine": "kling-3"}),
        ("period, group_by=shot, tier=4k", {"group_by": "shot", "tier": "4k"}),
        ("30 days from a time (parts of days at both ends), by day", {"group_by": "day", "from_": part, "to": up_to_now}),
        ("365 days, group_by=day", {"group_by": "day", "from_": year_ago, "to": today}),
        ("365 days, group_by=week", {"group_by": "week", "from_": year_ago, "to": today}),
        ("365 days, group_by=member", {"group_by": "member", "from_": year_ago, "to": today}),
        ("365 days, group_by=shot", {"group_by": "shot", "from_": year_ago, "to": today}),
    ]
    for label, kw in cases:
        args = {"from_": None, "to": None, "tier": None, "engine": None, "limit": 50, **kw}
        fresh = [fresh_first_call(url, org_id, args) for _ in range(fresh_runs)]
        t0 = time.perf_counter()  # the first call alone: it fills the settled periods' cache
        usage.answer_usage(ledger, org_id, **args)
        first = 1000 * (time.perf_counter() - t0)
        times, cpu, answer = timed(lambda args=args: usage.answer_usage(ledger, org_id, **args), repeat)
        start = datetime.fromisoformat(answer["from"].replace("Z", ""))
        end = datetime.fromisoformat(answer["to"].replace("Z", ""))
        where = {k: v for k, v in (("tier", args["tier"]), ("engine", args["engine"])) if v}
        want = direct_total(ledger, org_id, start, end, **where)
        assert answer["total"]["credits"] == want, (label, answer["total"], want)
        print_row(backend, label, str(len(answer["groups"])), fresh, first, times, cpu)
    fresh = [fresh_first_call(url, org_id, None) for _ in range(fresh_runs)]
    t0 = time.perf_counter()
    usage.answer_forecast(ledger, org_id)
    first = 1000 * (time.perf_counter() - t0)
    times, cpu, fc = timed(lambda: usage.answer_forecast(ledger, org_id), repeat)
    end = to_db(ledger.now())
    charged_30d = direct_total(ledger, org_id, end - timedelta(days=30), end)
    assert fc["pace_per_day"]["30d"] == (2 * charged_30d + 30) // 60  # to the nearest credit, halves up
    print_row(backend, "forecast (7- and 30-day pace, runway)", "-", fresh, first, times, cpu)
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--database", help="an already seeded database (with --org-id)")
    ap.add_argument("--org-id", type=int)
    ap.add_argument("--fresh", type=int, default=5, help="new processes timed per answer (its first call)")
    ap.add_argument("--first-call", help=argparse.SUPPRESS)  # one new process's first call (JSON spec)
    ap.add_argument(
        "--billing-day", type=int, choices=range(1, 32), metavar="1-31",
        help="the seeded org's billing day (default: the day of the month 15 days ago, so that today "
        "is halfway through a billing period and a year back starts and ends inside one)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.first_call:
        first_call(json.loads(args.first_call))
        return 0
    billing_day = args.billing_day or (datetime.now(UTC) - timedelta(days=15)).day
    more = ("--billing-day", str(billing_day))
    print(
        "| backend | answer | groups | first call in a new process, median (max) ms | first call ms | median ms"
        " | p95 ms | max ms | CPU median ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.database:
        run("given", args.database, args.org_id, args.repeat, args.fresh)
        return 0
    if args.backend in ("sqlite", "both"):
        tmp = tempfile.mkdtemp(prefix="act3-usage-")
        try:
            url = f"sqlite:///{tmp}/usage.db"
            seeded = seed(url, args.rows, *more)
            print(f"<!-- SQLite seeded {seeded['rows']:,} rows in {seeded['seconds']} s, billing day {billing_day} -->", flush=True)
            run("SQLite", url, seeded["org_id"], args.repeat, args.fresh)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.backend in ("postgres", "both"):
        from support.servers import PostgresCluster

        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            seeded = seed(url, args.rows, *more)
            print(f"<!-- PostgreSQL seeded {seeded['rows']:,} rows in {seeded['seconds']} s, billing day {billing_day} -->", flush=True)
            run("PostgreSQL", url, seeded["org_id"], args.repeat, args.fresh)
        finally:
            cluster.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

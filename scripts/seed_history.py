#!/usr/bin/env python3
"""Seed a database with a deep transaction history, for scripts/bench_history.py.

    .venv/bin/python scripts/seed_history.py --database sqlite:///hist.db [--rows 1000000] [--other-rows 100000]

Runs the migrations, creates one Enterprise org ("History bench") with an owner key, and writes
`--rows` history items for it (plus `--other-rows` for a second org, interleaved, so ids and the
indexes hold more than one org) through the raw driver: sqlite3 `executemany` in one transaction,
or PostgreSQL `COPY`, so 1,000,000 rows take well under a minute. The items cover about two years
up to the service's clock: renders of 2,000 shot names (`sq010_sh0010` ... `sq400_sh0500`, never
containing `sh999`) in every tier (4k is 1 %), a refill, rollover and expiry on each billing date,
and a purchase every ~5,000 items. They are history rows only (no jobs, shots or journal behind
them, and the balance does not add up to them), plus `usage_days` filled as the charges would have
filled it (and `usage_shots`), and the usage marks as the billing thread of `serve` writes them
(`usage.write_marks`): enough to measure history pages, usage and the forecast, nothing else.

Prints JSON: {"org_id", "other_org_id", "key", "rows", "seconds", "marks", "marks_seconds"}. Never commit the
database it makes; run it again instead.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from act3_credits.core.billing import period_start
from act3_server import usage
from act3_server.auth import new_random_key
from act3_server.db import normalize_url, to_db, usage_days, usage_shots, write_tx
from act3_server.ledger import RENDER_COLUMNS, shot_names_upsert
from act3_server.server import open_ledger

COLUMNS = RENDER_COLUMNS  # a seeded render row has the columns the charge writes
ENGINES = (("veo-3.1", 260), ("veo-3.1-fast", 49), ("seedance-2.0", 245), ("kling-3", 120))
TIERS = (("draft", 1, 50), ("standard", 2, 35), ("high", 4, 14), ("4k", 8, 1))  # id, multiplier, weight %
MEMBERS = ("Ana (owner)", "Ben (admin)", "Cleo (editor)", "Eli (editor)", "Fay (editor)")
SHOT_NAMES = [f"sq{q:03d}_sh{s:04d}" for q in range(10, 410, 10) for s in range(10, 510, 10)]


def history_rows(
    org_id: int, n: int, end: datetime, span: timedelta, seed: int, billing_day: int = 1
) -> Iterator[tuple[object, ...]]:
    """`n` items for one org, oldest first, evenly over `span` up to `end` (naive UTC)."""
    rng = random.Random(seed)
    tiers = [t for t in TIERS for _ in range(t[2])]
    step = span / max(1, n)
    at = end - span
    period = period_start(at.date(), billing_day)
    for i in range(n):
        at += step
        if period_start(at.date(), billing_day) != period:  # a billing date passed: its three items
            period = period_start(at.date(), billing_day)
            day1 = datetime(period.year, period.month, period.day)
            yield (org_id, day1, "rollover", None, None, None, None, 250_000, -250_000, 250_000, None, None, None)
            yield (org_id, day1, "expiry", None, None, None, None, -50_000, -50_000, 0, None, None, None)
            yield (org_id, day1, "refill", None, None, None, None, 5_000_000, 5_000_000, 0, None, None, None)
        if i % 5_000 == 4_999:
            member = MEMBERS[rng.randrange(2)]
            yield (org_id, at, "purchase", None, None, None, None, 50_000, 0, 50_000, None, None, member)
            continue
        engine, rate = ENGINES[rng.randrange(len(ENGINES))]
        tier, mult, _w = tiers[rng.randrange(100)]
        duration = rng.choice((4, 6, 8))
        credits = -rate * mult * duration
        yield (
            org_id,
            at,
            "render",
            SHOT_NAMES[rng.randrange(len(SHOT_NAMES))],
            engine,
            tier,
            duration,
            credits,
            credits,
            0,
            None,
            None,
            MEMBERS[rng.randrange(len(MEMBERS))],
        )


def interleave(a: Iterator[tuple[object, ...]], b: Iterator[tuple[object, ...]], every: int) -> Iterator[tuple]:
    """All of `a`, with one row of `b` after every `every` rows of `a` (the rest of `b` at the end)."""
    for i, row in enumerate(a, 1):
        yield row
        if every and i % every == 0:
            nxt = next(b, None)
            if nxt is not None:
                yield nxt
    yield from b


def sqlite_text(dt: datetime) -> str:
    # SQLAlchemy's storage format for DateTime on SQLite; comparisons are on this text.
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def seed_sqlite(path: str, rows: Iterator[tuple[object, ...]]) -> int:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while seeding
    sql = f"INSERT INTO transactions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    n = 0
    conn.execute("BEGIN IMMEDIATE")
    batch: list[tuple[object, ...]] = []
    for row in rows:
        batch.append((row[0], sqlite_text(row[1]), *row[2:]))  # type: ignore[arg-type]
        if len(batch) == 50_000:
            conn.executemany(sql, batch)
            n += len(batch)
            batch.clear()
    conn.executemany(sql, batch)
    n += len(batch)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n


def seed_postgres(url: str, rows: Iterator[tuple[object, ...]]) -> int:
    import psycopg

    n = 0
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            with cur.copy(f"COPY transactions ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE transactions")
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database", required=True, help="sqlite:///path.db or postgresql://...")
    ap.add_argument("--rows", type=int, default=1_000_000, help="history items of the benchmarked org")
    ap.add_argument("--other-rows", type=int, default=100_000, help="items of a second org, interleaved")
    ap.add_argument("--years", type=float, default=2.0, help="the span the items cover, up to now")
    ap.add_argument(
        "--billing-day", type=int, default=1, choices=range(1, 32), metavar="1-31",
        help="the benchmarked org's billing day (1: today is where a period is on the 1st)",
    )  # fmt: skip
    args = ap.parse_args()

    t0 = time.perf_counter()
    ledger, _clock = open_ledger(args.database)
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    org_id = ledger.create_org(f"History bench {tag}", "enterprise", args.billing_day)
    other_id = ledger.create_org(f"History bench neighbour {tag}", "pro", 15)
    member_id = ledger.add_member(org_id, "Ana (owner)", "owner")
    key = new_random_key()
    ledger.add_key(member_id, key, "bench")
    # End a minute before the service's clock, so the rows are older than anything written after.
    end = to_db(ledger.now()) - timedelta(minutes=1)
    span = timedelta(days=365.25 * args.years)
    every = max(1, args.rows // args.other_rows) if args.other_rows else 0
    rows = interleave(
        history_rows(org_id, args.rows, end, span, seed=1, billing_day=args.billing_day),
        history_rows(other_id, args.other_rows, end, span, seed=2, billing_day=15),
        every,
    )
    names: Counter[tuple[int, str]] = Counter()
    days: dict[tuple[object, ...], list[int]] = {}
    periods: dict[tuple[object, ...], list[int]] = {}
    billing_days = {org_id: args.billing_day, other_id: 15}

    def counted(rows: Iterator[tuple[object, ...]]) -> Iterator[tuple[object, ...]]:
        for row in rows:
            if row[3] is not None:
                names[(row[0], row[3])] += 1  # type: ignore[index]
            if row[2] == "render":  # what the charge adds to usage_days
                org, at, _k, _s, engine, tier, duration, credits = row[:8]
                key = (org, at.date(), tier, engine, row[12] or "", row[10] or 0, "")  # type: ignore[attr-defined]
                by_shot = (org, period_start(at.date(), billing_days[org]), row[3])  # type: ignore[attr-defined,index]
                for sums in (days.setdefault(key, [0, 0, 0]), periods.setdefault(by_shot, [0, 0, 0])):
                    sums[0] -= credits  # type: ignore[operator]
                    sums[1] += 1
                    sums[2] += duration  # type: ignore[operator]
            yield row

    url = normalize_url(args.database)
    if url.startswith("sqlite:///"):
        n = seed_sqlite(url[len("sqlite:///") :], counted(rows))
    else:
        n = seed_postgres(url, counted(rows))
    # The shot names the rows use, as create_job would have counted them (shot= searches these),
    # and the renders per day, as each charge would have added them (usage reads these).
    columns = ("org_id", "day", "tier", "engine", "member", "job_id", "project")
    with write_tx(ledger.engine) as conn:
        conn.execute(
            shot_names_upsert(conn.dialect.name),
            [{"org_id": o, "shot": s, "shot_key": s.lower(), "shots": c} for (o, s), c in names.items()],
        )
        conn.execute(
            usage_days.insert(),
            [
                {**dict(zip(columns, k, strict=True)), "credits": v[0], "shots": v[1], "seconds": v[2]}
                for k, v in days.items()
            ],
        )
        conn.execute(
            usage_shots.insert(),
            [
                {"org_id": o, "period_start": p, "shot": sh, "credits": v[0], "shots": v[1], "seconds": v[2]}
                for (o, p, sh), v in periods.items()
            ],
        )
        conn.exec_driver_sql("ANALYZE usage_days")
        conn.exec_driver_sql("ANALYZE usage_shots")
    # The running totals by shot name, as the billing thread of `serve` writes them (its own code).
    t_marks = time.perf_counter()
    marks = 0
    for o, bd in billing_days.items():
        while written := usage.write_marks(ledger.engine, o, bd, datetime.now(UTC)):
            marks += written
    with write_tx(ledger.engine) as conn:
        conn.exec_driver_sql("ANALYZE usage_shot_marks")
        conn.exec_driver_sql("ANALYZE usage_marks")
    ledger.engine.dispose()
    out = {
        "org_id": org_id,
        "other_org_id": other_id,
        "key": key,
        "rows": n,
        "seconds": round(time.perf_counter() - t0, 1),
        "marks": marks,
        "marks_seconds": round(time.perf_counter() - t_marks, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

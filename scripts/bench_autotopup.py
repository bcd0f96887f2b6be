#!/usr/bin/env python3
"""What auto top-up costs the charge path: the hold (`Ledger.create_job`) and the claim + charge
(`claim_next_shot` + `complete_shot`), one thread, in this process, no HTTP.

    .venv/bin/python scripts/bench_autotopup.py [--backend sqlite|postgres] [--jobs 2000] [--rounds 5]
        [--mode off|on|crossing]

- `off`: auto top-up never set (also what a checkout without the feature measures: run this same
  script with that checkout's code first on the path; it only uses what both have).
- `on`: set, with a threshold the run never crosses (the common case: one more column in the
  hold's RETURNING and a comparison; the driver path is kept).
- `crossing`: the threshold sits just under the opening balance and the cap is huge, so a hold
  crosses it and buys pack-50k about every 255 jobs (50,000 / 196): those holds leave the driver's
  path for the general one and buy in their transaction (see `max`).

Each round makes a fresh Enterprise org and sends `--jobs` one-shot jobs (196 cr each), rendering
each at once; it prints the median and p95 of each call in microseconds, per round and overall.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # a checkout put first on PYTHONPATH wins (the baseline)

from support.servers import PostgresCluster, sqlite_url  # noqa: E402

from act3_server import db, migrate  # noqa: E402
from act3_server.ledger import Actor, Ledger  # noqa: E402

SHOT = {"name": "bench", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 196 cr


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def run(url: str, jobs: int, rounds: int, mode: str) -> None:
    engine = db.make_engine(url, pool_size=5)
    migrate.upgrade(engine)
    ledger = Ledger(engine)
    holds: list[float] = []
    charges: list[float] = []
    for r in range(rounds):
        org = ledger.create_org(f"bench-{uuid.uuid4().hex}", "enterprise", 1)
        owner = Actor(org, ledger.add_member(org, "Owner", "owner"), "Owner", "owner")
        if mode != "off":
            from act3_server import topup

            below = 5_000_000 - 1 if mode == "crossing" else 1  # the first hold crosses it
            topup.write(ledger, owner, True, below, "pack-50k", 10**15)
        h: list[float] = []
        c: list[float] = []
        for _ in range(jobs):
            t0 = time.perf_counter()
            ledger.create_job(owner, "bench", [SHOT], uuid.uuid4().hex)
            t1 = time.perf_counter()
            claim = ledger.claim_next_shot("bench")
            assert claim is not None and ledger.complete_shot(claim)
            t2 = time.perf_counter()
            h.append((t1 - t0) * 1e6)
            c.append((t2 - t1) * 1e6)
        print(
            f"  round {r + 1}: hold p50 {statistics.median(h):7.0f} us p95 {pct(h, 0.95):7.0f} max {max(h):7.0f}"
            f" | claim+charge p50 {statistics.median(c):7.0f} us p95 {pct(c, 0.95):7.0f}"
        )
        holds += h
        charges += c
    print(
        f"overall: hold p50 {statistics.median(holds):.0f} us p95 {pct(holds, 0.95):.0f}"
        f" | claim+charge p50 {statistics.median(charges):.0f} us p95 {pct(charges, 0.95):.0f}"
    )
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", choices=["off", "on", "crossing"], default="off")
    args = ap.parse_args()
    print(f"{args.backend}, mode {args.mode}, {args.rounds} x {args.jobs} jobs")
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            run(sqlite_url(tmp), args.jobs, args.rounds, args.mode)
    else:
        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            run(url, args.jobs, args.rounds, args.mode)
        finally:
            cluster.drop_database(url)


if __name__ == "__main__":
    main()

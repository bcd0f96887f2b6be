#!/usr/bin/env python3
"""Where SQLite's one writer goes: the write lock's time per job, by kind of transaction, for the
service's ledger and for the raw replica, side by side in one run.

    .venv/bin/python scripts/bench_writer_lock.py [--clients 16] [--jobs-per-client 100] [--rounds 2]

On SQLite the charge path's throughput is bounded by the one write lock: in scripts/bench_service.py
both the service and the raw replica keep it busy for about the whole run, so their ratio is the
lock time each spends per job (docs/benchmarks.md, "Session 10"). This runs the two in-process
loads of bench_service.py (`ledger_run`: `Ledger.create_job` from N client threads, claim and
charge from 4 runner threads; `raw_run`: the same writes on sqlite3) on fresh orgs of one SQLite
file, in turn, `--rounds` times, and adds up how long the write lock is held (from the moment its
holder has it to its release) for each kind of transaction: holds, claims, charges. A figure that
moves much less than the jobs/s ratio does, so a change to what runs under the lock can be seen
on this shared, noisy machine. Every run checks the books as bench_service.py does.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_service as bench  # noqa: E402

from act3_server import db  # noqa: E402

# What a transaction is, by the function that opened it (the ledger's) or called RawDriver.tx (raw's).
LEDGER_KINDS = {"_hold_batch": "hold", "_hold": "hold", "_claim_fast": "claim", "_claim_once": "claim",
                "_charge_batch": "charge", "complete_shot": "charge", "complete_and_claim": "charge"}  # fmt: skip
RAW_KINDS = {"client": "hold", "claim": "claim", "runner": "charge"}

held: collections.defaultdict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
_mine = threading.local()


def _kind(kinds: dict[str, str], depth: int) -> str:
    frame = sys._getframe(depth)
    for _ in range(8):
        if frame is None:
            break
        if frame.f_code.co_name in kinds:
            return kinds[frame.f_code.co_name]
        frame = frame.f_back
    return "other"


def _count(kind: str, seconds: float) -> None:
    one = held[kind]
    one[0] += 1
    one[1] += seconds


def _take(kinds: dict[str, str], acquire: Any) -> None:
    """`acquire()` a lock, then start timing the hold for the transaction kind found in the stack
    (above the lock's own frame and the frame that took it)."""
    kind = _kind(kinds, 3)
    acquire()
    _mine.kind, _mine.t0 = kind, time.perf_counter()


def _give(release: Any) -> None:
    _count(_mine.kind, time.perf_counter() - _mine.t0)
    release()


class _TimedLock:
    """The raw replica's writer lock (`RawDriver.writer`), timing each hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        _take(RAW_KINDS, self._lock.acquire)

    def __exit__(self, *_exc: object) -> None:
        _give(self._lock.release)


def instrument() -> None:
    """Time the lock in WriterQueue (the ledger's) and RawDriver's writer lock (the raw replica's)."""
    acquire, release, raw_init = db.WriterQueue.acquire, db.WriterQueue.release, bench.RawDriver.__init__

    def timed_acquire(self: db.WriterQueue) -> None:
        _take(LEDGER_KINDS, lambda: acquire(self))

    def timed_release(self: db.WriterQueue) -> None:
        _give(lambda: release(self))

    def timed_raw(self: bench.RawDriver, url: str) -> None:
        raw_init(self, url)
        self.writer = _TimedLock()  # type: ignore[assignment]

    db.WriterQueue.acquire, db.WriterQueue.release = timed_acquire, timed_release  # type: ignore[method-assign]
    bench.RawDriver.__init__ = timed_raw  # type: ignore[method-assign]


def report(name: str, jobs_per_s: float, jobs: int) -> dict[str, float]:
    per_job = {k: 1000 * v[1] / jobs for k, v in held.items() if k in ("hold", "claim", "charge")}
    per_tx = {k: 1000 * v[1] / v[0] for k, v in held.items() if v[0]}
    cells = [f"{per_job.get(k, 0):.2f} ({per_tx.get(k, 0):.2f})" for k in ("hold", "claim", "charge")]
    total = sum(per_job.values())
    print(f"| {name} | {jobs_per_s:.0f} | " + " | ".join(cells) + f" | {total:.2f} |", flush=True)
    return {**per_job, "total": total}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--jobs-per-client", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    instrument()
    tmp = tempfile.mkdtemp(prefix="act3-lock-")
    try:
        url = bench.sqlite_url(tmp)
        jobs = args.clients * args.jobs_per_client
        print(f"SQLite, one org, {args.clients} clients x {args.jobs_per_client} jobs; ms of write lock a job "
              "(and a transaction):\n")  # fmt: skip
        print("| path | jobs/s | hold | claim | charge | all |")
        print("| --- | --- | --- | --- | --- | --- |")
        totals: dict[str, list[float]] = {"ledger": [], "raw": []}
        for r in range(args.rounds):
            for name, run in (("ledger", bench.ledger_run), ("raw", bench.raw_run)):
                orgs = bench.make_orgs(url, 1, f"{name}{r}")
                held.clear()
                rate, charged, _holds = run(url, orgs, args.clients, args.jobs_per_client)
                bench.check_books(url, orgs, charged)
                totals[name].append(report(f"{name}, round {r + 1}", rate, jobs)["total"])
        ratios = [raw / ledger for ledger, raw in zip(totals["ledger"], totals["raw"], strict=True)]
        print(f"\nraw's lock time a job over the ledger's, each round: {', '.join(f'{x:.0%}' for x in ratios)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What budgets and caps cost a hold: `Ledger.create_job` (one shot, in-process, one thread) on an
org without limits (the driver's hold) and on orgs with a project budget and a member cap (the
general hold, which sums the project's and the member's jobs under the account lock), with 0 and
with N earlier jobs in the project and by the member this period.

    .venv/bin/python scripts/bench_budgets.py [--jobs 300] [--earlier 5000] [--backend sqlite|postgres|both]

Prints the median and the 90th percentile per job, in milliseconds. Method and figures:
docs/benchmarks.md ("Budgets and caps").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from act3_server import db, migrate
from act3_server.ledger import Actor, Ledger

SHOT = {"name": "b", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 196 cr


def org(ledger: Ledger, name: str) -> tuple[Actor, Actor]:
    org_id = ledger.create_org(name, "enterprise", 1)
    owner = Actor(org_id, ledger.add_member(org_id, "Owner", "owner"), "Owner", "owner")
    editor = Actor(org_id, ledger.add_member(org_id, "Editor", "editor"), "Editor", "editor")
    return owner, editor


def timed(ledger: Ledger, editor: Actor, project: str | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        ledger.create_job(editor, "bench", [SHOT], None, project=project)
        out.append((time.perf_counter() - start) * 1000)
    return out


def run(url: str, label: str, jobs: int, earlier: int) -> None:
    engine = db.make_engine(url, pool_size=4)
    migrate.upgrade(engine)
    ledger = Ledger(engine)
    rows = []
    _o, editor = org(ledger, f"{label} none")
    rows.append(("no budget, no cap (driver hold)", timed(ledger, editor, "spot", jobs)))
    for before in (0, earlier):
        owner, editor = org(ledger, f"{label} limits {before}")
        ledger.budgets.put(owner, "spot", 10**12, "billing_period", "refuse")
        ledger.budgets.set_cap(owner, editor.member_id, 10**12)
        timed(ledger, editor, "spot", before)  # earlier jobs of the project and the member
        rows.append((f"budget + cap, {before:,} earlier jobs", timed(ledger, editor, "spot", jobs)))
    for what, ms in rows:
        q = statistics.quantiles(ms, n=10)
        print(f"{label:10} {what:36} median {statistics.median(ms):6.2f} ms  p90 {q[-1]:6.2f} ms")
    engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=300)
    ap.add_argument("--earlier", type=int, default=5_000)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    if args.backend in ("sqlite", "both"):
        run(f"sqlite:///{tempfile.mkdtemp()}/bench.db", "SQLite", args.jobs, args.earlier)
    if args.backend in ("postgres", "both"):
        from support.servers import PostgresCluster

        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            run(url, "PostgreSQL", args.jobs, args.earlier)
        finally:
            cluster.drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

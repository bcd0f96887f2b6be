#!/usr/bin/env python3
"""Benchmark the reference service: concurrent clients against a live `act3-server serve`.

    .venv/bin/python scripts/bench_service.py [--clients 16] [--jobs-per-client 40] [--wakes 30] [--backend sqlite|postgres|both]

For each backend (SQLite file, embedded PostgreSQL) it starts a real server, then measures
- POST /v1/jobs (one 196 cr shot each, its own Idempotency-Key) from N concurrent clients:
  throughput and p50/p95 latency;
- event wake-up latency: a long poll (`GET /v1/events?wait=10`) waiting while a purchase is made;
  the time from sending the purchase to the long poll's answer (p50/p95);
and asserts that nothing was overspent (the balance equals the allocation plus purchases minus the
charges, nothing stays held once the jobs are done, and every job was held exactly its estimate).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.servers import LiveServer, PostgresCluster, sqlite_url

SHOT = {"name": "bench", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 196 cr


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def bench_jobs(srv: LiveServer, clients: int, per_client: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    headers = {**srv.auth("enterprise", "editor")}

    def client() -> None:
        s = requests.Session()
        mine = []
        for _ in range(per_client):
            t0 = time.perf_counter()
            r = s.post(
                srv.url + "/jobs",
                json={"name": "bench", "shots": [SHOT]},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                timeout=60,
            )
            mine.append(time.perf_counter() - t0)
            assert r.status_code == 201, r.text
            assert r.json()["estimated_credits"] == 196
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


def check_no_overspend(srv: LiveServer, jobs: int, purchases: int) -> None:
    headers = srv.auth("enterprise", "owner")
    deadline = time.monotonic() + 120
    while True:
        c = requests.get(srv.url + "/account/credits", headers=headers, timeout=10).json()
        if c["held"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert c["held"] == 0, c
    expected = 5_000_000 + purchases * 50_000 - jobs * 196
    # Every job held and was charged exactly its 196 cr estimate; nothing more left the account.
    assert c["total"] == expected and c["available"] == expected, (c, expected)


def run(backend: str, url: str, args: argparse.Namespace) -> None:
    srv = LiveServer(database_url=url, render_speed=0.001)
    srv.start()
    try:
        jobs = bench_jobs(srv, args.clients, args.jobs_per_client)
        check_no_overspend(srv, jobs["requests"], 0)  # waits until every job has rendered
        wakes = bench_wakes(srv, args.wakes)
        check_no_overspend(srv, jobs["requests"], args.wakes)
    finally:
        srv.cleanup()
    print(
        f"| {backend} | {args.clients} | {jobs['requests']} | {jobs['throughput_rps']:.0f} | {jobs['p50_ms']:.1f} | "
        f"{jobs['p95_ms']:.1f} | {jobs['max_ms']:.0f} | {wakes['p50_ms']:.1f} | {wakes['p95_ms']:.1f} |",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--jobs-per-client", type=int, default=40)
    ap.add_argument("--wakes", type=int, default=30)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    print("| backend | clients | POST /v1/jobs | jobs/s | p50 ms | p95 ms | max ms | wake p50 ms | wake p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    if args.backend in ("sqlite", "both"):
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="act3-bench-")
        try:
            run("SQLite (WAL)", sqlite_url(tmp), args)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.backend in ("postgres", "both"):
        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            run("PostgreSQL 18", url, args)
        finally:
            cluster.drop_database(url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

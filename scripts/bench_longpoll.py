#!/usr/bin/env python3
"""Benchmark idle long polls: what 100 and 1,000 waiting `GET /v1/events` cost a serve process,
and how fast a purchase still reaches a waiting long poll.

    .venv/bin/python scripts/bench_longpoll.py [--sessions 0,100,1000] [--wait 10] [--window 20]
                                               [--wakes 40] [--backend sqlite|postgres|both]

For each backend it starts a real `act3-server serve` (init-demo first; 4 render threads, as
`serve` runs by default), then for each session count:

- opens that many idle sessions, each one keep-alive connection doing what the add-on's events
  thread does: `GET /v1/events?after=LAST&wait=W`, and again as soon as it answers (W = 10 s is the
  add-on's default). They are spread over two demo organisations in which nothing happens;
- once all are waiting, measures the CPU time (user + system, all threads) of the serve process
  (with, on SQLite, its render process) over `--window` seconds of wall time, as a percentage of
  one core;
- with them still waiting, makes `--wakes` purchases in a third organisation, each while one more
  long poll of that organisation waits, and times sending the purchase to that poll's answer.

With `--backend postgres` (or both) it also starts a second serve process on the same database and
times purchases made through the first while the poll waits on the second (LISTEN/NOTIFY).

The clients are plain asyncio sockets in this process (HTTP/1.1, keep-alive), so 1,000 sessions
cost little here; the machine's two cores are still shared with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.servers import LiveServer, PostgresCluster, sqlite_url

IDLE_PLANS = ("starter", "enterprise")  # nothing happens in these orgs
BUSY_PLAN = "pro"  # purchases are made here


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Conn:
    """One keep-alive HTTP/1.1 connection to the service."""

    def __init__(self, srv: LiveServer, key: str) -> None:
        self.srv = srv
        self.key = key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.srv.port)
        return self

    async def request(
        self, method: str, path: str, body: dict | None = None, idem: str | None = None
    ) -> tuple[int, dict]:
        assert self.reader is not None and self.writer is not None
        raw = json.dumps(body).encode() if body is not None else b""
        head = [
            f"{method} /v1{path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.srv.port}",
            f"Authorization: Bearer {self.key}",
            f"Content-Length: {len(raw)}",
        ]
        if body is not None:
            head.append("Content-Type: application/json")
        if idem:
            head.append(f"Idempotency-Key: {idem}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + raw)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the service closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length)
        return status, json.loads(data) if data else {}

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except Exception:
                pass


async def idle_session(
    srv: LiveServer,
    key: str,
    wait: float,
    ready: asyncio.Event,
    counts: dict[str, int],
    stop: asyncio.Event,
    offset: float,
) -> None:
    conn = await Conn(srv, key).open()
    try:
        _, first = await conn.request("GET", "/events")
        last = first["last_seq"]
        counts["ready"] += 1
        if counts["ready"] == counts["want"]:
            ready.set()
        # Sessions open at random times, so their polls are spread over the wait, not in step:
        # the first one waits only part of it.
        this_wait = offset
        while not stop.is_set():
            status, page = await conn.request("GET", f"/events?after={last}&wait={this_wait:.3f}")
            this_wait = wait
            assert status == 200, (status, page)
            counts["polls"] += 1
            counts["events"] += len(page["events"])
            last = page["last_seq"]
    finally:
        await conn.close()


async def measure_wakes(poll_srv: LiveServer, buy_srv: LiveServer, n: int) -> tuple[list[float], list[float]]:
    """Purchase through `buy_srv` while a long poll of the same org waits on `poll_srv`: the times
    from sending the purchase, and from its answer (its commit), to the poll's answer."""
    key = poll_srv.key(BUSY_PLAN, "owner")
    poller = await Conn(poll_srv, key).open()
    buyer = await Conn(buy_srv, key).open()
    took: list[float] = []
    after_answer: list[float] = []
    try:
        _, first = await poller.request("GET", "/events")
        last = first["last_seq"]
        for _ in range(n):
            poll = asyncio.create_task(poller.request("GET", f"/events?after={last}&wait=20"))
            await asyncio.sleep(0.15)  # the poll is waiting by now
            t0 = time.perf_counter()
            status, _body = await buyer.request("POST", "/purchases", {"pack_id": "pack-50k"}, idem=uuid.uuid4().hex)
            answered = time.perf_counter()
            assert status == 201, status
            status, page = await poll
            took.append(time.perf_counter() - t0)
            after_answer.append(time.perf_counter() - answered)
            assert status == 200 and any(e["type"] == "purchase.completed" for e in page["events"]), page
            last = page["last_seq"]
    finally:
        await poller.close()
        await buyer.close()
    return took, after_answer


async def run_level(
    srv: LiveServer, other: LiveServer | None, sessions: int, wait: float, window: float, wakes: int
) -> dict:
    proc = psutil.Process(srv.proc.pid)  # type: ignore[union-attr]
    stop = asyncio.Event()
    ready = asyncio.Event()
    counts = {"want": sessions, "ready": 0, "polls": 0, "events": 0}
    keys = [srv.key(IDLE_PLANS[i % len(IDLE_PLANS)], "viewer") for i in range(sessions)]
    rng = random.Random(sessions)
    tasks = []
    for i, key in enumerate(keys):
        offset = rng.uniform(0.01, wait)
        tasks.append(asyncio.create_task(idle_session(srv, key, wait, ready, counts, stop, offset)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # do not open 1,000 connections in one burst
    if sessions:
        await asyncio.wait_for(ready.wait(), 120)
    await asyncio.sleep(wait + 1)  # settle: every session has made its first short poll
    polls0 = counts["polls"]
    family = [proc, *proc.children(recursive=True)]  # on SQLite the serve process's render process too
    cpu0 = sum(sum(p.cpu_times()[:2]) for p in family)
    t0 = time.perf_counter()
    await asyncio.sleep(window)
    cpu = sum(sum(p.cpu_times()[:2]) for p in family) - cpu0
    elapsed = time.perf_counter() - t0
    polls = counts["polls"] - polls0
    result = {
        "sessions": sessions,
        "cpu_pct": 100 * cpu / elapsed,
        "polls_per_s": polls / elapsed,
        "idle_events": counts["events"],
        "threads": proc.num_threads(),
    }
    local, local_after = await measure_wakes(srv, srv, wakes)
    result["wake_p50_ms"] = 1000 * statistics.median(local)
    result["wake_p95_ms"] = 1000 * pct(local, 95)
    result["wake_max_ms"] = 1000 * max(local)
    result["wake_after_commit_p95_ms"] = 1000 * pct(local_after, 95)
    if other is not None:
        remote, remote_after = await measure_wakes(srv, other, wakes)
        result["xproc_p50_ms"] = 1000 * statistics.median(remote)
        result["xproc_p95_ms"] = 1000 * pct(remote, 95)
        result["xproc_max_ms"] = 1000 * max(remote)
        result["xproc_after_commit_p95_ms"] = 1000 * pct(remote_after, 95)
    stop.set()
    # Each idle session ends after its current poll answers (at most `wait` s).
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), wait + 15)
    bad = [t.exception() for t in tasks if t.exception() is not None]
    if bad:
        raise RuntimeError(f"{len(bad)} sessions failed, first: {bad[0]!r}")
    return result


def bench_backend(name: str, url: str, levels: list[int], wait: float, window: float, wakes: int) -> list[dict]:
    srv = LiveServer(database_url=url, dev_clock=False).start()
    other = None
    if name == "postgres":
        other = LiveServer(database_url=url, dev_clock=False)
        other.orgs = srv.orgs
        other.start()
    try:
        out = []
        for n in levels:
            r = asyncio.run(run_level(srv, other, n, wait, window, wakes))
            r["backend"] = name
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
            out.append(r)
        return out
    finally:
        srv.cleanup()
        if other is not None:
            other.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", default="0,100,1000", help="comma-separated idle session counts")
    ap.add_argument("--wait", type=float, default=10.0, help="each idle poll's wait= (the add-on asks for 10)")
    ap.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement per level")
    ap.add_argument("--wakes", type=int, default=40, help="purchases timed per level")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    levels = [int(x) for x in args.sessions.split(",") if x.strip()]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * max(levels, default=0) + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the server inherits it too

    results = []
    import tempfile

    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            results += bench_backend("sqlite", sqlite_url(tmp), levels, args.wait, args.window, args.wakes)
    if args.backend in ("postgres", "both"):
        cluster = PostgresCluster.shared()
        url = cluster.new_database()
        try:
            results += bench_backend("postgres", url, levels, args.wait, args.window, args.wakes)
        finally:
            cluster.drop_database(url)

    print()
    print(f"wait={args.wait:g} s; load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        "| backend | idle long polls | serve CPU (% of a core) | polls answered/s | wake p50 / p95 / max ms"
        " | p95 after the purchase's answer | other process p50 / p95 / max ms | p95 after the answer |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        xp = xa = "-"
        if "xproc_p50_ms" in r:
            xp = f"{r['xproc_p50_ms']:.0f} / {r['xproc_p95_ms']:.0f} / {r['xproc_max_ms']:.0f}"
            xa = f"{r['xproc_after_commit_p95_ms']:.0f}"
        print(
            f"| {r['backend']} | {r['sessions']:,} | {r['cpu_pct']:.1f} | {r['polls_per_s']:.0f} | "
            f"{r['wake_p50_ms']:.0f} / {r['wake_p95_ms']:.0f} / {r['wake_max_ms']:.0f} | "
            f"{r['wake_after_commit_p95_ms']:.0f} | {xp} | {xa} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

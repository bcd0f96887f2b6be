#!/usr/bin/env python3
"""Where a serve process's CPU goes under N clients doing `POST /v1/jobs` on one org.

    .venv/bin/python scripts/profile_serve.py [--backend sqlite|postgres] [--clients 16]
        [--jobs-per-client 40] [--top 25]

Starts one serve process (the same `build_service` + uvicorn + guarded httptools protocol as `act3-server
serve`, 4 render threads, render speed 0.001; the render threads in the serve process, as
`--no-render-process` has them, so the profile sees them too) with cProfile on every thread, timed by each thread's
own CPU clock (`time.thread_time`), so a thread waiting for the GIL, a lock or the database costs
nothing. N client threads in this process post one-shot jobs on one Enterprise org over keep-alive
connections; then the server is stopped and the profile is summed by thread (the event loop, the
request thread pool, the runner) and by the package that owns each function's own time.

cProfile's overhead is per Python call, so it inflates call-heavy code (FastAPI's dependency
solving, Starlette's middleware) more than C-heavy code (the drivers, json): read the shares as
an upper bound for the Python layers, and the throughput under profiling as much lower than without.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

SHOT = {"name": "bench", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 196 cr

# Function owner -> layer, first match on the file path wins.
LAYERS = (
    ("act3_server/keys.py", "act3 key check"),
    ("act3_server/ledger.py", "act3 ledger"),
    ("act3_server/db.py", "act3 ledger"),
    ("act3_server/runner.py", "act3 runner"),
    ("act3_server/events.py", "act3 events"),
    ("act3_server/longpoll.py", "act3 events"),
    ("act3_server/app.py", "act3 app (routes, BodyLimit)"),
    ("act3_server/server.py", "uvicorn + httptools (protocol)"),
    ("act3_credits/", "act3 pricing"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/psycopg", "driver"),
    ("sqlite3", "driver"),
    ("/fastapi/", "fastapi (routing, dependencies, validation, serialisation)"),
    ("/starlette/", "starlette (middleware, routing, responses)"),
    ("/pydantic", "pydantic"),
    ("/uvicorn/", "uvicorn + httptools (protocol)"),
    ("/httptools/", "uvicorn + httptools (protocol)"),
    ("/anyio/", "anyio (thread hand-off)"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("json", "json"),
    ("threading.py", "threading / queue"),
    ("queue.py", "threading / queue"),
    ("concurrent/futures", "threading / queue"),
    ("logging", "logging"),
)


def layer(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for part, label in LAYERS:
        if part in where:
            return label
    if filename == "~":  # a C function: name it by what it is
        for part, label in (
            ("sqlite3", "driver"),
            ("psycopg", "driver"),
            ("json", "json"),
            ("select", "asyncio event loop"),
        ):
            if part in name:
                return label
        return "builtins (C calls from the above)"
    return "other"


def thread_kind(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.startswith("act3-runner"):
        return "runner"
    if "AnyIO" in name or name.startswith(("asyncio", "act3-jobs", "act3-longpoll")):
        return "request threads"  # FastAPI's pool, and the fast paths' own (jobpath, longpoll)
    return "other threads"


# --- the serve process ---------------------------------------------------------------------------


def serve(url: str, port: int, out: str) -> None:
    import uvicorn

    from act3_server.server import build_service, guarded_protocol

    profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()

    def start_profiling(*_: Any) -> None:
        # The first profile event of a new thread: give it its own profiler on its own CPU clock.
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append((threading.current_thread().name, prof))
        prof.enable()

    service = build_service(url, render_speed=0.001, workers=4)
    threading.setprofile(start_profiling)
    main = cProfile.Profile(time.thread_time)
    profiles.append(("MainThread", main))
    config = uvicorn.Config(
        service.app,
        host="127.0.0.1",
        port=port,
        log_level="info",  # as `serve`: the access log is part of each request's cost
        access_log=True,
        timeout_graceful_shutdown=2,
        http=guarded_protocol(10.0, 30.0),
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    # uvicorn raises the signal it stopped on again once it is done, with the handler it found:
    # let that be a no-op, so the profiles below are written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    main.enable()
    try:
        server.run()
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        for _name, prof in profiles:
            prof.disable()
        by_kind: dict[str, list[cProfile.Profile]] = defaultdict(list)
        for name, prof in profiles:
            by_kind[thread_kind(name)].append(prof)
        for kind, profs in by_kind.items():
            profs[0].create_stats()
            stats = pstats.Stats(profs[0])
            for p in profs[1:]:
                p.create_stats()
                stats.add(p)
            stats.dump_stats(f"{out}.{kind.replace(' ', '_')}")


# --- the load and the report -------------------------------------------------------------------------


def report(out: str, jobs: int, top: int) -> None:
    grand = 0.0
    tables = {}
    for path in sorted(Path(out).parent.glob(Path(out).name + ".*")):
        kind = path.name.split(".")[-1].replace("_", " ")
        stats = pstats.Stats(str(path))
        layers: dict[str, float] = defaultdict(float)
        funcs = []
        inclusive = []
        for (filename, _line, name), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            layers[layer(filename, name)] += tt
            funcs.append((tt, f"{Path(filename).name}:{name}"))
            inclusive.append((ct, f"{filename.split('site-packages/')[-1]}:{name}"))
        total = sum(layers.values())
        grand += total
        tables[kind] = (total, layers, sorted(funcs, reverse=True)[:top], sorted(inclusive, reverse=True)[:top])
    print(f"CPU seconds in the serve process: {grand:.2f} ({1000 * grand / jobs:.2f} ms per job, profiled)")
    for kind, (total, layers, funcs, inclusive) in sorted(tables.items(), key=lambda kv: -kv[1][0]):
        print(
            f"\n## {kind}: {total:.2f} s ({100 * total / grand:.0f} % of the process, {1000 * total / jobs:.2f} ms/job)"
        )
        for name, tt in sorted(layers.items(), key=lambda kv: -kv[1]):
            if tt >= 0.005 * grand:
                print(f"  {100 * tt / grand:5.1f} %  {name}")
        print("  top functions (own time):")
        for tt, name in funcs[:top]:
            print(f"    {1000 * tt / jobs:6.3f} ms/job  {name}")
        print("  top functions (with what they call):")
        for ct, name in inclusive[:top]:
            print(f"    {1000 * ct / jobs:6.3f} ms/job  {name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--jobs-per-client", type=int, default=40)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--serve", nargs=3, metavar=("URL", "PORT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0

    import requests
    from support.servers import PostgresCluster, free_port, init_demo, sqlite_url

    tmp = tempfile.mkdtemp(prefix="act3-profile-")
    cluster = None
    if args.backend == "postgres":
        cluster = PostgresCluster.shared()
        url = cluster.new_database()
    else:
        url = sqlite_url(tmp)
    try:
        orgs = init_demo(url)
        key = next(o["keys"]["editor"] for o in orgs["orgs"] if o["plan"] == "enterprise")
        port = free_port()
        out = str(Path(tmp) / "prof")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, str(port), out],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/openapi.json", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        latencies: list[float] = []

        def client() -> None:
            s = requests.Session()
            for _ in range(args.jobs_per_client):
                t0 = time.perf_counter()
                r = s.post(
                    base + "/v1/jobs",
                    json={"name": "bench", "shots": [SHOT]},
                    headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
                    timeout=60,
                )
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 201, r.text

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        time.sleep(1.0)  # let the runner finish charging what is left
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        jobs = len(latencies)
        latencies.sort()
        print(
            f"{args.backend}: {jobs} POST /v1/jobs from {args.clients} clients in {wall:.1f} s under cProfile "
            f"({jobs / wall:.0f}/s, p50 {1000 * latencies[jobs // 2]:.0f} ms); load average {os.getloadavg()[0]:.1f}"
        )
        report(out, jobs, args.top)
    finally:
        if cluster is not None:
            cluster.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

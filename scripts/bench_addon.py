"""Benchmarks of the add-on's main-thread costs, inside the real (headless) Blender module.

    .venv/bin/python scripts/bench_addon.py            # prints a Markdown table

- header draw: `layouts.draw_header` with the state cached (what the top bar runs every redraw);
- timer beat: `timers.tick()` when nothing changed, and when a charge event arrives;
- main thread while the service hangs (accepts TCP, never answers): the longest timer beat and the
  longest Refresh / Buy Credits operator call over a few seconds;
- charge to top bar: a purchase made by another client, until the top-bar text changes (the
  worker's long poll, drained by the timer beat every 10 ms here; Blender's own beat is 0.1 s).
Figures go to docs/benchmarks.md by hand, with the machine they were taken on.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import blender  # noqa: E402
from support.faults import FaultServer  # noqa: E402
from support.layout import RecordingLayout  # noqa: E402
from support.servers import LiveServer, sqlite_url  # noqa: E402


def per_call_us(fn, seconds: float = 1.0) -> tuple[float, int]:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - start) / n * 1e6, n


class NullLayout:
    """The cheapest layout possible, so the figure is the draw code's own cost."""

    alert = False

    def row(self, **_):
        return self

    def operator(self, *_a, **_k):
        return None


def main() -> None:
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="act3-bench-"))
    server = LiveServer(database_url=sqlite_url(workdir), workdir=workdir).start()
    owner = server.key("pro", "owner")
    os.environ["ACT3_API_URL"] = server.url
    os.environ["ACT3_API_KEY"] = owner
    bpy = blender.import_bpy()
    addon = blender.install_extension()
    mod = lambda name: importlib.import_module(f"{addon.__name__}.{name}")  # noqa: E731
    api, layouts, timers, session, prefs = (mod(n) for n in ("api", "layouts", "timers", "session", "prefs"))
    assert api.refresh(wait=15)
    state = session.state()
    rows: list[tuple[str, str]] = []

    us, n = per_call_us(lambda: layouts.draw_header(NullLayout(), state, prefs.THRESHOLDS))
    rows.append(("header draw, cached state (null layout)", f"{us:.1f} µs per draw ({n:,} draws)"))
    us, n = per_call_us(lambda: layouts.draw_header(RecordingLayout(), state, prefs.THRESHOLDS))
    rows.append(("header draw, recording layout", f"{us:.1f} µs per draw ({n:,} draws)"))
    us, n = per_call_us(timers.tick, 0.5)
    rows.append(("timer beat, nothing new", f"{us:.1f} µs per beat"))

    # Charge to top bar: another client buys; the top bar's text changes after the long poll answers.
    import requests

    latencies, beats = [], []
    for i in range(20):
        before = api.header_text()
        t0 = time.perf_counter()
        r = requests.post(
            f"{server.url}/purchases",
            json={"pack_id": "pack-50k"},
            headers={"Authorization": f"Bearer {owner}", "Idempotency-Key": f"bench-{uuid.uuid4()}"},
            timeout=10,
        )
        r.raise_for_status()
        while api.header_text() == before:
            b0 = time.perf_counter()
            timers.tick()
            beats.append(time.perf_counter() - b0)
            time.sleep(0.01)
            if time.perf_counter() - t0 > 5:
                raise SystemExit(f"purchase {i} never reached the top bar")
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    rows.append(
        (
            "purchase elsewhere → top bar text (20 purchases)",
            f"p50 {statistics.median(latencies) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms",
        )
    )
    rows.append(("timer beat while events arrive", f"max {max(beats) * 1e6:.0f} µs"))

    # The service hangs: the main thread must never wait for it.
    with FaultServer("hang") as hung:
        os.environ["ACT3_API_URL"] = hung.url
        session.reconfigure()
        worst_tick = worst_op = 0.0
        end = time.perf_counter() + 4
        while time.perf_counter() < end:
            t = time.perf_counter()
            timers.tick()
            worst_tick = max(worst_tick, time.perf_counter() - t)
            t = time.perf_counter()
            bpy.ops.act3.refresh()
            bpy.ops.act3.buy_credits(pack_id="pack-50k")
            worst_op = max(worst_op, time.perf_counter() - t)
            time.sleep(0.05)
        rows.append(("service hung: longest timer beat (4 s)", f"{worst_tick * 1e3:.2f} ms"))
        rows.append(("service hung: longest Refresh + Buy operator calls", f"{worst_op * 1e3:.2f} ms"))
        rows.append(("service hung: top bar reads", f"{api.header_text()!r}, stale={api.credits().stale}"))
        os.environ["ACT3_API_URL"] = server.url
        session.reconfigure()

    blender.disable_extension()
    server.stop()
    print(f"Blender {bpy.app.version_string}, Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| measure | figure |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()

"""Benchmarks of the add-on's main-thread costs, inside the real (headless) Blender module.

    .venv/bin/python scripts/bench_addon.py                        # everything, as Markdown tables
    .venv/bin/python scripts/bench_addon.py --only speed           # the Cost Estimate and the cold enable
    .venv/bin/python scripts/bench_addon.py --only speed --baseline REV   # ... next to a git revision's

Speed (each figure the median of several runs; with --baseline the two trees' runs alternate):
- Cost Estimate: `core.shots.estimate` of 1,000 and 10,000 shots of one 24 fps scene (12-360 frames,
  engines and tiers mixed) with the cached rate card (`RateCard.from_json`, as the add-on keeps it),
  each run a new batch (so a first call), in a fresh process per tree; and the same shots asked again
  (new `Shot` objects with equal values, as a dialog redraw builds them);
- add-on enable: a fresh `.venv/bin/python` process imports bpy, points a user extension repository
  at the extension installed there, and times `addon_utils.enable` of it: with the bytecode Blender
  keeps next to an installed extension (every start after the first), with an API key set (so the
  worker threads start inside register), the first enable after an install (the bytecode the zip
  carries, scripts/build_extension.py), and with no bytecode at all (that bytecode removed: what a
  Blender of another Python version compiles; this environment sets PYTHONDONTWRITEBYTECODE, a
  Blender does not).

Main thread (a live act3-server on SQLite):
- header draw: `credits.draw.draw_header` with the state cached (what the top bar runs every redraw);
- timer beat: `timers.tick()` when nothing changed, and when a charge event arrives;
- main thread while the service hangs (accepts TCP, never answers): the longest timer beat and the
  longest Refresh / Buy Credits operator call over a few seconds;
- charge to top bar: a purchase made by another client, until the top-bar text changes (the
  worker's long poll, drained by the timer beat every 10 ms here; Blender's own beat is 0.1 s).
Figures go to docs/benchmarks.md by hand, with the machine they were taken on.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Only what a fresh Blender has: the enable children must not find `requests` already imported.
from support import blender  # noqa: E402


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


def main_thread() -> list[tuple[str, str]]:
    from support.faults import FaultServer
    from support.layout import RecordingLayout
    from support.servers import LiveServer, sqlite_url

    workdir = Path(tempfile.mkdtemp(prefix="act3-bench-"))
    server = LiveServer(database_url=sqlite_url(workdir), workdir=workdir).start()
    owner = server.key("pro", "owner")
    os.environ["ACT3_API_URL"] = server.url
    os.environ["ACT3_API_KEY"] = owner
    bpy = blender.import_bpy()
    addon = blender.install_extension()
    mod = lambda name: importlib.import_module(f"{addon.__name__}.{name}")  # noqa: E731
    api, credits_draw, timers, session, prefs = (mod(n) for n in ("api", "credits.draw", "timers", "session", "prefs"))
    assert api.refresh(wait=15)
    state = session.state()
    rows: list[tuple[str, str]] = []

    us, n = per_call_us(lambda: credits_draw.draw_header(NullLayout(), state, prefs.THRESHOLDS))
    rows.append(("header draw, cached state (null layout)", f"{us:.1f} µs per draw ({n:,} draws)"))
    us, n = per_call_us(lambda: credits_draw.draw_header(RecordingLayout(), state, prefs.THRESHOLDS))
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
    return rows


# ---------------------------------------------------------------------------------------- speed

ESTIMATE_SIZES = (1_000, 10_000)


def estimate_child(tree: str, runs: int) -> None:
    """In a fresh process: the estimate of `runs` new batches of each size, then one asked again."""
    sys.path.insert(0, tree)
    from act3_credits.core import pricing, shots

    assert Path(shots.__file__).is_relative_to(tree), shots.__file__
    card = pricing.RateCard.from_json(pricing.DEFAULT_RATE_CARD.to_json())  # the cached card
    account = shots.Account(plan="enterprise", role="owner", available=10**9)
    engines, tiers = [e.id for e in card.engines], [t.id for t in card.tiers]

    def batch(n: int, seed: int) -> list[Any]:
        rng = random.Random(seed)
        return [
            shots.Shot(
                f"sh{i:05d}", rng.choice(engines), rng.choice(tiers), shots.duration_s(1, rng.randint(12, 360), 24)
            )
            for i in range(n)
        ]

    out: dict[str, list[float]] = {}
    for n in ESTIMATE_SIZES:
        for run in range(runs):
            shot_list = batch(n, seed=run)
            t0 = time.perf_counter()
            shots.estimate(shot_list, card, account)
            out.setdefault(f"first {n}", []).append((time.perf_counter() - t0) * 1e3)
            again = batch(n, seed=run)  # equal shots, new objects: what a redraw builds
            t0 = time.perf_counter()
            shots.estimate(again, card, account)
            out.setdefault(f"again {n}", []).append((time.perf_counter() - t0) * 1e3)
    print(json.dumps(out))


def install_child(zip_path: str, ext_dir: str) -> None:
    bpy = blender.import_bpy()
    bpy.context.preferences.extensions.repos.new(
        name=blender.REPO_MODULE, module=blender.REPO_MODULE, custom_directory=ext_dir, source="USER"
    )
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo=blender.REPO_MODULE, enable_on_install=False
    )
    assert "FINISHED" in result, result


def enable_child(ext_dir: str) -> None:
    """In a fresh process with bpy imported: how long enabling the installed extension takes."""
    bpy = blender.import_bpy()
    import addon_utils

    bpy.context.preferences.extensions.repos.new(
        name=blender.REPO_MODULE, module=blender.REPO_MODULE, custom_directory=ext_dir, source="USER"
    )
    before = set(sys.modules)
    t0 = time.perf_counter()
    addon_utils.enable(blender.PACKAGE, default_set=True, handle_error=blender._raise)
    ms = (time.perf_counter() - t0) * 1e3
    loaded = sorted(set(sys.modules) - before)
    addon_utils.disable(blender.PACKAGE, default_set=True, handle_error=blender._raise)
    print(json.dumps({"ms": ms, "requests": "requests" in loaded, "modules": len(loaded)}))


def run_child(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False, cwd=ROOT
    )
    if result.returncode:
        raise SystemExit(f"{args[0]} failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def source_tree(rev: str | None) -> Path:
    """The working tree, or a revision's act3_credits and manifest extracted to a temporary folder."""
    if rev is None:
        return ROOT
    tree = Path(tempfile.mkdtemp(prefix="act3-bench-tree-"))
    archive = subprocess.run(
        ["git", "archive", rev, "act3_credits", "blender_manifest.toml"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def build_zip(tree: Path) -> Path:
    spec = importlib.util.spec_from_file_location("act3_build_extension", ROOT / "scripts" / "build_extension.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = tree  # build that tree's add-on
    return Path(module.build(Path(tempfile.mkdtemp(prefix="act3-bench-dist-"))))


def installed(zip_path: Path) -> str:
    ext_dir = tempfile.mkdtemp(prefix="act3-bench-extensions-")
    run_child_plain(["--install-child", str(zip_path), ext_dir])
    return ext_dir


def run_child_plain(args: list[str]) -> None:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    if result.returncode:
        raise SystemExit(f"{args[0]} failed:\n{result.stdout}{result.stderr}")


def median_text(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ms (min {min(values):.1f}, max {max(values):.1f}; {len(values)} runs)"


def speed(baseline: str | None, rounds: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Every temporary folder (trees, zips, installs, the children's Blender user folders) in one, removed after."""
    scratch = tempfile.mkdtemp(prefix="act3-bench-speed-")
    old_tmpdir = os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = scratch, scratch
    try:
        return measure_speed(baseline, rounds)
    finally:
        tempfile.tempdir = None
        if old_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_tmpdir
        shutil.rmtree(scratch, ignore_errors=True)


def measure_speed(baseline: str | None, rounds: int) -> tuple[list[str], list[tuple[str, ...]]]:
    trees = {"this tree": source_tree(None)}
    if baseline:
        trees[baseline] = source_tree(baseline)
    estimates: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    enables: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    requests_on_enable: dict[str, bool] = {}

    # Three installs of each tree: one keeps the bytecode Blender writes, one stays as installed (the
    # bytecode the zip carries, if any), and one has no bytecode at all.
    plain = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "ACT3_API_KEY")}
    plain["ACT3_API_URL"] = "http://127.0.0.1:9/v1"  # nothing listens: no network in these runs
    no_bytecode = dict(plain, PYTHONDONTWRITEBYTECODE="1")
    with_key = dict(plain, ACT3_API_KEY="act3_bench_" + "x" * 24)
    dirs = {}
    for name, tree in trees.items():
        zip_path = build_zip(tree)
        dirs[name] = (installed(zip_path), installed(zip_path), installed(zip_path))
        for cache in Path(dirs[name][2]).rglob("__pycache__"):
            shutil.rmtree(cache)
        run_child(["--enable-child", dirs[name][0]], env=plain)  # writes the bytecode, as Blender does

    for _ in range(rounds):  # interleaved: each round runs every variant of every tree once
        for name, tree in trees.items():
            for key, values in run_child(["--estimate-child", str(tree), "3"], env=plain).items():
                estimates[name].setdefault(key, []).extend(values)
            cached, as_installed, bare = dirs[name]
            for variant, ext_dir, env in (
                ("bytecode cached", cached, plain),
                ("with an API key", cached, with_key),
                ("as installed", as_installed, no_bytecode),
                ("no bytecode", bare, no_bytecode),
            ):
                answer = run_child(["--enable-child", ext_dir], env=env)
                enables[name].setdefault(variant, []).append(answer["ms"])
                if variant == "bytecode cached":
                    requests_on_enable[name] = answer["requests"]

    names = list(trees)
    header = ["measure", *names]
    rows: list[tuple[str, ...]] = []
    for n in ESTIMATE_SIZES:
        rows.append(
            (f"Cost Estimate, {n:,} shots, first call", *(median_text(estimates[t][f"first {n}"]) for t in names))
        )
    for n in ESTIMATE_SIZES:
        rows.append(
            (
                f"Cost Estimate, {n:,} shots, asked again (redraw)",
                *(median_text(estimates[t][f"again {n}"]) for t in names),
            )
        )
    for variant, label in (
        ("bytecode cached", "add-on enable, fresh process (bytecode cached, as every start after the first)"),
        ("with an API key", "add-on enable, fresh process, API key set (the worker threads start)"),
        ("as installed", "add-on enable, fresh process, first enable after install (bytecode from the zip)"),
        ("no bytecode", "add-on enable, fresh process, no bytecode at all (compiles every module)"),
    ):
        rows.append((label, *(median_text(enables[t][variant]) for t in names)))
    rows.append(("`requests` imported by enable", *("yes" if requests_on_enable[t] else "no" for t in names)))
    return header, rows


def print_table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("speed", "main-thread"))
    parser.add_argument("--baseline", help="a git revision to measure the speed figures of too, interleaved")
    parser.add_argument("--rounds", type=int, default=7, help="speed rounds (each runs every variant once)")
    parser.add_argument("--estimate-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--install-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--enable-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.estimate_child:
        return estimate_child(args.estimate_child[0], int(args.estimate_child[1]))
    if args.install_child:
        return install_child(*args.install_child)
    if args.enable_child:
        return enable_child(args.enable_child)

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    if args.only in (None, "speed"):
        print_table(*speed(args.baseline, args.rounds))
        print()
    if args.only in (None, "main-thread"):
        rows = main_thread()
        bpy = blender.import_bpy()
        print(f"Blender {bpy.app.version_string}\n")
        print_table(["measure", "figure"], rows)


if __name__ == "__main__":
    main()

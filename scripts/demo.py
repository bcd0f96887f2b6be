"""./scripts/demo: the ACT3 credits flow, printed as the artist would read it.

1. Start `act3-server` on a fresh SQLite database (dev clock, fast simulated renders) and seed the
   demo organisations.
2. Build the extension zip with Blender's own tool and install it into the headless Blender module
   through Blender's extension system, pointed at the local service.
3. Show the top bar and the Credits Detail panel; open a sample .blend with camera markers, make
   shots from them, show the Cost Estimate, run the batch and print the top bar after every shot,
   pause and resume it, buy a credit pack, print the transaction history, the usage of the
   billing period by tier and the runway at this week's pace.
4. Budgets on the work (`run_budgets`): a project budget refusing a batch, the batch deferred and
   started by the next refill, an auto top-up, and what Draft first then upgrade saved.

Panels are printed through the same recording layout the tests read (tests/support/layout.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"{BOLD}== {text}{RESET}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(workdir: Path, render_speed: float) -> tuple[subprocess.Popen[bytes], str, dict[str, Any]]:
    db = f"sqlite:///{workdir / 'act3-demo.db'}"
    exe = [sys.executable, "-m", "act3_server"]
    seeded = subprocess.run([*exe, "init-demo", "--database", db], check=True, capture_output=True, text=True)
    orgs = json.loads(seeded.stdout)
    port = free_port()
    log = open(workdir / "act3-server.log", "wb")
    proc = subprocess.Popen(
        [*exe, "serve", "--database", db, "--port", str(port), "--dev-clock", "--render-speed", str(render_speed)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    import requests

    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"act3-server did not start; see {workdir / 'act3-server.log'}")
            time.sleep(0.1)
    return proc, url, orgs


def _line_of(item: Any) -> Any:
    """The outermost split an item sits in (one line of the panel), or None."""
    node, found = item.node, None
    while node is not None:
        if node._kind == "split":
            found = node
        node = node._parent
    return found


def render(items: list[Any], indent: str = "  ") -> list[str]:
    """A recorded layout as lines of text: the cells of a split read 'label .... value'."""
    lines: list[str] = []
    cells: list[str] = []
    line_of: Any = None

    def flush() -> None:
        nonlocal cells
        if cells:
            lines.append(f"{indent}{cells[0]:<28}{' '.join(cells[1:]):>14}" if len(cells) > 1 else indent + cells[0])
        cells = []

    for item in items:
        text = item.text
        if item.kind == "progress":
            filled = round(20 * (item.factor or 0))
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {item.text}"
        elif item.kind == "operator":
            text = f"[ {item.text or item.operator} ]" if (item.text or "") != "" else ""
        elif item.kind == "prop":
            text = ""
        if not text:
            continue
        if item.alert:
            text = f"! {text}"
        group = _line_of(item)
        if group is None or group is not line_of:
            flush()
        line_of = group
        if group is not None:
            cells.append(text)
            continue
        lines.append(indent + text)
    flush()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render-speed", type=float, default=0.08, help="seconds of wall time per second of shot")
    parser.add_argument("--keep", action="store_true", help="keep the demo's database and log")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="act3-demo-"))
    heading("1. The credits service")
    proc, url, orgs = start_service(workdir, args.render_speed)
    pro = next(o for o in orgs["orgs"] if o["plan"] == "pro")
    say(f"  act3-server serve --database sqlite:///…/act3-demo.db  → {url}")
    names = ", ".join(f"{o['plan']} (id {o['id']})" for o in orgs["orgs"])
    say(f"  demo organisations: {names}")
    try:
        run_blender(url, pro["keys"]["owner"], workdir)
    finally:
        proc.terminate()
        proc.wait(10)
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"\n  kept {workdir}")


def run_blender(url: str, key: str, workdir: Path) -> None:
    # The add-on reads these when it starts (the environment overrides its preferences).
    os.environ["ACT3_API_URL"] = url
    os.environ["ACT3_API_KEY"] = key

    from support import blender
    from support.layout import RecordingLayout

    heading("2. The extension in Blender")
    bpy = blender.import_bpy()
    zip_path = blender.built_zip()
    say(f"  built and validated {zip_path.name} with Blender's extension tool")
    addon = blender.install_extension(zip_path)
    say(f"  installed into Blender {bpy.app.version_string} as {addon.__name__}")

    import importlib

    api = importlib.import_module(f"{addon.__name__}.api")
    credits_draw = importlib.import_module(f"{addon.__name__}.credits.draw")
    timers = importlib.import_module(f"{addon.__name__}.timers")
    session = importlib.import_module(f"{addon.__name__}.session")
    prefs_mod = importlib.import_module(f"{addon.__name__}.prefs")

    def tick_until(done, timeout: float = 30.0) -> None:
        # Headless Blender fires no timers: run the add-on's timer beat by hand, as Blender would.
        deadline = time.monotonic() + timeout
        while not done():
            timers.tick()
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for the service")
            time.sleep(0.02)

    fresh = api.refresh(wait=15)
    say(f"  synced with the service: {'yes' if fresh else 'no'}")

    def show_panels(title: str) -> None:
        state = session.state()
        thresholds = prefs_mod.THRESHOLDS
        say(f"  top bar: {BOLD}{api.header_text()}{RESET}")
        layout = RecordingLayout()
        credits_draw.draw_credits(layout, state, thresholds, bool(bpy.app.online_access))
        say(f"  {DIM}{title}{RESET}")
        for line in render(layout.items, "    "):
            say(line)

    heading("3. Top bar and Credits Detail panel")
    show_panels("Credits Detail (3D View sidebar, ACT3 tab)")

    run_batch(bpy, api, session, timers, tick_until, workdir, addon.__name__)

    heading("5. Buy Credits")
    packs = api.credit_packs()
    for p in packs:
        say(f"  pack {p['id']}: {p['credits']:,} cr for {p['price']}")
    before = api.header_text()
    result = bpy.ops.act3.buy_credits(pack_id="pack-250k")
    tick_until(lambda: api.header_text() != before and (session.state().last_message or "").startswith("Bought"))
    say(f"  bought 250,000 cr ({result}): top bar {before} → {BOLD}{api.header_text()}{RESET}")
    show_panels("Credits Detail after the purchase")

    heading("6. Transaction History")
    page = api.history(limit=20)
    for row in page["items"]:
        say(f"  {row['at'][:19].replace('T', ' ')}  {str(row['shot'] or row['kind']):<16} {str(row['tier'] or ''):<9} {row['credits']:>+10,}")
    heading("7. Where the credits went, and how long they last")
    cli = importlib.import_module(f"{addon.__name__}.core.cli")
    for line in cli.usage_table(api.usage(group_by="tier")).splitlines():
        say(f"  {line}")
    say()
    for line in cli.forecast_text(api.forecast()).splitlines():
        say(f"  {line}")
    heading("8. The billing date arrives (the service's dev clock moves forward)")
    import requests

    billing_date = api.credits().billing_date
    moved = requests.post(
        f"{url}/dev/clock", json={"now": f"{billing_date}T00:00:05Z"}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    moved.raise_for_status()
    before_refill = api.credits()
    tick_until(lambda: api.credits().billing_date != billing_date)
    after = api.credits()
    say(f"  {billing_date}: the monthly allocation refills to {after.monthly_allocation:,} cr; the unused"
        f" {before_refill.monthly_remaining:,} cr roll into the bank (cap {after.rollover_cap:,} cr)")
    show_panels("Credits Detail after the refill")
    for row in api.history(limit=3, kind=None)["items"]:
        say(f"  history: {row['kind']:<9} {row['credits']:>+10,}  (monthly {row['monthly_delta']:+,}, bank {row['bank_delta']:+,})")

    run_budgets(bpy, api, session, tick_until, url, key, addon.__name__)

    blender.disable_extension()
    say("\n  extension disabled: classes, header, timer and worker thread removed.")


def run_batch(bpy: Any, api: Any, session: Any, timers: Any, tick_until: Any, workdir: Path, package: str) -> None:
    import importlib

    from support.layout import RecordingLayout

    heading("4. A batch from a sample .blend with camera markers")
    sample = workdir / "seq010.blend"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_blend.py"), str(sample)], check=True,
                   capture_output=True)
    bpy.ops.wm.open_mainfile(filepath=str(sample))
    scene = bpy.context.scene
    say(f"  opened {sample.name}: {len(scene.timeline_markers)} camera markers at {scene.render.fps} fps")
    bpy.ops.act3.shots_from_markers()
    for i, shot in enumerate(scene.act3_shots):
        shot.engine = ("veo-3.1-fast", "seedance-2.0", "wan-2.6", "grok-imagine")[i % 4]
        shot.tier = "draft" if i % 3 else "standard"
        shot.tags = "hero" if i < 10 else "bg"
    say(f"  act3.shots_from_markers → {len(scene.act3_shots)} shots, 10 tagged 'hero'")

    draw = importlib.import_module(f"{package}.generate.draw")
    shots_core = importlib.import_module(f"{package}.core.shots")
    gprops = importlib.import_module(f"{package}.generate.props")
    chosen = gprops.tagged_shots(scene, "hero")
    est = shots_core.estimate(chosen, gprops.rate_card(), importlib.import_module(f"{package}.generate.ops").account())
    layout = RecordingLayout()
    draw.draw_estimate_batch(layout, est, gprops.rate_card(), rows=[], fitted_out=[False] * len(est.lines), synced=True)
    say("  Cost Estimate dialog (Generate Batch, tag 'hero'):")
    say(f"    {'shot':<8} {'engine':<14} {'tier':<9} {'duration':>9} {'credits':>10}")
    for line in est.lines:
        say(f"    {line.name:<8} {line.shot.engine:<14} {line.shot.tier:<9} {line.duration_s:>7} s {line.credits:>10,}")
    say(f"    {'total':<43} {est.total:>10,} cr")
    say(f"    available {est.available:,} cr → after {est.balance_after:,} cr")
    say(f"    {layout.find('Draft first').text}")
    service = api.estimate([{"name": s.name, "engine": s.engine, "tier": s.tier, "duration_s": s.duration_s} for s in chosen])
    say(f"  the service's estimate agrees: {service['total']:,} cr")

    before_jobs = set(session.state().jobs)
    bpy.ops.act3.generate_batch(tag="hero")
    tick_until(lambda: set(session.state().jobs) - before_jobs)
    job_id = max(set(session.state().jobs) - before_jobs)
    say(f"  Confirm → job {job_id} queued; the whole estimate is held")

    seen: set[int] = set()
    paused_once = False

    def progress() -> bool:
        job = session.state().jobs.get(job_id)  # typed (core/contract.py): a Job and its JobShots
        if job is None:
            return False
        for shot in job.shots:
            if shot.status in ("completed", "failed") and shot.index not in seen:
                seen.add(shot.index)
                cost = f"−{shot.credits:,} cr" if shot.status == "completed" else "failed, not charged"
                say(f"    {shot.name:<8} {shot.tier:<9} {cost:>14}   top bar: {BOLD}{api.header_text()}{RESET}")
        return job.status in ("completed", "failed", "canceled") or (not paused_once and len(seen) >= 4)

    tick_until(progress, 120)
    paused_once = True
    bpy.ops.act3.job_pause(job_id=job_id)
    say("  ⏸ Pause: the shot rendering now finishes and is charged; nothing more starts")

    def settled() -> bool:
        job = session.state().jobs[job_id]
        progress()
        return job.status == "paused" and not any(s.status == "processing" for s in job.shots)

    tick_until(settled)
    at_pause = len(seen)
    time.sleep(1.5)  # many shots' worth of render time
    timers.tick()
    progress()
    say(f"  paused after {at_pause} shots; 1.5 s later still {len(seen)}; top bar {api.header_text()}")
    bpy.ops.act3.job_resume(job_id=job_id)
    say("  ▶ resumed")
    tick_until(progress, 120)
    tick_until(lambda: session.state().credits.held == 0)
    job = api.job(job_id)
    say(f"  job {job['status']}: charged {job['charged_credits']:,} cr of {job['estimated_credits']:,} estimated;"
        f" nothing held now ({job['held']} cr); top bar {BOLD}{api.header_text()}{RESET}")


def run_budgets(bpy: Any, api: Any, session: Any, tick_until: Any, url: str, key: str, package: str) -> None:
    """Issue 11: a project budget refusing a batch, the batch deferred to the next refill and started
    by it, Draft first then upgrade (and what it saved), and an auto top-up."""
    import importlib

    import requests
    from support.layout import RecordingLayout

    draw = importlib.import_module(f"{package}.generate.draw")
    gops = importlib.import_module(f"{package}.generate.ops")
    gprops = importlib.import_module(f"{package}.generate.props")
    shots_core = importlib.import_module(f"{package}.core.shots")
    limits = importlib.import_module(f"{package}.core.limits")
    auth = {"Authorization": f"Bearer {key}"}
    worker = session.worker_or_none()
    scene = bpy.context.scene

    def shots(tier: str) -> None:
        scene.render.fps, scene.render.fps_base = 24, 1.0
        scene.act3_shots.clear()
        for i in range(3):
            item = scene.act3_shots.add()
            item.name, item.frame_start, item.frame_end = f"sh{(i + 1) * 10:03d}", 1 + 192 * i, 192 * (i + 1)
            item.engine, item.tier = "veo-3.1", tier

    def dialog(chosen: list[Any], saving: Any = None) -> RecordingLayout:
        est = shots_core.estimate(chosen, gprops.rate_card(), gops.account())
        layout = RecordingLayout()
        draw.draw_estimate_batch(
            layout,
            est,
            gprops.rate_card(),
            limits=gops.limits_for(scene, [ln.credits for ln in est.sent]),
            billing_date=session.state().credits.billing_date,
            saving=saving,
        )
        return layout

    def show(layout: RecordingLayout, *starts: str) -> None:
        for line in render(layout.items, "    "):
            if line.strip().lstrip("! ").startswith(starts):
                say(line)

    heading("9. A project budget refuses a batch; Defer sends it to the next refill")
    scene.act3_project = "harbour-spot"
    budget = {"credits": 5_000, "period": "billing_period", "action": "refuse"}
    requests.put(f"{url}/budgets/harbour-spot", json=budget, headers=auth, timeout=10).raise_for_status()
    worker.request("budgets")
    tick_until(lambda: "harbour-spot" in limits.budgets_by_project(session.state().budgets))
    shots("standard")
    say("  the owner sets a refuse budget of 5,000 cr on project harbour-spot; 3 × Veo 3.1 Standard 8 s = 6,240 cr")
    layout = dialog(gprops.tagged_shots(scene, ""))
    say("  Cost Estimate:")
    show(layout, "Project", "Budget", "Your cap", "Defer", "[ Defer", "Confirm", "Over")
    try:
        bpy.ops.act3.generate_batch()
    except RuntimeError as exc:
        say(f"  Confirm → {str(exc).strip()}")
    deferred = layout.operator_button("act3.defer_shots")
    bpy.ops.act3.defer_shots(shots_json=deferred.properties.shots_json, job_name="harbour-spot coverage")
    tick_until(lambda: any(j.status == "scheduled" for j in session.state().jobs.values()))
    job_id = max(i for i, j in session.state().jobs.items() if j.status == "scheduled")
    queue = RecordingLayout()
    draw.draw_render_queue(queue, session.state(), gprops.rate_card())
    summary = next(t for t in queue.texts() if t.startswith("Scheduled"))
    say(f"  {deferred.text} → job {job_id}, Render Queue: {summary}; held now: {api.job(job_id)['held']} cr")

    heading("10. Auto top-up, and Draft first then upgrade")
    available = session.state().credits.available
    bpy.ops.act3.set_auto_top_up(enabled=True, below=available - 1_000, pack_id="pack-50k", max_dollars=200)
    say(f"  the owner turns auto top-up on: below {available - 1_000:,} cr buy pack-50k, at most $200.00 a period")
    scene.act3_project = "harbour-drafts"
    shots("draft")
    bpy.ops.act3.generate_batch()
    tick_until(lambda: all(it.last_cost for it in scene.act3_shots), 120)
    say(f"  3 shots at Draft: {', '.join(f'{it.name} {it.last_cost:,} cr' for it in scene.act3_shots)}")
    tick_until(lambda: session.state().credits.available > available)
    history = requests.get(f"{url}/account/credits/history", params={"kind": "purchase"}, headers=auth, timeout=10)
    bought = [r for r in history.json()["items"] if r.get("auto")]
    say(
        f"  the 3,120 cr hold crossed the line: auto top-up bought {bought[0]['credits']:,} cr "
        f"(history: purchase, auto); available {session.state().credits.available:,} cr"
    )
    scene.act3_shots[0].approved = scene.act3_shots[2].approved = True
    saving = limits.draft_first_saving(gprops.rate_card(), gprops.drafted_shots(scene))
    say("  sh010 and sh030 approved; Upgrade Approved (final tier High) → Cost Estimate:")
    show(dialog(gprops.approved_shots(scene), saving), "Draft first", "All at", "Total")
    bpy.ops.act3.upgrade_approved()
    tick_until(lambda: scene.act3_shots[2].last_tier == "high", 120)
    say("  after the upgrade: " + ", ".join(f"{it.name} {it.last_tier} {it.last_cost:,} cr" for it in scene.act3_shots))

    heading("11. The next refill starts the deferred batch")
    budget["credits"] = 10_000  # next month's budget, raised by the owner
    requests.put(f"{url}/budgets/harbour-spot", json=budget, headers=auth, timeout=10).raise_for_status()
    billing_date = api.credits().billing_date
    requests.post(f"{url}/dev/clock", json={"now": f"{billing_date}T00:00:05Z"}, headers=auth, timeout=10)
    tick_until(lambda: api.job(job_id)["status"] == "completed", 120)
    job = api.job(job_id)
    say(
        f"  {billing_date}: the refill holds and starts job {job_id}; it renders its {len(job['shots'])} shots,"
        f" charged {job['charged_credits']:,} cr"
    )


if __name__ == "__main__":
    main()

"""A serve process killed mid-shot: another process renders the shot within the lease bound, and
the shot is charged exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import requests
from sqlalchemy import func, select
from support.servers import LiveServer

from act3_server import db
from act3_server.runner import LEASE_S

RECOVERY_BOUND_S = 3.0


def _row_id(engine, org_id: int, number: int) -> int:
    """The jobs row of the API's job id (jobs are numbered per organisation)."""
    with db.read_tx(engine) as conn:
        return int(
            conn.execute(
                select(db.jobs.c.id).where(db.jobs.c.org_id == org_id, db.jobs.c.number == number)
            ).scalar_one()
        )


def _lease(engine, job_id: int) -> tuple[str | None, int | None, str]:
    with db.read_tx(engine) as conn:
        row = conn.execute(
            select(db.jobs.c.lease_owner, db.jobs.c.current_shot_id, db.jobs.c.status).where(db.jobs.c.id == job_id)
        ).one()
    return row.lease_owner, row.current_shot_id, row.status


def test_a_shot_leased_by_a_killed_process_is_rendered_by_another_within_three_seconds(
    live_server_factory, database_url: str
) -> None:
    # 8 s shots at 0.25: each renders for 2 s, long enough to kill its process in the middle.
    a = live_server_factory(database_url=database_url, render_speed=0.25)
    b = live_server_factory(database_url=database_url, render_speed=0.25)
    b.orgs = a.orgs
    engine = db.make_engine(database_url, pool_size=2)
    try:
        shot = {"name": "sh010", "engine": "veo-3.1", "tier": "standard", "duration_s": 8}  # 2,080 cr
        r = a.post("/jobs", {"name": "kill", "shots": [shot]}, role="editor", idem=uuid.uuid4().hex)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        row_id = _row_id(engine, a.org_id("pro"), job_id)

        deadline = time.monotonic() + 10
        while (lease := _lease(engine, row_id))[0] is None:
            assert time.monotonic() < deadline, "nobody claimed the shot"
            time.sleep(0.02)
        owner = lease[0]
        assert owner is not None
        pids = {srv.proc.pid: srv for srv in (a, b) if srv.proc is not None}
        victim = pids[int(owner.split(":")[1])]
        survivor = b if victim is a else a
        time.sleep(0.5)  # mid-shot, its lease renewed at least once
        assert _lease(engine, row_id)[0] == owner

        victim.stop(sig=signal.SIGKILL)
        killed = time.monotonic()
        while (lease := _lease(engine, row_id))[0] in (owner, None) and lease[2] != "completed":
            assert time.monotonic() - killed < RECOVERY_BOUND_S + 2, "the shot was never taken over"
            time.sleep(0.02)
        taken_over = time.monotonic() - killed
        assert taken_over <= RECOVERY_BOUND_S, f"taken over after {taken_over:.2f} s (lease {LEASE_S} s)"

        deadline = time.monotonic() + 20
        while (job := survivor.get(f"/jobs/{job_id}").json())["status"] != "completed":
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        assert (job["charged_credits"], job["held"]) == (2_080, 0)
        assert job["shots"][0]["status"] == "completed"

        # Charged exactly once: one render item, one charge in the journal, the balance down once.
        renders = survivor.get("/account/credits/history?kind=render").json()["items"]
        assert [(i["job_id"], i["credits"]) for i in renders] == [(job_id, -2_080)]
        with db.read_tx(engine) as conn:
            attempts = conn.execute(select(db.shots.c.attempts).where(db.shots.c.job_id == row_id)).scalar_one()
            charges = conn.execute(
                select(func.count())
                .select_from(db.transactions)
                .where(db.transactions.c.org_id == a.org_id("pro"), db.transactions.c.kind == "render")
            ).scalar_one()
        assert attempts == 2 and charges == 1
        credits = survivor.get("/account/credits").json()
        assert (credits["total"], credits["held"]) == (875_000 - 2_080, 0)
    finally:
        engine.dispose()


def test_a_live_lease_is_renewed_and_never_taken_over(live_server_factory) -> None:
    """Shots longer than the lease render once, by the process that claimed them."""
    a: LiveServer = live_server_factory(render_speed=0.6)  # 8 s shots take 4.8 s: two leases and more
    b: LiveServer = live_server_factory(database_url=a.database_url, render_speed=0.6)
    b.orgs = a.orgs
    shot = {"name": "long", "engine": "veo-3.1", "tier": "standard", "duration_s": 8}
    job_id = a.post("/jobs", {"name": "long", "shots": [shot]}, role="editor", idem=uuid.uuid4().hex).json()["id"]
    deadline = time.monotonic() + 30
    while (job := a.get(f"/jobs/{job_id}").json())["status"] != "completed":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["charged_credits"] == 2_080
    engine = db.make_engine(a.database_url, pool_size=1)
    try:
        row_id = _row_id(engine, a.org_id("pro"), job_id)
        with db.read_tx(engine) as conn:
            assert conn.execute(select(db.shots.c.attempts).where(db.shots.c.job_id == row_id)).scalar_one() == 1
    finally:
        engine.dispose()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _rendered(srv: LiveServer, name: str) -> dict:
    shot = {"name": name, "engine": "veo-3.1", "tier": "draft", "duration_s": 8}  # 1,040 cr on Pro
    r = srv.post("/jobs", {"name": name, "shots": [shot]}, role="editor", idem=uuid.uuid4().hex)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 20
    while (job := srv.get(f"/jobs/{r.json()['id']}").json())["status"] != "completed":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_on_sqlite_shots_render_in_a_process_of_their_own_and_a_dead_one_is_replaced(
    live_server_factory,
) -> None:
    """`serve` on SQLite renders in a render process beside the serve process (renderproc.py): a
    render process killed outright is replaced, so the next job still renders and is charged
    once; a serve process stopped with SIGTERM alone stops its render process too."""
    srv: LiveServer = live_server_factory(render_speed=0.0)
    assert srv.proc is not None
    serve_pid = srv.proc.pid
    (render_pid,) = _children(serve_pid)
    job = _rendered(srv, "sh010")
    assert (job["charged_credits"], job["held"]) == (1_040, 0)

    os.kill(render_pid, signal.SIGKILL)
    job = _rendered(srv, "sh020")  # rendered by the render process started in its place
    assert (job["charged_credits"], job["held"]) == (1_040, 0)
    (replacement,) = _children(serve_pid)
    assert replacement != render_pid
    assert f"render process {render_pid} exited (-9); starting another" in srv.read_log()
    credits = srv.get("/account/credits").json()
    assert (credits["total"], credits["held"]) == (875_000 - 2 * 1_040, 0)

    os.kill(serve_pid, signal.SIGTERM)  # the serve process only, not its process group
    srv.proc.wait(15)  # uvicorn stops gracefully, then ends by the signal it caught
    assert "Application shutdown complete" in srv.read_log()
    _gone_within(replacement, 10)


def _gone_within(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        assert time.monotonic() < deadline, "the render process outlived its serve process"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_stopping_the_service_s_process_group_stops_its_render_process_once(live_server_factory) -> None:
    """SIGTERM to the whole process group (a terminal, a process manager, systemd): the render
    process leaves its stop to the serve process, so no render process is started again while the
    service stops, and none outlives it."""
    srv: LiveServer = live_server_factory(render_speed=0.0)
    assert srv.proc is not None
    (render_pid,) = _children(srv.proc.pid)
    assert _rendered(srv, "sh010")["charged_credits"] == 1_040
    # An artist's open long poll: uvicorn then gives requests 2 s before it stops the app, and a
    # render process that stopped on the group's SIGTERM by itself would be replaced meanwhile.
    waiting = threading.Thread(target=_long_poll, args=(srv,), daemon=True)
    waiting.start()
    time.sleep(0.5)
    srv.stop()  # os.killpg(..., SIGTERM)
    log = srv.read_log()
    assert "Application shutdown complete" in log
    assert "starting another" not in log and "exited" not in log, log[-2000:]
    _gone_within(render_pid, 10)


def _long_poll(srv: LiveServer) -> None:
    try:
        srv.get("/events?after=1000000&wait=30", role="viewer", timeout=40)
    except requests.RequestException:
        pass  # the service stopped under it

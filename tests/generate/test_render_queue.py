"""A batch of shots from the Shots list, rendered by a real act3-server, followed live in Blender."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support import blender
from support.layout import RecordingLayout
from support.servers import LiveServer

from act3_credits.core import formatting

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()

# Twelve shots of 4, 6 and 8 s at 24 fps (Veo 3.1 Standard: 1,040, 1,560 and 2,080 cr).
FRAMES = [96, 144, 192] * 4


def twelve_shots(studio: Any) -> list[Any]:
    specs, start = [], 1
    for i, frames in enumerate(FRAMES):
        specs.append((f"sh{(i + 1) * 10:03d}", start, start + frames - 1))
        start += frames
    return studio.shots(specs, tags="seq010")


def completed(studio: Any, job_id: int) -> int:
    return sum(1 for s in studio.state.jobs[job_id].shots if s.status == "completed")


def shots_in(server: LiveServer, job_id: int, status: str) -> list[dict[str, Any]]:
    """The job's shots in `status`, as the service has them now."""
    return [s for s in server.get(f"/jobs/{job_id}").json()["shots"] if s["status"] == status]


def test_a_batch_of_twelve_runs_live_shot_by_shot_with_pause_resume_and_cancel(studio, live_server_factory):
    server: LiveServer = live_server_factory(render_speed=0.03)  # 0.12-0.24 s per shot
    studio.connect(server)
    twelve_shots(studio)
    before = studio.state.credits.total

    drops: list[tuple[str, int, int]] = []  # (shot, credits the event says, drop of the balance)
    last_total = [before]

    def on_event(event: Any) -> None:
        if event.type == "job.shot_completed":
            total = studio.state.credits.total  # the state right after this event was drained
            drops.append((event.shot, event.credits, last_total[0] - total))
            last_total[0] = total

    studio.worker.subscribe(on_event)
    assert bpy.ops.act3.generate_batch(tag="seq010") == {"FINISHED"}
    job_id = max(studio.state.jobs)
    job = studio.state.jobs[job_id]
    costs = {s.name: s.credits for s in job.shots}
    assert job.estimated_credits == sum(costs.values()) == 4 * (1_040 + 1_560 + 2_080)
    assert studio.scene.act3_shots[0].last_job_id == job_id

    # Pause after three shots: the one rendering may finish, then nothing more starts.
    studio.until(lambda: completed(studio, job_id) >= 3, "three shots")
    assert bpy.ops.act3.job_pause(job_id=job_id) == {"FINISHED"}
    studio.until(lambda: studio.state.jobs[job_id].status == "paused", "the pause")
    studio.until(lambda: not shots_in(server, job_id, "processing"), "the shot rendering at the pause to end")
    at_pause = len(shots_in(server, job_id, "completed"))
    assert 3 <= at_pause <= 4
    studio.until(lambda: completed(studio, job_id) == at_pause, "the state to show the shots done at the pause")
    # Nothing more starts, while the service renders another organisation's batch queued after this
    # one (it claims the oldest job's shots first, so a paused job that still ran would go first).
    probe = [{"name": f"p{i}", "engine": "grok-imagine", "tier": "draft", "duration_s": 4} for i in range(8)]
    other = server.post("/jobs", {"name": "other studio", "shots": probe}, plan="starter", idem="probe").json()
    studio.until(
        lambda: server.get(f"/jobs/{other['id']}", "starter").json()["status"] == "completed", "the other batch"
    )
    paused = server.get(f"/jobs/{job_id}").json()
    assert paused["status"] == "paused"
    assert [s["status"] for s in paused["shots"]] == ["completed"] * at_pause + ["queued"] * (12 - at_pause)
    studio.until(lambda: True, "a drain")
    assert completed(studio, job_id) == at_pause

    # Resume: it goes on from the next shot.
    assert bpy.ops.act3.job_resume(job_id=job_id) == {"FINISHED"}
    studio.until(lambda: completed(studio, job_id) >= at_pause + 3, "three more shots")

    # Cancel: what is still held goes back; completed shots stay charged.
    assert bpy.ops.act3.job_cancel(job_id=job_id) == {"FINISHED"}
    studio.until(lambda: studio.state.jobs[job_id].status == "canceled", "the cancel")
    service_job = server.get(f"/jobs/{job_id}").json()
    done = [s for s in service_job["shots"] if s["status"] == "completed"]
    assert len(done) < 12
    charged = sum(s["credits"] for s in done)
    assert service_job["charged_credits"] == charged and service_job["held"] == 0
    c = studio.until(
        lambda: (
            studio.state.credits
            if studio.state.credits.held == 0 and studio.state.credits.total == before - charged
            else None
        ),
        "the release of what was held",
    )
    assert c.available == c.total == before - charged

    # Every drained completion dropped the balance by exactly that shot's cost.
    assert len(drops) == len(done)
    for shot, credits, drop in drops:
        assert credits == costs[shot] == drop, (shot, credits, drop)
    # The shots in the .blend carry what they cost.
    by_name = {it.name: it for it in studio.scene.act3_shots}
    for s in done:
        assert by_name[s["name"]].last_cost == s["credits"]

    # The history has one render row per completed shot of this job.
    rows = server.get("/account/credits/history", params={"kind": "render", "limit": 200}).json()["items"]
    mine = [r for r in rows if r["job_id"] == job_id]
    assert sorted(r["shot"] for r in mine) == sorted(s["name"] for s in done)
    assert all(-r["credits"] == costs[r["shot"]] for r in mine)

    # And the Render Queue says so.
    layout = RecordingLayout()
    draw = studio.module("generate.draw")
    draw.draw_render_queue(layout, studio.state, studio.state.rate_card)
    bar = layout.of_kind("progress")[0]
    # Canceled after some shots: the bar shows what was rendered, never "12/12".
    assert bar.factor == pytest.approx(len(done) / 12)
    assert bar.text == f"{len(done)}/12 · {formatting.credits(charged)}"
    assert f"Canceled · {12 - len(done)} canceled" in layout.texts()
    studio.worker.unsubscribe(on_event)


def test_budget_guard_pauses_a_batch_when_the_balance_falls_below_the_minimum(studio, live_server_factory):
    server: LiveServer = live_server_factory(render_speed=0.03)
    studio.connect(server)
    twelve_shots(studio)
    start = studio.state.credits.total
    settings = studio.settings
    settings.guard_enabled = True
    # The first three shots (1,040 + 1,560 + 2,080) take the balance below this line.
    settings.guard_min_balance = start - 4_000
    assert bpy.ops.act3.generate_batch(tag="seq010") == {"FINISHED"}
    job_id = max(studio.state.jobs)
    guard = studio.module("generate.jobs").guard
    studio.until(lambda: job_id in guard.reasons, "the guard")
    assert guard.reasons[job_id].startswith("Budget guard paused Scene #seq010 (12 shots): the balance fell to ")
    assert studio.state.last_message == guard.reasons[job_id]
    studio.until(lambda: server.get(f"/jobs/{job_id}").json()["status"] == "paused", "the pause on the service")
    job = server.get(f"/jobs/{job_id}").json()
    n = sum(1 for s in job["shots"] if s["status"] == "completed")
    assert 3 <= n <= 4  # the shot rendering when the guard spoke may finish
    layout = RecordingLayout()
    studio.until(lambda: studio.state.jobs[job_id].status == "paused", "the paused job in the state")
    studio.module("generate.draw").draw_render_queue(layout, studio.state, studio.state.rate_card, guard.reasons)
    assert layout.find("Budget guard paused").alert
    layout.operator_button("act3.job_resume")
    # Resuming tells the guard to let this job run.
    assert bpy.ops.act3.job_resume(job_id=job_id) == {"FINISHED"}
    studio.until(lambda: completed(studio, job_id) >= n + 2, "two more shots after the resume")
    assert job_id not in guard.reasons
    assert bpy.ops.act3.job_cancel(job_id=job_id) == {"FINISHED"}


def test_a_failed_shot_is_not_charged_and_retry_sends_a_new_one_shot_job(studio, live_server_factory):
    # The service fails the 3rd, 6th and 9th shot of every job: 3 failed, 7 rendered, on every run.
    server: LiveServer = live_server_factory(render_speed=0.01, fail_every=3)
    studio.connect(server)
    studio.shots([(f"sh{i:03d}", 1, 96) for i in range(10)], tags="t")  # 4 s of Veo 3.1 Standard: 1,040 cr
    before = server.get("/account/credits").json()["total"]
    assert bpy.ops.act3.generate_batch(tag="t") == {"FINISHED"}
    job_id = max(studio.state.jobs)
    ended = ("completed", "failed")
    studio.until(lambda: server.get(f"/jobs/{job_id}").json()["status"] in ended, "the batch")
    studio.until(lambda: studio.state.jobs[job_id].status in ended, "the batch in the state")
    job = server.get(f"/jobs/{job_id}").json()
    failed = [s for s in job["shots"] if s["status"] == "failed"]
    completed_shots = [s for s in job["shots"] if s["status"] == "completed"]
    assert [s["name"] for s in failed] == ["sh002", "sh005", "sh008"]
    assert len(completed_shots) == 7
    # Only the completed shots are charged; a job with any completed shot is completed.
    assert job["status"] == "completed" and job["held"] == 0
    assert job["charged_credits"] == 7_280  # 7 × 1,040
    assert server.get("/account/credits").json()["total"] == before - 7_280
    assert all(s["error"] == "simulated render failure" for s in failed)
    layout = RecordingLayout()
    studio.module("generate.draw").draw_render_queue(layout, studio.state, studio.state.rate_card, expanded={job_id})
    assert layout.find("not charged").alert
    retry = layout.operator_button("act3.retry_shot")
    assert retry.properties.job_id == job_id
    index = failed[0]["index"]
    assert bpy.ops.act3.retry_shot(job_id=job_id, shot_index=index) == {"FINISHED"}
    new_id = max(studio.state.jobs)
    assert new_id != job_id
    new = studio.state.jobs[new_id]
    assert [s.name for s in new.shots] == [failed[0]["name"]]
    assert new.estimated_credits == failed[0]["credits"] == 1_040
    # A completed shot is not retried, even from a script: it was charged already.
    jobs_before = set(studio.state.jobs)
    with pytest.raises(RuntimeError, match="has no failed shot"):  # its report, as one line
        bpy.ops.act3.retry_shot(job_id=job_id, shot_index=completed_shots[0]["index"])
    assert set(studio.state.jobs) == jobs_before


def test_the_render_queue_lists_jobs_sent_before_this_session_and_from_other_machines(studio, live_server_factory):
    server: LiveServer = live_server_factory(render_speed=0.01)
    shots = [{"name": f"old{i}", "engine": "grok-imagine", "tier": "draft", "duration_s": 1} for i in range(2)]
    earlier = server.post("/jobs", {"name": "from the farm", "shots": shots}, idem="earlier").json()
    deadline = time.monotonic() + 30
    while server.get(f"/jobs/{earlier['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    studio.connect(server)
    generate = studio.module("generate")
    studio.until(lambda: generate._tick() and earlier["id"] in studio.state.jobs, "the organisation's recent jobs")
    layout = RecordingLayout()
    studio.module("generate.draw").draw_render_queue(layout, studio.state, studio.state.rate_card)
    assert layout.texts()[0] == "from the farm"  # the only job of this organisation
    (bar,) = layout.of_kind("progress")
    assert bar.text == "2/2 · 46 cr"  # two one-second Grok Imagine drafts: 23 cr each

"""Budgets on the work, in Blender against a live service (issue 11): the scene's project and its
budget, the member's cap, deferring to the next refill, Draft first then upgrade, auto top-up.

Numbers by hand from the rate card: Veo 3.1 is 260 cr a second at Standard, Draft ×1/2, High ×2.
An 8 s shot (192 frames at 24 fps) is 2,080 cr at Standard, 1,040 at Draft, 4,160 at High. The Pro
demo organisation starts with 875,000 cr available; pack-250k is 250,000 cr for $475.00.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from support import blender
from support.layout import RecordingLayout
from support.servers import LiveServer

from act3_credits.core import limits

pytestmark = pytest.mark.bpy

bpy = blender.import_bpy()

EIGHT_S = 192  # frames at 24 fps


def three_shots(studio: Any, tier: str = "standard") -> list[Any]:
    return studio.shots(
        [("sh010", 1, EIGHT_S), ("sh020", EIGHT_S + 1, 2 * EIGHT_S), ("sh030", 2 * EIGHT_S + 1, 3 * EIGHT_S)],
        engine="veo-3.1",
        tier=tier,
    )


def put_budget(server: LiveServer, project: str, credits: int, action: str) -> None:
    body = {"credits": credits, "period": "billing_period", "action": action}
    resp = requests_put(server, f"/budgets/{project}", body)
    assert resp.status_code == 200, resp.text


def requests_put(server: LiveServer, path: str, body: Any, role: str = "owner") -> Any:
    import requests

    return requests.put(server.url + path, json=body, headers=server.auth("pro", role), timeout=30)


def budgets_synced(studio: Any, project: str, left: int) -> None:
    studio.worker.request("budgets")
    studio.until(
        lambda: (
            (limits.budgets_by_project(studio.state.budgets).get(project) or limits.Budget("", 0, "", "")).left == left
        ),
        f"the {project} budget with {left} left",
    )


def dialog(studio: Any, *, upgrade: bool = False) -> RecordingLayout:
    """The Cost Estimate of every shot as Generate Batch (or Upgrade Approved) draws it."""
    ops, props, shots, draw = (
        studio.module(m) for m in ("generate.ops", "generate.props", "core.shots", "generate.draw")
    )
    scene = studio.scene
    chosen = props.approved_shots(scene) if upgrade else props.tagged_shots(scene, "")
    est = shots.estimate(chosen, studio.state.rate_card, ops.account())
    lim = ops.limits_for(scene, [ln.credits for ln in est.sent])
    saving = limits.draft_first_saving(studio.state.rate_card, props.drafted_shots(scene)) if upgrade else None
    layout = RecordingLayout()
    draw.draw_estimate_batch(
        layout,
        est,
        studio.state.rate_card,
        op=None,
        limits=lim,
        billing_date=studio.state.credits.billing_date,
        saving=saving,
    )
    return layout


def pair(layout: RecordingLayout, label: str) -> str:
    texts = layout.texts()
    return texts[texts.index(label) + 1]


def refill_day(billing_date: str) -> str:
    d = dt.date.fromisoformat(billing_date[:10])
    return f"{d.day} {d:%b}"


def test_the_scenes_project_is_the_blend_name_unless_set_and_goes_with_every_job(studio, live_server, tmp_path):
    studio.connect(live_server)
    three_shots(studio)
    props = studio.module("generate.props")
    # The .blend's name, or "untitled" before it is saved (an earlier test of this Blender process
    # may have saved the file; tests/core/test_limits.py holds the never-saved case).
    saved = Path(bpy.data.filepath).stem if bpy.data.filepath else ""
    assert props.project_for(studio.scene) == (saved or "untitled")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "harbour_spot.blend"))
    assert props.project_for(studio.scene) == "harbour_spot"
    assert bpy.ops.act3.generate(shot="sh010") == {"FINISHED"}
    studio.scene.act3_project = "  spot-2027 "
    assert bpy.ops.act3.generate(shot="sh020") == {"FINISHED"}
    jobs = {j["name"]: j for j in studio.service_jobs(live_server)}
    assert (jobs["sh010"]["project"], jobs["sh020"]["project"]) == ("harbour_spot", "spot-2027")
    # A name longer than the service takes is cut to its 64 characters, never refused.
    assert limits.project_name("x" * 10_000, "") == "x" * 64


def test_a_refuse_budget_stops_the_batch_before_confirm_and_the_deferred_batch_starts_at_the_refill(
    studio, live_server_factory
):
    server: LiveServer = live_server_factory(render_speed=0.002)
    studio.connect(server)
    three_shots(studio)  # 3 × 2,080 = 6,240 cr
    studio.scene.act3_project = "spot-2027"
    put_budget(server, "spot-2027", 5_000, "refuse")
    budgets_synced(studio, "spot-2027", 5_000)

    layout = dialog(studio)
    assert pair(layout, "Project") == "spot-2027"
    assert pair(layout, "Budget") == "5,000 of 5,000 cr left"
    assert pair(layout, "Your cap") == "no cap"
    assert "Confirm sends nothing: over the project's budget." in layout.texts()
    assert "Over the spot-2027 budget: this needs 6,240 cr, 5,000 cr of its 5,000 cr are left." in layout.text()
    billing = studio.state.credits.billing_date
    defer = layout.operator_button("act3.defer_shots")
    assert defer.text == f"Defer to {refill_day(billing)}"
    assert "3 shots · 6,240 cr" in layout.texts()

    # Confirm refuses in the same words and sends nothing.
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate_batch()
    assert "Over the spot-2027 budget: this needs 6,240 cr, 5,000 cr of its 5,000 cr are left." in str(err.value)
    assert studio.service_jobs(server) == []

    # Defer: a scheduled job that holds nothing now, listed in the Render Queue with its start.
    assert bpy.ops.act3.defer_shots(shots_json=defer.properties.shots_json) == {"FINISHED"}
    (job,) = studio.service_jobs(server)
    assert (job["status"], job["held"], job["estimated_credits"], job["project"]) == (
        "scheduled",
        0,
        6_240,
        "spot-2027",
    )
    assert studio.state.credits.held == 0
    studio.worker.request("jobs", limit=20)
    studio.until(lambda: job["id"] in studio.state.jobs, "the queue to list it")
    queue = RecordingLayout()
    studio.module("generate.draw").draw_render_queue(queue, studio.state, studio.state.rate_card)
    assert f"Scheduled · starts {refill_day(billing)}" in queue.texts()
    assert queue.operator_button("act3.job_cancel").properties.job_id == job["id"]
    assert not [op for op in queue.operators() if op.operator in ("act3.job_pause", "act3.job_resume")]

    # A second deferred batch is canceled from the queue: it never starts.
    assert bpy.ops.act3.defer_shots(shots_json=defer.properties.shots_json, job_name="coverage") == {"FINISHED"}
    other = max(j["id"] for j in studio.service_jobs(server))
    assert bpy.ops.act3.job_cancel(job_id=other) == {"FINISHED"}

    # Next month's budget is raised; the refill (the dev clock moves to the billing date) starts the first.
    put_budget(server, "spot-2027", 10_000, "refuse")
    server.post("/dev/clock", {"now": f"{billing[:10]}T00:00:05Z"})
    studio.until(
        lambda: server.get(f"/jobs/{job['id']}").json()["status"] == "completed", "the deferred batch to render"
    )
    done = server.get(f"/jobs/{job['id']}").json()
    assert done["charged_credits"] == 6_240
    assert server.get(f"/jobs/{other}").json()["status"] == "canceled"


def test_warn_and_pause_budgets_say_so_in_words_before_confirm(studio, live_server_factory):
    server: LiveServer = live_server_factory(render_speed=0.002)
    studio.connect(server)
    three_shots(studio)
    studio.scene.act3_project = "spot-2027"
    put_budget(server, "spot-2027", 5_000, "warn")
    budgets_synced(studio, "spot-2027", 5_000)
    layout = dialog(studio)
    assert "Confirm holds 6,240 cr for 3 shots." in layout.texts()
    assert "1,240 cr over the spot-2027 budget: it is sent anyway (warn)." in layout.texts()
    assert layout.operator_button("act3.defer_shots").text.startswith("Defer to ")
    assert "Nothing to defer: every shot fits now." in layout.texts()

    put_budget(server, "spot-2027", 5_000, "pause")
    studio.worker.request("budgets")
    studio.until(
        lambda: limits.budgets_by_project(studio.state.budgets)["spot-2027"].action == "pause", "the pause budget"
    )
    # 2,080 + 2,080 = 4,160 fits in 5,000; the third shot would take it to 6,240.
    assert "The job will pause before shot 3, where it crosses the spot-2027 budget." in dialog(studio).texts()
    assert bpy.ops.act3.generate_batch() == {"FINISHED"}
    (job,) = studio.service_jobs(server)
    studio.until(lambda: server.get(f"/jobs/{job['id']}").json()["status"] == "paused", "the pause at the budget")
    shots = server.get(f"/jobs/{job['id']}").json()["shots"]
    assert [s["status"] for s in shots] == ["completed", "completed", "queued"]


def test_a_member_cap_shows_in_the_estimate_and_the_preferences_and_refuses(studio, live_server):
    studio.connect(live_server)
    three_shots(studio)
    members = live_server.get("/members").json()["members"]
    ana = next(m for m in members if m["name"] == "Ana (owner)")
    assert requests_put(live_server, f"/members/{ana['id']}/cap", {"credits_per_period": 4_000}).status_code == 200
    studio.worker.request("me")
    studio.until(lambda: limits.MemberCap.from_me(studio.state.me) is not None, "the cap in /v1/me")
    layout = dialog(studio)
    assert pair(layout, "Your cap") == "4,000 of 4,000 cr left this period"
    assert "Confirm sends nothing: over your cap." in layout.texts()
    prefs = RecordingLayout()
    studio.module("credits.draw").draw_spending_limits(prefs, studio.state)
    assert (pair(prefs, "Your cap"), pair(prefs, "Left this period")) == ("4,000 cr", "4,000 cr")
    with pytest.raises(RuntimeError) as err:
        bpy.ops.act3.generate_batch()
    assert "Over your cap: this needs 6,240 cr, 4,000 cr of your 4,000 cr are left this period." in str(err.value)
    # One shot fits: 2,080 of 4,000; the cap then reads what is left.
    assert bpy.ops.act3.generate(shot="sh010") == {"FINISHED"}
    studio.worker.request("me")
    studio.until(lambda: limits.MemberCap.from_me(studio.state.me).left == 4_000 - 2_080, "the cap's use")


def test_draft_first_then_upgrade_the_approved_shots_and_see_what_it_saved(studio, live_server_factory):
    server: LiveServer = live_server_factory(render_speed=0.002)
    studio.connect(server)
    items = three_shots(studio, tier="draft")
    assert [it.final_tier for it in items] == ["high"] * 3  # the default final tier
    assert bpy.ops.act3.generate_batch() == {"FINISHED"}
    (job,) = studio.service_jobs(server)
    studio.until(lambda: all(it.last_cost for it in studio.scene.act3_shots), "the drafts to render")
    assert [(it.last_job_id, it.last_tier, it.last_cost) for it in studio.scene.act3_shots] == [
        (job["id"], "draft", 1_040)
    ] * 3
    with pytest.raises(RuntimeError):  # nothing approved yet
        bpy.ops.act3.upgrade_approved()
    studio.scene.act3_shots[0].approved = True
    studio.scene.act3_shots[2].approved = True

    layout = dialog(studio, upgrade=True)
    # Drafts 3 × 1,040 = 3,120; upgrades 2 × 4,160 = 8,320; together 11,440, against 3 × 4,160 = 12,480.
    assert "Draft first: 3,120 cr drafts + 8,320 cr upgrades = 11,440 cr" in layout.texts()
    assert "All at High from the start: 12,480 cr (1,040 cr saved)" in layout.texts()
    assert pair(layout, "Total") == "8,320 cr for 2 shots"

    assert bpy.ops.act3.upgrade_approved() == {"FINISHED"}
    upgrade = max(j["id"] for j in studio.service_jobs(server))
    sent = server.get(f"/jobs/{upgrade}").json()
    assert [(s["name"], s["tier"], s["credits"]) for s in sent["shots"]] == [
        ("sh010", "high", 4_160),
        ("sh030", "high", 4_160),
    ]
    studio.until(lambda: studio.scene.act3_shots[2].last_tier == "high", "the upgrades to render")
    assert [(it.last_tier, it.last_cost) for it in studio.scene.act3_shots] == [
        ("high", 4_160),
        ("draft", 1_040),
        ("high", 4_160),
    ]


def test_the_draft_first_arithmetic_by_hand():
    card = studio_card()
    drafted = [
        limits.Drafted("sh010", "veo-3.1", 8.0, 1_040, "high", True),
        limits.Drafted("sh020", "veo-3.1", 8.0, 1_040, "high", False),
        limits.Drafted("sh030", "wan-2.6", 10.0, 490, "high", True),  # Wan 98/s: 10 s Draft 490, High 1,960
    ]
    saving = limits.draft_first_saving(card, drafted)
    assert (saving.drafts, saving.upgrades, saving.all_final) == (2_570, 4_160 + 1_960, 4_160 + 4_160 + 1_960)
    assert (saving.draft_first, saving.saved) == (8_690, 10_280 - 8_690)
    assert saving.lines() == (
        "Draft first: 2,570 cr drafts + 6,120 cr upgrades = 8,690 cr",
        "All at High from the start: 10,280 cr (1,590 cr saved)",
    )


def studio_card() -> Any:
    from act3_credits.core.pricing import DEFAULT_RATE_CARD

    return DEFAULT_RATE_CARD


def test_auto_top_up_shows_in_the_preferences_and_only_the_owner_sets_it(studio, live_server):
    studio.connect(live_server)
    three_shots(studio)
    studio.worker.request("packs")
    studio.worker.request("auto_top_up")
    studio.until(lambda: studio.state.auto_top_up is not None and studio.state.packs, "auto top-up and the packs")
    prefs = RecordingLayout()
    studio.module("credits.draw").draw_spending_limits(prefs, studio.state)
    texts = prefs.texts()
    assert texts[texts.index("Auto top-up") :][:16] == [
        "Auto top-up",
        "off",
        *("Below", "—", "Buys", "—", "For", "—", "At most a period", "—"),
        *("Spent this period", "$0.00", "Set by", "nobody yet", "On", "—"),
    ]
    assert prefs.operator_button("act3.set_auto_top_up").text == "Set Auto Top-Up…"

    # 875,000 available; below 870,000 and a 6,240 cr batch crosses it: one pack-250k is bought.
    assert bpy.ops.act3.set_auto_top_up(enabled=True, below=870_000, pack_id="pack-250k", max_dollars=950) == {
        "FINISHED"
    }
    assert studio.state.auto_top_up["set_by"]["name"] == "Ana (owner)"
    assert bpy.ops.act3.generate_batch() == {"FINISHED"}
    studio.until(lambda: studio.state.credits.available == 875_000 - 6_240 + 250_000, "the auto top-up in the balance")
    studio.worker.request("auto_top_up")
    studio.until(lambda: studio.state.auto_top_up.get("spent_this_period_cents") == 47_500, "its spend")
    prefs = RecordingLayout()
    studio.module("credits.draw").draw_spending_limits(prefs, studio.state)
    today = dt.datetime.now(dt.UTC).date()
    texts = prefs.texts()
    assert texts[texts.index("Auto top-up") :][:16] == [
        "Auto top-up",
        "on",
        "Below",
        "870,000 cr",
        "Buys",
        "250,000 cr",
        "For",
        "$475.00",
        "At most a period",
        "$950.00",
        "Spent this period",
        "$475.00",
        "Set by",
        "Ana (owner)",
        "On",
        f"{today:%d %b}",
    ]
    history = live_server.get("/account/credits/history", params={"kind": "purchase"}).json()["items"]
    assert [(h["credits"], h["auto"]) for h in history] == [(250_000, True)]


def test_an_editor_reads_auto_top_up_but_cannot_set_it(studio, live_server):
    studio.connect(live_server, role="editor")
    studio.worker.request("auto_top_up")
    studio.until(lambda: studio.state.auto_top_up is not None, "auto top-up")
    prefs = RecordingLayout()
    studio.module("credits.draw").draw_spending_limits(prefs, studio.state)
    assert "Only the owner sets auto top-up." in prefs.texts()
    assert not [op for op in prefs.operators() if op.operator == "act3.set_auto_top_up"]
    with pytest.raises(RuntimeError, match="Only the organisation's owner can change auto top-up."):
        bpy.ops.act3.set_auto_top_up(enabled=True, below=1, pack_id="pack-250k", max_dollars=1)
    assert live_server.get("/account/auto-top-up").json()["enabled"] is False

"""Deferring a batch to the next period and auto top-up, from scripts (`act3_credits.api`) and the
`act3` command line, against a real act3-server whose dev clock is moved to the refill.

The demo orgs have spent nothing: Starter has 245,000 credits (rollover cap 612,500), Pro 875,000
(cap 2,187,500). veo-3.1 High is 260 credits a second x 2: an 8 s shot is 4,160.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support.servers import LiveServer

from act3_credits import api, runtime
from act3_credits.core import cli
from act3_credits.core.sync import Settings


def high(n: int, seconds: int = 8) -> list[dict]:
    return [
        {"name": f"sh{(i + 1) * 10:03d}", "engine": "veo-3.1", "tier": "high", "duration_s": seconds} for i in range(n)
    ]


def act3(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture
def pro_editor(live_server: LiveServer) -> Iterator[LiveServer]:
    runtime.start(Settings(live_server.url, live_server.key("pro", "editor"), events_wait=2.0))
    assert api.refresh(wait=10)
    yield live_server
    runtime.stop()


def test_a_script_defers_a_batch_lists_it_and_cancels_it(pro_editor: LiveServer) -> None:
    billing_date = api.credits().billing_date
    est = api.estimate(high(2), when="next_period")
    # Nothing spent: all 875,000 roll over (under the cap), plus the next 875,000.
    assert est["next_period"]["starts_on"] == billing_date
    assert (est["total"], est["available"], est["affordable"]) == (8_320, 1_750_000, True)

    job = api.submit(high(2), name="coverage", start="next_period")
    assert (job["status"], job["held"], job["estimated_credits"]) == ("scheduled", 0, 8_320)
    assert runtime.state().last_message == (
        f"Scheduled coverage (job {job['id']}) to start on {billing_date}: 2 shots, 8,320 cr held then."
    )
    assert api.credits().held == 0
    assert [j["id"] for j in api.jobs(status="scheduled")] == [job["id"]]
    canceled = api.cancel(job["id"])
    assert (canceled["status"], canceled["held"]) == ("canceled", 0)
    assert api.jobs(status="scheduled") == []


def test_only_the_owner_sets_auto_top_up_and_everyone_reads_it(pro_editor: LiveServer) -> None:
    with pytest.raises(api.ForbiddenError):
        api.set_auto_top_up(True, 100_000, "pack-50k", 10_000)
    assert api.auto_top_up()["enabled"] is False
    r = pro_editor.post("/account/auto-top-up", None)  # POST is not how it is set
    assert r.status_code == 405


def test_the_command_line_defers_a_batch_to_the_refill_and_auto_top_up_buys_at_the_crossing(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("starter", "owner"))
    monkeypatch.setenv("ACT3_API_URL", live_server.url)
    billing_date = live_server.get("/account/credits", plan="starter").json()["billing_date"]

    assert act3(capsys, "auto-top-up").startswith("Auto top-up is off (never set)")
    out = act3(capsys, "auto-top-up", "--on", "--below", "100000", "--pack", "pack-50k", "--max-cents", "10000")
    assert "on: buy pack-50k when available falls under 100,000 cr, at most $100.00 a period" in out
    assert "Set by Ana (owner)" in out

    out = act3(capsys, "estimate", "--next-period", "veo-3.1", "high", "8", "8")
    # 245,000 roll over (cap 612,500) + 245,000 of the new month.
    assert f"Total 8,320 cr; available after the refill on {billing_date} 490,000 cr" in out
    out = act3(capsys, "submit", "--next-period", "--name", "coverage", "veo-3.1", "high", "8", "8")
    assert "scheduled  coverage: 8,320 cr estimated, holds nothing yet" in out
    scheduled = json.loads(act3(capsys, "--json", "jobs", "--status", "scheduled"))["jobs"]
    assert [(j["name"], j["held"]) for j in scheduled] == [("coverage", 0)]

    moved = live_server.post("/dev/clock", {"now": f"{billing_date}T00:00:05Z"}, plan="starter")
    assert moved.status_code == 200, moved.text
    assert act3(capsys, "jobs", "--status", "scheduled").strip() == "No jobs."
    job = live_server.get(f"/jobs/{scheduled[0]['id']}", plan="starter").json()
    assert job["status"] in ("queued", "processing", "completed") and job["held"] + job["charged_credits"] == 8_320

    # 490,000 - 8,320 = 481,680 available; 92 shots of 4,160 = 382,720 take it to 98,960: a crossing.
    out = act3(capsys, "submit", "--name", "finals", "veo-3.1", "high", *["8"] * 92)
    assert "382,720 cr estimated, 382,720 cr held" in out
    balance = live_server.get("/account/credits", plan="starter").json()
    assert balance["available"] == 98_960 + 50_000
    bought = json.loads(act3(capsys, "--json", "history", "--kind", "purchase"))["items"]
    assert [(i["credits"], i["auto"], i["member"]) for i in bought] == [(50_000, True, "Ana (owner)")]
    assert "$100.00 spent this period" in act3(capsys, "auto-top-up")

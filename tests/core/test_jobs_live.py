"""Sending batches from Blender and scripts against the real service: the estimate, the refusal of a
batch the balance does not cover, and the job following its shots through events."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from support.servers import LiveServer

from act3_credits import api, runtime
from act3_credits.core import cli
from act3_credits.core.sync import Settings

PRO = 875_000
STARTER = 245_000


@pytest.fixture
def script(live_server: LiveServer) -> Iterator[LiveServer]:
    """A pipeline script of the Pro org's editor, with the add-on running."""
    runtime.start(Settings(live_server.url, live_server.key("pro", "editor"), events_wait=2.0))
    assert api.refresh(wait=10)
    yield live_server
    runtime.stop()


def shots(n: int, engine: str = "veo-3.1-fast", tier: str = "standard", seconds: float = 4) -> list[dict]:
    return [{"name": f"sh{(i + 1) * 10:03d}", "engine": engine, "tier": tier, "duration_s": seconds} for i in range(n)]


def wait_for(predicate, timeout: float = 15.0) -> None:
    """Let the add-on's worker run (as Blender's timer would) until `predicate()`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        runtime.worker().drain()
        time.sleep(0.01)


def test_the_estimate_is_the_services_price(script):
    est = api.estimate(shots(2, "veo-3.1", "high", 7.5))
    assert [s["duration_s"] for s in est["shots"]] == [8, 8]
    assert est["total"] == 2 * 260 * 2 * 8 == 8320
    assert (est["available"], est["balance_after"], est["affordable"]) == (PRO, PRO - 8320, True)


def test_a_submitted_batch_renders_and_charges_what_was_estimated(script):
    events: list[str] = []
    api.subscribe(lambda kind, data: events.append(kind))
    job = api.submit(shots(3), name="seq010 batch")
    assert job["status"] in ("queued", "processing") and job["estimated_credits"] == 3 * 392
    state = runtime.state()
    assert state.last_message == f"Sent seq010 batch to ACT3 (job {job['id']}): 3 shots, 1,176 cr held."

    wait_for(lambda: state.jobs[job["id"]].status == "completed" and state.credits.held == 0)
    wait_for(lambda: state.jobs[job["id"]].charged_credits == 1176 and state.jobs[job["id"]].held == 0)
    assert [s.status for s in state.jobs[job["id"]].shots] == ["completed"] * 3
    assert state.credits.available == PRO - 1176
    assert events.count("job.shot_completed") == 3 and "job.status" in events
    assert api.jobs()[0]["id"] == job["id"]


def test_a_batch_the_balance_does_not_cover_is_refused_before_sending(live_server):
    runtime.start(Settings(live_server.url, live_server.key("starter", "owner"), events_wait=2.0))
    try:
        batch = shots(60, "veo-3.1", "high", 8)  # 60 x 4,160 = 249,600 > 245,000
        with pytest.raises(api.InsufficientCreditsError) as err:
            api.submit(batch, name="too big")
        assert (err.value.required_credits, err.value.current_balance) == (249_600, STARTER)
        # The same words as the Cost Estimate's (one wording of a shortfall, in core.shots).
        assert str(err.value) == "Not enough credits: this needs 249,600 cr, 4,600 cr more than the 245,000 cr available."
        assert "POST /v1/jobs" not in live_server.read_log()

        with pytest.raises(api.InsufficientCreditsError) as forced:  # the service still refuses the hold
            api.submit(batch, name="too big", force=True)
        assert forced.value.status == 402 and forced.value.required_credits == 249_600
        assert api.credits().held == 0
    finally:
        runtime.stop()


def test_with_a_callback_nothing_blocks_and_the_answer_arrives_on_the_draining_thread(script):
    """What an add-on's operator uses in the UI: each call returns at once; the timer delivers."""
    answers: list = []
    started = time.perf_counter()
    ticket = api.submit(shots(2), name="from an operator", callback=answers.append)
    refused = api.submit(shots(200, "seedance-2.0", "high", 15), name="too big", callback=answers.append)
    est = api.estimate(shots(1), callback=answers.append)
    page = api.history(limit=1, callback=answers.append)
    assert time.perf_counter() - started < 0.05  # four calls, none waited for the service
    assert not (ticket.done or refused.done or est.done or page.done)

    assert api.wait(ticket, 10) and api.wait(refused, 10) and api.wait(est, 10) and api.wait(page, 10)
    assert ticket.ok and ticket.result["estimated_credits"] == 2 * 392 and ticket.result["name"] == "from an operator"
    assert not refused.ok and isinstance(refused.error, api.InsufficientCreditsError)
    # Its estimate was asked before the first batch was sent (one queue, in order): nothing held yet.
    assert refused.error.required_credits == 200 * 7_350 and refused.error.current_balance == PRO
    assert est.ok and est.result["total"] == 392
    assert page.ok and set(page.result) == {"items", "next_cursor"}
    assert {id(t) for t in answers} == {id(ticket), id(refused), id(est), id(page)}
    assert [j["name"] for j in api.jobs()] == ["from an operator"]  # the refused batch was never sent


def test_a_tier_outside_the_plan_is_refused_with_the_reason(script):
    with pytest.raises(api.TierNotAllowedError, match="Enterprise"):
        api.submit(shots(1, tier="4k"))


def test_pause_lets_the_running_shot_finish_and_cancel_releases_the_hold(live_server_factory):
    srv = live_server_factory(render_speed=0.5)  # a 4 s shot renders in 2 s
    runtime.start(Settings(srv.url, srv.key("pro", "editor"), events_wait=2.0))
    try:
        assert api.refresh(wait=10)
        job = api.submit(shots(3), name="to pause")
        wait_for(lambda: runtime.state().jobs[job["id"]].status == "processing")
        paused = api.pause(job["id"])
        assert paused["status"] in ("processing", "paused")
        wait_for(lambda: runtime.state().jobs[job["id"]].status == "paused")
        canceled = api.cancel(job["id"])
        assert canceled["status"] == "canceled"
        state = runtime.state()
        wait_for(lambda: state.credits.held == 0)
        charged = canceled["charged_credits"]
        assert charged in (0, 392)  # the shot rendering when paused finished and was charged
        assert state.credits.available == PRO - charged
        with pytest.raises(api.ConflictError):
            api.resume(job["id"])
    finally:
        runtime.stop()


def test_the_act3_command_line(live_server, monkeypatch, capsys):
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("pro", "owner"))
    monkeypatch.setenv("ACT3_API_URL", live_server.url)
    assert cli.main(["balance"]) == 0
    assert "Available   875,000 cr" in capsys.readouterr().out
    assert cli.main(["buy", "pack-50k"]) == 0
    assert capsys.readouterr().out.strip() == "Bought 50,000 cr (Visa •••• 4242); 925,000 cr available."
    assert cli.main(["estimate", "veo-3.1", "standard", "7.5", "4"]) == 0
    assert "Total 3,120 cr" in capsys.readouterr().out
    assert cli.main(["history", "--kind", "purchase"]) == 0
    assert re.search(r"purchase\s+\+50,000", capsys.readouterr().out)
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("pro", "viewer"))
    assert cli.main(["buy", "pack-50k"]) == 1
    assert "owner or an admin" in capsys.readouterr().err


def test_a_name_with_line_breaks_reads_as_one_line_in_what_the_artist_is_told(script):
    job = api.submit(shots(1), name="seq010\nbatch\tB")
    assert runtime.state().last_message == f"Sent seq010 batch B to ACT3 (job {job['id']}): 1 shot, 392 cr held."
    long_name = "seq010 " + "x" * 190  # the service takes up to 200 characters
    job = api.submit(shots(1), name=long_name)
    said = runtime.state().last_message
    assert said.startswith("Sent seq010 xxx") and "…" in said and len(said) < 160, said


def test_the_command_line_says_odd_input_in_one_line_and_never_prints_a_name_raw(live_server, monkeypatch, capsys):
    monkeypatch.setenv("ACT3_API_KEY", live_server.key("pro", "owner"))
    monkeypatch.setenv("ACT3_API_URL", live_server.url)
    # Undecodable bytes in argv (a lone surrogate): the input's fault, said in one line.
    assert cli.main(["budget", "set", "spot\udcff", "5000"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "act3: The project name is not valid text, so it cannot be sent."
    # "." and ".." are project names, not "here" and "up" in the URL.
    for project in (".", ".."):
        assert cli.main(["budget", "set", project, "5000"]) == 0
        assert cli.main(["budget", "delete", project]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"Removed the budget of {project}."
    # Not a whole number (a superscript two passes str.isdigit): a usage error, not a traceback.
    with pytest.raises(SystemExit) as usage:
        cli.main(["cap", "7", "²"])
    assert usage.value.code == 2 and "Traceback" not in capsys.readouterr().err
    # Settings without --on or --off would be ignored: refused instead.
    with pytest.raises(SystemExit):
        cli.main(["auto-top-up", "--below", "100"])
    assert "go with --on" in capsys.readouterr().err
    # Another member's job name cannot drive the terminal (escape sequences, fake lines).
    api_job = live_server.post(
        "/jobs", {"name": "a\x1b]0;pwn\x07b\rX\nfake line", "shots": shots(1)}, role="editor", idem="esc"
    ).json()
    assert cli.main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert f"job {api_job['id']}" in out and "\x1b" not in out and "\r" not in out
    assert "a\\x1b]0;pwn\\x07b\\x0dX\\x0afake line" in out


def test_the_command_line_is_quiet_when_its_reader_goes_away(live_server):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ACT3_API_KEY": live_server.key("pro", "owner"), "ACT3_API_URL": live_server.url}
    code = "import sys; from act3_credits.core import cli; sys.exit(cli.main(['submit', 'veo-3.1', 'draft', '4']))"
    r, w = os.pipe()
    os.close(r)  # `| true`: nobody reads the answer
    proc = subprocess.run([sys.executable, "-c", code], env=env, stdout=w, stderr=subprocess.PIPE, timeout=60)
    os.close(w)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr  # the job was sent
    assert len(live_server.get("/jobs", role="owner").json()["jobs"]) == 1

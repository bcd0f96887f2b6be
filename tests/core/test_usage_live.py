"""Usage and the runway over HTTP from the real act3-server: the client's typed values, the script
API (`api.usage`, `api.forecast`) and the `act3 usage` / `act3 forecast` commands."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from support.servers import LiveServer

from act3_credits import api, runtime
from act3_credits.core import cli, sync
from act3_credits.core.client import Client, InvalidRequestError, new_idempotency_key
from act3_credits.core.sync import Settings
from act3_credits.core.usage import Usage, UsageGroup, keep_rows

# Veo 3.1 Fast, 4 s: 98 cr/s x 4 s = 392 at Standard; High x2 = 784, Draft x1/2 = 196.
SHOTS = [("sq010_sh010", "high"), ("sq010_sh020", "draft"), ("sq020_sh010", "high")]


def render_on(srv: LiveServer) -> None:
    """Move the dev clock to 10 Mar 2031 12:00 UTC and render SHOTS there (Pro org, as an editor)."""
    r = srv.post("/dev/clock", {"now": "2031-03-10T12:00:00Z"}, role="owner")
    assert r.status_code == 200, r.text
    body = {
        "name": "usage",
        "shots": [{"name": n, "engine": "veo-3.1-fast", "tier": t, "duration_s": 4} for n, t in SHOTS],
    }
    job = srv.post("/jobs", body, role="editor", idem=new_idempotency_key()).json()
    deadline = time.monotonic() + 30
    while job["status"] != "completed":
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = srv.get(f"/jobs/{job['id']}").json()


@pytest.fixture
def rendered(live_server: LiveServer) -> LiveServer:
    render_on(live_server)
    return live_server


def test_the_client_reads_usage_and_the_runway_as_typed_values(rendered: LiveServer) -> None:
    with Client(rendered.url, rendered.key("pro", "viewer")) as client:
        by_tier = client.usage(group_by="tier")
        # High: 2 x 784 = 1,568 over 8 s; Draft: 196 over 4 s; the period is March 2031.
        assert [(g.key, g.credits, g.shots, g.seconds) for g in by_tier.groups] == [
            ("high", 1_568, 2, 8),
            ("draft", 196, 1, 4),
        ]
        assert (by_tier.total.credits, by_tier.start, by_tier.end) == (
            1_764,
            "2031-03-01T00:00:00Z",
            "2031-04-01T00:00:00Z",
        )
        days = client.usage("2031-03-09", "2031-03-12", "day", tier="high")
        assert [(g.key, g.credits) for g in days.groups] == [
            ("2031-03-09", 0),
            ("2031-03-10", 1_568),
            ("2031-03-11", 0),
        ]
        with pytest.raises(InvalidRequestError, match="to must be after from"):
            client.usage("2031-03-12", "2031-03-09")

        fc = client.forecast()
    # Pace: 1,764 in 7 days = 252 a day (30 days: 58.8 -> 59). The dev clock passed every billing
    # date since Nov 2026 with nothing spent, so the rolled bank is at the Pro cap, 2,187,500, and
    # the month is 875,000 - 1,764 = 873,236: available 3,060,736, which lasts beyond a year.
    # To 1 Apr 00:00 is 21.5 days less the seconds since 12:00: 252 x 21.5 = 5,418 spent (rounded
    # up), 873,236 - 5,418 = 867,818 left, all of it over the cap: it lapses.
    assert (fc.pace_7d, fc.pace_30d, fc.available, fc.held) == (252, 59, 3_060_736, 0)
    assert fc.next_refill_at == datetime(2031, 4, 1, tzinfo=UTC)
    assert (fc.runs_out_at, fc.days_left) == (None, None)
    assert (fc.monthly_left_at_refill, fc.will_roll_over, fc.will_expire) == (867_818, 0, 867_818)


def test_scripts_read_usage_and_the_forecast_through_the_api_module(rendered: LiveServer, tmp_path) -> None:
    runtime.start(Settings(rendered.url, rendered.key("pro", "editor"), events_wait=2.0), tmp_path)
    try:
        by_shot = api.usage(group_by="shot", limit=2)
        assert [(g.key, g.credits) for g in by_shot.groups] == [("sq010_sh010", 784), ("sq020_sh010", 784)]
        assert by_shot.total.credits == 1_764  # every shot, not only the two listed
        assert api.forecast().pace_7d == 252
    finally:
        runtime.stop()


def test_the_act3_usage_and_forecast_commands(rendered: LiveServer, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACT3_API_KEY", rendered.key("pro", "viewer"))
    monkeypatch.setenv("ACT3_API_URL", rendered.url)
    assert cli.main(["usage", "--by", "tier"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Usage 2031-03-01 00:00 to 2031-04-01 00:00 UTC"
    assert lines[1].split() == ["Tier", "Credits", "Shots", "Seconds"]
    assert [line.split() for line in lines[2:4]] == [["high", "1,568", "2", "8"], ["draft", "196", "1", "4"]]
    assert lines[-1].split() == ["Total", "1,764", "3", "12"]
    assert cli.main(["forecast"]) == 0
    out = capsys.readouterr().out
    assert "Lasts beyond a year at this week's pace (252 cr/day)." in out
    assert "Refill on   1 Apr 2031: 867,818 cr monthly left, 0 cr roll over, 867,818 cr lapse" in out
    assert cli.main(["usage", "--from", "2031-03-12", "--to", "2031-03-09"]) == 1
    assert "to must be after from" in capsys.readouterr().err


def top(*rows: tuple[str, int]) -> Usage:
    groups = tuple(UsageGroup(k, c, 1, 4) for k, c in rows)
    return Usage("2031-03-01T00:00:00Z", "2031-04-01T00:00:00Z", "shot", groups, UsageGroup("", 9_999, 9, 36))


def test_rows_shown_keep_their_place_with_their_latest_figures() -> None:
    shown = top(("a", 900), ("b", 800), ("c", 700))
    latest = top(("c", 1_500), ("a", 900), ("d", 850), ("b", 800))
    # c overtook both: it stays third with 1,500; d is new and there is room for a fourth row.
    assert [(g.key, g.credits) for g in keep_rows(shown, latest, 4).groups] == [
        ("a", 900), ("b", 800), ("c", 1_500), ("d", 850),
    ]  # fmt: skip
    assert keep_rows(shown, latest, 3).groups == keep_rows(shown, latest, 4).groups[:3]  # no room for d
    assert keep_rows(shown, latest, 4).total == latest.total
    # b was pushed out of the latest ten by others: its row stays, with the figures last shown.
    assert [(g.key, g.credits) for g in keep_rows(shown, top(("c", 1_500), ("a", 950)), 3).groups] == [
        ("a", 950), ("b", 800), ("c", 1_500),
    ]  # fmt: skip
    # Another period (a refill came) or another grouping is another list: as the service ranks it.
    other = Usage("2031-04-01T00:00:00Z", "2031-05-01T00:00:00Z", "shot", latest.groups, latest.total)
    assert keep_rows(shown, other, 3) == other
    assert keep_rows(None, latest, 3) == latest


def test_the_most_expensive_shots_keep_their_rows_while_a_batch_renders(live_server_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(sync, "SPEND_EVERY_S", 0.1)  # the spend's debounce (5 s), not what is tested here
    srv = live_server_factory(render_speed=0.25)  # a 4 s shot renders in 1 s
    render_on(srv)  # sq010_sh010 784, sq020_sh010 784, sq010_sh020 196
    runtime.start(Settings(srv.url, srv.key("pro", "editor"), events_wait=2.0), tmp_path)
    try:
        state = runtime.state()

        def listed() -> list[tuple[str, int]]:
            return [(g.key, g.credits) for g in state.spend.top_shots.groups] if state.spend else []

        def wait_for(predicate, timeout: float = 30.0) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, listed()
                runtime.worker().drain()
                time.sleep(0.01)

        wait_for(lambda: listed() == [("sq010_sh010", 784), ("sq020_sh010", 784), ("sq010_sh020", 196)])
        # Three more renders of sq010_sh020 at High (784 each): after the first it costs the most.
        shot = {"name": "sq010_sh020", "engine": "veo-3.1-fast", "tier": "high", "duration_s": 4}
        job = api.submit([shot, shot, shot], name="upgrade")
        running = lambda: state.jobs[job["id"]].status in ("queued", "processing")  # noqa: E731
        wait_for(lambda: dict(listed()).get("sq010_sh020", 0) >= 980 and running())
        # The service ranks sq010_sh020 first by now; the panel keeps its rows where they were.
        assert [k for k, _c in listed()] == ["sq010_sh010", "sq020_sh010", "sq010_sh020"]
        wait_for(lambda: state.jobs[job["id"]].status == "completed")
        wait_for(lambda: listed() == [("sq010_sh020", 2_548), ("sq010_sh010", 784), ("sq020_sh010", 784)])
    finally:
        runtime.stop()


def test_the_rows_are_ranked_again_when_nothing_was_charged_for_a_minute() -> None:
    """A job this session still thinks is processing (its end came while the event stream was
    down) holds the order only while charges arrive."""
    from act3_credits.core.contract import Job
    from act3_credits.core.state import Spend, State

    worker = sync.SyncWorker(State())
    job = {"id": 7, "name": "b", "status": "processing", "estimated_credits": 0, "charged_credits": 0, "held": 0,
           "shots": []}  # fmt: skip
    worker.state.jobs[7] = Job.from_json(job)
    shown = top(("a", 900), ("b", 800))
    latest = top(("b", 1_200), ("a", 900))
    worker._on_spend(Spend(shown, (), shown, None), {})  # type: ignore[arg-type]
    worker._charged_at = time.monotonic()  # a charge just now: the batch is rendering
    worker._on_spend(Spend(latest, (), latest, None), {})  # type: ignore[arg-type]
    assert [g.key for g in worker.state.spend.top_shots.groups] == ["a", "b"]
    worker._charged_at -= sync.HOLD_ORDER_S  # a minute without a charge
    worker._show_spend()
    assert [g.key for g in worker.state.spend.top_shots.groups] == ["b", "a"]

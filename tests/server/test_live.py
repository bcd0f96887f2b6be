"""The job runner and events end to end: a real `act3-server serve` process, over HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import requests
from support.servers import LiveServer

SHOT = {"engine": "veo-3.1", "tier": "standard", "duration_s": 8}  # 2,080 cr


def make_job(srv: LiveServer, n: int, name: str = "seq010", **shot: Any) -> dict[str, Any]:
    shots = [{"name": f"sh{(i + 1) * 10:03d}", **SHOT, **shot} for i in range(n)]
    r = srv.post("/jobs", {"name": name, "shots": shots}, role="editor", idem=uuid.uuid4().hex)
    assert r.status_code == 201, r.text
    return dict(r.json())


def wait_for(srv: LiveServer, job_id: int, predicate, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = srv.get(f"/jobs/{job_id}").json()
        if predicate(job):
            return dict(job)
        assert time.monotonic() < deadline, (
            f"job never got there: {job['status']} {[s['status'] for s in job['shots']]}"
        )
        time.sleep(0.02)


def all_events(srv: LiveServer, after: int = 0) -> list[dict[str, Any]]:
    return list(srv.get(f"/events?after={after}").json()["events"])


def completed(job: dict[str, Any]) -> int:
    return sum(s["status"] == "completed" for s in job["shots"])


def test_a_twelve_shot_job_is_charged_shot_by_shot(live_server: LiveServer) -> None:
    srv = live_server
    start = srv.get("/events").json()["last_seq"]
    job = make_job(srv, 12)
    assert (job["status"], job["estimated_credits"], job["held"]) == ("queued", 24_960, 24_960)
    assert srv.get("/account/credits").json()["available"] == 875_000 - 24_960
    done = wait_for(srv, job["id"], lambda j: j["status"] == "completed")
    assert (done["charged_credits"], done["held"]) == (24_960, 0)
    assert all(s["status"] == "completed" and s["completed_at"] for s in done["shots"])

    events = all_events(srv, start)
    shots_done = [e["data"] for e in events if e["type"] == "job.shot_completed"]
    assert [e["shot_index"] for e in shots_done] == list(range(12))
    # Each shot takes exactly its 2,080 from the hold and from the monthly credits, one at a time.
    totals = [e["balance"]["total"] for e in shots_done]
    assert totals == [875_000 - 2_080 * (i + 1) for i in range(12)]
    assert [e["balance"]["held"] for e in shots_done] == [24_960 - 2_080 * (i + 1) for i in range(12)]
    versions = [e["data"]["balance"]["version"] for e in events if e["type"] == "balance.changed"]
    assert versions == sorted(set(versions))
    assert [e["data"]["status"] for e in events if e["type"] == "job.status"] == ["queued", "processing", "completed"]
    c = srv.get("/account/credits").json()
    assert (c["total"], c["held"], c["monthly_remaining"]) == (875_000 - 24_960, 0, 875_000 - 24_960)
    renders = srv.get("/account/credits/history?kind=render&limit=200").json()["items"]
    assert len(renders) == 12 and all(i["credits"] == -2_080 and i["job_id"] == job["id"] for i in renders)


def test_pause_stops_before_the_next_shot_and_resume_continues(live_server_factory) -> None:
    srv = live_server_factory(render_speed=0.04)  # 8 s shots take 0.32 s
    job = make_job(srv, 10)
    wait_for(srv, job["id"], lambda j: completed(j) >= 2)
    paused = srv.post(f"/jobs/{job['id']}/pause").json()
    assert paused["status"] == "paused"
    at_pause = completed(paused)
    time.sleep(1.2)  # long enough for 3 more shots if it did not stop
    still = srv.get(f"/jobs/{job['id']}").json()
    assert still["status"] == "paused"
    assert completed(still) in (at_pause, at_pause + 1)  # only the shot already rendering finished
    assert not any(s["status"] == "processing" for s in still["shots"])
    assert still["charged_credits"] == 2_080 * completed(still)
    assert still["held"] == 2_080 * (10 - completed(still))
    time.sleep(0.5)
    assert srv.get(f"/jobs/{job['id']}").json()["charged_credits"] == still["charged_credits"]
    assert srv.post(f"/jobs/{job['id']}/resume").json()["status"] == "processing"
    done = wait_for(srv, job["id"], lambda j: j["status"] == "completed")
    assert (done["charged_credits"], done["held"]) == (20_800, 0)
    assert srv.post(f"/jobs/{job['id']}/pause").status_code == 409


def test_cancel_releases_the_hold_and_charges_only_finished_shots(live_server_factory) -> None:
    srv = live_server_factory(render_speed=0.04)
    job = make_job(srv, 10)
    wait_for(srv, job["id"], lambda j: completed(j) >= 2)
    canceled = srv.post(f"/jobs/{job['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["held"] == 0
    n = completed(canceled)
    assert canceled["charged_credits"] == 2_080 * n
    assert [s["status"] for s in canceled["shots"]] == ["completed"] * n + ["canceled"] * (10 - n)
    time.sleep(0.6)  # the shot that was rendering must not be charged after all
    after = srv.get(f"/jobs/{job['id']}").json()
    assert after["charged_credits"] == 2_080 * n and after["status"] == "canceled"
    c = srv.get("/account/credits").json()
    assert (c["held"], c["total"]) == (0, 875_000 - 2_080 * n)
    assert len(srv.get("/account/credits/history?kind=render").json()["items"]) == n


def test_failed_shots_charge_nothing(live_server_factory) -> None:
    srv = live_server_factory(fail_rate=1.0)
    job = make_job(srv, 10)
    done = wait_for(srv, job["id"], lambda j: j["status"] in ("completed", "failed"))
    assert (done["status"], done["charged_credits"], done["held"]) == ("failed", 0, 0)
    assert all(s["status"] == "failed" and s["error"] for s in done["shots"])
    c = srv.get("/account/credits").json()
    assert (c["total"], c["held"], c["available"]) == (875_000, 0, 875_000)
    failed = [e for e in all_events(srv) if e["type"] == "job.shot_failed"]
    assert len(failed) == 10 and failed[-1]["data"]["balance"]["held"] == 0


# Re-checks so rare that a long poll answering within the test's bound can only have been woken by
# a notification (the local commit hook, or LISTEN/NOTIFY between processes), never by a re-read.
NO_RECHECK = ("--events-recheck", "60", "--events-backstop", "60")


def test_long_poll_wakes_fast_and_times_out_without_events(live_server_factory) -> None:
    srv = live_server_factory(extra_args=NO_RECHECK)
    last = srv.get("/events").json()["last_seq"]
    t0 = time.monotonic()
    quiet = srv.get(f"/events?after={last}&wait=0.5").json()
    assert quiet == {"events": [], "last_seq": last} and 0.45 <= time.monotonic() - t0 < 2

    got: dict[str, Any] = {}

    def poll() -> None:
        got["answer"] = srv.get(f"/events?after={last}&wait=20").json()
        got["at"] = time.monotonic()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)
    r = srv.post("/purchases", {"pack_id": "pack-50k"}, idem="wake")
    committed = time.monotonic()
    assert r.status_code == 201
    waiter.join(25)
    assert not waiter.is_alive() and "answer" in got, "the long poll was never woken"
    # Woken by the purchase's own commit: without the notification it would sleep the 60 s re-check.
    assert got["at"] - committed < 0.5
    events = got["answer"]["events"]
    assert [e["type"] for e in events] == ["balance.changed", "purchase.completed"]
    assert events[1]["data"]["credits"] == 50_000 and events[0]["data"]["reason"] == "purchase"
    assert got["answer"]["last_seq"] == events[-1]["seq"] > last

    # A poll of another organisation is not woken by this one's events.
    other_last = srv.get("/events", plan="starter").json()["last_seq"]
    t0 = time.monotonic()
    other: dict[str, Any] = {}
    poller = threading.Thread(
        target=lambda: other.update(srv.get(f"/events?after={other_last}&wait=1.5", plan="starter").json())
    )
    poller.start()
    time.sleep(0.2)
    assert srv.post("/purchases", {"pack_id": "pack-50k"}, idem="wake-2").status_code == 201
    poller.join(10)
    assert other == {"events": [], "last_seq": other_last} and time.monotonic() - t0 >= 1.4


def test_no_key_in_the_server_log(live_server: LiveServer) -> None:
    srv = live_server
    srv.get("/me")
    srv.get("/nope")
    srv.post("/jobs", {"name": "x", "shots": []}, idem="x")
    requests.get(srv.url + "/me", headers={"Authorization": "Bearer act3_wrong_key_1234567890"}, timeout=5)
    make_job(srv, 1)
    srv.get("/events?after=0&wait=0")  # answered 200: an idle session's poll, not worth a line
    requests.get(srv.url + "/events?after=0", headers={"Authorization": "Bearer act3_nope_events"}, timeout=5)
    time.sleep(0.3)
    srv.stop()
    log = srv.read_log()
    assert "GET /v1/me" in log  # the access log is on...
    assert "GET /v1/events?after=0&wait=0" not in log
    assert '"GET /v1/events?after=0 HTTP/1.1" 401' in log  # ...a refused long poll is logged
    for org in srv.orgs["orgs"]:
        for key in org["keys"].values():
            assert key not in log  # ...and no key is in it
    assert "act3_wrong_key_1234567890" not in log and "act3_nope_events" not in log and "Traceback" not in log


def test_dev_clock_is_404_on_a_server_without_the_flag(live_server_factory) -> None:
    srv = live_server_factory(dev_clock=False)
    r = srv.post("/dev/clock", {"now": "2031-01-01T00:00:00Z"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.postgres
def test_two_servers_on_one_postgres_render_each_shot_once_and_wake_each_other(
    live_server_factory, fresh_postgres_url: str
) -> None:
    # B re-checks only every 60 s: waking within the bound below takes A's NOTIFY reaching B.
    a = live_server_factory(database_url=fresh_postgres_url, render_speed=0.005)
    b = live_server_factory(database_url=fresh_postgres_url, render_speed=0.005, extra_args=NO_RECHECK)
    b.orgs = a.orgs
    assert a.orgs["orgs"][1]["keys"] == b.orgs["orgs"][1]["keys"]

    # A long poll on B wakes for an event committed through A.
    last = b.get("/events").json()["last_seq"]
    got: dict[str, Any] = {}

    def poll() -> None:
        got["answer"] = b.get(f"/events?after={last}&wait=20").json()
        got["at"] = time.monotonic()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)
    assert a.post("/purchases", {"pack_id": "pack-50k"}, idem="from-a").status_code == 201
    committed = time.monotonic()
    waiter.join(25)
    assert not waiter.is_alive() and "answer" in got, "B's long poll was never woken"
    assert [e["type"] for e in got["answer"]["events"]] == ["balance.changed", "purchase.completed"]
    assert got["at"] - committed < 0.5

    # Jobs created through both; both processes' runners share the work; each shot charged once.
    jobs = [make_job(srv, 12, name=f"j{i}", duration_s=4) for i in range(3) for srv in (a, b)]
    for job in jobs:
        done = wait_for(a, job["id"], lambda j: j["status"] == "completed", timeout=60)
        assert (done["charged_credits"], done["held"]) == (12 * 1_040, 0)
    renders = a.get("/account/credits/history?kind=render&limit=200").json()["items"]
    assert len(renders) == 72
    assert len({(r["job_id"], r["shot"]) for r in renders}) == 72
    c = b.get("/account/credits").json()
    assert (c["total"], c["held"]) == (875_000 + 50_000 - 72 * 1_040, 0)
    processing = [e for e in all_events(a) if e["type"] == "job.status" and e["data"]["status"] == "processing"]
    assert len(processing) == 6

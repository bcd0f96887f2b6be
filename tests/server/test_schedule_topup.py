"""Deferring a batch to the next billing period, and auto top-up (issue 11, items 3 and 5), on the
Ledger (SQLite and PostgreSQL) with a manual clock.

Numbers are worked out by hand from the plans: Starter gets 245,000 credits a month and rolls over
up to 612,500; pack-50k is 50,000 credits for $100.00 (10,000 cents), pack-250k 250,000 for
$475.00. Batches of an exact total come from `shots_costing` (the hand-written price list).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from srv_helpers import Books, ManualClock, make_books, shots_costing

from act3_server import db
from act3_server.ledger import Ledger, LedgerError
from act3_server.topup import read as read_auto_top_up
from act3_server.topup import write as write_auto_top_up

DEC_1 = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)


@pytest.fixture
def starter(ledger: Ledger, clock: ManualClock) -> Books:
    return make_books(ledger, clock, "starter", 1)  # the clock is at 2026-11-25 12:00 UTC


def defer(books: Books, total: int, name: str = "coverage") -> dict[str, Any]:
    return books.ledger.create_job(books.editor, name, shots_costing(total), None, start="next_period").body


def spend(books: Books, total: int) -> None:
    books.job(*shots_costing(total))
    assert sum(books.run_all()) == total


def available(books: Books) -> int:
    return int(books.ledger.credits(books.org_id)["available"])


def status_events(books: Books) -> list[dict[str, Any]]:
    return [e["data"] for e in books.ledger.events_after(books.org_id, 0, 10_000) if e["type"] == "job.status"]


# --- deferring ---------------------------------------------------------------------------------


def test_a_deferred_batch_holds_nothing_until_the_refill_starts_it(starter: Books) -> None:
    ledger = starter.ledger
    job = defer(starter, 100_000)
    assert (job["status"], job["held"], job["estimated_credits"]) == ("scheduled", 0, 100_000)
    assert available(starter) == 245_000 and starter.account()["held"] == 0
    assert [j["id"] for j in ledger.list_jobs(starter.editor, status="scheduled")] == [job["id"]]
    assert ledger.claim_next_shot("w") is None  # nothing renders before its period

    starter.clock.set(DEC_1)
    # The refill rolls the unspent 245,000 over (under the 612,500 cap) and adds 245,000.
    assert ledger.credits(starter.org_id)["available"] == 245_000 + 245_000 - 100_000
    started = ledger.get_job(starter.editor, job["id"])
    assert (started["status"], started["held"]) == ("queued", 100_000)
    assert {"job_id": job["id"], "status": "queued", "reason": "refill"} in status_events(starter)
    assert sum(starter.run_all()) == 100_000
    starter.assert_books_balance()


def test_the_refill_starts_scheduled_jobs_oldest_first_and_pauses_one_that_no_longer_fits(starter: Books) -> None:
    ledger = starter.ledger
    spend(starter, 245_000)  # nothing left to roll over: the refill brings exactly 245,000
    a, b, c = defer(starter, 150_000, "a"), defer(starter, 100_000, "b"), defer(starter, 95_000, "c")
    starter.clock.set(DEC_1)
    ledger.refill_due(at=starter.clock.now)
    jobs = {j["name"]: j for j in ledger.list_jobs(starter.editor)}
    # a takes 150,000 of 245,000; b (100,000) does not fit the 95,000 left; c (95,000) does.
    assert (jobs["a"]["status"], jobs["a"]["held"]) == ("queued", 150_000)
    assert (jobs["b"]["status"], jobs["b"]["held"]) == ("paused", 0)
    assert (jobs["c"]["status"], jobs["c"]["held"]) == ("queued", 95_000)
    assert available(starter) == 0
    assert {"job_id": b["id"], "status": "paused", "reason": "insufficient_credits"} in status_events(starter)
    assert [e["job_id"] for e in status_events(starter) if e["reason"] == "refill"] == [a["id"], c["id"]]

    # b holds when it resumes, and only once credits are there.
    with pytest.raises(LedgerError) as refused:
        ledger.resume(starter.editor, b["id"])
    assert refused.value.code == "insufficient_credits" and refused.value.extra["required_credits"] == 100_000
    assert ledger.get_job(starter.editor, b["id"])["status"] == "paused"
    ledger.purchase(starter.owner, "pack-250k")
    resumed = ledger.resume(starter.editor, b["id"])
    assert (resumed["status"], resumed["held"]) == ("queued", 100_000)
    assert available(starter) == 250_000 - 100_000
    assert sum(starter.run_all()) == 150_000 + 95_000 + 100_000
    starter.assert_books_balance()


def test_the_refill_pauses_a_scheduled_job_past_its_projects_budget_or_its_members_cap(starter: Books) -> None:
    ledger = starter.ledger
    ledger.budgets.put(starter.owner, "spot", 200_000, "billing_period", "refuse")
    sent = ledger.create_job(starter.editor, "now", shots_costing(150_000), None, project="spot").body
    assert sum(starter.run_all()) == 150_000  # November's spend: it does not count in December
    x = ledger.create_job(starter.editor, "x", shots_costing(120_000), None, project="spot", start="next_period").body
    y = ledger.create_job(starter.editor, "y", shots_costing(90_000), None, project="spot", start="next_period").body
    assert (sent["status"], x["status"], y["status"]) == ("queued", "scheduled", "scheduled")
    starter.clock.set(DEC_1)
    ledger.refill_due(at=starter.clock.now)
    # December: 245,000 + the 95,000 rolled over are available, so only the budget stops y:
    # x uses 120,000 of spot's 200,000, and y's 90,000 would make 210,000.
    jobs = {j["name"]: j for j in ledger.list_jobs(starter.editor)}
    assert (jobs["x"]["status"], jobs["x"]["held"]) == ("queued", 120_000)
    assert (jobs["y"]["status"], jobs["y"]["held"]) == ("paused", 0)
    assert {"job_id": y["id"], "status": "paused", "reason": "budget"} in status_events(starter)
    assert available(starter) == 340_000 - 120_000
    with pytest.raises(LedgerError) as refused:  # resuming it would still cross the budget
        ledger.resume(starter.editor, y["id"])
    assert refused.value.code == "budget_exceeded"
    assert ledger.get_job(starter.editor, y["id"])["held"] == 0

    # A member cap, the same way: the editor may use 100,000 a period, so a deferred 130,000 pauses.
    ledger.budgets.set_cap(starter.owner, starter.editor.member_id, 100_000)
    z = ledger.create_job(starter.editor, "z", shots_costing(130_000), None, start="next_period").body
    starter.clock.set(datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC))
    ledger.refill_due(at=starter.clock.now)
    assert ledger.get_job(starter.editor, z["id"])["status"] == "paused"
    assert {"job_id": z["id"], "status": "paused", "reason": "member_cap"} in status_events(starter)
    starter.assert_books_balance()


def test_a_clock_jump_over_many_periods_starts_a_scheduled_job_exactly_once(starter: Books) -> None:
    ledger = starter.ledger
    job = defer(starter, 100_000)
    starter.clock.set(datetime(2027, 4, 3, tzinfo=UTC))  # five billing dates at once
    ledger.refill_due(at=starter.clock.now)
    ledger.refill_due(at=starter.clock.now)  # a second billing run finds nothing due
    starter.clock.set(datetime(2027, 6, 2, tzinfo=UTC))  # and two more refills later
    ledger.credits(starter.org_id)
    started = [e for e in status_events(starter) if e["job_id"] == job["id"] and e["status"] == "queued"]
    assert started == [{"job_id": job["id"], "status": "queued", "reason": "refill"}]
    assert starter.account()["held"] == 100_000
    with db.read_tx(ledger.engine) as conn:
        holds = conn.execute(
            select(func.count()).where(db.journal.c.org_id == starter.org_id, db.journal.c.reason == "hold")
        ).scalar_one()
    assert holds == 1
    starter.assert_books_balance()


def test_a_scheduled_job_is_canceled_without_releasing_anything_and_cannot_be_paused(starter: Books) -> None:
    ledger = starter.ledger
    job = defer(starter, 100_000)
    for action in (ledger.pause, ledger.resume):
        with pytest.raises(LedgerError) as refused:
            action(starter.editor, job["id"])
        assert refused.value.code == "invalid_state"
    before = starter.account()
    canceled = ledger.cancel(starter.editor, job["id"])
    assert (canceled["status"], canceled["held"]) == ("canceled", 0)
    assert all(s["status"] == "canceled" for s in canceled["shots"])
    after = starter.account()
    assert (after["held"], after["monthly_remaining"]) == (before["held"], before["monthly_remaining"])
    starter.clock.set(DEC_1)
    assert available(starter) == 490_000  # the refill starts nothing: 245,000 rolled over + 245,000
    starter.assert_books_balance()


def test_canceling_a_scheduled_job_whose_refill_is_due_releases_what_that_refill_held(starter: Books) -> None:
    ledger = starter.ledger
    job = defer(starter, 100_000)
    starter.clock.set(DEC_1)  # the refill is due, not applied yet: the cancel applies it first
    canceled = ledger.cancel(starter.editor, job["id"])
    assert (canceled["status"], canceled["held"]) == ("canceled", 0)
    assert starter.account()["held"] == 0 and available(starter) == 490_000
    starter.assert_books_balance()


def test_the_next_period_estimate_uses_the_refill_arithmetic(starter: Books) -> None:
    ledger = starter.ledger
    spend(starter, 45_000)  # 200,000 of November left: all of it rolls over at the refill
    ledger.purchase(starter.owner, "pack-50k")
    starter.job(*shots_costing(30_000))  # held across the refill
    defer(starter, 100_000)  # starts first at the refill
    est = ledger.estimate(starter.editor, shots_costing(400_000), when="next_period")
    outlook = est["next_period"]
    # 245,000 allocation + 200,000 rolled + 50,000 purchased - 30,000 held = 465,000; minus 100,000 scheduled.
    assert outlook == {
        "starts_on": "2026-12-01",
        "monthly_allocation": 245_000,
        "rolled_over": 200_000,
        "expired": 0,
        "held": 30_000,
        "scheduled": 100_000,
        "available": 365_000,
    }
    assert (est["when"], est["total"], est["available"], est["shortfall"]) == ("next_period", 400_000, 365_000, 35_000)
    assert est["affordable"] is False
    now = ledger.estimate(starter.editor, shots_costing(400_000))
    assert now["available"] == 200_000 + 50_000 - 30_000 and "next_period" not in now


def test_the_next_period_estimate_stops_the_rollover_at_the_cap(starter: Books) -> None:
    ledger = starter.ledger
    starter.clock.set(datetime(2027, 2, 10, tzinfo=UTC))
    # Three refills with nothing spent: the bank grew 245,000, 490,000, then 612,500 (the cap).
    ledger.credits(starter.org_id)
    acct = starter.account()
    assert (acct["bank_rolled"], acct["monthly_remaining"]) == (612_500, 245_000)
    outlook = ledger.estimate(starter.editor, shots_costing(1_000), when="next_period")["next_period"]
    assert (outlook["rolled_over"], outlook["expired"], outlook["available"]) == (0, 245_000, 245_000 + 612_500)


def test_a_bad_start_or_when_is_refused_and_writes_nothing(starter: Books) -> None:
    before = starter.account()
    with pytest.raises(LedgerError) as refused:
        starter.ledger.create_job(starter.editor, "x", shots_costing(1_000), None, start="tomorrow")
    assert refused.value.code == "validation_error"
    with pytest.raises(LedgerError):
        starter.ledger.estimate(starter.editor, shots_costing(1_000), when="later")
    assert starter.account() == before and starter.ledger.list_jobs(starter.editor) == []


# --- auto top-up -------------------------------------------------------------------------------


def auto_purchases(books: Books) -> list[dict[str, Any]]:
    return [i for i in books.ledger.history(books.org_id, kind="purchase")["items"] if i["auto"]]


def test_auto_top_up_buys_once_per_crossing_and_never_past_the_cap(starter: Books) -> None:
    ledger = starter.ledger
    setting = write_auto_top_up(ledger, starter.owner, True, 100_000, "pack-50k", 20_000)  # two packs a period
    assert setting["set_by"] == {"id": starter.owner.member_id, "name": "Ana (owner)"}
    assert (setting["enabled"], setting["below"], setting["spent_this_period_cents"]) == (True, 100_000, 0)

    starter.job(*shots_costing(140_000))  # 245,000 -> 105,000: still above 100,000, nothing bought
    assert available(starter) == 105_000 and auto_purchases(starter) == []
    starter.job(*shots_costing(10_000))  # 105,000 -> 95,000 crosses: pack-50k -> 145,000
    assert available(starter) == 145_000
    starter.job(*shots_costing(20_000))  # 125,000: above the threshold again
    starter.job(*shots_costing(30_000))  # 95,000: a second crossing -> 145,000 ($200.00 of $200.00)
    assert available(starter) == 145_000
    starter.job(*shots_costing(50_000))  # 95,000: a third crossing, but a third pack would pass the cap
    assert available(starter) == 95_000
    starter.job(*shots_costing(5_000))  # 90,000: already under, no crossing
    assert available(starter) == 90_000

    bought = auto_purchases(starter)
    assert [(i["credits"], i["bank_delta"], i["member"]) for i in bought] == [(50_000, 50_000, "Ana (owner)")] * 2
    events = [e["data"] for e in ledger.events_after(starter.org_id, 0, 10_000) if e["type"] == "purchase.completed"]
    assert [(e["pack_id"], e["credits"], e.get("auto")) for e in events] == [("pack-50k", 50_000, True)] * 2
    assert read_auto_top_up(ledger, starter.editor)["spent_this_period_cents"] == 20_000
    with db.read_tx(ledger.engine) as conn:
        crossings = conn.execute(select(db.auto_top_ups.c.crossing)).scalars().all()
    assert len(crossings) == len(set(crossings)) == 2
    starter.assert_books_balance()

    # The cap is per billing period: December's first crossing buys again.
    starter.clock.set(DEC_1)
    assert read_auto_top_up(ledger, starter.editor)["spent_this_period_cents"] == 0
    have = available(starter)
    starter.job(*shots_costing(have - 99_000))  # down to 99,000: a crossing -> +50,000
    assert available(starter) == 149_000 and len(auto_purchases(starter)) == 3
    starter.assert_books_balance()


def test_auto_top_up_when_a_refill_starts_a_scheduled_job(starter: Books) -> None:
    ledger = starter.ledger
    spend(starter, 245_000)
    write_auto_top_up(ledger, starter.owner, True, 50_000, "pack-250k", 47_500)
    defer(starter, 200_000)
    starter.clock.set(DEC_1)
    # The refill brings 245,000; the job holds 200,000 (45,000 left, under 50,000): pack-250k.
    assert available(starter) == 45_000 + 250_000
    assert [i["credits"] for i in auto_purchases(starter)] == [250_000]
    starter.assert_books_balance()


def test_auto_top_up_turned_off_buys_nothing(starter: Books) -> None:
    ledger = starter.ledger
    write_auto_top_up(ledger, starter.owner, True, 100_000, "pack-50k", 100_000)
    write_auto_top_up(ledger, starter.owner, False, 100_000, "pack-50k", 100_000)
    starter.job(*shots_costing(200_000))
    assert available(starter) == 45_000 and auto_purchases(starter) == []
    assert starter.account()["auto_top_up_below"] is None


@pytest.mark.parametrize(
    ("role", "below", "pack", "cap", "code"),
    [
        ("editor", 100_000, "pack-50k", 10_000, "forbidden"),
        ("admin", 100_000, "pack-50k", 10_000, "forbidden"),
        ("owner", 100_000, "pack-7", 10_000, "unknown_pack"),
        ("owner", -1, "pack-50k", 10_000, "validation_error"),
        ("owner", 100_000, "pack-50k", -5, "validation_error"),
    ],
)
def test_a_bad_auto_top_up_is_refused_and_writes_nothing(
    starter: Books, role: str, below: int, pack: str, cap: int, code: str
) -> None:
    with pytest.raises(LedgerError) as refused:
        write_auto_top_up(starter.ledger, starter.actors[role], True, below, pack, cap)
    assert refused.value.code == code
    with db.read_tx(starter.ledger.engine) as conn:
        assert conn.execute(select(func.count()).select_from(db.auto_top_up)).scalar_one() == 0
    assert starter.account()["auto_top_up_below"] is None
    assert read_auto_top_up(starter.ledger, starter.editor)["enabled"] is False


def test_the_history_item_of_an_auto_top_up_says_so(starter: Books) -> None:
    ledger = starter.ledger
    ledger.purchase(starter.owner, "pack-50k")
    write_auto_top_up(ledger, starter.owner, True, 250_000, "pack-50k", 10_000)
    starter.job(*shots_costing(1_000))  # 295,000 -> 294,000: no crossing
    starter.job(*shots_costing(50_000))  # 244,000: crossing
    items = ledger.history(starter.org_id, kind="purchase")["items"]
    assert [(i["credits"], i["auto"]) for i in items] == [(50_000, True), (50_000, False)]
    last = ledger.events_after(starter.org_id, 0, 10_000)
    bought = [e for e in last if e["type"] == "purchase.completed"]
    assert json.loads(json.dumps(bought[-1]["data"]))["auto"] is True and "auto" not in bought[0]["data"]


# --- over HTTP: bad input is a clear 4xx and writes nothing -------------------------------------


@pytest.mark.parametrize(
    ("role", "body", "status", "code"),
    [
        (
            "editor",
            {"enabled": True, "below": 1000, "pack_id": "pack-50k", "max_per_period_cents": 10_000},
            403,
            "forbidden",
        ),
        (
            "admin",
            {"enabled": True, "below": 1000, "pack_id": "pack-50k", "max_per_period_cents": 10_000},
            403,
            "forbidden",
        ),
        (
            "owner",
            {"enabled": True, "below": 1000, "pack_id": "pack-9", "max_per_period_cents": 10_000},
            422,
            "unknown_pack",
        ),
        (
            "owner",
            {"enabled": True, "below": -1, "pack_id": "pack-50k", "max_per_period_cents": 10_000},
            422,
            "validation_error",
        ),
        (
            "owner",
            {"enabled": True, "below": "1000", "pack_id": "pack-50k", "max_per_period_cents": 10_000},
            422,
            "validation_error",
        ),
        (
            "owner",
            {"enabled": True, "below": 1000, "pack_id": "pack-50k", "max_per_period_cents": -1},
            422,
            "validation_error",
        ),
        ("owner", {"enabled": True, "below": 1000, "pack_id": "pack-50k"}, 422, "validation_error"),
        (
            "owner",
            {"enabled": True, "below": 2**70, "pack_id": "pack-50k", "max_per_period_cents": 1},
            422,
            "validation_error",
        ),
    ],
)
def test_a_bad_auto_top_up_over_http_is_a_4xx_and_writes_nothing(
    api: Any, role: str, body: dict[str, Any], status: int, code: str
) -> None:
    r = api.client.put("/v1/account/auto-top-up", json=body, headers=api.headers(role=role))
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"]
    got = api.client.get("/v1/account/auto-top-up", headers=api.headers(role="viewer")).json()
    assert (got["enabled"], got["below"], got["set_by"]) == (False, None, None)
    with db.read_tx(api.ledger.engine) as conn:
        assert conn.execute(select(func.count()).select_from(db.auto_top_up)).scalar_one() == 0
        assert conn.execute(select(func.count()).where(db.accounts.c.auto_top_up_below.is_not(None))).scalar_one() == 0


def test_the_owner_sets_auto_top_up_over_http_and_a_viewer_reads_who_set_it(api: Any) -> None:
    body = {"enabled": True, "below": 100_000, "pack_id": "pack-250k", "max_per_period_cents": 95_000}
    r = api.client.put("/v1/account/auto-top-up", json=body, headers=api.headers())
    assert r.status_code == 200, r.text
    got = api.client.get("/v1/account/auto-top-up", headers=api.headers(role="viewer")).json()
    assert {k: got[k] for k in body} == body
    assert got["set_by"]["name"] == "Ana (owner)" and got["set_at"].endswith("Z")
    assert got["spent_this_period_cents"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/jobs",
            {"name": "x", "start": "tomorrow", "shots": [{"engine": "veo-3.1", "tier": "draft", "duration_s": 4}]},
        ),
        ("/v1/jobs", {"name": "x", "start": 1, "shots": [{"engine": "veo-3.1", "tier": "draft", "duration_s": 4}]}),
        ("/v1/estimates", {"when": "later", "shots": [{"engine": "veo-3.1", "tier": "draft", "duration_s": 4}]}),
    ],
)
def test_a_bad_start_or_when_over_http_is_422_and_writes_nothing(api: Any, path: str, body: dict[str, Any]) -> None:
    r = api.client.post(path, json=body, headers=api.headers(role="editor", idem="k1"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    assert api.client.get("/v1/jobs", headers=api.headers()).json()["jobs"] == []


def test_a_scheduled_job_over_http(api: Any) -> None:
    shots = [{"name": "sh010", "engine": "veo-3.1", "tier": "high", "duration_s": 8}]
    r = api.client.post(
        "/v1/jobs", json={"name": "later", "start": "next_period", "shots": shots}, headers=api.headers(idem="d1")
    )
    assert r.status_code == 201 and (r.json()["status"], r.json()["held"]) == ("scheduled", 0)
    again = api.client.post("/v1/jobs", json={"name": "later", "shots": shots}, headers=api.headers(idem="d1"))
    assert again.status_code == 409  # the same key without "start" is another request
    listed = api.client.get("/v1/jobs?status=scheduled", headers=api.headers()).json()["jobs"]
    assert [j["id"] for j in listed] == [r.json()["id"]]
    paused = api.client.post(f"/v1/jobs/{r.json()['id']}/pause", headers=api.headers())
    assert paused.status_code == 409 and paused.json()["error"]["code"] == "invalid_state"


def test_many_threads_reaching_the_refill_at_once_start_a_scheduled_job_once(starter: Books) -> None:
    ledger = starter.ledger
    jobs = [defer(starter, 50_000, f"d{i}") for i in range(3)]
    starter.clock.set(DEC_1)
    errors: list[BaseException] = []

    def touch(i: int) -> None:
        try:
            if i % 3 == 0:
                ledger.refill_due(at=starter.clock.now)
            elif i % 3 == 1:
                ledger.credits(starter.org_id)
            else:  # a cancel of one of them racing its own refill
                try:
                    ledger.cancel(starter.editor, jobs[2]["id"])
                except LedgerError as err:
                    assert err.code == "invalid_state"
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=touch, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    starts = [e for e in status_events(starter) if e["reason"] == "refill"]
    assert (
        sorted(e["job_id"] for e in starts)
        in (
            sorted(j["id"] for j in jobs),  # the refill started all three, then the cancel released one
            sorted(j["id"] for j in jobs[:2]),  # the cancel came first
        )
    )
    assert starter.account()["held"] == 100_000  # d0 and d1; d2 canceled either way
    assert ledger.get_job(starter.editor, jobs[2]["id"])["status"] == "canceled"
    starter.assert_books_balance()

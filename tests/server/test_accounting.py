"""The accounting rules, on SQLite and on a real PostgreSQL (driving the Ledger directly)."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from srv_helpers import Books, ManualClock, make_books, price, shot, shots_costing

from act3_credits.core import pricing
from act3_server import billing, db
from act3_server.ledger import Ledger, LedgerError


def history_items(books: Books, **kw) -> list[dict]:
    items, cursor = [], None
    while True:
        page = books.ledger.history(books.org_id, limit=200, cursor=cursor, **kw)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def journal_for(books: Books, transaction_id: int) -> dict[str, int]:
    with db.read_tx(books.ledger.engine) as conn:
        rows = conn.execute(
            select(db.journal.c.bucket, db.journal.c.delta).where(db.journal.c.transaction_id == transaction_id)
        ).all()
    return {bucket: delta for bucket, delta in rows}


def test_spending_order_monthly_then_rolled_then_purchased_with_split_entries(books: Books, clock: ManualClock) -> None:
    ledger = books.ledger
    ledger.purchase(books.owner, "pack-50k")  # November: 50,000 purchased credits into the bank
    clock.set(datetime(2026, 12, 2, 9, 0, tzinfo=UTC))  # December 1 refill: November's 875,000 roll over
    c = ledger.credits(books.org_id)
    assert (c["monthly_remaining"], c["rollover_bank"], c["rollover_purchased"]) == (875_000, 925_000, 50_000)

    books.job(*shots_costing(874_000))
    assert sum(books.run_all()) == 874_000
    assert books.account()["monthly_remaining"] == 1_000

    # A 2,940 cr shot with 1,000 monthly left takes 1,000 from monthly and 1,940 from the rolled-over bank.
    spec = shot("sh100", "seedance-2.0", "standard", 12)
    assert price(spec) == 2_940
    books.job(spec)
    assert books.run_all() == [2_940]
    item = history_items(books, kind="render", shot="sh100")[0]
    assert (item["credits"], item["monthly_delta"], item["bank_delta"]) == (-2_940, -1_000, -1_940)
    assert journal_for(books, item["id"]) == {"monthly": -1_000, "bank_rolled": -1_940, "held": -2_940}
    acct = books.account()
    assert (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"]) == (0, 873_060, 50_000)

    # Drain the rolled-over part to 500: the next shot takes 500 rolled-over, then 2,440 purchased.
    books.job(*shots_costing(872_560))
    books.run_all()
    books.job(dict(spec, name="sh200"))
    books.run_all()
    item = history_items(books, shot="sh200")[0]
    assert (item["monthly_delta"], item["bank_delta"]) == (0, -2_940)
    assert journal_for(books, item["id"]) == {"bank_rolled": -500, "bank_purchased": -2_440, "held": -2_940}
    acct = books.account()
    assert (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"], acct["held"]) == (0, 0, 47_560, 0)
    books.assert_books_balance()


def test_hold_counts_against_available_and_402_says_what_is_missing(books: Books) -> None:
    ledger = books.ledger
    books.job(*shots_costing(800_000))  # held, not charged yet
    c = ledger.credits(books.org_id)
    assert (c["total"], c["held"], c["available"]) == (875_000, 800_000, 75_000)
    before = books.account()
    with pytest.raises(LedgerError) as err:
        books.job(*shots_costing(80_000))
    assert err.value.code == "insufficient_credits"
    assert err.value.extra == {"required_credits": 80_000, "current_balance": 75_000}
    assert books.account() == before  # nothing held, nothing written
    books.run_all()
    assert ledger.credits(books.org_id)["available"] == 75_000
    books.assert_books_balance()


def test_refill_rollover_cap_expiry_and_purchases_never_cut(ledger: Ledger, clock: ManualClock) -> None:
    books = make_books(ledger, clock, "starter")  # 245,000 a month, rollover cap 612,500
    ledger.purchase(books.owner, "pack-50k")
    books.job(*shots_costing(45_000))
    books.run_all()
    assert books.account()["monthly_remaining"] == 200_000

    # The clock jumps three billing dates at once: each period is applied in turn.
    clock.set(datetime(2027, 2, 2, 8, 0, tzinfo=UTC))
    c = ledger.credits(books.org_id)
    # Dec 1: 200,000 roll over; Jan 1: 245,000 roll over; Feb 1: room is 612,500 - 445,000 = 167,500,
    # so 167,500 roll over and 77,500 expire. The 50,000 purchased never count against the cap.
    assert c["monthly_remaining"] == 245_000
    assert c["rollover_bank"] == 612_500 + 50_000
    assert c["rollover_purchased"] == 50_000
    assert c["total"] == 245_000 + 662_500
    assert c["billing_date"] == "2027-03-01"
    rollovers = [i["credits"] for i in history_items(books, kind="rollover")]
    assert rollovers == [167_500, 245_000, 200_000]  # newest first
    assert [i["credits"] for i in history_items(books, kind="expiry")] == [-77_500]
    refill_items = history_items(books, kind="refill")
    assert [i["at"] for i in refill_items] == [
        "2027-02-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ]
    assert all(i["credits"] == 245_000 and i["monthly_delta"] == 245_000 for i in refill_items)
    refilled = [e["data"] for e in ledger.events_after(books.org_id, 0) if e["type"] == "billing.refilled"]
    assert [(e["period_start"], e["rolled_over"], e["expired"]) for e in refilled] == [
        ("2026-12-01", 200_000, 0),
        ("2027-01-01", 245_000, 0),
        ("2027-02-01", 167_500, 77_500),
    ]

    # A pack bought with the rolled-over part at the cap is kept whole; March's 245,000 all expire.
    ledger.purchase(books.owner, "pack-1m")
    clock.set(datetime(2027, 3, 1, 0, 0, tzinfo=UTC))
    c = ledger.credits(books.org_id)
    assert (c["rollover_bank"], c["rollover_purchased"]) == (612_500 + 1_050_000, 1_050_000)
    assert history_items(books, kind="expiry")[0]["credits"] == -245_000
    # Spending drains the rolled-over part first, which makes room under the cap again.
    books.job(*shots_costing(245_000 + 100_000))
    books.run_all()
    acct = books.account()
    assert (acct["monthly_remaining"], acct["bank_rolled"], acct["bank_purchased"]) == (0, 512_500, 1_050_000)
    books.assert_books_balance()


def test_billing_day_31_falls_on_the_last_day_of_short_months(ledger: Ledger) -> None:
    assert billing.billing_date(2027, 2, 31) == date(2027, 2, 28)
    assert billing.billing_date(2028, 2, 31) == date(2028, 2, 29)
    assert billing.billing_date(2027, 4, 31) == date(2027, 4, 30)
    assert billing.billing_date(2027, 4, 29) == date(2027, 4, 29)
    assert billing.next_billing_date(date(2027, 2, 28), 30) == date(2027, 3, 30)

    clock = ManualClock(datetime(2027, 1, 31, 10, 0, tzinfo=UTC))
    ledger.clock = clock
    books = make_books(ledger, clock, "pro", billing_day=31)
    assert ledger.credits(books.org_id)["billing_date"] == "2027-02-28"
    steps = [
        (datetime(2027, 2, 27, 23, 59, 59, tzinfo=UTC), 1, "2027-02-28"),
        (datetime(2027, 2, 28, 0, 0, 0, tzinfo=UTC), 2, "2027-03-31"),
        (datetime(2027, 3, 30, 12, 0, 0, tzinfo=UTC), 2, "2027-03-31"),
        (datetime(2027, 3, 31, 0, 0, 1, tzinfo=UTC), 3, "2027-04-30"),
        (datetime(2027, 4, 30, 0, 0, 0, tzinfo=UTC), 4, "2027-05-31"),
    ]
    for when, refills_so_far, next_date in steps:
        clock.set(when)
        assert ledger.credits(books.org_id)["billing_date"] == next_date
        assert len(history_items(books, kind="refill")) == refills_so_far, when
    starts = [i["at"][:10] for i in history_items(books, kind="refill")]
    assert starts == ["2027-04-30", "2027-03-31", "2027-02-28", "2027-01-31"]


def test_refill_exactly_once_when_lazy_requests_and_billing_runs_race(
    database_url: str, ledger: Ledger, clock: ManualClock
) -> None:
    books = make_books(ledger, clock, "pro")
    books.job(*shots_costing(75_000))
    books.run_all()
    at = datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC)  # two periods due: Dec 1 and Jan 1
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "act3_server", "billing", "run", "--database", database_url, "--at", at.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def lazy() -> None:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            other = Ledger(engine, ManualClock(at))
            barrier.wait()
            for _ in range(5):
                other.credits(books.org_id)
                other.refill_due(at=at)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=lazy) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in runs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert not errors, errors

    with db.read_tx(ledger.engine) as conn:
        periods = conn.execute(
            select(db.refills.c.period_start)
            .where(db.refills.c.org_id == books.org_id)
            .order_by(db.refills.c.period_start)
        ).scalars()
        assert list(periods) == [date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)]
    clock.set(at)
    assert len(history_items(books, kind="refill")) == 3
    assert [i["credits"] for i in history_items(books, kind="rollover")] == [875_000, 800_000]
    c = ledger.credits(books.org_id)
    assert (c["monthly_remaining"], c["rollover_bank"]) == (875_000, 1_675_000)
    books.assert_books_balance()
    assert ledger.refill_due(at=at) == []  # and a later run finds nothing to do


def test_a_billing_time_with_an_offset_refills_on_its_utc_date(books: Books) -> None:
    ledger = books.ledger
    # 02:00 on 1 December at UTC+5 is still 30 November in UTC: December's refill is not due.
    assert ledger.refill_due(at=datetime(2026, 12, 1, 2, 0, tzinfo=timezone(timedelta(hours=5)))) == []
    assert len(history_items(books, kind="refill")) == 1
    # 20:00 on 30 November at UTC-5 is 01:00 on 1 December in UTC: it is due, once.
    late = datetime(2026, 11, 30, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert [a["period_start"] for a in ledger.refill_due(at=late)] == ["2026-12-01"]
    assert ledger.refill_due(at=late) == []


def test_purchases_go_to_the_bank_owner_and_admin_only(books: Books) -> None:
    ledger = books.ledger
    result = ledger.purchase(books.actors["admin"], "pack-250k")
    assert result.status == 201
    body = result.body
    assert body["purchase"]["credits"] == 250_000 and body["purchase"]["price_cents"] == 47_500
    assert body["purchase"]["payment_method"] == {"brand": "Visa", "last4": "4242"}
    assert body["balance"]["rollover_purchased"] == 250_000
    assert body["balance"]["total"] == 875_000 + 250_000
    for role in ("editor", "viewer"):
        with pytest.raises(LedgerError) as err:
            ledger.purchase(books.actors[role], "pack-50k")
        assert err.value.code == "forbidden" and "owner or an admin" in err.value.message
    with pytest.raises(LedgerError) as err:
        ledger.purchase(books.owner, "pack-7")
    assert err.value.code == "unknown_pack"
    item = history_items(books, kind="purchase")
    assert [(i["credits"], i["bank_delta"], i["monthly_delta"], i["member"]) for i in item] == [
        (250_000, 250_000, 0, "Ben (admin)")
    ]
    events = [e for e in ledger.events_after(books.org_id, 0) if e["type"] == "purchase.completed"]
    assert events[0]["data"]["credits"] == 250_000 and events[0]["data"]["balance"]["rollover_purchased"] == 250_000
    books.assert_books_balance()


def test_idempotency_replays_the_first_answer_and_refuses_a_different_body(books: Books) -> None:
    ledger = books.ledger
    first = ledger.create_job(books.editor, "seq010", [shot("sh010")], "key-1")
    again = ledger.create_job(books.editor, "seq010", [shot("sh010")], "key-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert again.body == first.body and again.status == 201
    assert ledger.credits(books.org_id)["held"] == 2_080  # held once
    with pytest.raises(LedgerError) as err:
        ledger.create_job(books.editor, "seq010", [shot("sh010", duration_s=4)], "key-1")
    assert err.value.code == "idempotency_conflict"
    assert len(ledger.list_jobs(books.editor)) == 1

    bought = ledger.purchase(books.owner, "pack-50k", "buy-1")
    assert ledger.purchase(books.owner, "pack-50k", "buy-1").body == bought.body
    with pytest.raises(LedgerError) as err:
        ledger.purchase(books.owner, "pack-1m", "buy-1")
    assert err.value.code == "idempotency_conflict"
    assert books.account()["bank_purchased"] == 50_000
    books.assert_books_balance()


def test_history_keyset_pagination_and_filters(books: Books, clock: ManualClock) -> None:
    ledger = books.ledger
    specs = [shot(f"SH{i:03d}", "veo-3.1-fast", "high" if i % 3 == 0 else "draft", 4) for i in range(1, 13)]
    books.job(*specs)
    books.run_all()
    ledger.purchase(books.owner, "pack-50k")
    everything = history_items(books)
    assert len(everything) == 12 + 1 + 1  # renders, the purchase, the first refill
    keys = [(i["at"], i["id"]) for i in everything]
    assert keys == sorted(keys, reverse=True)
    pages, cursor = [], None
    while True:
        page = ledger.history(books.org_id, limit=5, cursor=cursor)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 4]
    assert [i["id"] for p in pages for i in p] == [i["id"] for i in everything]
    high = history_items(books, tier="high")
    assert sorted(i["shot"] for i in high) == ["SH003", "SH006", "SH009", "SH012"]
    assert all(i["credits"] == -784 for i in high)  # 98 x 2 x 4 s
    assert sorted(i["shot"] for i in history_items(books, shot="sh01")) == ["SH010", "SH011", "SH012"]
    assert [i["kind"] for i in history_items(books, kind="purchase")] == ["purchase"]
    assert history_items(books, shot="%") == []  # a literal, not a wildcard
    with pytest.raises(LedgerError) as err:
        ledger.history(books.org_id, cursor="not-a-cursor")
    assert err.value.code == "bad_request"


def test_estimates_equal_charges_for_every_engine_and_tier(ledger: Ledger, clock: ManualClock) -> None:
    books = make_books(ledger, clock, "enterprise")
    card = pricing.DEFAULT_RATE_CARD
    specs = [
        shot(f"{e.id}/{t.id}/{d}", e.id, t.id, d)
        for e in card.engines
        for t in card.tiers
        for d in (e.allowed_durations()[0], 7.4, e.allowed_durations()[-1])
    ]
    estimate = ledger.estimate(books.editor, specs)
    assert estimate["blocked"] == [] and estimate["affordable"]
    job = books.job(*specs)
    assert job["estimated_credits"] == estimate["total"] == sum(s["credits"] for s in estimate["shots"])
    charged = books.run_all()
    assert charged == [s["credits"] for s in estimate["shots"]]
    renders = {i["shot"]: -i["credits"] for i in history_items(books, kind="render")}
    assert renders == {s["name"]: s["credits"] for s in estimate["shots"]}
    assert renders["veo-3.1/4k/8"] == 260 * 4 * 8
    assert renders["seedance-2.0/draft/7.4"] == 858  # ceil(245 x 1/2 x 7)
    done = ledger.get_job(books.editor, job["id"])
    assert (done["status"], done["charged_credits"], done["held"]) == ("completed", estimate["total"], 0)
    books.assert_books_balance()


def test_4k_is_refused_below_enterprise_and_nothing_is_written(books: Books) -> None:
    ledger = books.ledger
    before = books.account()
    estimate = ledger.estimate(books.editor, [shot("a"), shot("b", tier="4k")])
    assert estimate["blocked"] == [
        {"name": "b", "code": "tier_not_allowed", "reason": estimate["shots"][1]["blocked_reason"]}
    ]
    assert "Enterprise" in estimate["shots"][1]["blocked_reason"]
    assert estimate["total"] == 2_080 + 8_320 and estimate["affordable"] is False
    with pytest.raises(LedgerError) as err:
        books.job(shot("a"), shot("b", tier="4k"))
    assert (err.value.code, err.value.extra) == ("tier_not_allowed", {"tier": "4k", "plan": "pro"})
    assert books.account() == before and ledger.list_jobs(books.editor) == []


def test_viewer_is_read_only(books: Books) -> None:
    ledger = books.ledger
    viewer = books.actors["viewer"]
    estimate = ledger.estimate(viewer, [shot()])
    assert estimate["blocked"][0]["code"] == "forbidden" and not estimate["affordable"]
    with pytest.raises(LedgerError) as err:
        books.job(shot(), actor=viewer)
    assert err.value.code == "forbidden"
    job = books.job(shot())
    for action in (ledger.pause, ledger.resume, ledger.cancel):
        with pytest.raises(LedgerError) as err:
            action(viewer, job["id"])
        assert err.value.code == "forbidden"
    assert ledger.get_job(viewer, job["id"])["status"] == "queued"  # reading is fine


def test_another_orgs_job_is_not_found(ledger: Ledger, clock: ManualClock) -> None:
    a = make_books(ledger, clock, "pro", name="A")
    b = make_books(ledger, clock, "pro", name="B")
    job = a.job(shot())
    for action in (ledger.get_job, ledger.pause, ledger.resume, ledger.cancel):
        with pytest.raises(LedgerError) as err:
            action(b.owner, job["id"])
        assert err.value.code == "not_found"
    assert ledger.list_jobs(b.owner) == []
    assert ledger.get_job(a.owner, job["id"])["held"] == 2_080


def test_pause_resume_cancel_states_and_hold_release(books: Books) -> None:
    ledger = books.ledger
    job = books.job(*[shot(f"sh{i}") for i in range(4)])
    claim = ledger.claim_next_shot("w1")
    assert claim is not None
    paused = ledger.pause(books.editor, job["id"])
    assert paused["status"] == "paused"
    assert ledger.claim_next_shot("w2") is None  # nothing more starts while paused
    assert ledger.complete_shot(claim)  # the shot that was rendering finishes and is charged
    assert ledger.get_job(books.editor, job["id"])["charged_credits"] == 2_080
    with pytest.raises(LedgerError) as err:
        ledger.resume(books.editor, 10_000)
    assert err.value.code == "not_found"
    assert ledger.resume(books.editor, job["id"])["status"] == "processing"
    claim2 = ledger.claim_next_shot("w1")
    assert claim2 is not None and claim2.shot_index == 1
    canceled = ledger.cancel(books.editor, job["id"])
    assert (canceled["status"], canceled["held"], canceled["charged_credits"]) == ("canceled", 0, 2_080)
    assert [s["status"] for s in canceled["shots"]] == ["completed", "canceled", "canceled", "canceled"]
    assert ledger.complete_shot(claim2) is False  # the canceled shot is never charged
    c = ledger.credits(books.org_id)
    assert (c["held"], c["total"]) == (0, 875_000 - 2_080)
    for action in (ledger.pause, ledger.resume, ledger.cancel):
        with pytest.raises(LedgerError) as err:
            action(books.editor, job["id"])
        assert err.value.code == "invalid_state"
    books.assert_books_balance()


def test_failed_shots_charge_nothing_and_a_dead_workers_shot_is_requeued(books: Books) -> None:
    ledger = books.ledger
    job = books.job(shot("a"), shot("b"), shot("c"))
    first = ledger.claim_next_shot("w1")
    assert first is not None and ledger.fail_shot(first, "boom")
    dead = ledger.claim_next_shot("w-dead", lease_s=0.0)  # its lease is already over
    assert dead is not None and dead.shot_index == 1
    again = ledger.claim_next_shot("w2")
    assert again is not None and again.shot_id == dead.shot_id  # re-queued, claimed by another worker
    assert ledger.complete_shot(dead) is False  # the dead worker can no longer charge it
    assert ledger.complete_shot(again)
    books.run_all()
    done = ledger.get_job(books.editor, job["id"])
    assert done["status"] == "completed" and done["charged_credits"] == 4_160 and done["held"] == 0
    assert [s["status"] for s in done["shots"]] == ["failed", "completed", "completed"]
    assert len(history_items(books, kind="render")) == 2
    books.assert_books_balance()


def test_a_job_whose_every_shot_failed_is_failed(books: Books) -> None:
    ledger = books.ledger
    job = books.job(shot("a"), shot("b"))
    while (claim := ledger.claim_next_shot("w")) is not None:
        ledger.fail_shot(claim)
    done = ledger.get_job(books.editor, job["id"])
    assert (done["status"], done["charged_credits"], done["held"]) == ("failed", 0, 0)
    assert ledger.credits(books.org_id)["available"] == 875_000

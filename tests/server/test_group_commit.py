"""Group commit: holds that arrive together share one transaction, and each still answers exactly
what it would have answered alone (its own job number, a replay, a 402, an auto top-up)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from srv_helpers import Books, ManualClock, make_books, shot, shots_costing
from test_ledger_fast_path import snapshot

from act3_server import groupcommit
from act3_server import ledger as ledger_module
from act3_server.ledger import Ledger
from act3_server.runner import Runner
from act3_server.topup import write as write_auto_top_up


def test_callers_that_arrive_while_a_batch_runs_share_the_next_one() -> None:
    """The first caller leads; the six that queue behind its batch all go in the next batch, led by
    the oldest of them; each gets its own answer, and an item's error is raised in its caller only."""
    batches: list[list[Any]] = []
    first_running = threading.Event()
    release_first = threading.Event()

    def run_batch(items: list[groupcommit.Item]) -> None:
        batches.append([it.payload for it in items])
        if len(batches) == 1:
            first_running.set()
            assert release_first.wait(10)
        for it in items:
            if it.payload == 13:
                it.answer(error=ValueError("thirteen"))
            else:
                it.answer(it.payload * 10)

    gc = groupcommit.GroupCommit(run_batch)
    answers: dict[int, Any] = {}

    def call(n: int) -> None:
        try:
            answers[n] = gc.run("org-1", n)
        except ValueError as exc:
            answers[n] = str(exc)

    first = threading.Thread(target=call, args=(1,))
    first.start()
    assert first_running.wait(10)
    others = [threading.Thread(target=call, args=(n,)) for n in (2, 3, 13, 5, 6, 7)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(gc._queues["org-1"]) < 6 and time.monotonic() < deadline:
        time.sleep(0.001)
    release_first.set()
    for t in [first, *others]:
        t.join(10)
    assert batches[0] == [1]
    assert sorted(batches[1]) == [2, 3, 5, 6, 7, 13] and len(batches) == 2
    assert answers == {1: 10, 2: 20, 3: 30, 13: "thirteen", 5: 50, 6: 60, 7: 70}
    assert gc._queues == {}  # nobody leads an empty lane: the next caller leads at once
    assert gc.run("org-1", 4) == 40


def test_a_batch_that_raises_answers_its_items_with_the_error_and_the_lane_goes_on() -> None:
    def run_batch(items: list[groupcommit.Item]) -> None:
        if items[0].payload == "boom":
            raise RuntimeError("database went away")
        for it in items:
            it.answer(it.payload)

    gc = groupcommit.GroupCommit(run_batch)
    with pytest.raises(RuntimeError, match="database went away"):
        gc.run(0, "boom")
    assert gc.run(0, "fine") == "fine"


def test_a_batch_of_several_that_raises_is_run_again_one_item_at_a_time() -> None:
    """A database error or an item that must undo its writes rolls a batch back: each item is then
    written alone and answers what it would have alone; only the item that fails alone fails."""
    calls: list[list[Any]] = []

    def run_batch(items: list[groupcommit.Item]) -> None:
        calls.append([it.payload for it in items])
        if len(items) > 1 or items[0].payload == "bad":
            raise RuntimeError(f"rolled back: {[it.payload for it in items]}")
        items[0].answer(items[0].payload.upper())

    gc = groupcommit.GroupCommit(run_batch)
    items = [groupcommit.Item(p) for p in ("a", "bad", "c")]
    gc._run(items)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]
    assert [(it.result, str(it.error) if it.error else None) for it in items] == [
        ("A", None),
        (None, "rolled back: ['bad']"),
        ("C", None),
    ]


def test_lanes_do_not_wait_for_each_other() -> None:
    """An org's batch does not hold up another org's holds (PostgreSQL: one lane per account row)."""
    inside = threading.Event()
    release = threading.Event()

    def run_batch(items: list[groupcommit.Item]) -> None:
        if items[0].payload == "slow":
            inside.set()
            assert release.wait(10)
        for it in items:
            it.answer(it.payload)

    gc = groupcommit.GroupCommit(run_batch)
    slow = threading.Thread(target=gc.run, args=("a", "slow"))
    slow.start()
    assert inside.wait(10)
    assert gc.run("b", "quick") == "quick"
    release.set()
    slow.join(10)


def pending(ledger: Ledger, books: Books, specs: list[dict[str, Any]], key: str | None) -> groupcommit.Item:
    org = ledger.org(books.org_id)
    prices = ledger.price_shots(specs)
    return groupcommit.Item(ledger._pending_hold(books.editor, org, "batch", specs, prices, key, None))


def test_holds_in_one_batch_write_what_they_write_one_at_a_time(ledger: Ledger, clock: ManualClock) -> None:
    """Four holds in one transaction: the second repeats the first's Idempotency-Key and the third
    asks for more than is left, so both step aside before writing anything (their callers then take
    the general path: a replay and a 402) while the first and the fourth are held. The books end as
    they end when the same four requests come one at a time."""
    start = clock.now
    grouped = make_books(ledger, clock, "pro", name="grouped")
    available = grouped.account()["monthly_remaining"]
    specs = [[shot("sh010")], [shot("sh010")], shots_costing(available + 1), [shot("sh020", tier="high")]]
    keys = ["a", "a", None, "d"]
    items = [pending(ledger, grouped, s, k) for s, k in zip(specs, keys, strict=True)]
    ledger._holds._run(items)
    assert [it.result.body["id"] if it.result else None for it in items] == [1, None, None, 2]
    assert [type(it.error) for it in items] == [
        type(None),
        ledger_module._Fallback,
        ledger_module._Fallback,
        type(None),
    ]
    replay = ledger.create_job(grouped.editor, "batch", specs[1], "a")
    assert replay.replayed and replay.body["id"] == 1
    with pytest.raises(ledger_module.LedgerError) as refused:
        ledger.create_job(grouped.editor, "batch", specs[2], None)
    assert refused.value.code == "insufficient_credits"

    clock.set(start)
    alone = make_books(ledger, clock, "pro", name="one at a time")
    for s, k in zip(specs, keys, strict=True):
        try:
            ledger.create_job(alone.editor, "batch", s, k)
        except ledger_module.LedgerError as exc:
            assert exc.code == "insufficient_credits"
    got, want = snapshot(grouped), snapshot(alone)
    for part in want:
        assert got[part] == want[part], part
    assert (
        got["account"]["held"] == items[0].result.body["estimated_credits"] + items[3].result.body["estimated_credits"]
    )
    grouped.assert_books_balance()


def test_a_hold_that_must_undo_its_write_sends_each_hold_of_its_batch_alone(ledger: Ledger, clock: ManualClock) -> None:
    """Auto top-up: the hold that crosses the threshold is bought with its pack by the general path,
    after what it wrote in the batch is rolled back; the batch's other holds run again one by one,
    so every hold is written once and the pack bought once."""
    books = make_books(ledger, clock, "starter", name="top-up")
    write_auto_top_up(ledger, books.owner, True, 100_000, "pack-50k", 20_000)
    have = books.account()["monthly_remaining"]
    specs = [shots_costing(have - 120_000), shots_costing(30_000), [shot("sh900", tier="draft")]]  # the 2nd crosses
    items = [pending(ledger, books, s, k) for s, k in zip(specs, ["x", "y", "z"], strict=True)]
    ledger._holds._run(items)
    assert items[0].result.body["id"] == 1 and items[2].result.body["id"] == 2
    assert isinstance(items[1].error, ledger_module._Fallback) and items[1].result is None
    crossing = ledger.create_job(books.editor, "batch", specs[1], "y")  # what the caller does next
    assert crossing.status == 201 and crossing.body["id"] == 3
    bought = [i for i in ledger.history(books.org_id, kind="purchase")["items"] if i["auto"]]
    assert [i["credits"] for i in bought] == [50_000]
    held = sum(it.result.body["estimated_credits"] for it in (items[0], items[2])) + crossing.body["estimated_credits"]
    acct = books.account()
    assert acct["held"] == held
    assert (
        acct["monthly_remaining"] + acct["bank_rolled"] + acct["bank_purchased"] - acct["held"] == have + 50_000 - held
    )
    books.assert_books_balance()


def test_concurrent_holds_of_one_org_are_numbered_once_each(ledger: Ledger, clock: ManualClock) -> None:
    """Sixteen threads hold at once through `create_job`: sixteen jobs numbered 1 to 16, the sum held,
    and the events numbered without a gap."""
    books = make_books(ledger, clock, "pro", name="sixteen")
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def hold(i: int) -> None:
        body = ledger.create_job(books.editor, "batch", [shot(f"sh{i:03d}")], f"k{i}").body
        with lock:
            answers.append(body)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a["id"] for a in answers) == list(range(1, 17))
    assert books.account()["held"] == sum(a["estimated_credits"] for a in answers)
    seqs = [e["seq"] for e in ledger.events_after(books.org_id, 0, 1000)]
    assert seqs == list(range(1, len(seqs) + 1))
    books.assert_books_balance()


def claims_of(ledger: Ledger, books: Books, n: int) -> list[Any]:
    for i in range(n):
        books.job(shot(f"sh{i:03d}", tier="draft"), key=f"{books.org_id}-{i}")
    claims = [ledger.claim_next_shot(f"w{i}") for i in range(n)]
    assert all(c is not None and c.org_id == books.org_id for c in claims)
    return claims


def test_charges_in_one_batch_write_what_they_write_one_at_a_time(ledger: Ledger, clock: ManualClock) -> None:
    """Three shots charged in one transaction (shots of one org that finish together) leave the
    books exactly as three charges one after the other."""
    start = clock.now
    grouped = make_books(ledger, clock, "pro", name="charged together")
    items = [groupcommit.Item((c, None)) for c in claims_of(ledger, grouped, 3)]
    ledger._charges._run(items)
    assert [it.result for it in items] == [(True, None)] * 3
    clock.set(start)
    alone = make_books(ledger, clock, "pro", name="charged alone")
    for claim in claims_of(ledger, alone, 3):
        assert ledger.complete_shot(claim)
    got, want = snapshot(grouped), snapshot(alone)
    for part in want:
        assert got[part] == want[part], part
    assert [h["credits"] for h in ledger.history(grouped.org_id, kind="render")["items"]] == [-1_040] * 3
    assert grouped.account()["monthly_remaining"] == 875_000 - 3 * 1_040  # Pro; a draft 8 s Veo shot
    grouped.assert_books_balance()


def test_a_charge_that_falls_back_sends_each_charge_of_its_batch_alone(ledger: Ledger, clock: ManualClock) -> None:
    """A billing date passes while the shots render: the first charge must refill first (the
    general path), so the batch is rolled back and each charge runs alone: the first refills and
    charges through the general path, the other two are then charged, each once."""
    books = make_books(ledger, clock, "pro", billing_day=26, name="bills on the 26th")  # the clock: 25 Nov
    claims = claims_of(ledger, books, 3)
    clock.advance(days=1)  # 26 Nov: the refill is due
    items = [groupcommit.Item((c, None)) for c in claims]
    ledger._charges._run(items)
    # Each alone finds the refill due too (the batch that would have applied it was rolled back).
    assert all(isinstance(it.error, ledger_module._Fallback) and it.result is None for it in items)
    for claim in claims:  # what the runner's calls do next: the first refills, then each charges
        assert ledger.complete_shot(claim)
    # Refilled on the 26th (a new 875,000), then charged three draft shots from it.
    assert books.account()["monthly_remaining"] == 875_000 - 3 * 1_040
    assert len(ledger.history(books.org_id, kind="render")["items"]) == 3
    books.assert_books_balance()


def test_concurrent_charges_and_a_cancel_of_one_org_neither_deadlock_nor_double_charge(
    ledger: Ledger, clock: ManualClock
) -> None:
    """Eight shots of one org charged from eight threads while another job of the org, its first
    shot rendering too, is canceled: every charge lands once, the canceled job is charged at most
    the shot it was rendering, and nothing stays held."""
    books = make_books(ledger, clock, "pro", name="eight at once")
    claims = claims_of(ledger, books, 8)
    victim = books.job(shot("keep-out"), shot("keep-out-2"))
    victim_claim = ledger.claim_next_shot("wv")
    assert victim_claim is not None and victim_claim.job_number == victim["id"]
    results: list[bool] = []
    lock = threading.Lock()

    def charge(claim: Any) -> None:
        ok = ledger.complete_shot(claim)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=charge, args=(c,)) for c in claims]
    victims = threading.Thread(target=ledger.complete_shot, args=(victim_claim,))
    for t in [*threads, victims]:
        t.start()
    ledger.cancel(books.editor, victim["id"])
    for t in [*threads, victims]:
        t.join(30)
    assert results == [True] * 8
    renders = sorted(r["shot"] for r in ledger.history(books.org_id, kind="render")["items"])
    assert renders in ([f"sh{i:03d}" for i in range(8)], sorted(["keep-out", *(f"sh{i:03d}" for i in range(8))]))
    assert books.account()["held"] == 0
    books.assert_books_balance()


def test_a_charge_leases_the_workers_next_shot_and_writes_what_a_claim_would(
    ledger: Ledger, clock: ManualClock
) -> None:
    """The runner's chained claim: on SQLite, charging a shot leases the same worker's next one in
    the charge's transaction (on PostgreSQL the worker claims it alone: None). Three shots rendered
    that way leave the books exactly as claim, charge, claim, charge, claim, charge."""
    specs = [shot(f"sh{i:03d}", tier="draft") for i in (10, 20, 30)]
    start = clock.now
    chained = make_books(ledger, clock, "pro", name="chained")
    chained.job(*specs)
    claim = ledger.claim_next_shot("w1")
    leased: list[int | None] = []
    while claim is not None:
        done, nxt = ledger.complete_and_claim(claim, 10.0)
        assert done
        leased.append(None if nxt is None else nxt.shot_index)
        if nxt is not None:
            assert nxt.worker == "w1" and nxt.job_id == claim.job_id and ledger.still_rendering(nxt)
        claim = nxt or ledger.claim_next_shot("w1")
    sqlite = ledger.engine.dialect.name == "sqlite"
    assert leased == ([1, 2, None] if sqlite else [None, None, None])
    clock.set(start)
    alone = make_books(ledger, clock, "pro", name="claimed alone")
    alone.job(*specs)
    assert alone.run_all() == [1_040] * 3  # a draft 8 s Veo shot on Pro
    got, want = snapshot(chained), snapshot(alone)
    for part in want:
        assert got[part] == want[part], part
    assert chained.account()["monthly_remaining"] == 875_000 - 3 * 1_040
    chained.assert_books_balance()


def test_charges_that_lease_in_one_batch_write_what_claims_and_charges_write_one_at_a_time(
    ledger: Ledger, clock: ManualClock
) -> None:
    """Three workers' charges in one transaction, each leasing its worker's next shot (SQLite;
    on PostgreSQL the workers claim alone, as the runner then does): the books are exactly those
    of three charges and then two claims, one at a time; the third worker finds nothing left."""
    sqlite = ledger.engine.dialect.name == "sqlite"

    def books_with_two_more_jobs(name: str) -> tuple[Books, list[Any]]:
        books = make_books(ledger, clock, "pro", name=name)
        claims = claims_of(ledger, books, 3)
        for i in (3, 4):
            books.job(shot(f"sh{i:03d}", tier="draft"), key=f"{books.org_id}-{i}")
        return books, claims

    start = clock.now
    grouped, claims = books_with_two_more_jobs("leased together")
    items = [groupcommit.Item((c, 10.0)) for c in claims]
    ledger._charges._run(items)
    assert [done for done, _ in (it.result for it in items)] == [True, True, True]
    leased = [nxt for _, nxt in (it.result for it in items)]
    if sqlite:
        assert [(c.worker, c.shot_index) for c in leased[:2]] == [("w0", 0), ("w1", 0)] and leased[2] is None
        names = [ledger.get_job(grouped.editor, c.job_number)["shots"][0]["name"] for c in leased[:2]]
        assert names == ["sh003", "sh004"]
    else:
        assert leased == [None, None, None]
        assert ledger.claim_next_shot("w0") is not None and ledger.claim_next_shot("w1") is not None
    clock.set(start)
    alone, claims = books_with_two_more_jobs("one at a time")
    for claim in claims:
        assert ledger.complete_shot(claim)
    assert ledger.claim_next_shot("w0") is not None and ledger.claim_next_shot("w1") is not None
    got, want = snapshot(grouped), snapshot(alone)
    for part in want:
        assert got[part] == want[part], part
    grouped.assert_books_balance()


def test_a_runner_stopped_after_its_charge_leased_the_next_shot_hands_that_shot_back(
    ledger: Ledger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serve process stops just after a charge that leased the worker's next shot: that shot
    goes back to the queue at once (not after its lease runs out), and the next claim takes it."""
    books = make_books(ledger, clock, "pro", name="stopped")
    number = books.job(shot("sh010", tier="draft"), shot("sh020", tier="draft"))["id"]
    runner = Runner(ledger, render_speed=0.0, workers=1, poll_s=0.05)
    charged = threading.Event()
    complete_and_claim = ledger.complete_and_claim

    def then_stop(claim: Any, lease_s: float | None = 10.0) -> Any:
        answer = complete_and_claim(claim, lease_s)
        runner._stop.set()  # as runner.stop() does, from inside the worker
        charged.set()
        return answer

    monkeypatch.setattr(ledger, "complete_and_claim", then_stop)
    runner.start()
    assert charged.wait(10)
    runner.stop()
    job = ledger.get_job(books.editor, number)
    assert [s["status"] for s in job["shots"]] == ["completed", "queued"]
    assert job["charged_credits"] == 1_040 and job["status"] == "processing"
    again = ledger.claim_next_shot("another worker")
    assert again is not None and again.shot_index == 1

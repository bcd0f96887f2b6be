"""Usage and the forecast on both databases: every grouping and filter sums exactly the history's
render items of its range, a few totals are checked against prices worked out from the price list,
failed and canceled shots leave uncharged history items the usage does not count, and bad ranges
are refused.

The charges go through the real paths: the driver's fast charge, and the general one (the first
charge after a billing date, which applies the refill first)."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from srv_helpers import Api, Books, ManualClock, make_books, price, shot

from act3_credits.core import billing
from act3_server import db, usage
from act3_server.clock import DbClock
from act3_server.ledger import Ledger
from act3_server.server import Biller

V, S, K = "veo-3.1", "seedance-2.0", "veo-3.1-fast"

# (when, who, shots): every job is rendered at once at its time.
PLAN = [
    (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), "editor", [shot("sq010_sh010", V, "draft", 8), shot("sq010_sh020", V, "high", 8)]),
    (datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC), "owner", [shot("sq010_sh010", S, "standard", 5)]),
    (datetime(2026, 11, 26, 0, 0, tzinfo=UTC), "editor", [shot("sq020_sh010", K, "high", 4), shot("sq020_sh020", V, "standard", 6)]),
    (datetime(2026, 11, 28, 10, 30, tzinfo=UTC), "owner", [shot("sq010_sh020", V, "high", 8), shot("sq030_sh010", S, "draft", 10)]),
    # After the billing date: the first charge applies the refill first (the general charge path).
    (datetime(2026, 12, 1, 0, 30, tzinfo=UTC), "editor", [shot("sq010_sh010", V, "high", 6), shot("sq040_sh010", K, "standard", 8)]),
    (datetime(2026, 12, 2, 9, 15, tzinfo=UTC), "owner", [shot("sq040_sh010", K, "draft", 4)]),
]  # fmt: skip


# The project each job of PLAN is sent for, in order (None: none); usage by project is the job's.
PROJECTS = ["spot-2027", None, "trailer", "spot-2027", None, "trailer"]


def render_plan(books: Books) -> None:
    for (when, who, specs), project in zip(PLAN, PROJECTS, strict=True):
        books.clock.set(when)
        books.job(*specs, actor=books.actors[who], project=project)
        assert len(books.run_all()) == len(specs)


def history_renders(books: Books) -> list[dict[str, Any]]:
    """The history's render items, each with its job's project (which history items do not carry)."""
    rows, cursor = [], None
    while True:
        page = books.ledger.history(books.org_id, limit=200, cursor=cursor, kind="render")
        rows += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    projects = {n: books.ledger.get_job(books.actors["owner"], n)["project"] or "" for n in {r["job_id"] for r in rows}}
    for r in rows:
        r["project"] = projects[r["job_id"]]
    return rows


def key_of(row: dict[str, Any], group: str) -> str:
    day = date.fromisoformat(row["at"][:10])
    return {
        "day": day.isoformat(),
        "week": (day - timedelta(days=day.weekday())).isoformat(),
        "tier": row["tier"],
        "engine": row["engine"],
        "shot": row["shot"],
        "member": row["member"],
        "job": str(row["job_id"]),
        "project": row["project"],
    }[group]


def expected_usage(rows: list[dict[str, Any]], start: datetime, end: datetime, group: str, **where: str) -> Any:
    """The same answer worked out from the history's render items alone."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        at = datetime.fromisoformat(r["at"].replace("Z", "+00:00"))
        if not start <= at < end or any(r[k] != v for k, v in where.items()):
            continue
        s = sums[key_of(r, group)]
        s[0] -= r["credits"]
        s[1] += 1
        s[2] += r["duration_s"]
    total = [sum(s[i] for s in sums.values()) for i in range(3)]
    return {k: tuple(v) for k, v in sums.items()}, tuple(total)


RANGES = [
    ("the billing period of 25 Nov", None, None),
    ("two whole billing periods", "2026-11-01", "2027-01-01"),
    ("whole days", "2026-11-25", "2026-12-02"),
    ("parts of days at both ends", "2026-11-25T18:00:00Z", "2026-12-01T00:30:00Z"),
    ("inside one day", "2026-11-25T12:00:00", "2026-11-25T23:59:59"),
    ("across one midnight", "2026-11-25T23:00:00+00:00", "2026-11-26T00:00:01Z"),
    ("the last week with offsets", "2026-11-28T11:00:00+01:00", "2026-12-03"),
    # By shot, a period covered in part is its part in the range (above) or the whole period less
    # its parts outside (here, both ends: most of November and most of December).
    ("most of two billing periods", "2026-11-02", "2026-12-31T12:00:00Z"),
    ("most of one billing period", "2026-11-01T06:00:00Z", "2026-11-30"),
]
FILTERS: list[dict[str, str]] = [{}, {"tier": "high"}, {"engine": V}, {"tier": "draft", "engine": K}]


@pytest.mark.parametrize("group", usage.GROUPS)
def test_usage_sums_the_history_renders_for_every_grouping_range_and_filter(books: Books, group: str) -> None:
    render_plan(books)
    rows = history_renders(books)
    assert len(rows) == sum(len(p[2]) for p in PLAN)
    assert {r["project"] for r in rows} == {"spot-2027", "trailer", ""}
    books.clock.set(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))  # "now" only picks the default period
    for label, start_s, end_s in RANGES:
        for where in FILTERS:
            got = usage.answer_usage(
                books.ledger, books.org_id, from_=start_s, to=end_s, group_by=group, limit=50, **_filters(where)
            )
            start = _bound(start_s, datetime(2026, 11, 1, tzinfo=UTC))
            end = _bound(end_s, datetime(2026, 12, 1, tzinfo=UTC))
            groups, total = expected_usage(rows, start, end, group, **where)
            what = f"{label}, {where}"
            assert (got["total"]["credits"], got["total"]["shots"], got["total"]["seconds"]) == total, what
            seen = {g["key"]: (g["credits"], g["shots"], g["seconds"]) for g in got["groups"]}
            assert {k: v for k, v in seen.items() if v != (0, 0, 0)} == groups, what
            keys = [g["key"] for g in got["groups"]]
            if group in ("day", "week"):  # every day (week) the range touches, in order, zeros too
                days = []
                d = start.date()
                while d < end.date() or (d == end.date() and end.time() != datetime.min.time()):
                    days.append(d)
                    d += timedelta(days=1)
                want = sorted({(x - timedelta(days=x.weekday())) if group == "week" else x for x in days})
                assert keys == [x.isoformat() for x in want], what
            else:
                assert keys == sorted(keys, key=lambda k: (-seen[k][0], k)), what


def test_usage_by_shot_over_settled_periods_is_the_same_from_the_cache(books: Books) -> None:
    # What lies over an hour before now (whole billing periods, parts of them) is summed by name once
    # per process, then merged from memory with the rest of the range: the answers stay the history's.
    render_plan(books)
    rows = history_renders(books)
    cache = usage._settled.get(books.ledger.engine)
    assert not cache  # nothing settled was read yet

    def check_all() -> None:
        for label, start_s, end_s in RANGES[1:]:  # the first is the current period: March now
            got = _by_shot(books, start_s, end_s)
            start = _bound(start_s, datetime(2026, 11, 1, tzinfo=UTC))
            end = _bound(end_s, datetime(2026, 12, 1, tzinfo=UTC))
            groups, total = expected_usage(rows, start, end, "shot")
            assert (got["total"]["credits"], got["total"]["shots"], got["total"]["seconds"]) == total, label
            seen = {g["key"]: (g["credits"], g["shots"], g["seconds"]) for g in got["groups"]}
            assert seen == groups, label
            keys = [g["key"] for g in got["groups"]]
            assert keys == sorted(keys, key=lambda k: (-seen[k][0], k)), label

    # Half an hour after November's period ended it is not settled yet: nothing is cached.
    books.clock.set(datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    got = _by_shot(books, "2026-11-01", "2026-12-01")
    assert got["total"]["shots"] == 7 and not usage._settled.get(books.ledger.engine)

    # In March every period of the plan is settled. The same answers, read and then from the cache.
    books.clock.set(datetime(2027, 3, 10, 12, 0, tzinfo=UTC))
    check_all()
    cache = usage._settled[books.ledger.engine]
    entries = dict(cache)
    # Whole periods from usage_shots, and parts of periods (the render rows added or taken away).
    # Each settled piece once, and each range's merge of them.
    merges = [k for k in entries if len(k) == 2]
    pieces = {piece for _org, combination in merges for piece in combination}
    assert {source for source, _lo, _hi, _sign in pieces} == {"periods", "renders"}
    assert all(lo < hi <= datetime(2027, 3, 10, 11, 0) for _source, lo, hi, _sign in pieces)
    assert {k[1:] for k in entries if len(k) == 4} == {piece[:3] for piece in pieces}
    check_all()
    assert dict(cache) == entries  # answered from the cache: nothing new read

    # The default range is the current period (March): nothing of it comes from the cache.
    assert _by_shot(books, None, None)["total"]["shots"] == 0


def test_usage_by_shot_caches_nothing_with_the_dev_clock(books: Books) -> None:
    # The dev clock can jump months at once, and a charge under way (or another process that has
    # not seen the jump yet) may still write at the old time: nothing is taken as settled then.
    render_plan(books)
    clock = DbClock(books.ledger.engine, ttl=0)
    clock.set(datetime(2027, 3, 10, 12, 0, tzinfo=UTC))
    books.ledger.clock = clock
    got = _by_shot(books, "2026-11-02", "2026-12-31T12:00:00Z")
    assert got["total"]["shots"] == sum(len(p[2]) for p in PLAN if p[0] >= datetime(2026, 11, 2, tzinfo=UTC))
    assert not usage._settled.get(books.ledger.engine)


def _mark_rows(books: Books) -> dict[date, dict[str, tuple[int, int, int]]]:
    with db.read_tx(books.ledger.engine) as conn:
        marks = [
            m for (m,) in conn.execute(select(db.usage_marks.c.mark).where(db.usage_marks.c.org_id == books.org_id))
        ]
        rows = conn.execute(select(db.usage_shot_marks).where(db.usage_shot_marks.c.org_id == books.org_id)).mappings()
        found: dict[date, dict[str, tuple[int, int, int]]] = {m: {} for m in marks}
        for r in rows:
            # (a mark written between the two reads, by a billing thread still running, comes whole)
            found.setdefault(r["mark"], {})[r["shot"]] = (r["credits"], r["shots"], r["seconds"])
    return found


def test_marks_hold_each_shot_names_renders_before_them(books: Books) -> None:
    # A mark (every 4th day by ordinal, and each billing date) holds, for every shot name, what its
    # renders before that midnight cost in all. They are written from the org's first render on,
    # a day after their midnight, each once.
    render_plan(books)
    rows = history_renders(books)
    # A mark is written a day after its midnight: 1 January's (a billing date) not yet.
    books.clock.set(datetime(2027, 1, 1, 23, 59, tzinfo=UTC))
    assert usage.write_marks(books.ledger.engine, books.org_id, 1, books.clock.now, limit=3) == 3
    written = usage.write_marks(books.ledger.engine, books.org_id, 1, books.clock.now)
    assert usage.write_marks(books.ledger.engine, books.org_id, 1, books.clock.now) == 0  # each once
    marks = _mark_rows(books)
    assert len(marks) == 3 + written
    # The first: the last mark day on or before the first render (25 November 12:00), then every
    # mark day up to 31 December, the last one settled.
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(61)]
    want = [d for d in days if d.toordinal() % 4 == 0 or d.day == 1]
    first = max(d for d in want if d <= date(2026, 11, 25))
    assert sorted(marks) == [d for d in want if first <= d <= date(2026, 12, 31)]
    assert date(2026, 12, 1) in marks and date(2027, 1, 1) not in marks
    for mark, by_shot in marks.items():
        before = datetime.combine(mark, datetime.min.time(), UTC)
        assert by_shot == expected_usage(rows, datetime(2000, 1, 1, tzinfo=UTC), before, "shot")[0], mark
    assert marks[first] == {}
    last = max(marks)
    assert last > date(2026, 12, 27)
    assert marks[last]["sq010_sh010"] == (
        price(shot("sq010_sh010", V, "draft", 8)) + price(shot("sq010_sh010", S, "standard", 5))
        + price(shot("sq010_sh010", V, "high", 6)), 3, 8 + 5 + 6,
    )  # fmt: skip
    # Another process writing the same mark first: this one writes nothing.
    with db.write_tx(books.ledger.engine) as conn:
        assert usage._write_mark(conn, books.org_id, date(2026, 12, 1), last) == 0
    assert _mark_rows(books) == marks


def test_marks_are_not_written_with_the_dev_clock(books: Books) -> None:
    render_plan(books)
    books.clock.set(datetime(2027, 1, 10, tzinfo=UTC))
    assert usage.write_all_marks(books.ledger) > 0  # every org's, the billing thread's pass
    last = max(_mark_rows(books))
    assert date(2027, 1, 6) <= last <= date(2027, 1, 10)
    clock = DbClock(books.ledger.engine, ttl=0)
    clock.set(datetime(2027, 3, 10, 12, 0, tzinfo=UTC))
    books.ledger.clock = clock
    assert usage.write_all_marks(books.ledger) == 0
    assert max(_mark_rows(books)) == last


@pytest.mark.parametrize(
    ("now", "ends"),
    [
        # Everything settled: the range's ends fall before, on and after marks, a day or two away.
        (datetime(2027, 3, 10, 12, 0, tzinfo=UTC), ["2027-01-15", "2026-12-02T09:15:00Z", "2026-12-31T12:00:00Z"]),
        # The current period (December) read as before, the rest through the marks.
        (datetime(2026, 12, 2, 12, 0, tzinfo=UTC), ["2026-12-02T09:15:00Z", "2026-12-02T09:15:01Z", "2026-12-03"]),
    ],
)
def test_usage_by_shot_through_the_marks_is_the_historys(books: Books, now: datetime, ends: list[str]) -> None:
    render_plan(books)
    rows = history_renders(books)
    books.clock.set(now)
    assert usage.write_marks(books.ledger.engine, books.org_id, 1, now) > 0
    starts = [datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=6 * i) for i in range(36)]  # 20-28 Nov
    starts.append(datetime(2026, 10, 1, tzinfo=UTC))  # before the first mark
    split = datetime(now.year, now.month, 1, tzinfo=UTC)  # the current period's start (billing day 1)
    used = expected_used = 0
    for end_s in ends:
        for start in starts:
            label = f"{start.isoformat()} to {end_s}"
            got = _by_shot(books, start.isoformat(), end_s)
            groups, total = expected_usage(rows, start, _bound(end_s, now), "shot")
            assert (got["total"]["credits"], got["total"]["shots"], got["total"]["seconds"]) == total, label
            seen = {g["key"]: (g["credits"], g["shots"], g["seconds"]) for g in got["groups"]}
            assert seen == groups, label
            assert [g["key"] for g in got["groups"]] == sorted(seen, key=lambda k: (-seen[k][0], k)), label
            used += any(k[1] == "marks" and k[2] == db.to_db(start) for k in usage._settled[books.ledger.engine])
            # What is kept in memory for the settled part is its names' sums, and only the names with
            # a render in it (a mark holds every name used before it).
            settled_end = min(_bound(end_s, now), split)
            kept = usage._settled[books.ledger.engine].get(
                (books.org_id, "marks", db.to_db(start), db.to_db(settled_end))
            )
            assert kept is None or kept == expected_usage(rows, start, settled_end, "shot")[0], label
            usage._settled.clear()
            expected_used += min(_bound(end_s, now), split) - start >= 2 * usage.MARK_REACH
    # Every range whose settled part spans two marks' reach or more went through the marks.
    assert expected_used > 20 and used == expected_used


def test_usage_by_shot_through_the_marks_counts_the_renders_between_each_end_and_its_mark(books: Books) -> None:
    # A render every 7 hours for a month, so that whichever mark is nearest an end of the range
    # (before it or after it), renders lie between the two and must be added or taken away.
    specs = [
        shot("sq010_sh010", V, "draft", 4),
        shot("sq020_sh010", S, "standard", 5),
        shot("sq030_sh010", K, "high", 6),
    ]
    at = datetime(2026, 11, 8, 1, 0, tzinfo=UTC)
    for i in range(100):
        books.clock.set(at + timedelta(hours=7 * i))
        books.job(specs[i % 3], actor=books.owner)
        assert len(books.run_all()) == 1
    rows = history_renders(books)
    books.clock.set(datetime(2027, 1, 10, tzinfo=UTC))
    assert usage.write_marks(books.ledger.engine, books.org_id, 1, books.clock.now) > 0
    marks = _mark_rows(books)
    starts = [datetime(2026, 11, 12, 2, 0, tzinfo=UTC) + timedelta(hours=5 * i) for i in range(12)]
    ends = [datetime(2026, 11, 28, 3, 0, tzinfo=UTC) + timedelta(hours=5 * i) for i in range(12)]
    sides = set()
    for start in starts:
        for end in ends:
            got = _by_shot(books, start.isoformat(), end.isoformat())
            groups, total = expected_usage(rows, start, end, "shot")
            label = f"{start} to {end}"
            # All of it is settled: what is kept in memory is the answer's names and nothing else
            # (a mark holds every name used before it; those with no render in the range are left out).
            assert (
                usage._settled[books.ledger.engine][(books.org_id, "marks", db.to_db(start), db.to_db(end))] == groups
            )
            assert (got["total"]["credits"], got["total"]["shots"], got["total"]["seconds"]) == total, label
            assert {g["key"]: (g["credits"], g["shots"], g["seconds"]) for g in got["groups"]} == groups, label
            usage._settled.clear()
            for bound in (start, end):
                near = min(marks, key=lambda m: abs(datetime.combine(m, datetime.min.time(), UTC) - bound))
                sides.add(datetime.combine(near, datetime.min.time(), UTC) < bound)
    assert sides == {True, False}  # ends after their nearest mark, and ends before it


def _by_shot(books: Books, start_s: str | None, end_s: str | None) -> dict[str, Any]:
    return usage.answer_usage(
        books.ledger, books.org_id, from_=start_s, to=end_s, group_by="shot", tier=None, engine=None, limit=50
    )


def _filters(where: dict[str, str]) -> dict[str, str | None]:
    return {"tier": where.get("tier"), "engine": where.get("engine")}


def _bound(s: str | None, default: datetime) -> datetime:
    if s is None:
        return default
    if len(s) == 10:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def test_usage_by_tier_is_what_the_price_list_says(books: Books) -> None:
    render_plan(books)
    got = usage.answer_usage(
        books.ledger, books.org_id, from_="2026-11-01", to="2026-12-01", group_by="tier", tier=None, engine=None,
        limit=50,
    )  # fmt: skip
    # November's shots by tier, priced by hand from the price list (rate x tier x seconds):
    # high: veo 8 s 260*2*8 = 4,160, veo-fast 4 s 98*2*4 = 784, veo 8 s 4,160   -> 9,104, 3 shots, 20 s
    # draft: veo 8 s 260/2*8 = 1,040, seedance 10 s 245/2*10 = 1,225            -> 2,265, 2 shots, 18 s
    # standard: seedance 5 s 245*5 = 1,225, veo 6 s 260*6 = 1,560               -> 2,785, 2 shots, 11 s
    assert got["groups"] == [
        {"key": "high", "credits": 9_104, "shots": 3, "seconds": 20},
        {"key": "standard", "credits": 2_785, "shots": 2, "seconds": 11},
        {"key": "draft", "credits": 2_265, "shots": 2, "seconds": 18},
    ]
    assert got["total"] == {"credits": 14_154, "shots": 7, "seconds": 49}
    assert price(shot("x", V, "high", 8)) == 4_160  # the price list agrees with the hand arithmetic
    assert got["from"] == "2026-11-01T00:00:00Z" and got["to"] == "2026-12-01T00:00:00Z"


def test_failed_and_canceled_shots_leave_uncharged_items_that_usage_does_not_count(books: Books) -> None:
    ledger = books.ledger
    books.clock.set(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    books.job(shot("sq050_sh010", V, "high", 8), shot("sq050_sh020", V, "draft", 8))
    claim = ledger.claim_next_shot(books.worker)
    assert claim is not None
    assert ledger.fail_shot(claim, "engine timed out")
    assert len(books.run_all()) == 1  # the draft shot: 1,040
    job = books.job(shot("sq060_sh010", S, "standard", 6), shot("sq060_sh020", S, "standard", 6))
    claim = ledger.claim_next_shot(books.worker)
    assert claim is not None
    ledger.cancel(books.owner, job["id"])
    assert not ledger.complete_shot(claim)  # canceled while rendering: never charged

    items = ledger.history(books.org_id, limit=10)["items"]
    uncharged = [(i["kind"], i["shot"], i["tier"], i["credits"], i["reason"]) for i in items if i["credits"] == 0]
    assert uncharged == [
        ("canceled", "sq060_sh010", "standard", 0, "canceled by Ana (owner)"),
        ("failed", "sq050_sh010", "high", 0, "engine timed out"),
    ]
    assert [i["reason"] for i in items if i["kind"] == "render"] == [None]
    # Nothing was held or charged for them: the balance is the allocation less the one draft shot.
    acct = books.account()
    assert (acct["monthly_remaining"], acct["held"]) == (875_000 - 1_040, 0)
    books.assert_books_balance()
    got = usage.answer_usage(
        ledger, books.org_id, from_=None, to=None, group_by="shot", tier=None, engine=None, limit=50
    )
    assert got["groups"] == [{"key": "sq050_sh020", "credits": 1_040, "shots": 1, "seconds": 8}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-11-10&to=2026-11-10", "to"),
        ("from=2026-11-10&to=2026-11-09", "to"),
        ("from=2025-11-01&to=2026-11-03", "to"),  # 367 days
        ("from=yesterday", "from"),
        ("from=2026-11-01&to=2026-13-01", "to"),
        ("group_by=month", "group_by"),
        # Bounds where the billing periods and weeks around them stop being dates (once a 500).
        ("from=9999-12-31&to=9999-12-31T23:59:59%2B14:00", "from"),
        ("from=8999-12-31&to=9000-01-01T00:00:01", "to"),
        ("from=0001-01-01&to=0001-01-02", "from"),
    ],
)
def test_a_bad_range_or_grouping_is_a_422_that_says_which(api: Api, query: str, field: str) -> None:
    r = api.client.get(f"/v1/account/usage?{query}", headers=api.headers(role="viewer"))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and err["details"][0]["loc"] == ["query", field]


def test_the_longest_range_is_366_days_and_any_member_may_read(api: Api) -> None:
    r = api.client.get(
        "/v1/account/usage?from=2025-11-01&to=2026-11-02&group_by=day", headers=api.headers(role="viewer")
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["groups"]) == 366
    assert api.client.get("/v1/account/forecast", headers=api.headers(role="viewer")).status_code == 200


def test_the_forecast_uses_the_pace_of_the_journal(books: Books) -> None:
    # 7 charges of 2 x veo-3.1 standard 8 s (2,080 each = 4,160 a day), one a day, the last on
    # 24 Nov 12:00; now 25 Nov 12:00: 7 days hold 7 x 4,160 = 29,120 -> 4,160 a day; 30 days the
    # same 29,120 -> 970.67, shown 971.
    ledger = books.ledger
    for d in range(18, 25):
        books.clock.set(datetime(2026, 11, d, 12, 0, tzinfo=UTC))
        books.job(shot("a", V, "standard", 8), shot("b", V, "standard", 8))
        books.run_all()
    books.clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    got = usage.answer_forecast(ledger, books.org_id)
    # available 875,000 - 29,120 = 845,880. To 1 Dec 00:00 is 5.5 days: 5.5 x 4,160 = 22,880 spent,
    # 823,000 left; the bank (0) has room for 2,187,500, so all of it rolls over. December:
    # 875,000 + 823,000 = 1,698,000 at 4,160 a day lasts 408 days, beyond the year: no date.
    assert got == {
        "as_of": "2026-11-25T12:00:00Z",
        "pace_per_day": {"7d": 4_160, "30d": 971},
        "available": 845_880,
        "held": 0,
        "next_refill_at": "2026-12-01T00:00:00Z",
        "runs_out_at": None,
        "days_left": None,
        "monthly_left_at_refill": 823_000,
        "will_roll_over": 823_000,
        "will_expire": 0,
    }
    # A week later nothing was charged in the last 7 days: the 30-day pace, 971 a day, is used.
    books.clock.set(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    got = usage.answer_forecast(ledger, books.org_id)
    assert got["pace_per_day"] == {"7d": 0, "30d": 971}
    assert got["available"] == 875_000 + 823_000 + 22_880  # nothing was spent after all: 845,880 rolled
    # 18 Dec 12:00: the 30 days begin 18 Nov 12:00, on the first charge to the second (a part of a
    # day read from the render rows): still 29,120 / 30 -> 971; without it 24,960 / 30 -> 832.
    books.clock.set(datetime(2026, 12, 18, 12, 0, tzinfo=UTC))
    assert usage.answer_forecast(ledger, books.org_id)["pace_per_day"] == {"7d": 0, "30d": 971}


def test_the_migration_fills_usage_from_the_render_rows_already_there(database_url: str) -> None:
    from alembic import command

    from act3_server import migrate

    engine = db.make_engine(database_url)
    try:
        cfg = migrate.alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0004")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO orgs (id, name, plan, billing_day, payment_brand, payment_last4, created_at)"
                " VALUES (1, 'Old', 'pro', 1, 'Visa', '4242', '2026-01-01 00:00:00')"
            )
            for at, tier, credits, seconds in (
                ("2026-11-03 10:00:00.000000", "high", -4160, 8),
                ("2026-11-03 23:00:00.000000", "high", -1040, 2),
                ("2026-11-04 01:00:00.000000", "draft", -520, 4),
            ):
                conn.exec_driver_sql(
                    "INSERT INTO transactions (org_id, at, kind, shot, engine, tier, duration_s, credits,"
                    " monthly_delta, bank_delta, job_id, member) VALUES"
                    f" (1, '{at}', 'render', 's', 'veo-3.1', '{tier}', {seconds}, {credits}, {credits}, 0, 3, 'Ana')"
                )
        migrate.upgrade(engine)
        with db.read_tx(engine) as conn:
            got = usage.usage(conn, 1, datetime(2026, 11, 3), datetime(2026, 11, 5), "day")
        assert [(g["key"], g["credits"], g["shots"], g["seconds"]) for g in got["groups"]] == [
            ("2026-11-03", 5_200, 2, 10),
            ("2026-11-04", 520, 1, 4),
        ]
        with db.read_tx(engine) as conn:  # November, a whole billing period: usage_shots
            got = usage.usage(conn, 1, datetime(2026, 11, 1), datetime(2026, 12, 1), "shot", billing_day=1)
        assert got["groups"] == [{"key": "s", "credits": 5_720, "shots": 3, "seconds": 14}]
    finally:
        engine.dispose()


def test_the_migration_gives_usage_rows_written_before_it_their_jobs_project(books: Books) -> None:
    from alembic import command

    from act3_server import migrate

    render_plan(books)
    rows = history_renders(books)
    engine = books.ledger.engine
    with engine.begin() as conn:  # what the charges wrote before 0008: no project
        conn.exec_driver_sql("UPDATE usage_days SET project = ''")
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
        command.upgrade(cfg, "head")
    books.clock.set(datetime(2026, 12, 3, tzinfo=UTC))
    got = usage.answer_usage(
        books.ledger,
        books.org_id,
        from_="2026-11-01",
        to="2027-01-01",
        group_by="project",
        tier=None,
        engine=None,
        limit=50,
    )
    groups, _total = expected_usage(
        rows, datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "project"
    )
    assert {g["key"]: (g["credits"], g["shots"], g["seconds"]) for g in got["groups"]} == groups
    assert set(groups) == {"spot-2027", "trailer", ""}


def test_the_billing_thread_of_serve_writes_the_marks(books: Books) -> None:
    render_plan(books)
    books.clock.set(datetime(2027, 1, 10, tzinfo=UTC))
    biller = Biller(books.ledger, interval_s=0.05)
    biller.start()
    try:
        deadline = time.monotonic() + 10
        while not (marks := _mark_rows(books)) or max(marks) < date(2027, 1, 6):
            assert time.monotonic() < deadline, "the billing thread wrote no marks up to 6-9 January"
            time.sleep(0.05)
    finally:
        biller.stop()
    rows = history_renders(books)
    assert (
        marks[max(marks)]
        == expected_usage(rows, datetime(2000, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "shot")[0]
    )


def test_the_billing_pass_writes_a_hundred_marks_at_most_and_skips_an_org_that_fails(
    books: Books, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    render_plan(books)
    other = make_books(books.ledger, books.clock, "starter", billing_day=15, name="Second studio")
    books.clock.set(datetime(2026, 12, 2, 9, 30, tzinfo=UTC))
    other.job(shot("sq900_sh010", V, "draft", 4))
    assert len(other.run_all()) == 1
    books.clock.set(datetime(2027, 6, 1, tzinfo=UTC))  # each org is ~50 marks behind
    assert usage.write_all_marks(books.ledger, budget=30) == 30  # the first org's oldest 30
    assert len(_mark_rows(books)) == 30 and not _mark_rows(other)
    assert usage.write_all_marks(books.ledger, stop=lambda: True) == 0
    # An org whose marks fail is logged and skipped; the others get theirs.
    real = usage.write_marks

    def failing(engine: Any, org_id: int, *args: Any, **kw: Any) -> int:
        if org_id == books.org_id:
            raise ValueError("a broken org")
        return real(engine, org_id, *args, **kw)

    monkeypatch.setattr(usage, "write_marks", failing)
    with caplog.at_level("ERROR", logger="act3_server"):
        written = usage.write_all_marks(books.ledger)
    assert written > 40 and len(_mark_rows(other)) == written
    assert f"usage marks of org {books.org_id} could not be written" in caplog.text
    assert len(_mark_rows(books)) == 30


@pytest.mark.parametrize("billing_day", [1, 29, 31])
def test_usage_by_shot_is_the_historys_for_random_ranges_as_marks_are_written(
    ledger: Ledger, clock: ManualClock, billing_day: int
) -> None:
    # Renders every 1-30 hours (some at midnight) over five months, with the billing pass writing
    # marks as time goes on, and after each step random ranges: dates, midnight +/- 1 us, times,
    # starting before the first render, ending past now. Each is checked against the render rows.
    rng = random.Random(billing_day)
    books = make_books(ledger, clock, "pro", billing_day)
    rows: list[tuple[datetime, str, int, int]] = []
    at, through = datetime(2026, 1, 20, 7, 0), datetime(2026, 6, 10)
    marked = 0
    while at < through:
        with db.write_tx(ledger.engine) as conn:
            for _ in range(rng.randrange(4)):
                name, credits, seconds = (
                    rng.choice(["sh010", "sh020", "sh030", ""]),
                    rng.randrange(1, 900),
                    rng.randrange(1, 12),
                )
                conn.execute(
                    db.transactions.insert().values(
                        org_id=books.org_id, at=at, kind="render", shot=name or None, engine=V, tier="draft",
                        duration_s=seconds, credits=-credits, monthly_delta=-credits, bank_delta=0,
                    )
                )  # fmt: skip
                usage.count_charge(  # and the usage rows the charge writes with it
                    conn, books.org_id, at, billing.period_start(at.date(), billing_day), tier="draft", engine=V,
                    member="", job_number=None, shot=name, credits=credits, duration_s=seconds,
                )  # fmt: skip
                rows.append((at, name, credits, seconds))
        at += timedelta(hours=rng.choice([1, 5, 11, 17, 24, 30]), minutes=rng.choice([0, 0, 1]))
        if at.hour == 0 and rng.random() < 0.5:
            at = at.replace(minute=0)
        usage.write_marks(ledger.engine, books.org_id, billing_day, at)
        for _ in range(4):
            start = _random_bound(rng, datetime(2025, 12, 1), at + timedelta(days=20))
            end = _random_bound(
                rng, start + timedelta(seconds=1), min(start + timedelta(days=366), at + timedelta(days=60))
            )
            if end <= start:
                continue
            with db.read_tx(ledger.engine) as conn:
                got = usage.usage(conn, books.org_id, start, end, "shot", limit=1000, billing_day=billing_day, now=at)
            want: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for when, name, credits, seconds in rows:
                if start <= when < end:
                    w = want[name]
                    w[0], w[1], w[2] = w[0] + credits, w[1] + 1, w[2] + seconds
            assert {g["key"]: [g["credits"], g["shots"], g["seconds"]] for g in got["groups"]} == want, (start, end, at)
            assert [got["total"][k] for k in ("credits", "shots", "seconds")] == [
                sum(w[i] for w in want.values()) for i in range(3)
            ], (start, end, at)
            marked += any(k[1] == "marks" and k[2] == start for k in usage._settled.get(ledger.engine, {}))
    assert marked > 150  # most ranges went through the marks


def _random_bound(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    t = lo + timedelta(seconds=rng.randrange(max(1, int((hi - lo).total_seconds()))))
    r = rng.random()
    if r < 0.3:
        return datetime.combine(t.date(), datetime.min.time())
    if r < 0.4:
        return datetime.combine(t.date(), datetime.min.time()) + timedelta(microseconds=rng.choice([1, -1]))
    return t

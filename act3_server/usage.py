"""Usage (`GET /v1/account/usage`) and the forecast's pace: what charged renders cost, grouped.

The numbers are the render rows of the history (`transactions`, kind 'render'): for any range and
filters, `total.credits` is minus the sum of those rows. Whole UTC days are read from `usage_days`
(db.py; one row per day, tier, engine, member, job and project, added to in the charge's own
transaction by `count_charge`), and the part of a day at either end of a range that is not whole
from the render rows themselves, so a range of any length costs a few thousand rows at most. The
one grouping `usage_days` cannot answer is by shot name (its rows would be as many as the renders):
`group_by=shot` with no filter reads `usage_shots` (a row per shot name and billing period): the
periods the range covers whole as they are, and a period it covers in part as its part from the
render rows or as the whole period less its parts outside, whichever is shorter (`_by_shot`).
What lies over an hour before now is settled (nothing is charged in the past): for it `_by_shot`
reads the org's marks (`usage_shot_marks`: running totals by name every few days, written by the
billing thread of `serve` a day after their midnight, `write_marks`), two marks' rows and a day
or two of render rows at each end, and keeps the sums by name in memory; until the marks reach the
range it sums the settled pieces by name once per process instead (`_settled_sums`). Filtered by
tier or engine it sums the render rows of the range (docs/benchmarks.md has the costs).
"""

from __future__ import annotations

import bisect
import heapq
import logging
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Integer, String, and_, bindparam, case, func, literal, or_, select, text, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from act3_credits.core import billing, forecast, pricing

from .clock import DbClock
from .db import (
    DriverSql,
    jobs,
    orgs,
    read_tx,
    to_db,
    transactions,
    usage_days,
    usage_marks,
    usage_shot_marks,
    usage_shots,
    write_tx,
)
from .errors import is_database_unavailable

if TYPE_CHECKING:
    from .ledger import Ledger

T = TypeVar("T")
log = logging.getLogger("act3_server")
GROUPS = ("day", "week", "tier", "engine", "shot", "member", "job", "project")
MAX_RANGE = timedelta(days=366)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

_U = usage_days
_S = usage_shots
_T = transactions
_J = jobs
_M = usage_marks
_SM = usage_shot_marks


class UsageError(ValueError):
    """A request usage cannot answer (the service answers 422 with `field` named)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- writing: one charge ---------------------------------------------------------------------------


def _adding(table: Any, dialect: str, keys: dict[str, Any]) -> DriverSql:
    """INSERT one charged render's sums, or add them to the row already there (an upsert)."""
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    stmt = insert(table).values(
        **keys,
        credits=bindparam("credits", type_=table.c.credits.type),
        shots=literal(1, table.c.shots.type),
        seconds=bindparam("seconds", type_=table.c.seconds.type),
    )
    return DriverSql(
        stmt.on_conflict_do_update(
            index_elements=list(table.primary_key.columns),
            set_={
                "credits": table.c.credits + stmt.excluded.credits,
                "shots": table.c.shots + 1,
                "seconds": table.c.seconds + stmt.excluded.seconds,
            },
        )
    )


_DAY_KEYS = {
    "org_id": bindparam("org_id", type_=Integer),
    "day": bindparam("day", type_=_U.c.day.type),
    "tier": bindparam("tier", type_=String),
    "engine": bindparam("engine", type_=String),
    "member": bindparam("member", type_=String),
    "job_id": bindparam("job_id", type_=Integer),
    "project": bindparam("project", type_=String),
}
_SHOT_KEYS = {
    "org_id": bindparam("org_id", type_=Integer),
    "period_start": bindparam("period_start", type_=_S.c.period_start.type),
    "shot": bindparam("shot", type_=String),
}
_ADD = {d: (_adding(_U, d, _DAY_KEYS), _adding(_S, d, _SHOT_KEYS)) for d in ("sqlite", "postgresql")}


def charge_rows(
    dialect: str,
    org_id: int,
    at: datetime,
    period_start: date,
    *,
    tier: str | None,
    engine: str | None,
    member: str | None,
    job_number: int | None,
    shot: str | None,
    credits: int,
    duration_s: int | None,
    project: str = "",
) -> list[tuple[DriverSql, dict[str, Any]]]:
    """What one charged render (`credits` positive, at `at`, in the billing period that began on
    `period_start`) adds to `usage_days` and `usage_shots`: (statement, parameters) pairs for the
    driver path (`RawTx.execute`); `count_charge` runs the same on a SQLAlchemy connection.
    `project`: the job's project ('' for a job without one)."""
    day, by_shot = _ADD[dialect]
    sums = {"org_id": org_id, "credits": credits, "seconds": duration_s or 0}
    return [
        (
            day,
            {
                **sums,
                "day": to_db(at).date(),
                "tier": tier or "",
                "engine": engine or "",
                "member": member or "",
                "job_id": job_number or 0,
                "project": project,
            },
        ),
        (by_shot, {**sums, "period_start": period_start, "shot": shot or ""}),
    ]


def count_charge(conn: Connection, *args: Any, **kw: Any) -> None:
    """`charge_rows` on a SQLAlchemy connection, in the charge's own transaction."""
    for stmt, params in charge_rows(conn.dialect.name, *args, **kw):
        conn.execute(stmt.stmt, params)


# --- reading ---------------------------------------------------------------------------------------


def parse_bound(field: str, value: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or time (UTC when it names no offset), as naive UTC."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0))
        parsed = datetime.fromisoformat(value)
        return to_db(parsed)
    except (ValueError, OverflowError):
        raise UsageError(field, f"{field} must be an ISO 8601 date or time, such as 2026-11-01.") from None


def default_range(now: datetime, billing_day: int) -> tuple[datetime, datetime]:
    """The current billing period: from its billing date to the next, 00:00 UTC each."""
    today = to_db(now).date()
    start = billing.period_start(today, billing_day)
    end = billing.next_billing_date(today, billing_day)
    return datetime.combine(start, time(0)), datetime.combine(end, time(0))


@dataclass
class _Sum:
    credits: int = 0
    shots: int = 0
    seconds: int = 0

    def add(self, credits: int, shots: int, seconds: int) -> None:
        self.credits += int(credits)
        self.shots += int(shots)
        self.seconds += int(seconds)

    def json(self) -> dict[str, int]:
        return {"credits": self.credits, "shots": self.shots, "seconds": self.seconds}


def _pieces(start: datetime, end: datetime) -> tuple[tuple[date, date] | None, list[tuple[datetime, datetime]]]:
    """[start, end) as whole days (first, last + 1) and the parts of days around them, each
    within one day."""
    first_whole = start.date() if start.time() == time(0) else start.date() + timedelta(days=1)
    end_whole = end.date()
    if first_whole >= end_whole:  # no whole day: the range, cut at midnights
        parts = []
        at = start
        while at < end:
            midnight = datetime.combine(at.date() + timedelta(days=1), time(0))
            parts.append((at, min(end, midnight)))
            at = midnight
        return None, parts
    parts = []
    head = datetime.combine(first_whole, time(0))
    if start < head:
        parts.append((start, head))
    tail = datetime.combine(end_whole, time(0))
    if tail < end:
        parts.append((tail, end))
    return (first_whole, end_whole), parts


def _aggregate_key(group: str) -> Any:
    return {
        "day": _U.c.day,
        "week": _U.c.day,
        "tier": _U.c.tier,
        "engine": _U.c.engine,
        "member": _U.c.member,
        "job": _U.c.job_id,
        "project": _U.c.project,
    }[group]


def _raw_key(group: str) -> Any:
    return {
        "tier": func.coalesce(_T.c.tier, ""),
        "engine": func.coalesce(_T.c.engine, ""),
        "member": func.coalesce(_T.c.member, ""),
        "job": func.coalesce(_T.c.job_id, 0),
        "shot": func.coalesce(_T.c.shot, ""),
        "project": func.coalesce(_J.c.project, ""),  # the job's, joined by `_from_rows`
    }[group]


def _filters(table: Any, tier: str | None, engine: str | None) -> list[Any]:
    conds = []
    if tier:
        conds.append(table.c.tier == tier)
    if engine:
        conds.append(table.c.engine == engine)
    return conds


def _from_days(
    conn: Connection, org_id: int, days: tuple[date, date], group: str | None, tier: str | None, engine: str | None
) -> Iterable[tuple[Any, int, int, int]]:
    sums = (func.sum(_U.c.credits), func.sum(_U.c.shots), func.sum(_U.c.seconds))
    where = [_U.c.org_id == org_id, _U.c.day >= days[0], _U.c.day < days[1], *_filters(_U, tier, engine)]
    if group is None:
        return [(None, *r) for r in conn.execute(select(*sums).where(*where)).all() if r[0] is not None]
    key = _aggregate_key(group)
    return conn.execute(select(key, *sums).where(*where).group_by(key)).all()  # type: ignore[return-value]


def _from_rows(
    conn: Connection,
    org_id: int,
    part: tuple[datetime, datetime],
    group: str | None,
    tier: str | None,
    engine: str | None,
) -> Iterable[tuple[Any, int, int, int]]:
    sums = (-func.sum(_T.c.credits), func.count(), func.coalesce(func.sum(_T.c.duration_s), 0))
    where = [
        _T.c.org_id == org_id,
        _T.c.at >= part[0],
        _T.c.at < part[1],
        _T.c.kind == "render",
        *_filters(_T, tier, engine),
    ]
    if group is None:
        return [(None, *r) for r in conn.execute(select(*sums).where(*where)).all() if r[1]]
    key = _raw_key(group)
    query = select(key, *sums).where(*where).group_by(key)
    if group == "project":  # a render row names its job by number; the project is the job's
        query = query.select_from(_T.outerjoin(_J, (_J.c.org_id == _T.c.org_id) & (_J.c.number == _T.c.job_id)))
    return conn.execute(query).all()  # type: ignore[return-value]


def pace(conn: Connection, org_id: int, now: datetime) -> tuple[int, int]:
    """Credits charged for renders in the last 7 and the last 30 days to `now` (naive UTC): the
    whole days of the 30 in one read of `usage_days` (the 7's whole days are among them), and the
    parts of days at the ends (the one today ends both) from the render rows."""
    start_30, start_7 = now - timedelta(days=30), now - timedelta(days=7)
    days, parts = _pieces(start_30, now)
    per_day: dict[date, int] = {}
    if days:
        found = conn.execute(
            select(_U.c.day, func.sum(_U.c.credits))
            .where(_U.c.org_id == org_id, _U.c.day >= days[0], _U.c.day < days[1])
            .group_by(_U.c.day)
        )
        per_day = {d: int(c) for d, c in found}
    first_whole_7 = start_7.date() if start_7.time() == time(0) else start_7.date() + timedelta(days=1)
    last_30 = sum(per_day.values())
    last_7 = sum(c for d, c in per_day.items() if d >= first_whole_7)
    head_7 = datetime.combine(first_whole_7, time(0))
    if start_7 < head_7:
        parts.append((start_7, head_7))
    if parts:  # the parts in one statement (an OR of index ranges), each row summed where it belongs
        today = datetime.combine(now.date(), time(0))
        spent = -_T.c.credits
        seven, thirty = conn.execute(
            select(
                func.coalesce(func.sum(case((_T.c.at >= start_7, spent), else_=0)), 0),
                func.coalesce(func.sum(case((or_(_T.c.at < start_7, _T.c.at >= today), spent), else_=0)), 0),
            ).where(
                _T.c.org_id == org_id,
                _T.c.kind == "render",
                or_(*[and_(_T.c.at >= a, _T.c.at < b) for a, b in parts]),
            )
        ).one()
        last_7 += int(seven)
        last_30 += int(thirty)
    return last_7, last_30


def _week(d: date) -> date:
    return d - timedelta(days=d.weekday())  # ISO weeks: the Monday names the week


def usage(
    conn: Connection,
    org_id: int,
    start: datetime,
    end: datetime,
    group_by: str,
    *,
    tier: str | None = None,
    engine: str | None = None,
    limit: int = DEFAULT_LIMIT,
    billing_day: int | None = None,
    now: datetime | None = None,
    settle: bool = True,
) -> dict[str, Any]:
    """The usage answer for [start, end) (naive UTC, checked by `check_range`); `billing_day` (the
    org's) lets an unfiltered grouping by shot read `usage_shots` (`_by_shot`), and `now` (naive
    UTC) tells it that no render is later, so a part of a period after it costs no rows, and
    (unless `settle` is False) that nothing over an hour before it changes any more."""
    sums: dict[str, _Sum] = defaultdict(_Sum)
    days, parts = _pieces(start, end)
    timeline = group_by in ("day", "week")

    def key_of(raw: Any, part_day: date | None) -> str:
        if timeline:
            d = part_day if part_day is not None else raw
            return (_week(d) if group_by == "week" else d).isoformat()
        if group_by == "job":
            return str(raw) if raw else ""
        return str(raw)

    if group_by == "shot" and not (tier or engine) and billing_day is not None:
        return _by_shot(conn, org_id, start, end, limit, billing_day, now, settle)
    if group_by == "shot":  # filtered: the render rows of the whole range
        for k, c, n, s in _from_rows(conn, org_id, (start, end), "shot", tier, engine):
            sums[key_of(k, None)].add(c, n, s)
    else:
        if days:
            for k, c, n, s in _from_days(conn, org_id, days, group_by, tier, engine):
                sums[key_of(k, None)].add(c, n, s)
        for part in parts:
            raw_group = None if timeline else group_by
            for k, c, n, s in _from_rows(conn, org_id, part, raw_group, tier, engine):
                sums[key_of(k, part[0].date())].add(c, n, s)
    total = _Sum()
    for one in sums.values():
        total.add(one.credits, one.shots, one.seconds)
    if timeline:
        keys: list[str] = []
        d = start.date()
        last = (end - timedelta(microseconds=1)).date()
        while d <= last:
            k = (_week(d) if group_by == "week" else d).isoformat()
            if not keys or keys[-1] != k:
                keys.append(k)
            d += timedelta(days=1)
        groups = [{"key": k, **sums.get(k, _Sum()).json()} for k in keys]
    else:
        ranked = sorted(sums.items(), key=lambda kv: (-kv[1].credits, kv[0]))[:limit]
        groups = [{"key": k, **v.json()} for k, v in ranked]
    return _answer(start, end, group_by, groups, total)


def _period_bounds(d: date, billing_day: int) -> tuple[datetime, datetime]:
    first = billing.period_start(d, billing_day)
    return datetime.combine(first, time(0)), datetime.combine(billing.next_billing_date(first, billing_day), time(0))


def _decompose(
    start: datetime, end: datetime, billing_day: int, now: datetime | None
) -> tuple[datetime, datetime, list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """[start, end) as the billing periods [lo, hi) read whole from `usage_shots`, plus the render
    rows of the parts `added` and less those `taken` away. A period the range covers in part (only
    the first and the last can be) is either its part inside the range (added) or the whole period
    less its parts outside (taken), whichever spans less time (a part after `now` holds no renders
    yet): both are exact."""
    added: list[tuple[datetime, datetime]] = []
    taken: list[tuple[datetime, datetime]] = []
    first_p = _period_bounds(start.date(), billing_day)
    last_p = _period_bounds((end - timedelta(microseconds=1)).date(), billing_day)
    lo, hi = first_p[0], last_p[1]

    def span(parts: list[tuple[datetime, datetime]]) -> timedelta:
        cut = now or datetime.max
        return sum((min(b, cut) - a for a, b in parts if a < min(b, cut)), timedelta())

    for p_start, p_end in {first_p, last_p}:
        inside = (max(start, p_start), min(end, p_end))
        outside = [(a, b) for a, b in ((p_start, inside[0]), (inside[1], p_end)) if a < b]
        if not outside:
            continue  # whole
        if span([inside]) <= span(outside):
            added.append(inside)
            if p_start == lo:
                lo = p_end
            if p_end == hi:
                hi = p_start
        else:
            taken.extend(outside)
    return lo, hi, added, taken


def _by_shot(
    conn: Connection,
    org_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    billing_day: int,
    now: datetime | None,
    settle: bool = True,
) -> dict[str, Any]:
    """Unfiltered usage by shot for any range: `_decompose`'s periods from `usage_shots` and its
    parts from the render rows, so a year by shot reads ~12 periods of names and at most half a
    period of render rows at each end; or, once the org's marks cover what lies over an hour before
    now (`_by_shot_marked`), two marks' rows and a day or two of render rows for that part."""
    settled_at = now - SETTLED_AFTER if now is not None and settle else None
    if now is not None and settled_at is not None:
        marked = _by_shot_marked(conn, org_id, start, end, limit, billing_day, now, settled_at)
        if marked is not None:
            return marked
    lo, hi, added, taken = _decompose(start, end, billing_day, now)
    # What lies over SETTLED_AFTER before now never changes again: whole billing periods and render
    # rows that old are summed by name once per process, then merged from memory (`_by_shot_settled`).
    if settled_at is not None:
        mid = max(lo, min(_period_bounds(settled_at.date(), billing_day)[0], hi))
        if lo < mid or any(b <= settled_at for _a, b in added + taken):
            return _by_shot_settled(conn, org_id, start, end, limit, (lo, mid, hi), added, taken, settled_at)
    where = (_S.c.org_id == org_id, _S.c.period_start >= lo.date(), _S.c.period_start < hi.date())
    credits = func.sum(_S.c.credits)
    query = select(_S.c.shot, credits, func.sum(_S.c.shots), func.sum(_S.c.seconds)).where(*where).group_by(_S.c.shot)
    if lo < hi and not (added or taken):
        # Whole billing periods (the default): only the `limit` largest come back, sorted by the
        # database; the total is one more sum.
        top = conn.execute(query.order_by(credits.desc(), _S.c.shot).limit(limit)).all()
        c, n, s = conn.execute(
            select(func.sum(_S.c.credits), func.sum(_S.c.shots), func.sum(_S.c.seconds)).where(*where)
        ).one()
        everything = _Sum()
        everything.add(c or 0, n or 0, s or 0)
        ranked = [(str(k), _Sum(int(c), int(n), int(s))) for k, c, n, s in top]
        return _answer(start, end, "shot", [{"key": k, **v.json()} for k, v in ranked], everything)
    # Otherwise one statement: the periods' rows, the render rows added and those taken away, summed
    # by shot in the database (a name whose renders all fell outside sums to no shots and is left
    # out), the `limit` largest sorted there, and the total beside each row (a window over the groups).
    parts: list[Any] = []
    if lo < hi:
        parts.append(_period_rows(org_id, lo, hi))
    for (a, b), sign in [(p, 1) for p in added] + [(p, -1) for p in taken]:
        parts.append(_render_rows(org_id, a, b, sign))
    rows = union_all(*parts).subquery()
    shot, c_, n_, s_ = rows.c
    credits, shots, seconds = func.sum(c_), func.sum(n_), func.sum(s_)
    top = conn.execute(
        select(shot, credits, shots, seconds, *(func.sum(x).over() for x in (credits, shots, seconds)))
        .group_by(shot)
        .having(shots > 0)
        .order_by(credits.desc(), shot)
        .limit(limit)
    ).all()
    total = _Sum()
    if top:
        first: Any = top[0]
        total.add(first[4], first[5], first[6])
    ranked = [(str(r[0]), _Sum(int(r[1]), int(r[2]), int(r[3]))) for r in top]
    return _answer(start, end, "shot", [{"key": k, **v.json()} for k, v in ranked], total)


def _by_shot_settled(
    conn: Connection,
    org_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    bounds: tuple[datetime, datetime, datetime],
    added: list[tuple[datetime, datetime]],
    taken: list[tuple[datetime, datetime]],
    settled_at: datetime,
) -> dict[str, Any]:
    """`_by_shot` when some of what it reads is settled: the whole periods [lo, mid) and the render
    rows of every part added or taken that ends by `settled_at` come summed by name from the cache,
    the rest (the periods [mid, hi), the later parts) summed by name in one statement, and the two
    are merged here."""
    lo, mid, hi = bounds
    pieces: list[tuple[str, datetime, datetime, int]] = [("periods", lo, mid, 1)] if lo < mid else []
    parts: list[Any] = []
    if mid < hi:
        parts.append(_period_rows(org_id, mid, hi))
    for (a, b), sign in [(p, 1) for p in added] + [(p, -1) for p in taken]:
        if b <= settled_at:
            pieces.append(("renders", a, b, sign))
        else:
            parts.append(_render_rows(org_id, a, b, sign))
    settled = _settled_sums(conn, org_id, tuple(pieces))
    live: dict[str, tuple[int, int, int]] = {}
    if parts:
        live = {k: (c, n, sec) for k, c, n, sec in _by_name(conn, *parts)}
    return _merged_answer(start, end, limit, settled, live)


def _merged_answer(
    start: datetime,
    end: datetime,
    limit: int,
    settled: dict[str, tuple[int, int, int]],
    live: dict[str, tuple[int, int, int]],
) -> dict[str, Any]:
    """The answer by shot from two sets of sums by name (`live` is emptied)."""
    # (-credits, name, shots, seconds): sorted as the answer lists them; names with no shots left out,
    # as in `_by_shot` (their renders all fell outside the range).
    merged: list[tuple[int, str, int, int]] = []
    for k, (c, n, sec) in settled.items():
        more = live.pop(k, None)
        if more is not None:
            c, n, sec = c + more[0], n + more[1], sec + more[2]
        if n > 0:
            merged.append((-c, k, n, sec))
    merged.extend((-c, k, n, sec) for k, (c, n, sec) in live.items() if n > 0)
    total = _Sum(-sum(r[0] for r in merged), sum(r[2] for r in merged), sum(r[3] for r in merged))
    groups = [{"key": k, **_Sum(-c, n, sec).json()} for c, k, n, sec in heapq.nsmallest(limit, merged)]
    return _answer(start, end, "shot", groups, total)


def _period_rows(org_id: int, lo: datetime, hi: datetime) -> Any:
    """The `usage_shots` rows of the billing periods that begin in [lo, hi), as (shot, credits,
    shots, seconds)."""
    return select(_S.c.shot, _S.c.credits, _S.c.shots, _S.c.seconds).where(
        _S.c.org_id == org_id, _S.c.period_start >= lo.date(), _S.c.period_start < hi.date()
    )


def _by_name(conn: Connection, *parts: Any) -> list[tuple[str, int, int, int]]:
    """The rows of `parts` (each as `_period_rows` or `_render_rows` give them) summed by shot name."""
    rows = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    shot, c_, n_, s_ = rows.c
    query = select(shot, func.sum(c_), func.sum(n_), func.sum(s_)).group_by(shot)
    return [(str(k), int(c), int(n), int(sec)) for k, c, n, sec in conn.execute(query).all()]


def _render_rows(org_id: int, a: datetime, b: datetime, sign: int) -> Any:
    """The render rows of [a, b) as (shot, credits, shots, seconds), each times `sign`."""
    return select(
        func.coalesce(_T.c.shot, ""),
        -sign * _T.c.credits,
        literal(sign, Integer),
        sign * func.coalesce(_T.c.duration_s, 0),
    ).where(_T.c.org_id == org_id, _T.c.at >= a, _T.c.at < b, _T.c.kind == "render")


# --- marks: running totals by shot name -------------------------------------------------------------
# A mark is a UTC midnight at which `usage_shot_marks` holds, for every shot name, what its renders
# before that midnight cost in all (db.py). The renders of any settled [a, b) by name are then the
# mark nearest b less the mark nearest a, each corrected by the render rows between it and its
# bound: with a mark every MARK_EVERY days and on each billing date, a day or two of rows per end.

MARK_EVERY = 4  # days: a mark on every day whose ordinal is a multiple of this, and on billing dates
MARK_REACH = timedelta(days=MARK_EVERY)  # a bound further than this from any mark is not read by marks
MARKS_PER_PASS = 100  # at most this many marks an org gets per `write_marks` call (a backfill's pace)
# A mark is written this long after its midnight: what an in-process cache takes as settled after an
# hour (SETTLED_AFTER) stays in the database for good, so a serve process whose clock is up to a day
# behind must not be able to charge before a written mark. A range's end less than a day old reads
# the mark before it and the render rows between.
MARK_AFTER = timedelta(days=1)


def is_mark_day(day: date, billing_day: int) -> bool:
    return day.toordinal() % MARK_EVERY == 0 or billing.period_start(day, billing_day) == day


def write_marks(engine: Engine, org_id: int, billing_day: int, now: datetime, limit: int = MARKS_PER_PASS) -> int:
    """Write the org's marks that are MARK_AFTER past `now` (naive UTC or aware) and not yet written,
    oldest first, each in a transaction of its own, at most `limit` of them; the first is the last
    mark day on or before the org's first render (it sums nothing). Returns how many were written
    here (another process may write some of them first: each is written once)."""
    last = (to_db(now) - MARK_AFTER).date()  # the latest mark day whose midnight is that far past
    with read_tx(engine) as conn:
        prev = conn.execute(select(func.max(_M.c.mark)).where(_M.c.org_id == org_id)).scalar()
        first_render = None
        if prev is None:
            first_render = conn.execute(
                select(func.min(_T.c.at)).where(_T.c.org_id == org_id, _T.c.kind == "render")
            ).scalar()
    if prev is not None:
        day = prev + timedelta(days=1)
    elif first_render is not None:  # the first mark: the last mark day on or before the first render
        day = first_render.date()
        while not is_mark_day(day, billing_day):
            day -= timedelta(days=1)
    else:
        return 0
    written = 0
    while day <= last and written < limit:
        if is_mark_day(day, billing_day):
            with write_tx(engine) as conn:
                written += _write_mark(conn, org_id, prev, day)
            prev = day
        day += timedelta(days=1)
    return written


_MARK_ONCE = {
    d: (sqlite_insert if d == "sqlite" else pg_insert)(_M)
    .values(org_id=bindparam("org_id", type_=Integer), mark=bindparam("mark", type_=_M.c.mark.type))
    .on_conflict_do_nothing()
    .returning(_M.c.mark)  # a row: written here (psycopg's rowcount is -1 for this statement)
    for d in ("sqlite", "postgresql")
}


def _write_mark(conn: Connection, org_id: int, prev: date | None, mark: date) -> int:
    """Mark `mark` from mark `prev` and the render rows between (`prev` None: the org's first mark,
    before its first render); 0 if another process wrote it first."""
    if conn.execute(_MARK_ONCE[conn.dialect.name], {"org_id": org_id, "mark": mark}).first() is None:
        return 0
    if prev is None:
        return 1  # the first mark: no render before it
    until = datetime.combine(mark, time(0))
    rows = union_all(_mark_rows(org_id, prev, 1), _render_rows(org_id, datetime.combine(prev, time(0)), until, 1))
    summed = rows.subquery()
    shot, c_, n_, s_ = summed.c
    conn.execute(
        _SM.insert().from_select(
            ["org_id", "mark", "shot", "credits", "shots", "seconds"],
            select(
                literal(org_id, Integer), literal(mark, _SM.c.mark.type), shot, func.sum(c_), func.sum(n_), func.sum(s_)
            ).group_by(shot),
        )
    )
    return 1


def write_all_marks(ledger: Ledger, budget: int = MARKS_PER_PASS, stop: Callable[[], bool] = lambda: False) -> int:
    """`write_marks` for every org, oldest org first, at most `budget` marks in all (the billing
    thread's pass: its refills wait for it, so a database catching up on years of marks gets them a
    hundred a pass); stops early when `stop()` says so. An org whose marks fail is logged and
    skipped (its usage reads as before); the database being unavailable ends the pass. Not with the
    dev clock, whose jumps would take as settled what a charge under way may still write."""
    if isinstance(ledger.clock, DbClock):
        return 0
    with read_tx(ledger.engine) as conn:
        found = conn.execute(select(orgs.c.id, orgs.c.billing_day).order_by(orgs.c.id)).all()
    now = ledger.now()
    written = 0
    for org_id, day in found:
        if written >= budget or stop():
            break
        try:
            written += write_marks(ledger.engine, int(org_id), int(day), now, limit=budget - written)
        except Exception as exc:
            if is_database_unavailable(exc):
                raise
            log.exception("usage marks of org %d could not be written; its usage reads without them", org_id)
    return written


def _mark_rows(org_id: int, mark: date, sign: int) -> Any:
    """A mark's rows as (shot, credits, shots, seconds), each times `sign`."""
    return select(_SM.c.shot, sign * _SM.c.credits, sign * _SM.c.shots, sign * _SM.c.seconds).where(
        _SM.c.org_id == org_id, _SM.c.mark == mark
    )


def _near(marks: list[date], at: datetime) -> date | None:
    """The mark nearest `at` (of `marks`, sorted), if one is within MARK_REACH; the first mark for
    any time before it (no render is older than an org's first mark)."""
    if marks and at <= datetime.combine(marks[0], time(0)):
        return marks[0]
    i = bisect.bisect_right(marks, at.date())
    best = None
    for m in marks[max(0, i - 1) : i + 1]:
        if best is None or abs(datetime.combine(m, time(0)) - at) < abs(datetime.combine(best, time(0)) - at):
            best = m
    if best is None or abs(datetime.combine(best, time(0)) - at) > MARK_REACH:
        return None
    return best


# The two reads of `_by_shot_marked`, each one statement of a fixed shape (an unused part of it is an
# empty range) written as SQL text: compiling Core statements of this size took ~10 ms of a fresh
# process's first answer, compiling these takes well under one. Both databases run the same text.
def _render_part(p: str) -> str:
    """The render rows of [:{p}from, :{p}to) as (shot, credits, shots, seconds), each times :{p}sign."""
    return (
        f" UNION ALL SELECT COALESCE(shot, ''), -credits * :{p}sign, CAST(:{p}sign AS INTEGER),"
        f" COALESCE(duration_s, 0) * :{p}sign FROM transactions"
        f" WHERE org_id = :org_id AND kind = 'render' AND at >= :{p}from AND at < :{p}to"
    )


def _summed(first: str, *params: Any) -> DriverSql:
    return DriverSql(
        text(
            "SELECT shot, CAST(SUM(credits) AS BIGINT), CAST(SUM(shots) AS BIGINT), CAST(SUM(seconds) AS BIGINT)"
            f" FROM ({first}{_render_part('a_')}{_render_part('b_')})"
            # A name with no render in the range sums to nothing: left out (a mark holds every name
            # used before it, so this is most of them in a short range of an old org).
            " AS parts GROUP BY shot HAVING SUM(shots) <> 0"
        ).bindparams(
            bindparam("org_id", type_=Integer),
            *params,
            *(bindparam(f"{p}{k}", type_=_T.c.at.type) for p in ("a_", "b_") for k in ("from", "to")),
            *(bindparam(f"{p}sign", type_=Integer) for p in ("a_", "b_")),
        )
    )


# A mark's rows less another's, and the render rows between each bound and its mark.
_MARKED = _summed(
    "SELECT shot, credits, shots, seconds FROM usage_shot_marks WHERE org_id = :org_id AND mark = :upper"
    " UNION ALL SELECT shot, -credits, -shots, -seconds FROM usage_shot_marks WHERE org_id = :org_id AND mark = :lower",
    bindparam("upper", type_=_SM.c.mark.type),
    bindparam("lower", type_=_SM.c.mark.type),
)
# The billing periods [:lo, :hi) from `usage_shots`, and the render rows of up to two parts.
_PERIODS = _summed(
    "SELECT shot, credits, shots, seconds FROM usage_shots"
    " WHERE org_id = :org_id AND period_start >= :lo AND period_start < :hi",
    bindparam("lo", type_=_S.c.period_start.type),
    bindparam("hi", type_=_S.c.period_start.type),
)


def _parts_params(at: datetime, parts: list[tuple[datetime, datetime, int]]) -> dict[str, Any]:
    """The render parts' parameters of `_summed` ((from, to, sign) each, at most two; the unused
    ones are the empty range [at, at))."""
    if len(parts) > 2:
        raise ValueError(f"at most two render parts, not {len(parts)}")
    params: dict[str, Any] = {}
    for p, (lo, hi, sign) in zip(("a_", "b_"), [*parts, (at, at, 1), (at, at, 1)], strict=False):
        params |= {f"{p}from": lo, f"{p}to": hi, f"{p}sign": sign}
    return params


def _marked_params(org_id: int, marks: list[date], a: datetime, b: datetime) -> dict[str, Any] | None:
    """`_MARKED`'s parameters for the renders of the settled [a, b) by name: the mark nearest b less
    the mark nearest a, and the render rows between each bound and its mark; None if a bound has no
    mark near it."""
    near_a, near_b = _near(marks, a), _near(marks, b)
    if near_a is None or near_b is None:
        return None
    parts = []
    for bound, mark, sign in ((b, near_b, 1), (a, near_a, -1)):
        at = datetime.combine(mark, time(0))
        if mark == marks[0] and bound < at:
            continue  # the org's first mark is before its first render: nothing lies before it
        if at < bound:
            parts.append((at, bound, sign))
        elif bound < at:
            parts.append((bound, at, -sign))
    return {"org_id": org_id, "upper": near_b, "lower": near_a, **_parts_params(a, parts)}


def _sums(conn: Connection, sql: DriverSql, params: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """`sql`'s rows (shot, credits, shots, seconds) by shot, read on the driver's cursor in `conn`'s
    transaction (SQLAlchemy's result rows cost ~1 us each, and these are thousands)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql.compiled(conn.dialect)[0], sql.bind(conn.dialect, params))
        return {k: (int(c), int(n), int(sec)) for k, c, n, sec in cursor.fetchall()}
    finally:
        cursor.close()


def _by_shot_marked(
    conn: Connection,
    org_id: int,
    start: datetime,
    end: datetime,
    limit: int,
    billing_day: int,
    now: datetime,
    settled_at: datetime,
) -> dict[str, Any] | None:
    """`_by_shot` through the marks: the range up to the start of the billing period an hour before
    now (settled: `_marked_params`) and the rest as `_decompose` says, summed by name in one
    statement each; the settled part's sums are kept in memory as `_settled_sums`' are. None when
    that settled part spans less than twice MARK_REACH (the render rows alone cost no more than two
    marks' rows then) or the org's marks do not reach its ends."""
    split = max(start, min(end, _period_bounds(settled_at.date(), billing_day)[0]))
    if split - start < 2 * MARK_REACH:
        return None

    def read() -> dict[str, tuple[int, int, int]] | None:
        marks = [m for (m,) in conn.execute(_MARKS, {"org_id": org_id})]
        params = _marked_params(org_id, marks, start, split)
        return None if params is None else _sums(conn, _MARKED, params)

    settled = _cached(conn, (org_id, "marks", start, split), read)
    if settled is None:
        return None
    live: dict[str, tuple[int, int, int]] = {}
    if split < end:
        lo, hi, added, taken = _decompose(split, end, billing_day, now)
        parts = [(a, b, 1) for a, b in added] + [(a, b, -1) for a, b in taken]
        live = _sums(
            conn, _PERIODS, {"org_id": org_id, "lo": lo.date(), "hi": hi.date(), **_parts_params(split, parts)}
        )
    return _merged_answer(start, end, limit, settled, live)


_MARKS = text("SELECT mark FROM usage_marks WHERE org_id = :org_id ORDER BY mark").columns(mark=_M.c.mark.type)


# Nothing is charged this long before now: a charge is a render row at the ledger's clock, which
# only moves forward (the margin covers serve processes whose clocks differ a little). Not with the
# dev clock (`serve --dev-clock`): a jump of months would settle at once what a charge under way,
# or another process that has not seen the jump yet, may still write.
SETTLED_AFTER = timedelta(hours=1)
_SETTLED_KEEP = 64  # cached pieces and merges per database (a few hundred KB each at most)
_settled: weakref.WeakKeyDictionary[Engine, OrderedDict[tuple[Any, ...], Any]]
_settled = weakref.WeakKeyDictionary()
_settled_lock = threading.Lock()


def _settled_sums(
    conn: Connection, org_id: int, pieces: tuple[tuple[str, datetime, datetime, int], ...]
) -> dict[str, tuple[int, int, int]]:
    """{shot: (credits, shots, seconds)} of settled pieces of an org's usage, each
    (source, lo, hi, sign): whole billing periods from `usage_shots` (`"periods"`) or render rows
    (`"renders"`) of [lo, hi), added (sign 1) or taken away (-1). Each piece is read and summed
    once per process, and so is their merge: a year by shot is ~22,000 `usage_shots` rows (its
    whole periods, the same all month) and up to half a period of render rows (the year's first
    days, which change daily) to sum by name, 20-30 ms on SQLite; merging it with the rest of the
    range about 3 ms."""

    def merge() -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        for source, lo, hi, sign in pieces:
            rows = _cached(conn, (org_id, source, lo, hi), partial(_piece, conn, org_id, source, lo, hi))
            for k, c, n, sec in rows:
                was = found.get(k, (0, 0, 0))
                found[k] = (was[0] + sign * c, was[1] + sign * n, was[2] + sign * sec)
        return found

    return _cached(conn, (org_id, pieces), merge)


def _piece(conn: Connection, org_id: int, source: str, lo: datetime, hi: datetime) -> list[tuple[str, int, int, int]]:
    rows = _period_rows(org_id, lo, hi) if source == "periods" else _render_rows(org_id, lo, hi, 1)
    return _by_name(conn, rows)


def _cached(conn: Connection, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """`compute()` once per database and key (a settled piece, or a merge of pieces), then from
    memory; the least recently used of `_SETTLED_KEEP` dropped first. None is not kept."""
    with _settled_lock:
        cache = _settled.setdefault(conn.engine, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return cast(T, cache[key])
    found = compute()
    if found is None:
        return found
    with _settled_lock:
        cache[key] = found
        while len(cache) > _SETTLED_KEEP:
            cache.popitem(last=False)
    return found


def _answer(start: datetime, end: datetime, group_by: str, groups: list[dict[str, Any]], total: _Sum) -> dict[str, Any]:
    return {"from": _iso(start), "to": _iso(end), "group_by": group_by, "groups": groups, "total": total.json()}


# A range's bounds stay where billing periods and weeks around them are representable dates (the
# dev clock stops before the year 9000 too).
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(9000, 1, 1)


def check_range(start: datetime, end: datetime) -> None:
    for field, bound in (("from", start), ("to", end)):
        if not EARLIEST <= bound <= LATEST:
            raise UsageError(field, f"{field} must lie between 1970-01-01 and 9000-01-01 (UTC).")
    if end <= start:
        raise UsageError("to", "to must be after from.")
    if end - start > MAX_RANGE:
        raise UsageError("to", "A usage range is at most 366 days; ask for a shorter one.")


def _iso(dt: datetime) -> str:
    return dt.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


# --- the service's answers -------------------------------------------------------------------------


def answer_usage(
    ledger: Ledger,
    org_id: int,
    *,
    from_: str | None,
    to: str | None,
    group_by: str,
    tier: str | None,
    engine: str | None,
    limit: int,
) -> dict[str, Any]:
    """`GET /v1/account/usage`: the current billing period unless `from`/`to` say otherwise."""
    if group_by not in GROUPS:
        raise UsageError("group_by", f"group_by must be one of {', '.join(GROUPS)}.")
    billing_day = ledger.org(org_id).billing_day
    period = default_range(ledger.now(), billing_day)
    start = parse_bound("from", from_) if from_ else period[0]
    end = parse_bound("to", to) if to else period[1]
    check_range(start, end)
    with read_tx(ledger.engine) as conn:
        return usage(
            conn, org_id, start, end, group_by, tier=tier, engine=engine, limit=limit, billing_day=billing_day,
            now=to_db(ledger.now()), settle=not isinstance(ledger.clock, DbClock),
        )  # fmt: skip


def answer_forecast(ledger: Ledger, org_id: int) -> dict[str, Any]:
    """`GET /v1/account/forecast`: the balance (any refill due applied first) and the pace of the
    last 7 and 30 days, through the core's pure forecast."""
    balance = ledger.credits(org_id)
    now = ledger.now()
    end = to_db(now)
    with read_tx(ledger.engine) as conn:
        last_7, last_30 = pace(conn, org_id, end)
    plan = pricing.plan(balance["plan"])
    result = forecast.forecast(
        monthly_remaining=balance["monthly_remaining"],
        bank_rolled=balance["rollover_bank"] - balance["rollover_purchased"],
        bank_purchased=balance["rollover_purchased"],
        held=balance["held"],
        monthly_allocation=plan.monthly_allocation,
        rollover_cap=plan.rollover_cap,
        billing_day=ledger.org(org_id).billing_day,
        pace=forecast.Pace(last_7, last_30),
        now=now,
    )
    return result.to_json()

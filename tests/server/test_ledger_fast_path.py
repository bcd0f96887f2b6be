"""The hold, the claim and the charge on the driver write exactly what the general methods write:
the same scenario run both ways leaves the same account, jobs, shots, history, journal and events
(ids and org aside), and the driver path is the one taken in the common case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import bindparam, select
from srv_helpers import Books, ManualClock, make_books, shot

from act3_server import db
from act3_server import ledger as ledger_module
from act3_server.ledger import Ledger


def scenario(books: Books) -> None:
    ledger = books.ledger
    ledger.purchase(books.owner, "pack-50k", "buy")
    first = books.job(shot("sh010"), key="a")
    books.job(shot("sh020", "veo-3.1", "high", 6), shot("SH030", "wan-2.6", "draft", 5), key="b")
    ledger.create_job(books.editor, "batch", [shot("sh010")], "a")  # a replay
    claim = ledger.claim_next_shot("w1")
    assert claim is not None and claim.job_number == first["id"]
    assert ledger.complete_shot(claim)
    paused = books.job(shot("sh040"), shot("sh050"))
    c2 = ledger.claim_next_shot("w2")
    assert c2 is not None
    ledger.pause(books.editor, paused["id"] if c2.job_number == paused["id"] else c2.job_number)
    assert ledger.complete_shot(c2)
    c3 = ledger.claim_next_shot("w3")
    if c3 is not None:
        ledger.fail_shot(c3, "boom")
    for job in ledger.list_jobs(books.editor):
        if job["status"] == "paused":
            ledger.resume(books.editor, job["id"])
    books.run_all()
    books.clock.advance(days=40)  # a billing date passes: the next hold finds a refill due first
    books.job(shot("sh060"), key="c")
    books.run_all()


def snapshot(books: Books) -> dict[str, Any]:
    org = books.org_id
    with db.read_tx(books.ledger.engine) as conn:
        acct = conn.execute(select(db.accounts).where(db.accounts.c.org_id == org)).one()._mapping
        jobs = conn.execute(select(db.jobs).where(db.jobs.c.org_id == org).order_by(db.jobs.c.number)).all()
        number = {j.id: j.number for j in jobs}
        shots = conn.execute(
            select(db.shots).where(db.shots.c.job_id.in_(list(number))).order_by(db.shots.c.job_id, db.shots.c.idx)
        ).all()
        history = conn.execute(
            select(db.transactions).where(db.transactions.c.org_id == org).order_by(db.transactions.c.id)
        ).all()
        tx_index = {t.id: i for i, t in enumerate(history)}
        journal = conn.execute(select(db.journal).where(db.journal.c.org_id == org).order_by(db.journal.c.id)).all()
        events = conn.execute(select(db.events).where(db.events.c.org_id == org).order_by(db.events.c.seq)).all()
        names = conn.execute(select(db.history_shots).where(db.history_shots.c.org_id == org)).all()

    def event_data(raw: str) -> Any:
        data = json.loads(raw)
        if "balance" in data:
            data["balance"] = {k: v for k, v in data["balance"].items() if k != "org_id"}
        return data

    return {
        "account": {k: v for k, v in acct.items() if k != "org_id"},
        "jobs": [
            (j.number, j.name, j.status, j.estimated_credits, j.charged_credits, j.held, j.member_name) for j in jobs
        ],
        "shots": [(number[s.job_id], s.idx, s.name, s.status, s.credits, s.attempts, s.error) for s in shots],
        "history": [
            (t.kind, t.shot, t.tier, t.credits, t.monthly_delta, t.bank_delta, t.job_id, t.member) for t in history
        ],
        # The journal's order within a transaction is not part of the rules; its rows are.
        "journal": sorted(
            (
                tx_index.get(r.transaction_id, -1),
                number.get(r.job_id, r.job_id),
                r.bucket,
                r.delta,
                r.reason,
            )
            for r in journal
        ),
        "events": [(e.seq, e.type, event_data(e.data)) for e in events],
        "names": sorted((n.shot, n.shot_key, n.shots) for n in names),
    }


def test_the_driver_path_writes_what_the_general_path_writes(
    ledger: Ledger, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = {"fallbacks": 0}
    general = Ledger._create_job, Ledger._claim, Ledger._complete

    def counting(fn: Any) -> Any:
        def wrapped(self: Ledger, *a: Any, **kw: Any) -> Any:
            taken["fallbacks"] += 1
            return fn(self, *a, **kw)

        return wrapped

    monkeypatch.setattr(Ledger, "_create_job", counting(general[0]))
    monkeypatch.setattr(Ledger, "_claim", counting(general[1]))
    monkeypatch.setattr(Ledger, "_complete", counting(general[2]))
    start = clock.now
    fast = make_books(ledger, clock, "pro", name="fast")
    scenario(fast)
    # The fallbacks: the replay, the job with nothing left after a pause (settled by the general
    # claim), the hold after the billing date, and nothing else.
    assert 1 <= taken["fallbacks"] <= 6, taken

    def refuse(*_a: Any, **_kw: Any) -> Any:
        raise ledger_module._Fallback

    for name in ("_create_job_fast", "_claim_fast", "_complete_fast"):
        monkeypatch.setattr(Ledger, name, refuse)
    clock.set(start)
    slow = make_books(ledger, clock, "pro", name="general")
    scenario(slow)
    got, want = snapshot(fast), snapshot(slow)
    for part in want:
        assert got[part] == want[part], part
    fast.assert_books_balance()
    slow.assert_books_balance()


def test_driver_errors_come_out_as_sqlalchemy_errors_and_roll_back(books: Books) -> None:
    """A failing statement on the driver path raises SQLAlchemy's error type (what the HTTP layer
    maps), rolls its transaction back and frees the writer for the next one."""
    from sqlalchemy.exc import IntegrityError

    engine = books.ledger.engine
    stmt = db.DriverSql(db.settings.insert().values(key=bindparam("k"), value=bindparam("v")))
    with db.raw_write_tx(engine) as tx:
        tx.execute(stmt, {"k": "fast-path-test", "v": "1"})
    with pytest.raises(IntegrityError):
        with db.raw_write_tx(engine) as tx:
            tx.execute(stmt, {"k": "fast-path-test-2", "v": "2"})  # rolled back with the next one
            tx.execute(stmt, {"k": "fast-path-test", "v": "3"})  # the same key again
    with db.read_tx(engine) as conn:
        keys = conn.execute(select(db.settings.c.key).where(db.settings.c.key.like("fast-path-test%"))).scalars()
        assert sorted(keys) == ["fast-path-test"]
    books.job(shot("after"))  # the writer is free


def test_driver_parameters_are_bound_as_sqlalchemy_stores_them() -> None:
    """The driver path's dates and times on SQLite are the text SQLAlchemy itself stores (the
    columns are compared as text, so one character off would misplace a row in every range), in
    the statement's parameter order with its own values; a date or time in an untyped parameter
    is converted too; PostgreSQL gets a dict, as psycopg adapts the values itself."""
    from datetime import UTC, date, datetime

    from sqlalchemy import func, literal
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = sqlite.dialect()
    stored = sqlite.DATETIME().bind_processor(dialect)
    assert stored is not None
    t = db.transactions
    stmt = db.DriverSql(
        select(func.coalesce(bindparam("loose"), literal(7)), t.c.id).where(
            t.c.org_id == bindparam("org_id"), t.c.at >= bindparam("since"), t.c.at < bindparam("until")
        )
    )
    moments = [
        datetime(2026, 11, 30, 23, 59, 59),
        datetime(2026, 12, 1, 0, 0, 0, 1),
        datetime(1, 1, 1),
        datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    ]
    for when in moments:
        bound = stmt.bind(dialect, {"org_id": 3, "since": when, "until": when, "loose": when})
        text_, names, _own = stmt.compiled(dialect)
        assert names is not None and len(bound) == len(names) == text_.count("?")
        by_name = dict(zip(names, bound, strict=True))
        want = stored(when.replace(tzinfo=None))
        assert (by_name["since"], by_name["until"], by_name["loose"], by_name["org_id"]) == (want, want, want, 3)
    on_day = stmt.bind(dialect, {"org_id": 3, "since": date(2026, 12, 1), "until": None, "loose": date(2026, 12, 1)})
    assert "2026-12-01" in on_day and None in on_day
    pg = stmt.bind(postgresql.dialect(), {"org_id": 3, "since": moments[0], "until": moments[1], "loose": 1})
    assert isinstance(pg, dict) and pg["since"] == moments[0] and pg["org_id"] == 3

"""History pages: every way of reading a page (plain keyset, tier, kind, each shot-search route)
returns exactly the rows a plain filter-and-sort would, page after page, on both databases; a page
is one read transaction and one index range."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from srv_helpers import Books

from act3_server import db
from act3_server import ledger as ledger_module
from act3_server.ledger import Ledger, decode_cursor, history_page, shot_names_upsert

NAMES = [f"sq{q:03d}_sh{s:04d}" for q in (10, 20, 30) for s in range(10, 110, 10)] + [
    "Éclair_010",  # non-ASCII: matched case-insensitively (Python's lower(), on both databases)
    "ÉCLAIR_020",
    "100%_done",  # % and _ are literal in a search
    "a_b",
    "axb",
]
TIERS = ["draft", "standard", "high", "4k"]


def seed(books: Books, n: int = 700) -> list[dict[str, Any]]:
    """`n` history rows straight into the table (plus the shot names, as create_job counts them)."""
    rng = random.Random(7)
    base = datetime(2026, 1, 1)
    rows = []
    for i in range(n):
        at = base + timedelta(minutes=rng.randrange(0, 60 * 24 * 200))  # many rows share an `at`
        at = at.replace(second=0) if i % 3 else base + timedelta(days=i % 5)
        if i % 37 == 0:
            rows.append(dict(kind="purchase", shot=None, tier=None, credits=50_000, at=at))
        elif i % 53 == 0:
            rows.append(dict(kind="refill", shot=None, tier=None, credits=875_000, at=at))
        else:
            rows.append(dict(kind="render", shot=rng.choice(NAMES), tier=rng.choice(TIERS), credits=-196, at=at))
    for r in rows:
        r.update(org_id=books.org_id, monthly_delta=r["credits"], bank_delta=0, engine=None, member="Cleo")
    counts: dict[str, int] = {}
    for r in rows:
        if r["shot"]:
            counts[r["shot"]] = counts.get(r["shot"], 0) + 1
    with db.write_tx(books.ledger.engine) as conn:
        conn.execute(db.transactions.insert(), rows)
        conn.execute(
            shot_names_upsert(conn.dialect.name),
            [{"org_id": books.org_id, "shot": s, "shot_key": s.lower(), "shots": c} for s, c in counts.items()],
        )
    with db.read_tx(books.ledger.engine) as conn:
        stored = conn.execute(db.transactions.select().where(db.transactions.c.org_id == books.org_id)).all()
    return [dict(r._mapping) for r in stored]


def expected(rows: list[dict[str, Any]], tier: str | None, kind: str | None, shot: str | None) -> list[int]:
    keep = [
        r
        for r in rows
        if (not tier or r["tier"] == tier)
        and (not kind or r["kind"] == kind)
        and (not shot or (r["shot"] is not None and shot.lower() in r["shot"].lower()))
    ]
    return [r["id"] for r in sorted(keep, key=lambda r: (r["at"], r["id"]), reverse=True)]


def all_pages(ledger: Ledger, org_id: int, limit: int, **kw: Any) -> list[int]:
    ids: list[int] = []
    cursor = None
    while True:
        page = ledger.history(org_id, limit=limit, cursor=cursor, **kw)
        ids += [i["id"] for i in page["items"]]
        assert len(page["items"]) <= limit
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


QUERIES: list[dict[str, Any]] = [
    {},
    {"tier": "4k"},
    {"tier": "nope"},
    {"kind": "purchase"},
    {"kind": "render", "tier": "high"},
    {"kind": "refill"},
    {"shot": "sq020_sh0050"},  # one name
    {"shot": "SQ020_SH00"},  # a few names, another case
    {"shot": "sh0"},  # most names
    {"shot": "s"},  # one character
    {"shot": "éclair"},
    {"shot": "ÉCLAIR_0"},
    {"shot": "%"},
    {"shot": "_"},
    {"shot": "a_b"},
    {"shot": "nothing like it"},
    {"shot": "sq01", "tier": "draft"},
    {"shot": "sh0", "kind": "render", "tier": "high"},
    {"shot": "sh0", "kind": "purchase"},
]

# Each way a shot search can go, forced on small data: (names read directly, scan budget, sort rows)
ROUTES = {
    "direct": (10_000, 10_000, 20_000),
    "scan fills the page": (0, 10_000, 20_000),
    "scan falls short, then sorted (PostgreSQL) or direct": (0, 3, 10**9),
    "scan falls short, then per name": (0, 3, 0),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_page_of_every_query_matches_a_plain_filter_and_sort(
    books: Books, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct, budget, sort_rows = ROUTES[route]
    monkeypatch.setattr(ledger_module, "SHOT_DIRECT_NAMES", {"sqlite": direct, "postgresql": direct})
    monkeypatch.setattr(ledger_module, "SHOT_SCAN_BUDGET", budget)
    monkeypatch.setattr(ledger_module, "SHOT_SORT_ROWS", sort_rows)
    rows = seed(books)
    for query in QUERIES:
        want = expected(rows, query.get("tier"), query.get("kind"), query.get("shot"))
        for limit in (1, 7, 200):
            assert all_pages(books.ledger, books.org_id, limit, **query) == want, (query, limit)
    assert expected(rows, None, None, "éclair") and expected(rows, None, None, "a_b") != expected(
        rows, None, None, "ab"
    )


def test_a_page_is_one_read_transaction(books: Books) -> None:
    seed(books, 120)
    ledger = books.ledger
    ledger.history(books.org_id)  # the org and its refill state are known from here on
    begins: list[object] = []

    def began(conn: object) -> None:
        begins.append(conn)

    event.listen(ledger.engine, "begin", began)
    try:
        page = ledger.history(books.org_id, limit=10)
        ledger.history(books.org_id, limit=10, cursor=page["next_cursor"], shot="sq0", tier="draft")
        ledger.credits(books.org_id)
    finally:
        event.remove(ledger.engine, "begin", began)
    assert len(begins) == 3


def plan_of(ledger: Ledger, org_id: int, **kw: Any) -> str:
    """The query plan of the statement a history call runs, with the parameters it ran with."""
    ran: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        ran.append((statement, parameters))

    event.listen(ledger.engine, "before_cursor_execute", grab)
    try:
        ledger.history(org_id, **kw)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", grab)
    statement, parameters = [r for r in ran if "FROM transactions" in r[0]][-1]
    raw = ledger.engine.raw_connection()
    try:
        cur = raw.cursor()
        if ledger.engine.dialect.name == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return " | ".join(str(r[-1]) for r in cur.fetchall())
        cur.execute("SET LOCAL enable_seqscan = off")  # a small table would be scanned whole
        cur.execute("EXPLAIN " + statement, parameters)
        return " | ".join(str(r[0]) for r in cur.fetchall())
    finally:
        raw.rollback()
        raw.close()


def test_a_deep_page_is_an_index_range_not_a_filter(books: Books) -> None:
    seed(books, 60)
    ledger = books.ledger
    cursor = ledger.history(books.org_id, limit=20)["next_cursor"]
    sqlite = ledger.engine.dialect.name == "sqlite"
    plain = plan_of(ledger, books.org_id, limit=20, cursor=cursor)
    tier = plan_of(ledger, books.org_id, limit=20, cursor=cursor, tier="high")
    kind = plan_of(ledger, books.org_id, limit=20, cursor=cursor, kind="purchase")
    if sqlite:
        assert "ix_transactions_org_at_id (org_id=? AND at<?)" in plain, plain
        assert "ix_transactions_org_tier_at_id (org_id=? AND tier=? AND at<?)" in tier, tier
        assert "ix_transactions_org_kind_at_id (org_id=? AND kind=? AND at<?)" in kind, kind
    else:
        for plan, index in (
            (plain, "ix_transactions_org_at_id"),
            (tier, "ix_transactions_org_tier_at_id"),
            (kind, "ix_transactions_org_kind_at_id"),
        ):
            assert index in plan and "ROW(at, id) < ROW(" in plan.split("Index Cond:")[1], plan
    assert "Sort" not in plain and "TEMP B-TREE" not in plain  # the index gives the order


def test_the_cursor_names_the_last_row_of_the_page(books: Books) -> None:
    seed(books, 30)
    page = books.ledger.history(books.org_id, limit=4)
    last = page["items"][-1]
    at, row_id = decode_cursor(page["next_cursor"])
    assert row_id == last["id"] and at.isoformat(timespec="seconds") + "Z" == last["at"]


def test_the_migration_indexes_the_shot_names_already_in_the_history(database_url: str) -> None:
    from alembic import command

    from act3_server import migrate

    engine = db.make_engine(database_url, pool_size=2)
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        org = conn.execute(
            db.orgs.insert().values(
                name="old",
                plan="pro",
                billing_day=1,
                payment_brand="Visa",
                payment_last4="4242",
                created_at=datetime(2026, 1, 1),
            )
        ).inserted_primary_key[0]
        row = dict(org_id=org, at=datetime(2026, 1, 2), kind="render", credits=-1, monthly_delta=-1, bank_delta=0)
        conn.execute(
            db.transactions.insert(),
            [dict(row, shot="SH010"), dict(row, shot="SH010"), dict(row, shot="Éclair"), dict(row, shot=None)],
        )
    migrate.upgrade(engine)
    with db.read_tx(engine) as conn:
        names = conn.execute(db.history_shots.select().order_by(db.history_shots.c.shot)).all()
        assert [(n.shot, n.shot_key, n.shots) for n in names] == [("SH010", "sh010", 2), ("Éclair", "éclair", 1)]
        found = history_page(conn, org, 10, None, shot="ÉCL")
    assert [r.shot for r in found] == ["Éclair"]
    engine.dispose()

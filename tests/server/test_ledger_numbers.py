"""Job ids, purchase ids and event numbers count per organisation, so no org can read another's
volume from its own numbers; ids held before the upgrade keep naming the same things; the SQLite
database and its -wal and -shm are readable by their owner only."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from alembic import command
from sqlalchemy import select
from srv_helpers import Api, Books, make_books, shot

from act3_server import db, migrate
from act3_server.ledger import Actor, Ledger


def test_two_orgs_count_their_own_jobs_purchases_and_events(books: Books) -> None:
    ledger = books.ledger
    other = make_books(ledger, books.clock, "enterprise", name="neighbour")
    seq0 = {b.org_id: ledger.last_seq(b.org_id) for b in (books, other)}
    mine, theirs = [], []
    for i in range(3):
        mine.append(books.job(shot(f"a{i}"))["id"])
        for _ in range(2):  # the neighbour is twice as busy: nothing of it shows in our numbers
            theirs.append(other.job(shot("b"))["id"])
            other.run_all()
        books.run_all()
    assert mine == [1, 2, 3] and theirs == [1, 2, 3, 4, 5, 6]
    bought = [ledger.purchase(books.owner, "pack-50k").body["purchase"]["id"] for _ in range(2)]
    assert bought == [1, 2]
    assert ledger.purchase(other.owner, "pack-50k").body["purchase"]["id"] == 1

    for b, jobs in ((books, mine), (other, theirs)):
        events = ledger.events_after(b.org_id, 0)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))  # no gaps: nothing of the other org in between
        assert ledger.last_seq(b.org_id) == seqs[-1] > seq0[b.org_id]
        job_ids = {e["data"]["job_id"] for e in events if e["type"].startswith("job.")}
        assert job_ids == set(jobs)
        assert [j["id"] for j in ledger.list_jobs(b.editor)] == sorted(jobs, reverse=True)
    renders = [i for i in ledger.history(books.org_id)["items"] if i["kind"] == "render"]
    assert sorted(i["job_id"] for i in renders) == mine  # history names the job by its id
    assert ledger.get_job(books.editor, 2)["shots"][0]["name"] == "a1"
    assert ledger.get_job(other.editor, 2)["shots"][0]["name"] == "b"


def test_jobs_are_found_and_changed_by_their_number_over_http(api: Api) -> None:
    def post(plan: str, path: str, body: object = None, idem: str | None = None) -> dict:
        r = api.client.post(path, json=body, headers=api.headers(plan, "editor", idem=idem))
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    job = {"name": "n", "shots": [shot()]}
    first_pro = post("pro", "/v1/jobs", job, "p1")
    first_ent = post("enterprise", "/v1/jobs", job, "e1")
    second_pro = post("pro", "/v1/jobs", job, "p2")
    assert (first_pro["id"], first_ent["id"], second_pro["id"]) == (1, 1, 2)
    assert post("pro", "/v1/jobs/2/pause")["status"] == "paused"
    assert post("pro", "/v1/jobs/1/cancel")["status"] == "canceled"
    got = api.client.get("/v1/jobs/1", headers=api.headers("enterprise", "editor")).json()
    assert got["status"] == "queued"  # the enterprise org's job 1 is its own
    assert api.client.get("/v1/jobs/3", headers=api.headers("pro", "editor")).status_code == 404


def test_ids_held_before_the_upgrade_keep_their_meaning(database_url: str) -> None:
    """At 0003 ids were global; after 0004 every old id names the same job, purchase and event, and
    each org's new numbers continue after its highest old one."""
    engine = db.make_engine(database_url, pool_size=2)
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    ledger = Ledger(engine)
    # Build the old shape by hand: two orgs interleaving global ids.
    with engine.begin() as conn:
        org_ids = []
        for name in ("a", "b"):
            org = conn.exec_driver_sql(
                "INSERT INTO orgs (name, plan, billing_day, payment_brand, payment_last4, created_at) "
                f"VALUES ('{name}', 'pro', 1, 'Visa', '4242', '2026-11-01 00:00:00') RETURNING id"
            ).scalar_one()
            conn.exec_driver_sql(
                "INSERT INTO accounts (org_id, monthly_remaining, monthly_allocation, bank_rolled, bank_purchased,"
                f" held, period_start, version) VALUES ({org}, 875000, 875000, 0, 0, 0, '2099-12-01', 1)"
            )
            member = conn.exec_driver_sql(
                f"INSERT INTO members (org_id, name, role) VALUES ({org}, 'Cleo', 'editor') RETURNING id"
            ).scalar_one()
            org_ids.append((org, member))
        for n in range(5):
            org, member = org_ids[n % 2]
            conn.exec_driver_sql(
                "INSERT INTO jobs (org_id, member_id, member_name, name, status, created_at, updated_at,"
                " estimated_credits, charged_credits, held) VALUES"
                f" ({org}, {member}, 'Cleo', 'old{n}', 'completed', '2026-11-02 00:00:00',"
                " '2026-11-02 00:00:00', 0, 0, 0)"
            )
            conn.exec_driver_sql(
                f"INSERT INTO events (org_id, type, at, data) VALUES ({org}, 'job.status', '2026-11-02 00:00:00', '{{}}')"
            )
    migrate.upgrade(engine)
    (a, a_member), (b, b_member) = org_ids
    actor_a = Actor(a, a_member, "Cleo", "editor")
    actor_b = Actor(b, b_member, "Cleo", "editor")
    assert [j["name"] for j in ledger.list_jobs(actor_a)] == ["old4", "old2", "old0"]
    assert [j["id"] for j in ledger.list_jobs(actor_a)] == [5, 3, 1]  # the ids clients already hold
    assert ledger.get_job(actor_b, 4)["name"] == "old3"
    assert [e["seq"] for e in ledger.events_after(a, 0)] == [1, 3, 5]
    assert [e["seq"] for e in ledger.events_after(b, 2)] == [4]
    new_a = ledger.create_job(actor_a, "new", [shot()]).body
    new_b = ledger.create_job(actor_b, "new", [shot()]).body
    assert (new_a["id"], new_b["id"]) == (6, 5)
    assert ledger.events_after(a, 5)[0]["seq"] == 6 and ledger.events_after(b, 4)[0]["seq"] == 5
    engine.dispose()


def test_the_sqlite_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, under which files come out world-readable
    try:
        path = tmp_path / "new" / "act3.db"
        engine = db.make_engine(f"sqlite:///{path}", pool_size=1)
        migrate.upgrade(engine)
        with db.read_tx(engine) as conn:  # while a connection is open, -wal and -shm exist
            conn.execute(select(db.orgs.c.id)).all()
            files = [path, path.with_name("act3.db-wal"), path.with_name("act3.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        engine.dispose()

        # A database made world-readable before this loses what others could read, and only that.
        os.chmod(path, 0o644)
        db.make_engine(f"sqlite:///{path}", pool_size=1).dispose()
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_numbers_stay_in_order_when_many_write_at_once(ledger: Ledger, books: Books) -> None:
    """Every event of an org is numbered under its account lock: concurrent writers leave no gaps
    and no repeats (the primary key (org_id, seq) would refuse a repeat)."""
    errors: list[BaseException] = []

    def spend(t: int) -> None:
        try:
            for i in range(4):
                books.job(shot(f"t{t}-{i}"), key=f"t{t}-{i}")
                ledger.purchase(books.owner, "pack-50k", f"p{t}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=spend, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    seqs = [e["seq"] for e in ledger.events_after(books.org_id, 0, limit=1000)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sorted(j["id"] for j in ledger.list_jobs(books.editor, limit=200)) == list(range(1, 17))
    with db.read_tx(ledger.engine) as conn:
        numbers = (
            conn.execute(
                select(db.purchases.c.number)
                .where(db.purchases.c.org_id == books.org_id)
                .order_by(db.purchases.c.number)
            )
            .scalars()
            .all()
        )
    assert numbers == list(range(1, 17))

"""Many threads and several processes spending one org at once never overspend or double charge."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select
from srv_helpers import Books, make_books

from act3_server import db, migrate
from act3_server.ledger import Ledger, LedgerError

SHOT = {"engine": "veo-3.1", "tier": "standard", "duration_s": 8}  # 2,080 cr


def check_books(books: Books, created: list[tuple[int, int]], allocation: int) -> None:
    """Nothing overspent, every shot charged once, the balances replay from the journal."""
    ledger = books.ledger
    held_total = sum(est for _id, est in created)
    assert held_total <= allocation  # the holds never promised more than there was
    assert allocation - held_total < 3 * 2_080  # and they stopped only when the next job did not fit
    with db.read_tx(ledger.engine) as conn:
        renders = conn.execute(
            select(db.transactions.c.shot_id, db.transactions.c.credits).where(
                db.transactions.c.org_id == books.org_id, db.transactions.c.kind == "render"
            )
        ).all()
        completed = conn.execute(
            select(func.count())
            .select_from(db.shots.join(db.jobs, db.jobs.c.id == db.shots.c.job_id))
            .where(db.jobs.c.org_id == books.org_id, db.shots.c.status == "completed")
        ).scalar_one()
    assert len(renders) == len({r.shot_id for r in renders}) == completed == held_total // 2_080
    assert -sum(r.credits for r in renders) == held_total
    acct = books.account()
    assert acct["held"] == 0
    assert acct["monthly_remaining"] + acct["bank_rolled"] + acct["bank_purchased"] == allocation - held_total
    books.assert_books_balance()


def test_many_threads_spending_one_org(ledger: Ledger, books: Books) -> None:
    starter = make_books(ledger, books.clock, "starter", name="threads")
    created: list[tuple[int, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def spend(t: int) -> None:
        try:
            n = 0
            while True:
                shots = [dict(SHOT, name=f"t{t}-{n}-{i}") for i in range(1 + (t + n) % 3)]
                try:
                    body = ledger.create_job(starter.editor, f"t{t}", shots, f"t{t}-{n}").body
                except LedgerError as err:
                    assert err.code == "insufficient_credits"
                    break
                with lock:
                    created.append((body["id"], body["estimated_credits"]))
                n += 1
            while (claim := ledger.claim_next_shot(f"thread-{t}")) is not None:
                ledger.complete_shot(claim)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=spend, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    check_books(starter, created, 245_000)


def test_several_processes_spending_one_org(ledger: Ledger, books: Books, database_url: str) -> None:
    starter = make_books(ledger, books.clock, "starter", name="processes")
    worker = Path(__file__).with_name("spend_worker.py")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(worker),
                database_url,
                str(starter.org_id),
                str(starter.editor.member_id),
                f"p{i}",
                books.clock.now.isoformat(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    created = [tuple(j) for r in results for j in r["jobs"]]
    check_books(starter, created, 245_000)  # type: ignore[arg-type]
    charged_by = [{shot_id for shot_id, _ in r["charged"]} for r in results]
    all_charged = set().union(*charged_by)
    assert sum(len(c) for c in charged_by) == len(all_charged)  # no shot charged by two processes
    assert len(all_charged) == sum(est for _id, est in created) // 2_080


def test_sqlite_writers_of_one_process_queue_instead_of_polling(tmp_path: Path) -> None:
    """A second writer waits on a lock and starts the moment the first commits.

    Left to SQLite, it would hold a connection and retry BEGIN IMMEDIATE from the busy handler,
    sleeping up to 100 ms between tries: under load some requests lost that race for seconds.
    """
    engine = db.make_engine(f"sqlite:///{tmp_path / 'w.db'}", pool_size=4)
    migrate.upgrade(engine)
    started: list[float] = []

    def second() -> None:
        with db.write_tx(engine):
            started.append(time.monotonic())

    waiter = threading.Thread(target=second)
    with db.write_tx(engine):
        waiter.start()
        time.sleep(0.3)
        assert not started
        assert engine.pool.checkedout() == 1  # the waiter holds no connection, polls nothing
    committed = time.monotonic()
    waiter.join(5)
    assert started and started[0] - committed < 0.1
    engine.dispose()


_HOLD_THE_QUEUE = """
import sys
from act3_server import db
engine = db.make_engine(sys.argv[1], pool_size=1)
queue = db._sqlite_writer_lock(engine)
queue.acquire()
print("held", flush=True)
sys.stdin.readline()
queue.release()
"""


def test_sqlite_writers_of_two_processes_queue_in_the_kernel(tmp_path: Path) -> None:
    """`serve --processes N` on SQLite: a writer of another process at the head of the queue (its
    `flock` on `<db>-writer`) keeps this process's writer waiting, though it holds no SQLite lock,
    and lets it in when it lets go; the lock file is the service user's alone."""
    path = tmp_path / "w.db"
    engine = db.make_engine(f"sqlite:///{path}", pool_size=2)
    migrate.upgrade(engine)
    other = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_QUEUE, f"sqlite:///{path}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert other.stdout is not None and other.stdin is not None
        assert other.stdout.readline().strip() == "held"
        wrote: list[float] = []

        def write() -> None:
            with db.write_tx(engine) as conn:
                conn.execute(db.settings.insert().values(key="queued", value="1"))
            wrote.append(time.monotonic())

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        assert not wrote  # waiting behind the other process
        other.stdin.write("\n")
        other.stdin.flush()
        writer.join(5)
        assert wrote
        assert other.wait(5) == 0
    finally:
        other.kill()
    with db.read_tx(engine) as conn:
        assert conn.execute(select(db.settings.c.value).where(db.settings.c.key == "queued")).scalar_one() == "1"
    assert stat.S_IMODE(path.with_name("w.db-writer").stat().st_mode) == 0o600
    engine.dispose()

"""`act3-server`: serve, init-demo, keys create/list/revoke, billing run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from act3_credits.core.vocabulary import NAME_MAX_CHARS

from .db import default_database_url
from .ledger import MAX_DB_INT


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.01 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0.01 and 3600 seconds")
    return value


def _db_id(text: str) -> int:
    """An organisation, member or key id: a whole number the database's INTEGER can hold."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_DB_INT:
        raise argparse.ArgumentTypeError(f"there is no id {text} (ids run from 1 to {MAX_DB_INT})")
    return value


def _bounded(kind: type, low: float, high: float, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


def _member_name(text: str) -> str:
    """A member's name: 1-200 characters of text, no control characters (it is printed in lists)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a name cannot be empty or only spaces")
    if len(text) > NAME_MAX_CHARS:
        raise argparse.ArgumentTypeError(f"a name is at most {NAME_MAX_CHARS} characters; this one has {len(text):,}")
    if not text.isprintable():  # control characters, and lone surrogates (bytes that are not text)
        raise argparse.ArgumentTypeError("a name cannot hold control characters or bytes that are not text")
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="act3-server", description="The reference ACT3 credits service.")
    sub = p.add_subparsers(dest="command", required=True)

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--database",
            default=None,
            help="sqlite:///path.db (default: a file in your user data dir) or postgresql://...",
        )

    serve = sub.add_parser("serve", help="serve the API (runs migrations first)")
    db_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_bounded(int, 0, 65535, "a port number"), default=8765)
    serve.add_argument("--dev-clock", action="store_true", help="enable POST /v1/dev/clock")
    serve.add_argument(
        "--render-speed", type=_bounded(float, 0, 1000, "a number"), default=1.0, help="real seconds per rendered second"
    )
    serve.add_argument(
        "--fail-rate", type=_bounded(float, 0, 1, "a probability"), default=0.0, help="probability that a shot fails"
    )
    serve.add_argument(
        "--fail-every",
        type=_bounded(int, 0, 10**6, "a whole number"),
        default=0,
        metavar="N",
        help="fail every Nth shot of a job (the Nth, 2Nth, ...)",
    )
    serve.add_argument(
        "--workers", type=_bounded(int, 1, 64, "a whole number"), default=4, help="render threads in each serve process"
    )
    serve.add_argument(
        "--processes",
        type=_bounded(int, 1, 64, "a whole number"),
        default=1,
        metavar="N",
        help="serve processes sharing the port, each with its own --workers render threads (default: 1)",
    )
    serve.add_argument(
        "--render-process",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each serve process's render threads in a process of their own beside it (default: "
        "on SQLite, where its one write lock is then held for less time; not on PostgreSQL)",
    )
    serve.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="close a connection whose request head is not in within S seconds (default: 10)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="close a connection whose request body is not in within S seconds of its head (default: 30)",
    )
    serve.add_argument(
        "--events-recheck",
        type=_seconds,
        default=0.1,
        metavar="S",
        help="while long polls wait, look for events written by other processes every S seconds "
        "(SQLite; on PostgreSQL only while LISTEN is down) (default: 0.1)",
    )
    serve.add_argument(
        "--events-backstop",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="PostgreSQL: other serve processes wake long polls at once (LISTEN/NOTIFY); also look "
        "every S seconds for events written without a NOTIFY (default: 2)",
    )

    demo = sub.add_parser("init-demo", help="create the demo orgs and print their keys as JSON")
    db_arg(demo)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a random key and print it once")
    db_arg(create)
    create.add_argument("--org", type=_db_id, default=None)
    create.add_argument("--role", default=None, choices=["owner", "admin", "editor", "viewer"])
    create.add_argument(
        "--name",
        type=_member_name,
        default=None,
        help="a new member of this name (default: the org's first member of that role)",
    )
    create.add_argument(
        "--member", type=_db_id, default=None, help="a key for this existing member (instead of --org/--role): rotation"
    )
    listing = keys_sub.add_parser("list", help="list keys: id, member, role, label, created, revoked (never a key)")
    db_arg(listing)
    listing.add_argument("--org", type=_db_id, default=None, help="only this organisation's keys")
    listing.add_argument("--active", action="store_true", help="leave out revoked keys")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    revoke = keys_sub.add_parser(
        "revoke", help="revoke a key by its id (see `keys list`); refused from the next request"
    )
    db_arg(revoke)
    revoke.add_argument("key_id", type=_db_id, metavar="ID")

    bill = sub.add_parser("billing", help="billing")
    bill_sub = bill.add_subparsers(dest="billing_command", required=True)
    run = bill_sub.add_parser("run", help="apply every billing-date refill that is due (idempotent)")
    db_arg(run)
    run.add_argument("--at", default=None, help="ISO 8601 time to bill at (default: now on the service clock)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.database is not None and not args.database.strip():
        print("error: --database is empty (an unset variable?); give a database URL", file=sys.stderr)
        return 2
    url = args.database or default_database_url()
    problem = _database_problem(url, given=args.database is not None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(args, url)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _command(args, url)
    except SQLAlchemyError as exc:  # the database refused (unreachable, not a database, read-only): one line
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        print(f"error: the database at {_public(url)} refused: {why}", file=sys.stderr)
        return 2


def _public(url: str) -> str:
    """A database URL as an error may show it: never its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the given URL"


def _database_problem(url: str, given: bool = True) -> str | None:
    """Why `url` cannot be opened, said before anything is tried; None when it looks right. The
    default (not `given`) is a file in the user data folder, made with its folder on first use."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return f"{url[:80]!r} is not a database URL (sqlite:///path.db or postgresql://...)"
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        return f"{parsed.get_backend_name()} is not supported: use sqlite:///path.db or postgresql://..."
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database or ""
        if not db or db == ":memory:":
            return "give SQLite a file: sqlite:///path.db"
        path = Path(db)
        if path.is_dir():
            return f"{db} is a folder; give SQLite a file in it, e.g. sqlite:///{db.rstrip('/')}/act3.db"
        if given and not path.parent.is_dir():
            return f"there is no folder {path.parent} for the SQLite file (a typo?); create it first"
    return None


def _command(args: argparse.Namespace, url: str) -> int:
    from .server import open_ledger

    ledger, _clock = open_ledger(url)
    if args.command == "init-demo":
        from .demo import init_demo

        print(json.dumps(init_demo(ledger), indent=2))
    elif args.command == "keys":
        if args.keys_command == "list":
            return _keys_list(ledger.engine, args)
        if args.keys_command == "revoke":
            return _keys_revoke(ledger, args)
        return _keys_create(ledger, args)
    elif args.command == "billing":
        at = None
        if args.at:
            try:
                at = datetime.fromisoformat(args.at)
            except ValueError:
                print(f"error: --at {args.at!r} is not an ISO 8601 time", file=sys.stderr)
                return 2
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            try:
                too_late = at.astimezone(UTC).year >= 9000
            except OverflowError:  # 9999-12-31 at -14:00 is past the calendar in UTC
                too_late = True
            if too_late:
                print(f"error: --at {args.at} must be before the year 9000 (UTC)", file=sys.stderr)
                return 2
        print(json.dumps({"applied": ledger.refill_due(at=at)}, indent=2))
    return 0


def _keys_create(ledger: object, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .auth import hash_key, new_random_key
    from .db import api_keys, members
    from .ledger import Ledger, LedgerError

    assert isinstance(ledger, Ledger)
    if args.member is not None:
        if args.org is not None or args.role is not None or args.name is not None:
            print("error: --member names the member already; leave out --org, --role and --name", file=sys.stderr)
            return 2
        with ledger._write() as conn:
            row = conn.execute(select(members.c.org_id, members.c.role).where(members.c.id == args.member)).first()
            if row is None:
                print(f"error: there is no member {args.member}", file=sys.stderr)
                return 2
            args.org, args.role = row.org_id, row.role
    elif args.org is None or args.role is None:
        print("error: give --org and --role (or --member)", file=sys.stderr)
        return 2
    try:
        ledger.org(args.org)
    except LedgerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    key = new_random_key()
    with ledger._write() as conn:
        member_id = args.member
        if member_id is None and args.name is None:  # (an empty --name is refused by _member_name)
            member_id = conn.execute(
                select(members.c.id)
                .where(members.c.org_id == args.org, members.c.role == args.role)
                .order_by(members.c.id)
            ).scalar()
        if member_id is None:
            name = args.name or f"{args.role.title()} ({args.role})"
            member_id = ledger.add_member_in(conn, args.org, name, args.role)
        ledger.add_key_in(conn, member_id, key, "random")
        key_id = conn.execute(select(api_keys.c.id).where(api_keys.c.key_hash == hash_key(key))).scalar_one()
    print(key)  # shown once; only its hash is stored
    print(
        f"key {key_id} for member {member_id} ({args.role}) of org {args.org}; it will not be shown again",
        file=sys.stderr,
    )
    return 0


def _keys_list(engine: Any, args: argparse.Namespace) -> int:
    from .keys import list_keys

    found = list_keys(engine, org_id=args.org, include_revoked=not args.active)
    if args.json:
        print(json.dumps({"keys": [k.to_json() for k in found]}, indent=2))
        return 0
    head = ("id", "org", "member", "role", "label", "created", "revoked")
    rows = [
        (str(k.id), str(k.org_id), f"{k.member} (#{k.member_id})", k.role, k.label, k.created or "", k.revoked or "-")
        for k in found
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    for line in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _keys_revoke(ledger: Any, args: argparse.Namespace) -> int:
    from .keys import KeyNotFound, revoke_key

    try:
        info, done = revoke_key(ledger.engine, args.key_id, ledger.now())
    except KeyNotFound:
        print(f"error: there is no key {args.key_id} (see `act3-server keys list`)", file=sys.stderr)
        return 2
    who = f"key {info.id} of {info.member} ({info.role}, org {info.org_id})"
    if done:
        print(f"revoked {who} at {info.revoked}; every request with it is refused from now on")
    else:
        print(f"{who} was already revoked at {info.revoked}; nothing changed")
    return 0


def _serve(args: argparse.Namespace, url: str) -> int:
    if args.render_process and os.name != "posix":
        print("error: --render-process needs a POSIX system (it passes a socket to a child process)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.processes == 1:
        _serve_one(args, url, None)
        return 0
    from .server import run_processes

    return run_processes(args.host, args.port, args.processes, lambda sock: _serve_one(args, url, sock))


def _serve_one(args: argparse.Namespace, url: str, sock: Any) -> None:
    """One serve process: on its own port, or on `sock` (a listening socket shared by --processes)."""
    import uvicorn

    from .server import build_service, guarded_protocol

    render_process = args.render_process
    if render_process is None:  # the default: on SQLite, where renderproc.py gains the most
        render_process = url.startswith("sqlite") and os.name == "posix"
    service = build_service(
        url,
        dev_clock=args.dev_clock,
        render_speed=args.render_speed,
        fail_rate=args.fail_rate,
        fail_every=args.fail_every,
        workers=args.workers,
        events_recheck_s=args.events_recheck,
        events_backstop_s=args.events_backstop,
        render_process=render_process,
    )
    # uvicorn's access log prints the request line only (never headers), so keys stay out of logs;
    # an answered long poll is not logged (server.QuietAccessLog).
    # A long poll may wait 30 s; on shutdown give requests 2 s, then close.
    # Slow clients: every request's head and body have a deadline, a head is at most 16 KiB
    # (larger is 431), and an idle keep-alive connection is closed after 5 s.
    config = uvicorn.Config(
        service.app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=True,
        timeout_graceful_shutdown=2,
        http=guarded_protocol(args.header_timeout, args.body_timeout),
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])

"""Wiring: engine + migrations + ledger + runner + event bus -> the FastAPI app that `serve` runs."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import migrate, usage
from .app import create_app
from .clock import DbClock, utcnow
from .db import make_engine
from .errors import is_database_unavailable
from .events import EventBus
from .ledger import Ledger
from .renderproc import RenderProcess
from .runner import Runner
from .ticks import Deadline, ticks

log = logging.getLogger("act3_server")

# Each request's head must arrive within HEADER_TIMEOUT_S of the connection being ready for it, and
# its body within BODY_TIMEOUT_S after the head; a head is at most MAX_HEAD_BYTES.
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_HEAD_BYTES = 16 * 1024
# After a 408 or 431 the service stops writing but reads (and drops) what the client still sends; it
# closes once the client has been silent LINGER_S, or LINGER_MAX_S after the answer at the latest:
# see GuardedHttpProtocol._linger.
LINGER_S = 2.0
LINGER_MAX_S = 10.0


class QuietAccessLog:
    """uvicorn's access logger, minus the long polls answered 200: each idle Blender session makes
    one every 30 s. They are dropped before a log record is built (a logging filter would run after
    building it, which cost about 4 % of an idle serve process's CPU); errors are logged as before."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def info(self, msg: str, *args: Any) -> None:
        if len(args) == 5 and args[4] == 200 and args[1] == "GET":
            path = str(args[2])
            if path == "/v1/events" or path.startswith("/v1/events?"):
                return
        self.logger.info(msg, *args)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, the C parser) with deadlines for what the client sends.

    uvicorn closes a keep-alive connection that stays silent, but a client that trickles a request
    (a byte now and then: a slowloris) or never finishes its body would hold its connection for
    ever. Here each request's head and body have a deadline; past it the connection is closed (a
    408 first when no request has started). A response being computed, or a long poll waiting, is
    not limited: the deadlines cover only what the client still owes. A head is at most
    `max_head_bytes` (431). httptools rather than h11: parsing a request and writing its answer in
    C is about a tenth of what an idle long poll or a job submission costs the process in Python
    (docs/benchmarks.md)."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S
    max_head_bytes = MAX_HEAD_BYTES
    linger_s = LINGER_S
    linger_max_s = LINGER_MAX_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owed: str | None = None  # "head", "body" or None (the client owes nothing now)
        self._head_bytes = 0
        self._head_tail = b""
        self._ticks = ticks(self.loop)  # deadlines without a timer each on asyncio's heap
        self._deadline: Deadline | None = None
        self._body_done = True  # the latest request's body has all arrived (or there is none yet)
        self._linger_until: float | None = None  # answered and half-closed: what comes in is dropped
        if self.access_log:
            self.access_logger = QuietAccessLog(self.access_logger)  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._owe("head")

    def data_received(self, data: bytes) -> None:
        if self._linger_until is not None:
            self._linger_on()
            return
        if self._owed == "head":
            # Count the head whichever way it comes. Only the head: a body that came in the same
            # read (a 30 KB job often does) is not one.
            seen = self._head_tail + data
            end = _HEAD_END.search(seen)
            self._head_bytes += len(data) if end is None else max(0, end.end() - len(self._head_tail))
            self._head_tail = seen[-3:]  # the end of a head may straddle two reads
            if self._head_bytes > self.max_head_bytes:
                if self.cycle is not None and not self.cycle.response_complete:
                    # A pipelined head while an answer is under way: no room for a 431 in between.
                    self.logger.info("closed a connection: request head too large")
                    self.transport.close()
                else:
                    self._refuse(431, _HEAD_TOO_LARGE_BODY, "request head too large")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_done = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if not self._body_done:
            self._owe("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_done = True
        # Nothing owed while we answer; the next head is owed once the answer is out.
        self._owe("head" if self.cycle is None or self.cycle.response_complete else None)

    def on_response_complete(self) -> None:
        # uvicorn's (0.54), with its keep-alive time-out on the coarse deadlines instead of a timer
        # of its own on asyncio's heap, then the next head owed.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.timeout_keep_alive_task = self._ticks.call_later(  # type: ignore[assignment]
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        if self._body_done:
            self._owe("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _owe(self, owed: str | None) -> None:
        if owed == self._owed:
            return
        self._cancel()
        self._owed = owed
        self._head_bytes = 0
        self._head_tail = b""
        if owed is not None and not self.transport.is_closing():
            timeout = self.header_timeout_s if owed == "head" else self.body_timeout_s
            self._deadline = self._ticks.call_later(timeout, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._owed == "head" and (self.cycle is None or self.cycle.response_complete):
            # Nothing of ours is under way: say why before closing.
            self._refuse(408, _TIMEOUT_BODY, f"{self._owed} not received in time")
        else:
            self.logger.info("closed a connection that sent too slowly (%s not received in time)", self._owed)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What the parser cannot read (a garbage request line, an unknown method, a bad
        Content-Length, broken chunks): the service's JSON error, as for a 408 or 431, not
        uvicorn's plain text."""
        if self.cycle is not None and not self.cycle.response_complete:
            # The body of a request already handed to the app broke (bad chunks): uvicorn's own
            # answer, which it makes knowing the request under way.
            super().send_400_response(msg)
            return
        self._refuse(400, _MALFORMED_BODY, f"malformed request ({msg})")

    def _refuse(self, status: int, body: bytes, why: str) -> None:
        """Answer `status` with `body` and close, outside the parser (which has no request to answer)."""
        self._cancel()
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )
        self.logger.info("closed a connection: %s", why)
        self._linger()

    def _linger(self) -> None:
        """Close after the answer without destroying it (a "lingering close", as Apache and nginx do).

        Closing a socket while the client's bytes sit unread in it (a slowloris still trickling, the
        rest of an over-long head) makes the kernel reset the connection, and a reset can throw away
        the 408 or 431 before the client reads it. So: send FIN after the answer, drop whatever still
        comes, and close when the client closes its side, has sent nothing for `linger_s`, or
        `linger_max_s` after the answer at the latest (so a client that never stops is still cut)."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._unset_keepalive_if_required()  # or its time-out would cut the linger short
        self.transport.write_eof()
        self._linger_until = self.loop.time() + self.linger_max_s
        self._linger_on()

    def _linger_on(self) -> None:
        assert self._linger_until is not None
        self._cancel()
        now = self.loop.time()
        self._deadline = self._ticks.call_later(min(self.linger_s, self._linger_until - now), self.transport.close)


# Where a head ends (a bare LF ends a line too, for the count).
_HEAD_END = re.compile(rb"\n\r?\n")
_TIMEOUT_BODY = b'{"error":{"code":"request_timeout","message":"The request was not received in time."}}'
_MALFORMED_BODY = b'{"error":{"code":"bad_request","message":"The request is not well-formed HTTP/1.1; nothing was done."}}'
_HEAD_TOO_LARGE_BODY = (
    b'{"error":{"code":"headers_too_large","message":"The request line and headers are over 16 KiB."}}'
)


def guarded_protocol(header_timeout_s: float, body_timeout_s: float) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn's `http=` with these deadlines."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )


def run_processes(host: str, port: int, processes: int, serve: Callable[[socket.socket], None]) -> int:
    """`serve --processes N`: N serve processes on one port, each with its own event loop, engine
    and runner (the GIL lets one Python process use about one core).

    Each process has its own listening socket in one SO_REUSEPORT group, so the kernel spreads new
    connections over them (with a shared socket whichever loop wakes first may accept a whole
    burst of keep-alive connections). The sockets are bound here, before forking and before any engine or
    thread exists, so the port is held from the start. This process only supervises: SIGTERM or
    SIGINT is passed on as SIGTERM (a graceful stop), and when one process ends the others are
    stopped too, so whatever runs the service sees it stop rather than half of it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    for _ in range(processes):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        sockets.append(sock)
    children: list[int] = []
    for sock in sockets:
        pid = os.fork()
        if pid == 0:  # a serve process: its socket only, default signals until uvicorn sets its own
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                for other in sockets:
                    if other is not sock:
                        other.close()
                serve(sock)
            except BaseException:
                log.exception("serve process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children.append(pid)
    for sock in sockets:
        sock.close()
    log.info("serving on %s:%d with %d processes (%s)", host, port, processes, ", ".join(map(str, children)))

    stopping = False

    def stop(_sig: int = signal.SIGTERM, _frame: Any = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in children:
            children.remove(pid)
            code = os.waitstatus_to_exitcode(status)
            if not stopping:
                log.error("serve process %d exited (%d); stopping the others", pid, code)
                failed = True
                stop()
    return 1 if failed else 0


class Biller:
    """Applies billing-date refills as they fall due, so that a refill (and its `billing.refilled`
    event, which wakes every waiting long poll) happens at the billing date even when nobody asks
    for that organisation. Requests still refill lazily; the ledger makes each period happen once,
    whichever process or path gets there first. Each pass also writes the usage marks that have
    settled since (usage.write_all_marks), so that usage by shot over long ranges reads few rows."""

    def __init__(self, ledger: Ledger, interval_s: float = 30.0) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="act3-billing", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def nudge(self) -> None:
        """The (dev) clock moved: look now."""
        self._nudge.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.ledger.refill_due()
            except Exception as exc:  # a database hiccup must not end billing for good
                if is_database_unavailable(exc):
                    log.warning("billing refills: the database is unavailable; retrying")
                else:
                    log.exception("billing refills failed; retrying")
            try:
                usage.write_all_marks(self.ledger, stop=self._stop.is_set)
            except Exception as exc:  # usage by shot reads as before until the marks are there
                if is_database_unavailable(exc):
                    log.warning("usage marks: the database is unavailable; retrying")
                else:
                    log.exception("writing usage marks failed; retrying")
            self._nudge.wait(self.interval_s)
            self._nudge.clear()


@dataclass
class Service:
    engine: Engine
    ledger: Ledger
    runner: Runner | RenderProcess | None
    bus: EventBus
    app: FastAPI


def open_ledger(database_url: str, dev_clock: bool = True) -> tuple[Ledger, DbClock]:
    """An engine with the schema migrated and a ledger on the shared (dev) clock."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    clock = DbClock(engine)
    return Ledger(engine, clock if dev_clock else utcnow), clock


def build_service(
    database_url: str,
    *,
    dev_clock: bool = False,
    render_speed: float = 1.0,
    fail_rate: float = 0.0,
    fail_every: int = 0,
    workers: int = 4,
    run_jobs: bool = True,
    events_recheck_s: float = 0.1,
    events_backstop_s: float = 2.0,
    render_process: bool = False,
) -> Service:
    """`render_process`: the render threads in a process of their own (renderproc.py), else here."""
    ledger, clock = open_ledger(database_url, dev_clock)
    bus = EventBus(ledger.engine, recheck_s=events_recheck_s, backstop_s=events_backstop_s)
    runner: Runner | RenderProcess | None = None
    if run_jobs and render_process:
        runner = RenderProcess(
            database_url,
            dev_clock=dev_clock,
            render_speed=render_speed,
            fail_rate=fail_rate,
            fail_every=fail_every,
            workers=workers,
            on_events=bus.notify,
        )
    elif run_jobs:
        runner = Runner(ledger, render_speed=render_speed, fail_rate=fail_rate, fail_every=fail_every, workers=workers)
    # Background work (rendering, billing) runs in `serve`; tests that drive the ledger by hand opt out.
    biller = Biller(ledger) if run_jobs else None

    def on_start() -> None:
        if runner is not None:
            runner.start()
        if biller is not None:
            biller.start()

    def on_stop() -> None:
        if biller is not None:
            biller.stop()
        if runner is not None:
            runner.stop()

    def on_event() -> None:
        bus.notify()
        if runner is not None:
            runner.wake()

    ledger.on_event = on_event
    app = create_app(
        ledger,
        dev_clock=clock if dev_clock else None,
        bus=bus,
        on_start=on_start,
        on_stop=on_stop,
    )
    return Service(ledger.engine, ledger, runner, bus, app)

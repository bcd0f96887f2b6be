"""A serve process's render threads in a process of their own (SQLite's default).

On SQLite every write takes the one write lock, and sqlite3 lets go of the GIL at each step of a
statement: a thread holding the lock then waits for the GIL after every statement. In one process
with the HTTP layer (the event loop, the threads taking holds), the runner's charges held the lock
about half as long again as the same charges with no HTTP beside them (docs/benchmarks.md, "Session
11"). So `serve` on SQLite starts, beside each serve process, a render process: the same `Runner`
on its own engine, nothing else.

The two talk over a socket pair, one byte a message, each side's reader coalescing what is queued:
- render -> serve: b"R" once it is up (first); b"E" after it wrote events (the serve process's
  long polls wake at once, as they do for its own writes);
- serve -> render: b"W" when a job was queued or resumed there (the render threads look now).
Either side reading the end of the stream knows the other is gone: a render process whose serve
process died stops (its shots go back to the queue) and exits; a serve process whose render
process died starts another. The serve process alone decides when its render process stops: the
render process ignores SIGTERM and SIGINT, which a process manager or a terminal sends to the
whole process group, and stops when the serve process, stopping in turn, closes the link. Leases
carry the serve process's id, so an operator sees which service holds a shot.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import site
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("act3_server.render")

READY, EVENTS, WAKE = b"R", b"E", b"W"
_URL_ENV = "ACT3_RENDER_DATABASE"  # the database URL goes by environment, never on a command line


def _send(sock: socket.socket, message: bytes) -> None:
    """One byte, never blocking: a full buffer already holds a message the reader will see."""
    try:
        sock.send(message, socket.MSG_DONTWAIT)
    except (BlockingIOError, OSError):
        pass


class RenderProcess:
    """The serve process's side: starts the render process, passes wake-ups both ways, and starts
    another render process when one dies while the service runs."""

    def __init__(
        self,
        database_url: str,
        *,
        dev_clock: bool,
        render_speed: float,
        fail_rate: float,
        fail_every: int,
        workers: int,
        on_events: Callable[[], None],
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.database_url = database_url
        self.args = [
            "--render-speed", str(render_speed), "--fail-rate", str(fail_rate),
            "--fail-every", str(fail_every), "--workers", str(workers),
        ]  # fmt: skip
        if dev_clock:
            self.args.append("--dev-clock")
        self.on_events = on_events
        self.ready_timeout_s = ready_timeout_s
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the render process and return once it is up."""
        self._spawn()
        self._reader = threading.Thread(target=self._read, name="act3-render-link", daemon=True)
        self._reader.start()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        # -P: not the working directory first on the path (a stray json.py there must not be
        # imported). Run from a source checkout, the checkout this process runs goes first instead,
        # so both processes run the same code; installed, the package is where it always is.
        cmd = [sys.executable, "-P", "-m", "act3_server.renderproc", "--fd", str(theirs.fileno())]
        cmd += ["--owner-pid", str(os.getpid()), *self.args]
        env = {**os.environ, _URL_ENV: self.database_url}
        here = str(Path(__file__).resolve().parents[1])
        if here not in {str(Path(p).resolve()) for p in site.getsitepackages()}:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        try:
            proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(self.ready_timeout_s)
        try:
            first = ours.recv(1)
        except OSError:
            first = b""
        if first != READY:
            proc.kill()
            proc.wait()
            ours.close()
            raise RuntimeError(f"the render process did not start (exit code {proc.returncode})")
        ours.settimeout(None)
        self._sock, self._proc = ours, proc
        log.info("render process %d started", proc.pid)

    def _read(self) -> None:
        while not self._stopping.is_set():
            sock = self._sock
            try:
                data = sock.recv(4096) if sock is not None else b""
            except OSError:
                data = b""
            if data:
                if EVENTS in data:
                    try:
                        self.on_events()
                    except Exception:  # this thread must go on: it wakes long polls and replaces
                        log.exception("waking the long polls failed")
                continue
            if self._stopping.is_set():
                return
            self._replace()

    def _replace(self) -> None:
        """The render process died (killed, out of memory): its leased shots come back when their
        leases run out; start another until one runs or the service stops."""
        proc = self._proc
        code = None if proc is None else proc.wait()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        log.error("render process %s exited (%s); starting another", None if proc is None else proc.pid, code)
        while not self._stopping.wait(1.0):
            try:
                self._spawn()
            except Exception:
                log.exception("starting a render process failed; trying again")
                continue
            if self._stopping.is_set():  # stop() came while it started: it stops this one too
                self._halt(self._sock, self._proc, 10.0)
            return

    def wake(self) -> None:
        sock = self._sock
        if sock is not None:
            _send(sock, WAKE)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the render process: it hands back the shots it rendered, then exits."""
        self._stopping.set()
        self._halt(self._sock, self._proc, timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    @staticmethod
    def _halt(sock: socket.socket | None, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the render process reads the end of the stream
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("render process %d did not stop within %.0f s; killed", proc.pid, timeout)
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    """The render process itself (started by RenderProcess, not by hand)."""
    ap = argparse.ArgumentParser(prog="act3_server.renderproc")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--owner-pid", type=int, required=True)
    ap.add_argument("--dev-clock", action="store_true")
    ap.add_argument("--render-speed", type=float, default=1.0)
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # A terminal's Ctrl-C and a process manager's SIGTERM reach the whole process group: the serve
    # process stops gracefully and then stops this one by closing the link.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = threading.Event()

    from .clock import DbClock, utcnow
    from .db import make_engine
    from .ledger import Ledger
    from .runner import Runner

    link = socket.socket(fileno=args.fd)
    engine = make_engine(os.environ[_URL_ENV])  # migrated by the serve process that started this one
    # The dev clock is moved in the serve process: read it afresh for every charge here, so a shot
    # charged just after a jump is stamped with the new time (dev and tests only; real time otherwise).
    ledger = Ledger(engine, DbClock(engine, ttl=0.0) if args.dev_clock else utcnow)
    runner = Runner(
        ledger,
        render_speed=args.render_speed,
        fail_rate=args.fail_rate,
        fail_every=args.fail_every,
        workers=args.workers,
        process_id=args.owner_pid,
    )

    def on_event() -> None:
        runner.wake()  # as in a serve process: more may be runnable now
        _send(link, EVENTS)

    ledger.on_event = on_event

    def read() -> None:
        while True:
            try:
                data = link.recv(4096)
            except OSError:
                data = b""
            if not data:  # the serve process stopped us, or died
                stop.set()
                return
            runner.wake()

    _send(link, READY)  # first: the render threads' own messages come after it
    runner.start()
    threading.Thread(target=read, name="act3-render-link", daemon=True).start()
    while not stop.wait(1.0):
        if os.getppid() != args.owner_pid:  # the serve process is gone and the link with it
            break
    runner.stop()
    ledger.engine.dispose()
    link.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

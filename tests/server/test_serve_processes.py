"""`act3-server serve --processes N`: several serve processes on one port, over HTTP."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import requests
from support.servers import LiveServer

SHOT = {"name": "sh010", "engine": "veo-3.1-fast", "tier": "draft", "duration_s": 4}  # 98 cr/s x 1/2 x 4 s = 196 cr


def serve_processes(srv: LiveServer) -> list[int]:
    """The supervisor's children (the serve processes), once every one has started."""
    assert srv.proc is not None
    deadline = time.monotonic() + 60
    while srv.read_log().count("Application startup complete") < 2:
        assert time.monotonic() < deadline, srv.read_log()
        time.sleep(0.05)
    children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def connections_by_process(port: int, pids: list[int]) -> dict[int, int]:
    """How many established TCP connections to `port` each process holds (Linux /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # local port, ESTABLISHED
            inodes.add(fields[9])
    counts = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        links = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
        counts[pid] = sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)
    return counts


def wait_gone(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and "State:\tZ" not in _status(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return "State:\tZ"


def test_two_serve_processes_share_the_port_and_charge_every_job_once(live_server_factory, database_url) -> None:
    srv = live_server_factory(database_url, extra_args=("--processes", "2", "--workers", "2"))
    pids = serve_processes(srv)
    assert len(pids) == 2 and srv.proc is not None and srv.proc.pid not in pids
    before = srv.get("/account/credits", plan="enterprise").json()

    # 16 keep-alive clients, each with its own connection: the kernel spreads the connections over
    # both processes (all 16 on one of two would happen about once in 30,000 runs).
    sessions = [requests.Session() for _ in range(16)]
    headers = srv.auth("enterprise", "editor")
    for s in sessions:
        r = s.post(
            srv.url + "/jobs",
            json={"name": "seq010", "shots": [SHOT]},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            timeout=40,
        )
        assert r.status_code == 201, r.text
        assert r.json()["estimated_credits"] == 196
    counts = connections_by_process(srv.port, pids)
    assert sum(counts.values()) == 16 and all(n >= 1 for n in counts.values()), counts

    # Both processes' runners render; each job is charged once: 16 x 196 = 3,136 cr, nothing held.
    deadline = time.monotonic() + 60
    while True:
        after = srv.get("/account/credits", plan="enterprise").json()
        if after["held"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (after["held"], before["total"] - after["total"]) == (0, 3_136)
    jobs = srv.get("/jobs?limit=200", plan="enterprise").json()["jobs"]
    mine = [j for j in jobs if j["name"] == "seq010"]
    assert len(mine) == 16 and all((j["status"], j["charged_credits"]) == ("completed", 196) for j in mine)
    for s in sessions:
        s.close()


def test_sigterm_to_the_supervisor_stops_every_serve_process(live_server_factory, tmp_path) -> None:
    srv = live_server_factory(extra_args=("--processes", "2"))
    pids = serve_processes(srv)
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGTERM)  # the supervisor only, as a process manager would
    assert srv.proc.wait(20) == 0
    for pid in pids:
        wait_gone(pid)
    assert srv.read_log().count("Application shutdown complete") == 2  # each stopped its runner cleanly


def test_when_one_serve_process_dies_the_service_stops_and_says_so(live_server_factory) -> None:
    srv = live_server_factory(extra_args=("--processes", "2"))
    pids = serve_processes(srv)
    assert srv.proc is not None
    os.kill(pids[0], signal.SIGKILL)
    assert srv.proc.wait(20) == 1  # a process manager sees a failed service and can restart it whole
    wait_gone(pids[1])
    assert f"serve process {pids[0]} exited" in srv.read_log()

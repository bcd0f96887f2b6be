"""`POST /v1/jobs` answered by jobpath.JobsFastPath says exactly what the FastAPI route says.

Two copies of the same demo database, one app with the fast paths and one without, get the same
requests in the same order: every answer (status, headers, body) must be the same but for what is
random or timed by nature (a job's public id, its timestamps). The list covers the fast path's own
answers (a new job, a replay, an idempotency conflict, the ledger's 4xx: 402, 403, 422 tier and
engine errors) and what it hands to the route (no or a bad key, no Idempotency-Key, invalid JSON or
fields, a chunked body, an oversized body)."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import sqlite_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from test_api import BAD_JOBS, SHOT, job_body

from act3_server import jobpath
from act3_server.app import MAX_BODY_BYTES, create_app
from act3_server.demo import init_demo
from act3_server.server import open_ledger

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


@pytest.fixture
def twin_url(database_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if database_url.startswith("sqlite"):
        twin = tmp_path / "twin"
        twin.mkdir()
        yield sqlite_url(twin)
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)


def _client(url: str, fast_paths: bool) -> tuple[TestClient, dict[str, Any], Any]:
    ledger, clock = open_ledger(url, True)
    orgs = init_demo(ledger)
    app = create_app(ledger, dev_clock=clock, fast_paths=fast_paths)
    return TestClient(app, raise_server_exceptions=False), orgs, ledger


def _key(orgs: dict[str, Any], plan: str, role: str) -> str:
    return str(next(o for o in orgs["orgs"] if o["plan"] == plan)["keys"][role])


def _seen(response: Any, job_ids: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """An answer with what is random or timed by nature named by its order of appearance."""
    text = _TIME.sub("<time>", response.text)
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        body["id"] = job_ids.setdefault(body["id"], f"<job {len(job_ids) + 1}>")
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "server")}
    return response.status_code, headers, body


def _requests(orgs: dict[str, Any]) -> list[tuple[str, dict[str, str], bytes | Iterator[bytes]]]:
    def headers(plan: str = "pro", role: str = "editor", idem: str | None = "k1", **more: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {_key(orgs, plan, role)}", **more}
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

    body = json.dumps(job_body()).encode()
    many = job_body(*[dict(SHOT, name=f"sh{i:03d}", tier="high", duration_s=10) for i in range(60)])  # 312,000 cr
    chunks = iter([body[:10], body[10:]])
    sent: list[tuple[str, dict[str, str], bytes | Iterator[bytes]]] = [
        ("a new job", headers(), body),
        ("its replay", headers(), body),
        ("the same key, another body", headers(), json.dumps(job_body(dict(SHOT, duration_s=4))).encode()),
        (
            "a job with a project, sent next period",
            headers(idem="k2"),
            json.dumps({**job_body(), "project": "Ep 1", "start": "next_period"}).encode(),
        ),
        ("unknown fields are ignored", headers(idem="k3"), json.dumps({**job_body(), "colour": "red"}).encode()),
        ("4K on a plan without it", headers(idem="k4"), json.dumps(job_body(dict(SHOT, tier="4k"))).encode()),
        ("a viewer may not queue", headers(role="viewer", idem="k5"), body),
        ("more than the balance", headers(plan="starter", idem="k6"), json.dumps(many).encode()),
        ("no key", {"Idempotency-Key": "k7"}, body),
        ("a bad key", {"Authorization": "Bearer act3_nope", "Idempotency-Key": "k7"}, body),
        ("no Idempotency-Key", headers(idem=None), body),
        ("an empty Idempotency-Key", headers(idem=""), body),
        ("a chunked body", headers(idem="k8"), chunks),
        ("an oversized body", headers(idem="k9"), b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'),
        ("an empty body", headers(idem="k10"), b""),
        ("nested too deep", headers(idem="k11"), b"[" * 100_000 + b"]" * 100_000),
    ]
    for i, (what, raw, _status, _code) in enumerate(BAD_JOBS):
        sent.append((what, headers(idem=f"bad{i}"), raw.encode()))
    return sent


def test_the_fast_path_answers_every_job_request_as_the_route_does(database_url: str, twin_url: str) -> None:
    fast, orgs, fast_ledger = _client(database_url, True)
    reference, ref_orgs, ref_ledger = _client(twin_url, False)
    fast_ids: dict[str, str] = {}
    ref_ids: dict[str, str] = {}
    taken = 0
    with fast, reference:
        for (what, headers, content), (_, ref_headers, ref_content) in zip(
            _requests(orgs), _requests(ref_orgs), strict=True
        ):  # each side with its own demo keys
            got = _seen(fast.post("/v1/jobs", headers=headers, content=content), fast_ids)
            want = _seen(reference.post("/v1/jobs", headers=ref_headers, content=ref_content), ref_ids)
            assert got == want, what
            taken += got[0] == 201
        # Both books hold the same: the same jobs were queued, the same credits held.
        for plan in ("pro", "starter"):
            mine = fast.get("/v1/account/credits", headers={"Authorization": f"Bearer {_key(orgs, plan, 'owner')}"})
            theirs = reference.get(
                "/v1/account/credits", headers={"Authorization": f"Bearer {_key(ref_orgs, plan, 'owner')}"}
            )
            assert _seen(mine, {}) == _seen(theirs, {})
    assert taken == 5  # a new job, its replay, the scheduled one, the unknown field, the chunked one
    fast_ledger.engine.dispose()
    ref_ledger.engine.dispose()


def test_the_fast_path_takes_only_what_it_can_answer_whole() -> None:
    # What it hands on without reading the body: an unusual request is the route's.
    calls: list[str] = []

    async def route(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])

    def submit(key: str, idem: str, raw: bytes) -> None:
        raise AssertionError("not expected to submit")

    path = jobpath.JobsFastPath(route, submit=submit, on_error=lambda exc: None, limit=100)

    async def never() -> Any:
        raise AssertionError("the body is not read")

    def scope(path: str, method: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"type": "http", "path": path, "method": method, "headers": list(headers)}

    auth = (b"authorization", b"Bearer k")
    idem = (b"idempotency-key", b"i")
    length = (b"content-length", b"10")
    for s in (
        scope("/v1/jobs", "GET", auth, idem, length),
        scope("/v1/estimates", "POST", auth, idem, length),
        scope("/v1/jobs", "POST", idem, length),  # no key
        scope("/v1/jobs", "POST", auth, length),  # no Idempotency-Key
        scope("/v1/jobs", "POST", auth, idem),  # no Content-Length
        scope("/v1/jobs", "POST", auth, idem, (b"content-length", b"101")),  # over the limit
        scope("/v1/jobs", "POST", auth, idem, length, length),  # a repeated header
        scope("/v1/jobs", "POST", auth, idem, length, (b"transfer-encoding", b"chunked")),
    ):
        asyncio.run(path(s, never, None))
    assert len(calls) == 8

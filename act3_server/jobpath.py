"""`POST /v1/jobs`, the charge path's front door, answered below FastAPI when nothing is unusual.

Sixteen clients queueing jobs spend most of a serve process's CPU in the HTTP layers, not in the
ledger (docs/benchmarks.md, "where a serve process's CPU goes"): Starlette's middleware, FastAPI's
routing and dependency solving, and three hops to worker threads (the key check, the body's
validation, the endpoint). `JobsFastPath` reads the body itself and makes one hop, in which the
app's `submit` parses and validates the body with the route's own model, checks the key and holds
the job. What it answers is byte for byte what the route answers (tests/server/test_jobpath.py
sends the same requests both ways); anything unusual (no or a bad key, no Idempotency-Key, a body
that does not validate, a chunked or oversized body) is handed to the route, which stays the
reference and answers it in its own words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .auth import parse_bearer
from .ledger import Result
from .workers import Workers

# Holds of one org queue on its account row, so a few threads are enough; their own pool keeps a
# burst of jobs from queueing behind (or starving) the other endpoints' thread pool.
_SUBMITTERS = Workers(max_workers=16, name="act3-jobs")

# submit(api_key, idempotency_key, body) -> the ledger's Result, or None: let the route answer.
Submit = Callable[[str, str, bytes], Result | None]


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for key, value in scope.get("headers") or ():
        if key in found:  # a repeated header is unusual: the route decides what it means
            found[key] = b""
        else:
            found[key] = value
    return found


def encode(body: Any) -> bytes:
    """The JSON bytes Starlette's JSONResponse writes for `body`."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


class JobsFastPath:
    """ASGI middleware: a well-formed, authenticated `POST /v1/jobs` in one thread hop."""

    def __init__(self, app: Any, submit: Submit, on_error: Callable[[BaseException], Any], limit: int) -> None:
        self.app = app
        self.submit = submit
        self.on_error = on_error
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/jobs" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        declared = headers.get(b"content-length", b"")
        idempotency = headers.get(b"idempotency-key", b"")
        key = parse_bearer(headers.get(b"authorization", b"").decode("latin-1"))
        if (
            key is None
            or not declared.isdigit()
            or int(declared) > self.limit
            or b"transfer-encoding" in headers
            or not 1 <= len(idempotency) <= 200
            or b"\x00" in idempotency
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body arrived: nothing was done
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            result = await _SUBMITTERS.run(self.submit, key, idempotency.decode("latin-1"), body)
        except Exception as exc:
            await self.on_error(exc)(scope, receive, send)
            return
        if result is None:
            await self.app(scope, _replaying(body, receive), send)
            return
        raw = encode(result.body)
        fields = [(b"idempotent-replayed", b"true")] if result.replayed else []
        fields += [(b"content-length", str(len(raw)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": result.status, "headers": fields})
        await send({"type": "http.response.body", "body": raw})


def _replaying(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the route the body already read, then whatever comes next."""
    given = False

    async def again() -> Any:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again

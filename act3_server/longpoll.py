"""`GET /v1/events`: the long poll, and a fast path that answers it below FastAPI.

An idle Blender session asks again as soon as its long poll answers (every 10 s by default), so a
thousand idle sessions make a hundred requests a second: what each costs is what idle costs. The
route in app.py stays the reference (it validates and answers errors); `EventsFastPath` answers only
the well-formed, authenticated request and hands every other one to it unchanged. Both wait through
`answer()`:

- register with the process's `EventBus` first, then read, so no commit is missed in between;
- skip the read when the bus already follows the org and knows nothing newer than `after`;
- sleep without a thread, a connection or a timer of our own beyond the deadline;
- on time-out answer "nothing new" without reading again.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from .auth import parse_bearer
from .events import EventBus
from .ledger import MAX_DB_INT, Actor, Ledger
from .workers import Workers

T = TypeVar("T")
MAX_WAIT_S = 30.0
_AFTER = re.compile(r"[0-9]{1,10}")
_WAIT = re.compile(r"[0-9]{1,2}(\.[0-9]{1,6})?")
_PLAIN = re.compile(rb"after=([0-9]{1,10})&wait=([0-9]{1,2}(?:\.[0-9]{1,6})?)")


# The long polls' own few threads for their short reads: lighter than anyio's thread pool, and
# a burst of long polls never queues behind (or starves) the plain endpoints there.
_READERS = Workers(max_workers=8, name="act3-longpoll")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await _READERS.run(fn, *args)


async def answer(ledger: Ledger, bus: EventBus, org_id: int, after: int, wait: float) -> dict[str, Any]:
    """The body of `GET /v1/events?after=AFTER&wait=WAIT` for an organisation."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    waiter = bus.register(org_id, after) if wait > 0 else None
    try:
        read = waiter is None or not waiter.tracked or waiter.woken
        while True:
            found = await in_thread(ledger.events_after, org_id, after) if read else []
            left = deadline - loop.time()
            if found or waiter is None or left <= 0:
                break
            if read and waiter.woken:
                # Woken, yet nothing to read (should not happen): never spin on it.
                waiter.woken = False
                waiter.event.clear()
                await asyncio.sleep(min(left, 0.05))
                continue
            if not await waiter.sleep(left):
                break  # nothing came: "nothing new" needs no second read
            read = True
    finally:
        if waiter is not None:
            bus.unregister(waiter)
    return {"events": found, "last_seq": found[-1]["seq"] if found else after}


def _params(query_string: bytes) -> tuple[int, float] | None:
    """(after, wait) when both are plainly valid, else None (the FastAPI route answers)."""
    plain = _PLAIN.fullmatch(query_string)  # what the add-on sends: no need to parse it in general
    if plain is not None:
        after_s, wait_s = plain[1].decode(), plain[2].decode()
    else:
        try:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
        except ValueError:
            return None
        seen: dict[str, str] = {}
        for name, value in pairs:
            if name in seen and name in ("after", "wait"):
                return None
            seen[name] = value
        found, wait_s = seen.get("after"), seen.get("wait", "0")
        if found is None or not _AFTER.fullmatch(found) or not _WAIT.fullmatch(wait_s):
            return None
        after_s = found
    after, wait = int(after_s), float(wait_s)
    if after > MAX_DB_INT or wait > MAX_WAIT_S:
        return None
    return after, wait


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


class EventsFastPath:
    """ASGI middleware: `GET /v1/events?after=N[&wait=S]` with a valid key, answered directly.

    What it skips is FastAPI's routing, dependency solving and validation, and two of the three
    thread hops (the key check and the first read share one). What it answers is byte for byte what
    the route answers; anything it would not answer as the route does goes to the route."""

    def __init__(
        self,
        app: Any,
        ledger: Ledger,
        bus: EventBus,
        authenticate: Callable[[str | None], Actor | None],
        on_error: Callable[[BaseException], Any],
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.bus = bus
        self.authenticate = authenticate
        self.on_error = on_error

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/events" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        params = _params(scope.get("query_string", b""))
        key = parse_bearer(_header(scope, b"authorization"))
        if params is None or key is None:
            await self.app(scope, receive, send)
            return
        after, wait = params
        try:
            who = await in_thread(self.authenticate, key)
        except Exception as exc:
            await self.on_error(exc)(scope, receive, send)
            return
        if who is None:
            await self.app(scope, receive, send)  # the route answers 401 in its words
            return
        try:
            body = await answer(self.ledger, self.bus, who.org_id, after, wait)
        except Exception as exc:
            await self.on_error(exc)(scope, receive, send)
            return
        if body["events"]:
            raw = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        else:  # the idle answer, as json.dumps would write it
            raw = b'{"events":[],"last_seq":%d}' % body["last_seq"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(raw)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": raw})

"""The one thin HTTP client for the ACT3 credits API (docs/api.md).

Blocking by design: only the sync worker's threads, the CLI and scripts call it, never draw code.
Every call has connect and read time-outs. Only requests that are safe to repeat (GETs, and POSTs
that carry an Idempotency-Key) are retried, with exponential backoff, jitter and `Retry-After`.
Every failure becomes a typed `Act3Error` whose `str()` is one line a user can act on; the API key
never appears in a message, a repr or a log line.

`requests` (about half of the add-on's import time) is imported when the first `Client` is made,
which in Blender is on the worker's threads: enabling the add-on never waits for it.
"""

from __future__ import annotations

import email.utils
import functools
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    import requests

    from .forecast import Forecast
    from .usage import Usage

from .contract import Job, Me, ServiceEstimate, ServiceEvent, parse_credits, parse_event
from .logs import log
from .pricing import RateCard
from .state import Credits, HistoryRow
from .values import value
from .vocabulary import ErrorCode

USER_AGENT = "act3-credits-blender/0.1"
# The public ACT3 API; the reference service (act3-server) listens on http://127.0.0.1:8765/v1.
DEFAULT_BASE_URL = "https://api.act3ai.com/v1"
CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 10.0
LONG_POLL_MARGIN_S = 5.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A Retry-After longer than this is not worth holding a worker thread for: give up and report it.
MAX_RETRY_AFTER_S = 30.0

T = TypeVar("T")

AUTH_MESSAGE = "The ACT3 API key was refused: check it in Preferences > Add-ons > ACT3 Credits."
BAD_KEY_MESSAGE = (
    "The ACT3 API key has a line break or another character no key has: paste it again in "
    "Preferences > Add-ons > ACT3 Credits (or fix ACT3_API_KEY)."
)


def key_is_sendable(key: str) -> bool:
    """A key is one printable ASCII word: anything else cannot go in a header (and requests would echo it)."""
    return all(33 <= ord(ch) <= 126 for ch in key)


def new_idempotency_key() -> str:
    """One key per user action (one click on Buy, one Submit); reuse it for every retry of that action."""
    return str(uuid.uuid4())


def _url_problem(url: str) -> str | None:
    """Why `url` cannot be the service's address (one line, never the URL itself), or None."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "The ACT3 API URL has a space, a line break or a control character in it; set it again."
    if "@" in url:  # an API URL has none: it is a user:password, which requests would send as
        # Basic auth in place of the key (and messages would show)
        return "The ACT3 API URL must not hold a user name or password: the API key has its own field."
    if "?" in url or "#" in url:
        return "The ACT3 API URL must end at its path (no ? or #), like https://host/v1."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return "The ACT3 API URL is not a valid http(s) URL (check its brackets and port)."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "The ACT3 API URL is not a valid http(s) URL: it must start with http:// or https:// and name a host."
    host = parts.hostname
    if len(host) > 253 or any(len(label) > 63 for label in host.split(".")):
        return "The ACT3 API URL's host name is too long (63 characters a label, 253 in all)."
    return None


def _host_of(url: str) -> str:
    """`host[:port]` of a valid URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{host}:{parts.port}" if parts.port is not None else host


def public_url(url: str) -> str:
    """`url` as a log line, a repr, the cache file or the preferences may show it: without anything
    before an `@` (a user:password, which may be a key; an API URL has no `@` of its own)."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else rest.rpartition("@")[2]


def mask_key(key: str | None) -> str:
    if not key:
        return "<none>"
    return "…" + key[-4:] if len(key) >= 16 else "****"


# ---------------------------------------------------------------------------------------- errors


class Act3Error(Exception):
    """Base of every client error; `str(err)` is one readable line."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class AuthError(Act3Error):
    """401: no key, unknown or revoked key."""


class ForbiddenError(Act3Error):
    """403 forbidden: this member's role may not do it (the message says who can)."""


class TierNotAllowedError(ForbiddenError):
    """403 tier_not_allowed: the organisation's plan does not include the tier."""

    @property
    def tier(self) -> str | None:
        return self.extra.get("tier")

    @property
    def plan(self) -> str | None:
        return self.extra.get("plan")


class InsufficientCreditsError(Act3Error):
    """402: the batch costs more than the available balance."""

    def __init__(self, message: str, *, required_credits: int = 0, current_balance: int = 0, **kw: Any) -> None:
        kw.setdefault("code", "insufficient_credits")
        kw.setdefault("status", 402)
        super().__init__(message, **kw)
        self.required_credits = required_credits
        self.current_balance = current_balance


class SpendLimitError(Act3Error):
    """402 past a limit the organisation set itself (a project budget, a member cap): buying
    credits does not help; the message says what is spent, held and left, and what the batch needs."""

    @property
    def spent(self) -> int:
        return _int(self.extra.get("spent"))

    @property
    def held(self) -> int:
        return _int(self.extra.get("held"))

    @property
    def needed(self) -> int:
        return _int(self.extra.get("needed"))


class BudgetExceededError(SpendLimitError):
    """402 budget_exceeded: the job would take its project past a `refuse` budget."""

    @property
    def project(self) -> str | None:
        return self.extra.get("project")

    @property
    def budget(self) -> int:
        return _int(self.extra.get("budget"))


class MemberCapExceededError(SpendLimitError):
    """402 member_cap_exceeded: the job would take the member past their cap for the period."""

    @property
    def cap(self) -> int:
        return _int(self.extra.get("cap"))


class NotFoundError(Act3Error):
    pass


class ConflictError(Act3Error):
    """409: idempotency_conflict or invalid_state."""


class InvalidRequestError(Act3Error):
    """400/422; `details` lists `{"loc", "msg"}` for validation errors."""

    @property
    def details(self) -> list[dict[str, Any]]:
        return list(self.extra.get("details") or [])


class OfflineError(Act3Error):
    """The service could not be reached: refused, unknown host, time-out, dropped connection."""


class ServerError(Act3Error):
    """5xx, or an answer that is not the JSON the API promises."""


class NotConfiguredError(Act3Error):
    """Nothing was sent: online access is off or there is no API key (raised by the worker, not here)."""


_BY_STATUS: dict[int, type[Act3Error]] = {
    400: InvalidRequestError,
    401: AuthError,
    402: InsufficientCreditsError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
}


# ---------------------------------------------------------------------------------------- results


@value
class HistoryPage:
    """A page of the credit history, and the cursor of the next (None: the last page)."""

    rows: list[HistoryRow]
    next_cursor: str | None

    def __init__(self, rows: list[HistoryRow], next_cursor: str | None) -> None:
        self.__dict__.update(rows=rows, next_cursor=next_cursor)


@value
class EventsPage:
    """Events after the one asked for (typed, see core/contract.py), and the newest event number."""

    events: list[ServiceEvent]
    last_seq: int

    def __init__(self, events: list[ServiceEvent], last_seq: int) -> None:
        self.__dict__.update(events=events, last_seq=last_seq)


@value
class PurchaseResult:
    """A purchase and the balance after it."""

    purchase: dict[str, Any]
    balance: Credits
    replayed: bool  # the service answered an earlier request with the same Idempotency-Key

    def __init__(self, purchase: dict[str, Any], balance: Credits, replayed: bool) -> None:
        self.__dict__.update(purchase=purchase, balance=balance, replayed=replayed)


# ---------------------------------------------------------------------------------------- client


@functools.cache
def _load_requests() -> tuple[Any, type]:
    """`requests` and the abortable adapter class, imported on first use (not at add-on enable)."""
    import requests
    import urllib3
    from requests.adapters import HTTPAdapter

    def tracking_pool_classes(live: weakref.WeakSet[Any]) -> dict[str, type]:
        """urllib3 pool classes whose connections register themselves once connected, so that
        `Client.abort()` can shut their sockets down from another thread."""

        class Connection(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                live.add(self)

        class SecureConnection(urllib3.connection.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                live.add(self)

        class Pool(urllib3.HTTPConnectionPool):
            ConnectionCls = Connection

        class SecurePool(urllib3.HTTPSConnectionPool):
            ConnectionCls = SecureConnection

        return {"http": Pool, "https": SecurePool}

    class AbortableAdapter(HTTPAdapter):
        def __init__(self) -> None:
            self.live: weakref.WeakSet[Any] = weakref.WeakSet()
            super().__init__()

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = tracking_pool_classes(self.live)

        def abort(self) -> None:
            for conn in list(self.live):
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed

    return requests, AbortableAdapter


class Client:
    """Talks to one ACT3 service with one API key. Not thread-safe: one Client per thread."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        cancel: threading.Event | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # Set by the worker's stop(): a retry never sleeps past it.
        self.cancel = cancel or threading.Event()
        self._bad_url = _url_problem(self.base_url)
        # Where messages say the service is: host and port only, never a user:password written
        # into the URL (which may be a key).
        self.host = _host_of(self.base_url) if self._bad_url is None else "an invalid URL"
        http, adapter_class = _load_requests()
        self._http: Any = http  # the requests module
        self._session = http.Session()
        self._adapter = adapter_class()
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)
        self._session.headers.update(
            {"Authorization": f"Bearer {api_key}", "User-Agent": user_agent, "Accept": "application/json"}
        )

    def __repr__(self) -> str:
        return f"Client(base_url={self.host!r}, api_key={mask_key(self._key)!r})"

    def close(self) -> None:
        self._session.close()

    def abort(self) -> None:
        """From another thread: end every request in flight now (a long poll, a hung service).

        The blocked call raises `OfflineError`; callers that asked for it (stop()) ignore that.
        """
        self.cancel.set()
        self._adapter.abort()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ endpoints

    def me(self) -> Me:
        return self._check(self._get("/me"), Me.from_json)

    def credits(self) -> Credits:
        return self._check(self._get("/account/credits"), parse_credits)

    def history(
        self,
        limit: int = 50,
        cursor: str | None = None,
        tier: str | None = None,
        shot: str | None = None,
        kind: str | None = None,
    ) -> HistoryPage:
        params = {"limit": limit, "cursor": cursor, "tier": tier or None, "shot": shot or None, "kind": kind or None}
        data = self._get("/account/credits/history", params=params)
        return self._check(
            data, lambda d: HistoryPage([HistoryRow.from_json(r) for r in d["items"]], d.get("next_cursor"))
        )

    def usage(
        self,
        start: str | None = None,
        end: str | None = None,
        group_by: str = "day",
        tier: str | None = None,
        engine: str | None = None,
        limit: int = 50,
    ) -> Usage:
        """What charged renders cost over [start, end) (ISO 8601 dates or times; default: the
        current billing period), grouped by day, week, tier, engine, shot, member, job or project."""
        from .usage import Usage

        params = {
            "from": start or None,
            "to": end or None,
            "group_by": group_by,
            "tier": tier or None,
            "engine": engine or None,
            "limit": limit,
        }
        return self._check(self._get("/account/usage", params=params), Usage.from_json)

    def forecast(self) -> Forecast:
        """The runway at the recent pace: when the credits run out, what the next refill will do."""
        from .forecast import Forecast

        return self._check(self._get("/account/forecast"), Forecast.from_json)

    def pricing(self, etag: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
        """The rate card JSON and its ETag; `(None, etag)` when the card did not change (304)."""
        headers = {"If-None-Match": etag} if etag else None
        resp = self._request("GET", "/pricing", headers=headers)
        if resp.status_code == 304:
            return None, etag
        data = self._json(resp)
        self._check(data, RateCard.from_json)
        return data, resp.headers.get("ETag")

    def estimate(
        self, shots: list[dict[str, Any]], project: str | None = None, when: str | None = None
    ) -> ServiceEstimate:
        """The price, and with `project` what its budget and the member's cap would do (`budget`,
        `member_cap`: each with a `verdict` and the `message` to show); `when="next_period"`: against
        what the next refill leaves available (`next_period`)."""
        body: dict[str, Any] = {"shots": shots}
        if project:
            body["project"] = project
        if when:
            body["when"] = when
        return self._check(self._post("/estimates", body), ServiceEstimate.from_json)

    def submit_job(
        self,
        name: str,
        shots: list[dict[str, Any]],
        idempotency_key: str,
        project: str | None = None,
        start: str | None = None,
    ) -> Job:
        """`start="next_period"`: a scheduled job, held and started by the next refill."""
        body: dict[str, Any] = {"name": name, "shots": shots}
        if project:
            body["project"] = project
        if start:
            body["start"] = start
        return self._job(self._post("/jobs", body, idempotency_key=idempotency_key))

    create_job = submit_job

    # Budgets and caps (owner and admin set them; anyone reads).

    def budgets(self) -> list[dict[str, Any]]:
        """Every project budget: `{"project", "credits", "period", "action", "spent", "held", "left"}`."""
        return self._check(self._get("/budgets"), lambda d: [_parse_budget(b) for b in d["budgets"]])

    def set_budget(
        self, project: str, credits: int, period: str = "billing_period", action: str = "refuse"
    ) -> dict[str, Any]:
        body = {"credits": credits, "period": period, "action": action}
        return self._check(self._json(self._request("PUT", _budget_path(project), json=body)), _parse_budget)

    def delete_budget(self, project: str) -> None:
        self._json(self._request("DELETE", _budget_path(project)))

    def members(self) -> list[dict[str, Any]]:
        """The organisation's members: `{"id", "name", "role", "cap"}` (`cap` None: no cap)."""
        return self._check(self._get("/members"), lambda d: [_parse_member(m) for m in d["members"]])

    def set_member_cap(self, member_id: int, credits_per_period: int | None) -> dict[str, Any]:
        """Cap what a member may use a billing period; None removes the cap."""
        body = {"credits_per_period": credits_per_period}
        resp = self._request("PUT", f"/members/{int(member_id)}/cap", json=body)
        return self._check(self._json(resp), _parse_member)

    def jobs(self, status: str | None = None, limit: int = 50) -> list[Job]:
        data = self._get("/jobs", params={"status": status or None, "limit": limit})
        return self._check(data, lambda d: [Job.from_json(j) for j in d["jobs"]])

    def job(self, job_id: int) -> Job:
        return self._job(self._get(f"/jobs/{int(job_id)}"))

    def pause_job(self, job_id: int) -> Job:
        return self._job(self._post(f"/jobs/{int(job_id)}/pause", None))

    def resume_job(self, job_id: int) -> Job:
        return self._job(self._post(f"/jobs/{int(job_id)}/resume", None))

    def cancel_job(self, job_id: int) -> Job:
        return self._job(self._post(f"/jobs/{int(job_id)}/cancel", None))

    def events(self, after: int | None, wait: float = 0) -> EventsPage:
        """Long poll: answers as soon as an event after `after` exists, or after `wait` seconds."""
        params: dict[str, Any] = {"after": after, "wait": round(wait, 3) if wait else None}
        data = self._get("/events", params=params, read_timeout=wait + LONG_POLL_MARGIN_S)
        return self._check(data, lambda d: EventsPage(parse_events(d["events"]), int(d["last_seq"])))

    def credit_packs(self) -> dict[str, Any]:
        """`{"packs": [...], "payment_method": {...} or None}`."""
        data = self._get("/credit-packs")
        return self._check(data, _parse_packs)

    def purchase(self, pack_id: str, idempotency_key: str) -> PurchaseResult:
        resp = self._request("POST", "/purchases", json={"pack_id": pack_id}, idempotency_key=idempotency_key)
        data = self._json(resp)
        replayed = resp.headers.get("Idempotent-Replayed", "").lower() == "true"
        return self._check(data, lambda d: PurchaseResult(dict(d["purchase"]), parse_credits(d["balance"]), replayed))

    def auto_top_up(self) -> dict[str, Any]:
        """Auto top-up as the owner set it: enabled, below, pack_id, max_per_period_cents, set_by, set_at."""
        return self._check(self._get("/account/auto-top-up"), _parse_auto_top_up)

    def set_auto_top_up(self, enabled: bool, below: int, pack_id: str, max_per_period_cents: int) -> dict[str, Any]:
        """Set auto top-up (the owner's key only)."""
        body = {"enabled": enabled, "below": below, "pack_id": pack_id, "max_per_period_cents": max_per_period_cents}
        return self._check(self._json(self._request("PUT", "/account/auto-top-up", json=body)), _parse_auto_top_up)

    # ------------------------------------------------------------------ plumbing

    def _job(self, data: Any) -> Job:
        return self._check(data, Job.from_json)

    def _get(self, path: str, params: dict[str, Any] | None = None, read_timeout: float | None = None) -> Any:
        return self._json(self._request("GET", path, params=params, read_timeout=read_timeout))

    def _post(self, path: str, body: Any, idempotency_key: str | None = None) -> Any:
        return self._json(self._request("POST", path, json=body, idempotency_key=idempotency_key))

    def _check(self, data: Any, parse: Callable[[Any], T]) -> T:
        """Run `parse` on the body; a body of the wrong shape is the service's fault, not a traceback."""
        try:
            return parse(data)
        except Exception as exc:  # any shape error in a parser is the service's fault, never a traceback
            raise ServerError(
                f"ACT3 service at {self.host} sent an answer this add-on does not understand ({self._clean(exc)}).",
                code="bad_response",
            ) from None

    def _json(self, resp: requests.Response) -> Any:
        try:
            data = resp.json()
        except ValueError:
            raise ServerError(
                f"ACT3 service at {self.host} sent an answer that is not JSON (HTTP {resp.status_code}).",
                code="bad_response",
                status=resp.status_code,
            ) from None
        if not isinstance(data, dict):
            raise ServerError(
                f"ACT3 service at {self.host} sent an answer this add-on does not understand (not an object).",
                code="bad_response",
                status=resp.status_code,
            )
        return data

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        read_timeout: float | None = None,
    ) -> requests.Response:
        if self._key and not key_is_sendable(self._key):
            raise AuthError(BAD_KEY_MESSAGE, code="bad_key")
        hdrs = dict(headers or {})
        if idempotency_key:
            hdrs["Idempotency-Key"] = idempotency_key
        # A repeat of a POST without a key could act twice (and pause/resume answer 409 the second time);
        # a PUT sets the same thing again.
        may_retry = method in ("GET", "PUT") or bool(idempotency_key)
        timeout = (self.connect_timeout, read_timeout if read_timeout is not None else self.read_timeout)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        http = self._http
        if self._bad_url is not None:
            raise OfflineError(self._bad_url, code="bad_url")
        attempt = 0
        while True:
            started = time.monotonic()
            error: Act3Error | None = None
            resp: requests.Response | None = None
            try:
                resp = self._session.request(
                    method, self.base_url + path, params=query, json=json, headers=hdrs, timeout=timeout
                )
            except http.exceptions.InvalidJSONError as exc:  # NaN or infinity in the body: nothing was sent
                raise InvalidRequestError(
                    f"This request cannot be sent as JSON: {self._clean(exc)[:200]}.", code="invalid_input"
                ) from None
            except http.RequestException as exc:
                error = self._offline(exc, timeout)
            except UnicodeError:  # a value that is not text (a lone surrogate from argv) in the query
                raise InvalidRequestError(
                    "A value in this request is not valid text, so it cannot be sent.", code="invalid_input"
                ) from None
            except ValueError as exc:
                if not type(exc).__module__.startswith("urllib3"):
                    raise
                # urllib3 refusing the host (checked in _url_problem, but IDNA has rules of its own)
                raise OfflineError(
                    "The ACT3 API URL is not a valid http(s) URL: its host name cannot be used.", code="bad_url"
                ) from None
            ms = (time.monotonic() - started) * 1000
            if resp is not None:
                log.debug("%s %s -> %s in %.0f ms", method, path, resp.status_code, ms)
                if resp.status_code < 400 or resp.status_code == 304:
                    return resp
                error = self._http_error(resp)
            else:
                log.debug("%s %s -> %s in %.0f ms", method, path, error, ms)
            assert error is not None
            retryable = resp is None or resp.status_code in RETRY_STATUSES
            delay = self._delay(attempt, resp)
            if not (may_retry and retryable and attempt < self.retries and delay is not None):
                raise error
            if self.cancel.wait(delay):
                raise error
            attempt += 1

    def _delay(self, attempt: int, resp: requests.Response | None) -> float | None:
        """Seconds before the next try, or None when the service asked for a wait too long to hold."""
        retry_after = _retry_after_s(resp.headers.get("Retry-After")) if resp is not None else None
        if retry_after is not None:
            return retry_after if retry_after <= MAX_RETRY_AFTER_S else None
        ceiling = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _offline(self, exc: requests.RequestException, timeout: tuple[float, float]) -> Act3Error:
        http = self._http
        if isinstance(exc, http.ConnectTimeout):
            why = f"no connection within {timeout[0]:g} s"
        elif isinstance(exc, http.Timeout):
            why = f"no answer within {timeout[1]:g} s"
        elif isinstance(
            exc, (http.exceptions.MissingSchema, http.exceptions.InvalidSchema, http.exceptions.InvalidURL)
        ):
            return OfflineError(f"The ACT3 API URL at {self.host} is not a valid http(s) URL.", code="bad_url")
        else:
            text = str(exc)
            if "refused" in text.lower():
                why = "connection refused (is the service running?)"
            elif any(
                s in text
                for s in (
                    "Name or service not known",
                    "nodename nor servname",
                    "getaddrinfo",
                    "Temporary failure in name resolution",
                    "No address associated",
                )
            ):
                why = "host name not found"
            elif isinstance(exc, http.exceptions.SSLError):
                why = "TLS/certificate error"
            elif any(
                s in text
                for s in (
                    "RemoteDisconnected",
                    "Connection aborted",
                    "reset by peer",
                    "BadStatusLine",
                    "IncompleteRead",
                )
            ) or isinstance(exc, http.exceptions.ChunkedEncodingError):
                why = "the connection was dropped"
            else:
                why = self._clean(exc)
        return OfflineError(f"ACT3 service unreachable at {self.host}: {why}.", code="offline")

    def _http_error(self, resp: requests.Response) -> Act3Error:
        status = resp.status_code
        try:
            body = resp.json()
            err = body["error"] if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        except ValueError:
            err = {}
        code = str(err.get("code") or f"http_{status}")
        message = self._clean(err.get("message") or "")[:300] or None
        extra = {k: v for k, v in err.items() if k not in ("code", "message")}
        if status == 401:
            return AuthError(AUTH_MESSAGE, code=code, status=status)
        if status == 402 and code in (ErrorCode.BUDGET_EXCEEDED, ErrorCode.MEMBER_CAP_EXCEEDED):
            limit_cls = BudgetExceededError if code == ErrorCode.BUDGET_EXCEEDED else MemberCapExceededError
            return limit_cls(message or "An ACT3 spending limit refuses this.", code=code, status=status, **extra)
        if status == 402:
            return InsufficientCreditsError(
                message or "Not enough ACT3 credits available for this.",
                required_credits=_int(extra.get("required_credits")),
                current_balance=_int(extra.get("current_balance")),
                code=code,
                status=status,
            )
        if status == 403 and code == "tier_not_allowed":
            return TierNotAllowedError(
                message or "This quality tier is not included in the organisation's plan.",
                code=code,
                status=status,
                **extra,
            )
        if status == 429:
            return ServerError(
                f"ACT3 service at {self.host} is busy (HTTP 429): try again in a moment.", code=code, status=status
            )
        if status >= 500:
            detail = f": {message}" if message else ""
            return ServerError(f"ACT3 service error at {self.host} (HTTP {status}){detail}", code=code, status=status)
        cls = _BY_STATUS.get(status, Act3Error)
        return cls(message or f"ACT3 service refused the request (HTTP {status}).", code=code, status=status, **extra)

    def _clean(self, value: object) -> str:
        """One line, and never the key (a proxy or an exception could echo the Authorization header)."""
        text = str(value)
        if self._key:
            for form in (self._key, repr(self._key)[1:-1]):  # as is, and as a repr() of a header shows it
                text = text.replace(form, mask_key(self._key))
        return " ".join(text.split())


def _budget_path(project: str) -> str:
    # Any character may be in a project name: the path carries it percent-encoded, "/" included,
    # and "." and ".." too, which a URL would otherwise read as "here" and "up".
    try:
        encoded = quote(project, safe="")
    except UnicodeError:  # a lone surrogate (undecodable bytes from argv)
        raise InvalidRequestError("The project name is not valid text, so it cannot be sent.", code="invalid_input") from None
    return "/budgets/" + (encoded.replace(".", "%2E") if encoded in (".", "..") else encoded)


def _parse_budget(d: Any) -> dict[str, Any]:
    str(d["project"]), int(d["credits"]), int(d["spent"]), int(d["held"]), int(d["left"])
    return dict(d)


def _parse_member(d: Any) -> dict[str, Any]:
    int(d["id"]), str(d["name"])
    if d["cap"] is not None:
        int(d["cap"]["credits_per_period"]), int(d["cap"]["left"])
    return dict(d)


def _parse_packs(d: Any) -> dict[str, Any]:
    packs = [dict(p) for p in d["packs"]]
    for p in packs:
        str(p["id"]), int(p["credits"])
    return {"packs": packs, "payment_method": d.get("payment_method")}


def _parse_auto_top_up(d: Any) -> dict[str, Any]:
    bool(d["enabled"]), int(d["spent_this_period_cents"])
    return dict(d)


def parse_events(raw: Any) -> list[ServiceEvent]:
    """Each event on its own: one the add-on cannot read is skipped (and logged), not the page with it."""
    events = []
    for item in raw:
        try:
            events.append(parse_event(item))
        except (TypeError, ValueError) as exc:
            kind = item.get("type") if isinstance(item, dict) else None
            log.warning("ACT3: ignoring an unreadable %s event: %s", kind or "", exc)
    return events


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0

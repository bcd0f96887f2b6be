"""The HTTP layer: FastAPI routes over the Ledger (docs/api.md is the contract).

Endpoints that touch the database are plain `def` (FastAPI runs them in its threadpool), except the
events long poll, which is `async` and only borrows a thread for each short database read.
"""

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from act3_credits.core import pricing
from act3_credits.core.vocabulary import NAME_MAX_CHARS, ErrorCode, Kind, Status

from . import jobpath, longpoll, topup, usage
from . import openapi as oa
from .auth import parse_bearer
from .clock import ClockMovedBack, DbClock
from .db import to_db
from .errors import ApiError, error_response, is_database_unavailable, unavailable_response
from .events import EventBus
from .keys import KeyCheck
from .ledger import MAX_DB_INT, Actor, Ledger, LedgerError, Result

log = logging.getLogger("act3_server")


def _no_nul(value: str | None) -> str | None:
    # PostgreSQL text cannot hold U+0000, and neither database a lone surrogate (JSON's "\ud800"
    # decodes to one, and it has no UTF-8): refuse both here rather than fail (500) in the database.
    if value is not None:
        if "\x00" in value:
            raise ValueError("must not contain NUL (U+0000) characters")
        if not value.isascii() and any("\ud800" <= ch <= "\udfff" for ch in value):
            raise ValueError("must not contain a lone surrogate (U+D800 to U+DFFF): it is not valid Unicode text")
    return value


# A string the database can store on SQLite and PostgreSQL alike (the pattern says so in the schema).
_NO_NUL = {"pattern": "^[^\\u0000]*$"}
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra=_NO_NUL)]
OptText = Annotated[str | None, AfterValidator(_no_nul)]


def _text_query(max_length: int, description: str) -> Any:
    return Query(max_length=max_length, json_schema_extra=_NO_NUL, description=description)


class _Strict(BaseModel):
    # Strict: "8" is not a duration and 8 is not a name; unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore")


# The enums and bounds in `json_schema_extra` are the schema's only: the ledger checks them with its own codes.
class ShotIn(_Strict):
    name: Text = Field("", max_length=NAME_MAX_CHARS)
    engine: Text = Field(max_length=64, json_schema_extra=oa.ENGINES)
    tier: Text = Field(max_length=32, json_schema_extra=oa.TIERS)
    duration_s: float = Field(json_schema_extra=oa.DURATION)


# When a job starts: now (the default) or at the refill of the next billing period (schedule.py).
Start = Literal["now", "next_period"]
# Credits and cents the database's BIGINT holds with room to add a pack's price.
MAX_AMOUNT = 2**53


def _whole(value: Any) -> Any:
    # JSON has one number type: 100000.0 is the whole number the schema's "integer" allows.
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole)]


class EstimateIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"shots": [oa.SHOT_EXAMPLE]}]})
    shots: list[ShotIn] = Field(json_schema_extra=oa.SHOTS)
    project: OptText = Field(None, json_schema_extra=oa.PROJECT)  # checked by budgets.check_project
    when: Start | None = None


class JobIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "seq010 batch", "shots": [oa.SHOT_EXAMPLE]}]})
    name: Text = Field("", max_length=NAME_MAX_CHARS)
    shots: list[ShotIn] = Field(json_schema_extra=oa.SHOTS)
    project: OptText = Field(None, json_schema_extra=oa.PROJECT)
    start: Start | None = None


class BudgetIn(_Strict):
    # The schema's bounds and enums only: budgets.Budgets.put checks each, with one clear message.
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"credits": 500_000, "period": "billing_period", "action": "refuse"}]}
    )
    credits: oa.WholeCredits
    period: Text = Field(max_length=32, json_schema_extra=oa.BUDGET_PERIODS)
    action: Text = Field(max_length=32, json_schema_extra=oa.BUDGET_ACTIONS)


class CapIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"credits_per_period": 100_000}]})
    credits_per_period: oa.WholeCreditsOrNull  # required: null removes the cap


class AutoTopUpIn(_Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"enabled": True, "below": 100_000, "pack_id": "pack-250k", "max_per_period_cents": 95_000}]
        }
    )
    enabled: bool
    below: WholeNumber = Field(ge=0, le=MAX_AMOUNT)
    pack_id: Text = Field(max_length=64, json_schema_extra=oa.PACKS)
    max_per_period_cents: WholeNumber = Field(ge=0, le=MAX_AMOUNT)


class PurchaseIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"pack_id": pricing.CREDIT_PACKS[0].id}]})
    pack_id: Text = Field(max_length=64, json_schema_extra=oa.PACKS)


class ClockIn(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"now": "2026-12-01T00:00:00Z"}]})
    now: Text = Field(max_length=64, json_schema_extra=oa.CLOCK_TIME)


def _result_response(result: Result) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return JSONResponse(result.body, status_code=result.status, headers=headers)


def _idempotency_key(value: str | None) -> str:
    if value is None or not (1 <= len(value) <= 200) or "\x00" in value:
        raise ApiError(
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            "Send an Idempotency-Key header of 1-200 characters (no NUL) with this request.",
        )
    return value


def _database_errors() -> tuple[type[Exception], ...]:
    """Errors of the database layer, answered by their own handler (no traceback per request
    while the database is away): SQLAlchemy's, and the drivers' own from the raw key check."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    found: list[type[Exception]] = [SQLAlchemyError, sqlite3.Error]
    try:
        import psycopg

        found.append(psycopg.Error)
    except ImportError:  # pragma: no cover - SQLite-only installs
        pass
    return tuple(found)


DATABASE_ERRORS = _database_errors()


# 200 shots take about 30 KB of JSON; anything far beyond that is refused before it is read.
MAX_BODY_BYTES = 1 << 20


class BodyLimit:
    """ASGI middleware: a body over MAX_BODY_BYTES is 413 `payload_too_large`, never parsed whole."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        refused = False

        async def counted() -> Any:
            # A chunked body has no Content-Length: count what arrives, answer 413 ourselves once it
            # is too much, and tell the app the client went away (its own answer is dropped).
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                refused = True
                await self._refuse(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = error_response(
            ErrorCode.PAYLOAD_TOO_LARGE, f"The request body is larger than {self.limit // 1024} KiB.", 413
        )
        await response(scope, receive, send)


class App(FastAPI):
    """FastAPI with ASGI layers in front of it for HTTP requests (`front`, which hands on to FastAPI
    what it does not answer itself).

    A thousand idle Blender sessions make 33 long polls a second that wait and answer "nothing new";
    FastAPI's and Starlette's own entry (the telemetry check, the scope's app, the middleware stack)
    were about 5 % of each; for a job submission, whose hold is most of a serve process's work, the
    telemetry check alone was 2-3 % of the process's GIL time (py-spy). Those requests are not in
    FastAPI's telemetry, if a studio turns it on."""

    front: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.front is not None and scope["type"] == "http":
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    ledger: Ledger,
    *,
    dev_clock: DbClock | None = None,
    bus: EventBus | None = None,
    on_start: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    fast_paths: bool = True,
) -> FastAPI:
    """The service's app. `fast_paths=False` leaves every request to the FastAPI routes (the
    reference the fast paths are compared with in tests/server/test_jobpath.py)."""
    events_bus = bus or EventBus(ledger.engine)
    keys = KeyCheck(ledger.engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Long polls each borrow a worker thread only briefly, but sync endpoints share the pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = 64
        events_bus.start()
        if on_start:
            on_start()
        try:
            yield
        finally:
            if on_stop:
                on_stop()
            events_bus.stop()

    app = App(
        title="ACT3 credits API",
        version="1",
        description="Reference credits service for ACT3 AI. See docs/api.md.",
        lifespan=lifespan,
        strict_content_type=False,  # a JSON body is JSON even without Content-Type: application/json
        redirect_slashes=False,  # "/v1/me/" is a 404 in the service's words, not a 307 to "/v1/me"
    )
    app.add_middleware(BodyLimit)
    oa.install(app)

    def unexpected(exc: BaseException) -> JSONResponse:
        if is_database_unavailable(exc):
            # One line, no traceback: while the database is away every request lands here.
            log.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip().splitlines()[:1])
            return unavailable_response()
        log.error("unexpected error", exc_info=exc)  # details go to the log, never into the body
        return error_response(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side; nothing was changed.", 500)

    def error_answer(exc: BaseException) -> JSONResponse:
        # What the exception handlers below answer, for the fast paths that run outside them.
        if isinstance(exc, ApiError):
            return error_response(exc.code, exc.message, exc.status, **exc.extra)
        if isinstance(exc, LedgerError):
            return error_response(exc.code, exc.message, **exc.extra)
        return unexpected(exc)

    def submit(key: str, idempotency_key: str, raw: bytes) -> Result | None:
        # POST /v1/jobs as the route does it, in one worker thread (jobpath.JobsFastPath); None
        # whenever the route would answer something else than the ledger's result.
        try:
            body = JobIn.model_validate(json.loads(raw))
        except (ValueError, RecursionError):  # not JSON, or not a job (ValidationError is a ValueError)
            return None
        who = keys.authenticate(key)
        if who is None:
            return None
        shots = [s.model_dump() for s in body.shots]
        return ledger.create_job(who, body.name, shots, idempotency_key, project=body.project, start=body.start)

    # The fast paths sit in front of FastAPI itself (App.__call__): a job submission or an idle long
    # poll skips FastAPI's entry (its telemetry check) and Starlette's (the middleware stack). The
    # routes below stay the reference and answer everything the fast paths hand on.
    if fast_paths:
        app.front = jobpath.JobsFastPath(
            longpoll.EventsFastPath(
                partial(FastAPI.__call__, app),
                ledger=ledger,
                bus=events_bus,
                authenticate=keys.authenticate_pinned,
                on_error=unexpected,
            ),
            submit=submit,
            on_error=error_answer,
            limit=MAX_BODY_BYTES,
        )

    # --- errors ------------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        return error_answer(exc)

    @app.exception_handler(LedgerError)
    async def _ledger_error(_r: Request, exc: LedgerError) -> JSONResponse:
        return error_answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_r: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(ErrorCode.MALFORMED_JSON, "The request body is not valid JSON.")
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in errors]
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        message = f"{'.'.join(first['loc'][1:] or first['loc'])}: {first['msg']}" if details else "Invalid request."
        return error_response(ErrorCode.VALIDATION_ERROR, message, details=details)

    def allowed_methods(request: Request) -> str:
        # Every route on this path, not only the first one Starlette tried (GET and POST /v1/jobs are two).
        methods: set[str] = set()
        for route in app.router.routes:
            if route.matches(request.scope)[0] is not Match.NONE:
                methods |= getattr(route, "methods", None) or set()
        return ", ".join(sorted(methods))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(ErrorCode.NOT_FOUND, "There is nothing at this address.", 404)
        if exc.status_code == 405:
            return error_response(
                ErrorCode.METHOD_NOT_ALLOWED,
                "This method is not allowed here.",
                405,
                headers={"Allow": allowed_methods(request)},
            )
        if exc.status_code == 400:  # FastAPI could not read the body (bad UTF-8, nesting too deep, ...)
            return error_response(ErrorCode.MALFORMED_JSON, "The request body is not valid JSON.")
        return error_response(ErrorCode.BAD_REQUEST, str(exc.detail), exc.status_code)

    async def _database_error(_r: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)  # 503 when the database is away, else 500

    for db_error in DATABASE_ERRORS:
        app.add_exception_handler(db_error, _database_error)

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)

    # --- auth --------------------------------------------------------------------------------------

    def actor(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Actor:
        # Checked against the database on every request: a revoked key fails from the next one on.
        who = keys.authenticate(parse_bearer(authorization))
        if who is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "Send a valid API key as 'Authorization: Bearer KEY'.")
        return who

    Who = Annotated[Actor, Depends(actor)]

    # --- routes ------------------------------------------------------------------------------------

    # Each route names its answer's model and its error answers (openapi.py); the models only
    # describe: a route returns the ledger's JSON as it is.
    JOB_ACTION_CODES = (ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND, ErrorCode.INVALID_STATE, ErrorCode.VALIDATION_ERROR)
    JOB_ACTION_ERRORS = oa.errors(*JOB_ACTION_CODES)
    # Resuming a job its refill paused first holds what its shots need (402 when that is not there).
    RESUME_ERRORS = oa.errors(*JOB_ACTION_CODES, ErrorCode.INSUFFICIENT_CREDITS)

    @app.get("/v1/me", tags=["account"], response_model=oa.Me, responses=oa.errors())
    def me(who: Who) -> JSONResponse:
        return JSONResponse(ledger.me(who))

    @app.get("/v1/account/credits", tags=["account"], response_model=oa.Credits, responses=oa.errors())
    def credits(who: Who) -> JSONResponse:
        return JSONResponse(ledger.credits(who.org_id))

    @app.get(
        "/v1/account/credits/history",
        tags=["account"],
        response_model=oa.HistoryPage,
        responses=oa.errors(ErrorCode.BAD_REQUEST, ErrorCode.VALIDATION_ERROR),
    )
    def history(
        who: Who,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[OptText, _text_query(500, "a `next_cursor` this service gave out")] = None,
        tier: Annotated[OptText, _text_query(32, "a tier id (exact)")] = None,
        shot: Annotated[OptText, _text_query(200, "part of a shot name (any case)")] = None,
        kind: Annotated[OptText, _text_query(16, "one of: " + ", ".join(Kind))] = None,
    ) -> JSONResponse:
        return JSONResponse(ledger.history(who.org_id, limit=limit, cursor=cursor, tier=tier, shot=shot, kind=kind))

    # --- usage and the runway forecast (act3_server/usage.py; any member may read them) ------------

    @app.get(
        "/v1/account/usage",
        tags=["account"],
        response_model=oa.Usage,
        responses=oa.errors(ErrorCode.VALIDATION_ERROR),
    )
    def get_usage(
        who: Who,
        from_: Annotated[
            OptText, Query(alias="from", max_length=64, description="ISO 8601 date or time, inclusive")
        ] = None,
        to: Annotated[OptText, Query(max_length=64, description="ISO 8601 date or time, exclusive")] = None,
        group_by: Annotated[str, Query(pattern="^(" + "|".join(usage.GROUPS) + ")$")] = "day",
        tier: Annotated[OptText, _text_query(32, "a tier id (exact)")] = None,
        engine: Annotated[OptText, _text_query(64, "an engine id (exact)")] = None,
        limit: Annotated[int, Query(ge=1, le=usage.MAX_LIMIT)] = usage.DEFAULT_LIMIT,
    ) -> JSONResponse:
        try:
            answer = usage.answer_usage(
                ledger, who.org_id, from_=from_, to=to, group_by=group_by, tier=tier, engine=engine, limit=limit
            )
        except usage.UsageError as exc:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, str(exc), details=[{"loc": ["query", exc.field], "msg": str(exc)}]
            ) from None
        return JSONResponse(answer)

    @app.get("/v1/account/forecast", tags=["account"], response_model=oa.Forecast, responses=oa.errors())
    def get_forecast(who: Who) -> JSONResponse:
        return JSONResponse(usage.answer_forecast(ledger, who.org_id))

    @app.get("/v1/account/auto-top-up", tags=["account"], response_model=oa.AutoTopUp, responses=oa.errors())
    def get_auto_top_up(who: Who) -> JSONResponse:
        return JSONResponse(topup.read(ledger, who))

    @app.put(
        "/v1/account/auto-top-up",
        tags=["account"],
        response_model=oa.AutoTopUp,
        responses=oa.errors(*oa.BODY_ERRORS, ErrorCode.FORBIDDEN, ErrorCode.UNKNOWN_PACK),
    )
    def put_auto_top_up(who: Who, body: AutoTopUpIn) -> JSONResponse:
        setting = topup.write(ledger, who, body.enabled, body.below, body.pack_id, body.max_per_period_cents)
        return JSONResponse(setting)

    @app.get("/v1/pricing", tags=["pricing"], response_model=oa.RateCardOut, responses=oa.PRICING_ANSWERS)
    def get_pricing(who: Who, if_none_match: Annotated[str | None, Header()] = None) -> Response:
        plan = pricing.plan(ledger.org(who.org_id).plan)
        body = {**ledger.card.to_json(), "plan": plan.id, "allowed_tiers": list(plan.allowed_tiers)}
        raw = json.dumps(body, sort_keys=True).encode()
        etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
        if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(body, headers={"ETag": etag, "Cache-Control": "no-cache"})

    @app.post(
        "/v1/estimates",
        tags=["jobs"],
        response_model=oa.Estimate,
        responses=oa.errors(*oa.BODY_ERRORS, *oa.SHOT_ERRORS),
    )
    def estimates(who: Who, body: EstimateIn) -> JSONResponse:
        return JSONResponse(ledger.estimate(who, [s.model_dump() for s in body.shots], body.project, when=body.when))

    @app.post(
        "/v1/jobs",
        status_code=201,
        tags=["jobs"],
        response_model=oa.Job,
        responses=oa.errors(
            *oa.BODY_ERRORS,
            *oa.SHOT_ERRORS,
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            ErrorCode.IDEMPOTENCY_CONFLICT,
            ErrorCode.INSUFFICIENT_CREDITS,
            ErrorCode.BUDGET_EXCEEDED,
            ErrorCode.MEMBER_CAP_EXCEEDED,
            ErrorCode.FORBIDDEN,
            ErrorCode.TIER_NOT_ALLOWED,
        ),
        openapi_extra=oa.IDEMPOTENCY_KEY,
    )
    def create_job(
        who: Who,
        body: JobIn,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", include_in_schema=False)] = None,
    ) -> JSONResponse:
        key = _idempotency_key(idempotency_key)
        shots = [s.model_dump() for s in body.shots]
        return _result_response(ledger.create_job(who, body.name, shots, key, project=body.project, start=body.start))

    @app.get("/v1/jobs", tags=["jobs"], response_model=oa.JobList, responses=oa.errors(ErrorCode.VALIDATION_ERROR))
    def list_jobs(
        who: Who, status: Status | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50
    ) -> JSONResponse:
        return JSONResponse({"jobs": ledger.list_jobs(who, status=status and status.value, limit=limit)})

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        response_model=oa.Job,
        responses=oa.errors(ErrorCode.NOT_FOUND, ErrorCode.VALIDATION_ERROR),
    )
    def get_job(who: Who, job_id: int) -> JSONResponse:
        return JSONResponse(ledger.get_job(who, job_id))

    @app.post("/v1/jobs/{job_id}/pause", tags=["jobs"], response_model=oa.Job, responses=JOB_ACTION_ERRORS)
    def pause(who: Who, job_id: int) -> JSONResponse:
        return JSONResponse(ledger.pause(who, job_id))

    @app.post("/v1/jobs/{job_id}/resume", tags=["jobs"], response_model=oa.Job, responses=RESUME_ERRORS)
    def resume(who: Who, job_id: int) -> JSONResponse:
        return JSONResponse(ledger.resume(who, job_id))

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], response_model=oa.Job, responses=JOB_ACTION_ERRORS)
    def cancel(who: Who, job_id: int) -> JSONResponse:
        return JSONResponse(ledger.cancel(who, job_id))

    # The idle long poll is answered by longpoll.EventsFastPath below FastAPI, in the same words.
    @app.get(
        "/v1/events", tags=["events"], response_model=oa.EventsPage, responses=oa.errors(ErrorCode.VALIDATION_ERROR)
    )
    async def get_events(
        who: Who,
        after: Annotated[int | None, Query(ge=0, le=MAX_DB_INT)] = None,
        wait: Annotated[float, Query(ge=0, le=30)] = 0,
    ) -> JSONResponse:
        if after is None:
            return JSONResponse({"events": [], "last_seq": await run_in_threadpool(ledger.last_seq, who.org_id)})
        return JSONResponse(await longpoll.answer(ledger, events_bus, who.org_id, after, wait))

    @app.get("/v1/budgets", tags=["budgets"], response_model=oa.BudgetList, responses=oa.errors())
    def list_budgets(who: Who) -> JSONResponse:
        return JSONResponse(ledger.budgets.list_budgets(who))

    # `:path`, so a project name with a slash can be addressed (sent as %2F or as it is).
    @app.put(
        "/v1/budgets/{project:path}",
        tags=["budgets"],
        response_model=oa.BudgetSet,
        responses=oa.errors(*oa.BODY_ERRORS, ErrorCode.FORBIDDEN),
    )
    def put_budget(
        who: Who, project: Annotated[str, Path(json_schema_extra=oa.PROJECT)], body: BudgetIn, request: Request
    ) -> JSONResponse:
        raw_path = request.scope.get("raw_path")
        return JSONResponse(ledger.budgets.put(who, project, body.credits, body.period, body.action, raw_path))

    @app.delete(
        "/v1/budgets/{project:path}",
        tags=["budgets"],
        response_model=oa.BudgetDeleted,
        responses=oa.errors(ErrorCode.VALIDATION_ERROR, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
    )
    def delete_budget(
        who: Who, project: Annotated[str, Path(json_schema_extra=oa.PROJECT)], request: Request
    ) -> JSONResponse:
        return JSONResponse(ledger.budgets.delete(who, project, request.scope.get("raw_path")))

    @app.get("/v1/members", tags=["budgets"], response_model=oa.MemberList, responses=oa.errors())
    def list_members(who: Who) -> JSONResponse:
        return JSONResponse(ledger.budgets.members(who))

    @app.put(
        "/v1/members/{member_id}/cap",
        tags=["budgets"],
        response_model=oa.MemberWithCap,
        responses=oa.errors(*oa.BODY_ERRORS, ErrorCode.FORBIDDEN, ErrorCode.NOT_FOUND),
    )
    def set_member_cap(who: Who, member_id: Annotated[int, Path(ge=1, le=MAX_DB_INT)], body: CapIn) -> JSONResponse:
        return JSONResponse(ledger.budgets.set_cap(who, member_id, body.credits_per_period))

    @app.get("/v1/credit-packs", tags=["purchases"], response_model=oa.CreditPacks, responses=oa.errors())
    def credit_packs(who: Who) -> JSONResponse:
        return JSONResponse(ledger.credit_packs(who))

    @app.post(
        "/v1/purchases",
        status_code=201,
        tags=["purchases"],
        response_model=oa.Purchase,
        responses=oa.errors(
            *oa.BODY_ERRORS,
            ErrorCode.IDEMPOTENCY_KEY_REQUIRED,
            ErrorCode.IDEMPOTENCY_CONFLICT,
            ErrorCode.FORBIDDEN,
            ErrorCode.UNKNOWN_PACK,
        ),
        openapi_extra=oa.IDEMPOTENCY_KEY,
    )
    def purchase(
        who: Who,
        body: PurchaseIn,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", include_in_schema=False)] = None,
    ) -> JSONResponse:
        key = _idempotency_key(idempotency_key)
        return _result_response(ledger.purchase(who, body.pack_id, key))

    if dev_clock is not None:
        clock = dev_clock

        @app.post(
            "/v1/dev/clock",
            tags=["dev"],
            response_model=oa.ClockOut,
            responses=oa.errors(*oa.BODY_ERRORS, ErrorCode.FORBIDDEN, ErrorCode.CLOCK_MOVED_BACK),
        )
        def set_clock(who: Who, body: ClockIn) -> JSONResponse:
            try:
                wanted = datetime.fromisoformat(body.now)
            except ValueError:
                raise ApiError(
                    ErrorCode.VALIDATION_ERROR,
                    "now must be an ISO 8601 time.",
                    details=[{"loc": ["body", "now"], "msg": "not ISO 8601"}],
                ) from None
            try:  # in UTC: billing dates, history times etc. must stay representable
                too_late = to_db(wanted).year >= 9000
            except OverflowError:  # past 9999-12-31 in UTC
                too_late = True
            if too_late:
                raise ApiError(
                    ErrorCode.VALIDATION_ERROR,
                    "now must be before the year 9000.",
                    details=[{"loc": ["body", "now"], "msg": "too far in the future"}],
                )
            try:
                moved = clock.set(wanted, actor=who)  # owners and admins only
            except ClockMovedBack as exc:
                raise ApiError(ErrorCode.CLOCK_MOVED_BACK, str(exc), 422) from None
            # Billing dates the move passed over are due now, for every organisation, as at midnight.
            ledger.refill_due()
            return JSONResponse({"now": moved.strftime("%Y-%m-%dT%H:%M:%SZ")})

    return app

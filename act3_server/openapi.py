"""What `/openapi.json` says: the answers of every route, its error answers and the words they use.

The models here only describe; the routes return the ledger's JSON as it is (a `JSONResponse`, which
FastAPI passes through unvalidated), so the hot paths pay nothing for them and a field added to an
answer cannot be dropped by a model. tests/server/test_openapi.py holds the live service to them.

Engines, tiers and packs are read from the rate card (act3_credits/core/pricing.py); statuses, event
types, history kinds and error codes from act3_credits/core/vocabulary.py. A request field names
them as an enum in the schema only: the service still answers an unknown engine with its own
`unknown_engine`, not a generic validation error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import JsonDict

from act3_credits.core import pricing
from act3_credits.core.vocabulary import (
    PROJECT_MAX_CHARS,
    SHOT_STATUSES,
    BudgetAction,
    BudgetPeriod,
    ErrorCode,
    Event,
    Kind,
    Status,
    Verdict,
)

from .errors import RETRY_AFTER_S, STATUS

_CARD = pricing.DEFAULT_RATE_CARD


# What a request may send, as the schema says it (the service checks each itself, with its own code).
ENGINES: JsonDict = {"enum": [e.id for e in _CARD.engines]}
TIERS: JsonDict = {"enum": [t.id for t in _CARD.tiers]}
PACKS: JsonDict = {"enum": [p.id for p in pricing.CREDIT_PACKS]}
SHOTS: JsonDict = {"minItems": 1, "maxItems": pricing.MAX_SHOTS_PER_BATCH}
DURATION: JsonDict = {
    "exclusiveMinimum": 0,
    "maximum": pricing.MAX_REQUESTED_DURATION_S,
    "description": "seconds; snapped to the engine's nearest allowed duration",
}
CLOCK_TIME: JsonDict = {
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}:[0-9]{2})?$",
    "description": "ISO 8601, before the year 9000; a time before the service's clock is 422 clock_moved_back",
}
# Budgets and caps (budgets.py checks each, with its own message).
PROJECT: JsonDict = {
    "minLength": 1,
    "maxLength": PROJECT_MAX_CHARS,
    "pattern": "^[^\u0000-\u001f\u007f]+$",
    "description": "a project name: 1-64 characters, no control characters",
}
LIMIT_CREDITS: JsonDict = {"type": "integer", "minimum": 0, "maximum": 10**15}
# A JSON number, said to be an integer: 9828.0 is one too (JSON Schema's integer), so the model takes
# a float and budgets.py turns a whole one into an int and refuses any other with its own message.
WholeCredits = Annotated[int | float, WithJsonSchema(LIMIT_CREDITS)]
WholeCreditsOrNull = Annotated[int | float | None, WithJsonSchema({"anyOf": [LIMIT_CREDITS, {"type": "null"}]})]
BUDGET_PERIODS: JsonDict = {"enum": [p.value for p in BudgetPeriod]}
BUDGET_ACTIONS: JsonDict = {"enum": [a.value for a in BudgetAction]}
SHOT_EXAMPLE: JsonDict = {"name": "sh010", "engine": "veo-3.1", "tier": "standard", "duration_s": 7.5}


def _one_of(values: list[str], description: str) -> Any:
    return WithJsonSchema({"type": "string", "enum": values, "description": description})


EngineId = Annotated[str, _one_of([e.id for e in _CARD.engines], "An engine of the rate card (GET /v1/pricing).")]
TierId = Annotated[str, _one_of([t.id for t in _CARD.tiers], "A quality tier of the rate card.")]
PackId = Annotated[str, _one_of([p.id for p in pricing.CREDIT_PACKS], "A credit pack (GET /v1/credit-packs).")]
PlanId = Annotated[str, _one_of(list(pricing.PLANS), "A subscription plan.")]
ShotStatus = Annotated[str, _one_of([str(s) for s in SHOT_STATUSES], "A shot's status (a shot is never paused).")]


# --- answers -------------------------------------------------------------------------------------


class _Out(BaseModel):
    # An answer may gain fields; a client ignores the ones it does not know.
    model_config = ConfigDict(extra="allow")


class Credits(_Out):
    org_id: int
    plan: PlanId
    total: int
    monthly_remaining: int
    monthly_allocation: int
    rollover_bank: int
    rollover_purchased: int
    rollover_cap: int
    held: int
    available: int = Field(description="total - held")
    billing_date: date
    as_of: datetime
    version: int


class PaymentMethod(_Out):
    brand: str
    last4: str


class OrgOut(_Out):
    id: int
    name: str
    plan: PlanId


class MemberCap(_Out):
    credits_per_period: int
    spent: int = Field(description="charged this billing period")
    held: int
    left: int = Field(description="credits_per_period - spent - held")
    period_start: date


class MemberOut(_Out):
    id: int
    name: str
    role: str = Field(description="owner, admin, editor or viewer")
    cap: MemberCap | None = Field(None, description="the member's cap and what is left of it; null: none")


class MemberWithCap(_Out):
    id: int
    name: str
    role: str
    cap: MemberCap | None


class MemberList(_Out):
    members: list[MemberWithCap]
    period_start: date


class Budget(_Out):
    project: str
    credits: int
    period: BudgetPeriod
    action: BudgetAction
    spent: int = Field(description="charged to the project's jobs (this billing period, or in total)")
    held: int
    left: int = Field(description="credits - spent - held; below 0 only past a warn or pause budget")


class BudgetSet(Budget):
    updated_by: str


class BudgetList(_Out):
    budgets: list[Budget]
    period_start: date


class BudgetDeleted(_Out):
    deleted: str


class BudgetVerdict(Budget):
    verdict: Verdict
    pause_before: int | None = Field(description="the index of the shot a pause budget would stop the job before")
    message: str | None = Field(description="the sentence to show; null when within")


class CapVerdict(MemberCap):
    verdict: Verdict = Field(description="within or refuse")
    message: str | None


class Me(_Out):
    org: OrgOut
    member: MemberOut
    allowed_tiers: list[TierId]
    can_spend: bool
    can_buy: bool
    payment_method: PaymentMethod


class HistoryItem(_Out):
    id: int
    at: datetime
    kind: Kind
    shot: str | None
    engine: EngineId | None
    tier: TierId | None
    duration_s: int | None
    credits: int = Field(description="signed: a render is negative, a purchase positive")
    monthly_delta: int
    bank_delta: int
    job_id: int | None
    member: str | None
    reason: str | None = Field(None, description="why a failed or canceled shot was not charged; else null")
    auto: bool = Field(False, description="a purchase auto top-up made")


class HistoryPage(_Out):
    items: list[HistoryItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class UsageSums(_Out):
    credits: int = Field(description="charged renders, positive")
    shots: int
    seconds: int = Field(description="their billed durations")


class UsageGroup(UsageSums):
    key: str = Field(description="a day or a week's Monday (ISO date), tier, engine, shot, member, job id or project")


class Usage(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    group_by: str
    groups: list[UsageGroup]
    total: UsageSums


class PacePerDay(_Out):
    d7: int = Field(alias="7d", description="credits charged per day over the last 7 days")
    d30: int = Field(alias="30d", description="the same over the last 30 days")


class Forecast(_Out):
    as_of: datetime
    pace_per_day: PacePerDay
    available: int
    held: int
    next_refill_at: datetime
    runs_out_at: datetime | None = Field(description="null: no pace, or beyond a year")
    days_left: float | None
    monthly_left_at_refill: int
    will_roll_over: int
    will_expire: int


class EngineOut(_Out):
    id: EngineId
    name: str
    rate_per_second: int
    durations: list[int] | None = Field(None, description="the allowed durations, or else min_s..max_s")
    min_s: int | None = None
    max_s: int | None = None


class TierOut(_Out):
    id: TierId
    name: str
    multiplier: list[int] = Field(min_length=2, max_length=2, description="[numerator, denominator]")


class RateCardOut(_Out):
    version: str
    engines: list[EngineOut]
    tiers: list[TierOut]
    plan: PlanId
    allowed_tiers: list[TierId]


class EstimatedShot(_Out):
    name: str
    engine: EngineId
    tier: TierId
    requested_duration_s: float
    duration_s: int
    credits: int
    blocked_reason: str | None


class BlockedShot(_Out):
    name: str
    code: ErrorCode = Field(description="tier_not_allowed or forbidden")
    reason: str


class NextPeriod(_Out):
    """What will be available right after the next refill (`"when": "next_period"`)."""

    starts_on: date
    monthly_allocation: int
    rolled_over: int
    expired: int
    held: int
    scheduled: int = Field(description="what the jobs already scheduled will hold first")
    available: int


class Estimate(_Out):
    shots: list[EstimatedShot]
    total: int
    available: int = Field(description="now, or right after the next refill with when=next_period")
    balance_after: int
    affordable: bool
    shortfall: int
    blocked: list[BlockedShot]
    project: str | None = None
    budget: BudgetVerdict | None = Field(None, description="the project's budget and what it would do")
    member_cap: CapVerdict | None = Field(None, description="the member's cap and what it would do")
    when: Literal["next_period"] | None = None
    next_period: NextPeriod | None = None


class SetBy(_Out):
    id: int
    name: str


class AutoTopUp(_Out):
    """`GET`/`PUT /v1/account/auto-top-up`; before the owner sets it, off with nulls."""

    enabled: bool
    below: int | None
    pack_id: PackId | None
    max_per_period_cents: int | None
    set_by: SetBy | None
    set_at: datetime | None
    period_start: date
    spent_this_period_cents: int


class Shot(_Out):
    index: int
    name: str
    engine: EngineId
    tier: TierId
    requested_duration_s: float
    duration_s: int
    credits: int
    status: ShotStatus
    error: str | None
    completed_at: datetime | None


class BudgetWarning(_Out):
    code: str = Field(description="budget_warning or budget_pause")
    message: str
    project: str
    budget: int
    spent: int
    held: int
    needed: int


class Job(_Out):
    id: int
    name: str
    project: str | None = Field(None, description="the project whose budget the job counts against")
    status: Status
    created_at: datetime
    updated_at: datetime
    member: str
    estimated_credits: int
    charged_credits: int
    held: int
    shots: list[Shot]
    warnings: list[BudgetWarning] | None = Field(None, description="POST /v1/jobs past a warn or pause budget")


class JobList(_Out):
    jobs: list[Job]


class _EventBase(_Out):
    seq: int
    at: datetime


class BalanceChangedData(_Out):
    balance: Credits
    reason: str = Field(description="render, hold, release, purchase or refill")


class BalanceChanged(_EventBase):
    type: Literal[Event.BALANCE_CHANGED]
    data: BalanceChangedData


class ShotCompletedData(_Out):
    job_id: int
    shot_index: int
    shot: str
    credits: int
    balance: Credits


class ShotCompleted(_EventBase):
    type: Literal[Event.SHOT_COMPLETED]
    data: ShotCompletedData


class ShotFailedData(_Out):
    job_id: int
    shot_index: int
    shot: str
    error: str | None
    balance: Credits


class ShotFailed(_EventBase):
    type: Literal[Event.SHOT_FAILED]
    data: ShotFailedData


class JobStatusData(_Out):
    job_id: int
    status: Status
    reason: str | None = Field(description="e.g. why it paused")


class JobStatus(_EventBase):
    type: Literal[Event.JOB_STATUS]
    data: JobStatusData


class PurchaseCompletedData(_Out):
    purchase_id: int
    pack_id: PackId
    credits: int
    balance: Credits
    auto: bool = Field(False, description="bought by auto top-up")


class PurchaseCompleted(_EventBase):
    type: Literal[Event.PURCHASE_COMPLETED]
    data: PurchaseCompletedData


class BillingRefilledData(_Out):
    period_start: date
    monthly_allocation: int
    rolled_over: int
    expired: int
    balance: Credits
    periods: int | None = Field(None, description="a dev clock jump over many periods: how many")
    first_period_start: date | None = None


class BillingRefilled(_EventBase):
    type: Literal[Event.BILLING_REFILLED]
    data: BillingRefilledData


EventOut = Annotated[
    BalanceChanged | ShotCompleted | ShotFailed | JobStatus | PurchaseCompleted | BillingRefilled,
    Field(discriminator="type"),
]


class EventsPage(_Out):
    events: list[EventOut]
    last_seq: int


class Pack(_Out):
    id: PackId
    credits: int
    price_cents: int
    currency: str
    price: str


class CreditPacks(_Out):
    packs: list[Pack]
    payment_method: PaymentMethod


class PurchaseOut(_Out):
    id: int
    pack_id: PackId
    credits: int
    price_cents: int
    currency: str
    payment_method: PaymentMethod
    at: datetime


class Purchase(_Out):
    purchase: PurchaseOut
    balance: Credits


class ClockOut(_Out):
    now: datetime


# --- errors --------------------------------------------------------------------------------------


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class ErrorInfo(_Out):
    code: ErrorCode
    message: str = Field(description="one readable sentence")
    details: list[FieldError] | None = Field(None, description="validation_error: each field that is wrong")
    required_credits: int | None = Field(None, description="insufficient_credits")
    current_balance: int | None = Field(None, description="insufficient_credits: the available credits")
    tier: str | None = Field(None, description="tier_not_allowed")
    plan: str | None = Field(None, description="tier_not_allowed")
    shot_index: int | None = Field(None, description="unknown_engine, unknown_tier, invalid_duration")
    max_shots: int | None = Field(None, description="batch_too_large")
    project: str | None = Field(None, description="budget_exceeded")
    budget: int | None = Field(None, description="budget_exceeded")
    member: str | None = Field(None, description="member_cap_exceeded")
    cap: int | None = Field(None, description="member_cap_exceeded")
    spent: int | None = Field(None, description="budget_exceeded, member_cap_exceeded")
    held: int | None = Field(None, description="budget_exceeded, member_cap_exceeded")
    needed: int | None = Field(None, description="budget_exceeded, member_cap_exceeded: the batch's credits")


class Error(BaseModel):
    error: ErrorInfo


_HEADERS = {
    503: {"Retry-After": {"description": "seconds", "schema": {"type": "integer", "example": RETRY_AFTER_S}}},
    405: {"Allow": {"description": "the methods this path answers", "schema": {"type": "string"}}},
}


# Codes several routes answer with.
BODY_ERRORS = (ErrorCode.MALFORMED_JSON, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.VALIDATION_ERROR)
SHOT_ERRORS = (
    ErrorCode.EMPTY_BATCH,
    ErrorCode.BATCH_TOO_LARGE,
    ErrorCode.UNKNOWN_ENGINE,
    ErrorCode.UNKNOWN_TIER,
    ErrorCode.INVALID_DURATION,
)


def errors(*codes: ErrorCode) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route that may answer `codes`, plus 401 (no valid key) and 503 (the
    database is away), which every route may; each status lists its codes."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((ErrorCode.UNAUTHORIZED, *codes, ErrorCode.DATABASE_UNAVAILABLE)):
        by_status.setdefault(STATUS[code], []).append(f"`{code}`")
    return {
        status: {
            "model": Error,
            "description": ", ".join(listed),
            **({"headers": _HEADERS[status]} if status in _HEADERS else {}),
        }
        for status, listed in sorted(by_status.items())
    }


_ETAG = {"ETag": {"description": "the card's tag, for If-None-Match", "schema": {"type": "string"}}}
PRICING_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"headers": {**_ETAG, "Cache-Control": {"schema": {"type": "string", "example": "no-cache"}}}},
    304: {"description": "If-None-Match named the card's ETag: the card did not change", "headers": _ETAG},
    **errors(),
}

# Each request that creates something carries this header (the route reads it itself, so that a
# missing one is `idempotency_key_required`, not a validation error).
IDEMPOTENCY_KEY = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "description": "The first answer for a key is stored and replayed for the same body; "
            "another body with the same key is 409 idempotency_conflict.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^\S(.*\S)?$"},
        }
    ]
}


def install(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, plus what FastAPI does not add itself: the bearer key and the 405 answer."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"}
            }
            schema["security"] = [{"apiKey": []}]
            # FastAPI's own 422 body is never sent here (app.py answers every validation error as an
            # Error): drop it where a route did not declare its 422 itself.
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                if "HTTPValidationError" in str(operation["responses"].get("422")):
                    del operation["responses"]["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                components["schemas"].pop(name, None)
            # A method a path does not answer: the same for every path, so stated once.
            components.setdefault("responses", {})["MethodNotAllowed"] = {
                "description": "`method_not_allowed`; `Allow` lists the methods the path answers.",
                "headers": _HEADERS[405],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
            _link_jobs(schema["paths"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi


def _link_jobs(paths: dict[str, Any]) -> None:
    """OpenAPI links: a job's answer names the calls that take its `id` (a client or a fuzzer
    can follow them from POST /v1/jobs to GET, pause, resume and cancel of that job)."""
    job = "/v1/jobs/{job_id}"
    calls = {"get": (job, "get"), **{action: (f"{job}/{action}", "post") for action in ("pause", "resume", "cancel")}}
    links = {
        name: {"operationId": paths[path][method]["operationId"], "parameters": {"job_id": "$response.body#/id"}}
        for name, (path, method) in calls.items()
    }
    paths["/v1/jobs"]["post"]["responses"]["201"]["links"] = links
    for path, method in calls.values():
        paths[path][method]["responses"]["200"]["links"] = links

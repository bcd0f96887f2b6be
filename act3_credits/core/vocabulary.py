"""The words the service and the add-on share: job and shot statuses, event types, history kinds,
error codes.

Each is a `StrEnum`, so a member is the very string the API sends (`Status.QUEUED == "queued"`,
JSON encodes it as that string) and a search for `Status.PAUSED` finds every place that cares.
docs/api.md lists the same words; the HTTP status of each error code is the service's
(act3_server/errors.py).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A job's status, and a shot's (a shot is never paused or scheduled)."""

    SCHEDULED = "scheduled"  # deferred to the next billing period: holds nothing until its refill
    QUEUED = "queued"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


# A job or shot that may still be charged, and one that never will be again.
RUNNING = frozenset({Status.QUEUED, Status.PROCESSING})
ENDED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELED})
# A shot is never paused or scheduled (its job is); in the order of `Status`.
SHOT_STATUSES = tuple(s for s in Status if s not in (Status.PAUSED, Status.SCHEDULED))


class Event(StrEnum):
    """What `GET /v1/events` says happened."""

    BALANCE_CHANGED = "balance.changed"
    JOB_STATUS = "job.status"
    SHOT_COMPLETED = "job.shot_completed"
    SHOT_FAILED = "job.shot_failed"
    PURCHASE_COMPLETED = "purchase.completed"
    BILLING_REFILLED = "billing.refilled"


class Kind(StrEnum):
    """What a history row records."""

    RENDER = "render"
    PURCHASE = "purchase"
    REFILL = "refill"
    ROLLOVER = "rollover"
    EXPIRY = "expiry"
    REFUND = "refund"
    # A shot that ended without a charge (credits 0, with the reason): the artist reads
    # "Failed: not charged". Usage never counts them.
    FAILED = "failed"
    CANCELED = "canceled"


class BudgetPeriod(StrEnum):
    """What a project budget counts: the current billing period's jobs, or every job ever."""

    BILLING_PERIOD = "billing_period"
    TOTAL = "total"


class BudgetAction(StrEnum):
    """What a project budget does to a job that would take the project past it."""

    WARN = "warn"  # accepted, with a warning in the answer
    PAUSE = "pause"  # accepted, paused before the first shot that would cross
    REFUSE = "refuse"  # 402 budget_exceeded, nothing held


class Verdict(StrEnum):
    """What `POST /v1/estimates` says a budget or a member cap would do to the batch."""

    WITHIN = "within"
    WARN = "warn"
    PAUSE = "pause"
    REFUSE = "refuse"


class Reason(StrEnum):
    """Why a job's status changed, where the service says (the `reason` of a `job.status` event)."""

    BUDGET = "budget"  # a `pause` budget stopped it before the shot that would cross
    RESUMED = "resumed"


# A project name is at most this long (jobs.project, budgets.project).
PROJECT_MAX_CHARS = 64
# A shot's name and a job's name are at most this long (the service's ShotIn and JobIn).
NAME_MAX_CHARS = 200


# The fields of a history row as `GET /v1/account/credits/history` lists them (after its `id`), in
# the order the CSV export writes them.
HISTORY_FIELDS = (
    "at",
    "kind",
    "shot",
    "engine",
    "tier",
    "duration_s",
    "credits",
    "monthly_delta",
    "bank_delta",
    "job_id",
    "member",
    "reason",  # why a `failed` or `canceled` shot was not charged; None for other kinds
    "auto",  # a purchase auto top-up made
)


class ErrorCode(StrEnum):
    """`error.code` of an error answer (`{"error": {"code", "message", ...}}`)."""

    MALFORMED_JSON = "malformed_json"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    BUDGET_EXCEEDED = "budget_exceeded"  # + project, budget, spent, held, needed
    MEMBER_CAP_EXCEEDED = "member_cap_exceeded"  # + member, cap, spent, held, needed
    FORBIDDEN = "forbidden"
    TIER_NOT_ALLOWED = "tier_not_allowed"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_TIMEOUT = "request_timeout"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INVALID_STATE = "invalid_state"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    VALIDATION_ERROR = "validation_error"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    UNKNOWN_ENGINE = "unknown_engine"
    UNKNOWN_TIER = "unknown_tier"
    INVALID_DURATION = "invalid_duration"
    UNKNOWN_PACK = "unknown_pack"
    CLOCK_MOVED_BACK = "clock_moved_back"
    HEADERS_TOO_LARGE = "headers_too_large"
    INTERNAL_ERROR = "internal_error"
    DATABASE_UNAVAILABLE = "database_unavailable"

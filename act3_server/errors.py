"""The error format `{"error": {"code", "message", ...}}` and the status of every code."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

STATUS = {
    "malformed_json": 400,
    "idempotency_key_required": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "insufficient_credits": 402,
    "budget_exceeded": 402,
    "member_cap_exceeded": 402,
    "forbidden": 403,
    "tier_not_allowed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "idempotency_conflict": 409,
    "invalid_state": 409,
    "validation_error": 422,
    "empty_batch": 422,
    "batch_too_large": 422,
    "unknown_engine": 422,
    "unknown_tier": 422,
    "invalid_duration": 422,
    "unknown_pack": 422,
    "clock_moved_back": 422,
    "request_timeout": 408,
    "payload_too_large": 413,
    "headers_too_large": 431,
    "internal_error": 500,
    "database_unavailable": 503,
}

# Seconds a client should wait before trying again after `database_unavailable`.
RETRY_AFTER_S = 2


def is_database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or is not answering now (it went away, is restarting, is
    locked too long, or every pooled connection is busy): a 503 to retry, not a bug to log as one."""
    import sqlite3

    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    orig: BaseException | None = exc
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
        return True  # connection lost or refused, server shutting down or starting, lock/statement timeouts
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig).lower()
        return any(m in message for m in ("database is locked", "unable to open", "disk i/o", "is full"))
    return False


def unavailable_response() -> JSONResponse:
    return error_response(
        "database_unavailable",
        "The service cannot reach its database right now; nothing was changed. Try again shortly.",
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)
        self.extra = extra


def error_response(
    code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}},
        status_code=status or STATUS.get(code, 400),
        headers=headers,
    )

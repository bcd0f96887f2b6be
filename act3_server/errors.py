"""The error format `{"error": {"code", "message", ...}}` and the status of every code."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from act3_credits.core.vocabulary import ErrorCode

# The HTTP status of every error code (the codes themselves are shared with the add-on).
STATUS: dict[str, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.IDEMPOTENCY_KEY_REQUIRED: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INSUFFICIENT_CREDITS: 402,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TIER_NOT_ALLOWED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.EMPTY_BATCH: 422,
    ErrorCode.BATCH_TOO_LARGE: 422,
    ErrorCode.UNKNOWN_ENGINE: 422,
    ErrorCode.UNKNOWN_TIER: 422,
    ErrorCode.INVALID_DURATION: 422,
    ErrorCode.UNKNOWN_PACK: 422,
    ErrorCode.CLOCK_MOVED_BACK: 422,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
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
        ErrorCode.DATABASE_UNAVAILABLE,
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

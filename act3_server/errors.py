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
    "internal_error": 500,
}


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

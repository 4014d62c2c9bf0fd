"""API errors as JSON, and the one place that maps error codes to HTTP statuses.

Every error body has one shape, ``{"error": {"code", "message", "stage"?}}``, whatever raised it:
an :class:`ApiError` from a handler, a pipeline error (:class:`~librarian.errors.LibrarianError`)
such as an invalid URL, Redis or the catalog being down, or anything unexpected.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.errors import ErrorCode, LibrarianError

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_URL: 422,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.INVALID_LIMIT: 422,
    ErrorCode.INVALID_CURSOR: 422,
    ErrorCode.INVALID_DATE: 422,
    ErrorCode.INVALID_STATUS: 422,
    ErrorCode.INVALID_QUERY: 422,
    ErrorCode.INVALID_MODE: 422,
    ErrorCode.INVALID_LAST_EVENT_ID: 400,
    ErrorCode.UNTRUSTED_HOST: 400,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.ITEM_NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.JOB_FINISHED: 409,
    ErrorCode.JOB_NOT_FAILED: 409,
    ErrorCode.SUBMIT_BUSY: 503,
    ErrorCode.SUBMIT_FAILED: 503,
    ErrorCode.ORCHESTRATOR_UNAVAILABLE: 503,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.REDIS_UNAVAILABLE: 503,
    ErrorCode.CATALOG_UNAVAILABLE: 503,
}


# A 503 is something away for a while (Dagster, Redis, the catalog, storage): clients and
# proxies are told when to come back instead of hammering it.
RETRY_AFTER_SECONDS = 5


def http_status(code: ErrorCode) -> int:
    return HTTP_STATUS.get(code, 500)


def retry_headers(status: int) -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else {}


class ApiError(LibrarianError):
    """A request the API refuses; its HTTP status follows from its code."""

    stage = "request"

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)

    @property
    def status(self) -> int:
        return http_status(self.code)


def error_body(code: ErrorCode, message: str, stage: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code.value, "message": message}
    if stage:
        error["stage"] = stage
    return {"error": error}


def error_response(exc: LibrarianError) -> JSONResponse:
    # An ApiError is the request's own fault: its stage says nothing the status does not.
    stage = None if isinstance(exc, ApiError) else exc.stage
    status = http_status(exc.code)
    return JSONResponse(error_body(exc.code, exc.message, stage), status_code=status,
                        headers=retry_headers(status))


async def librarian_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LibrarianError)
    return error_response(exc)


async def redis_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(ErrorCode.REDIS_UNAVAILABLE, f"job store unavailable: {exc}"))


async def database_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(ErrorCode.CATALOG_UNAVAILABLE,
                                   f"catalog unavailable: {exc}"[:500]))


async def internal_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(ErrorCode.INTERNAL_ERROR,
                                   f"{type(exc).__name__}: {exc}"[:500]))

"""API errors as JSON, and the one place that maps error codes to HTTP statuses.

Every error body has one shape, ``{"error": {"code", "message", "stage"?, "request_id"}}``,
whatever raised it: an :class:`ApiError` from a handler, a pipeline error
(:class:`~librarian.errors.LibrarianError`) such as an invalid URL, Redis or the catalog being
down, or anything unexpected.

Messages say what failed, not how: a :class:`~librarian.errors.LibrarianError` carries a message
written for people and is answered with it, but the text of any other exception (a driver's
error with hosts, ports and SQL, a traceback's paths) goes only to the log, in a line that names
the request id the client was given.
"""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route

from librarian.errors import ErrorCode, LibrarianError
from librarian_api.request_id import HEADER, current_request_id

log = logging.getLogger("librarian.api.errors")

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_URL: 422,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.INVALID_LIMIT: 422,
    ErrorCode.INVALID_CURSOR: 422,
    ErrorCode.INVALID_DATE: 422,
    ErrorCode.INVALID_STATUS: 422,
    ErrorCode.INVALID_QUERY: 422,
    ErrorCode.INVALID_MODE: 422,
    ErrorCode.INVALID_FILTER: 422,
    ErrorCode.INVALID_LAST_EVENT_ID: 400,
    ErrorCode.UNTRUSTED_HOST: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INVALID_CSRF_TOKEN: 403,
    ErrorCode.FORBIDDEN_ORIGIN: 403,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.ITEM_NOT_FOUND: 404,
    ErrorCode.FILE_NOT_FOUND: 404,
    ErrorCode.TOKEN_NOT_FOUND: 404,
    ErrorCode.NO_SUCH_PATH: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.JOB_FINISHED: 409,
    ErrorCode.JOB_NOT_FAILED: 409,
    ErrorCode.JOB_IN_PROGRESS: 409,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.TOO_MANY_STREAMS: 429,
    ErrorCode.QUEUE_FULL: 503,
    ErrorCode.STREAMS_FULL: 503,
    ErrorCode.SUBMIT_FAILED: 503,
    ErrorCode.ORCHESTRATOR_UNAVAILABLE: 503,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.REDIS_UNAVAILABLE: 503,
    ErrorCode.CATALOG_UNAVAILABLE: 503,
}


# A 503 is something away or full for a while (Dagster, Redis, the catalog, storage, the
# queue), a 429 a limit the caller reached: clients and proxies are told when to come back
# instead of hammering it. An error that knows better (a rate limit) says its own time.
RETRY_AFTER_SECONDS = 5


def http_status(code: ErrorCode) -> int:
    return HTTP_STATUS.get(code, 500)


def retry_headers(status: int, retry_after: float | None = None) -> dict[str, str]:
    if status not in (429, 503):
        return {}
    # Whole seconds (RFC 9110 delta-seconds), rounded up: coming back on time must succeed.
    seconds = RETRY_AFTER_SECONDS if retry_after is None else max(1, math.ceil(retry_after))
    return {"Retry-After": str(seconds)}


class ApiError(LibrarianError):
    """A request the API refuses; its HTTP status follows from its code."""

    stage = "request"

    def __init__(self, code: ErrorCode, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(code, message, retry_after=retry_after)

    @property
    def status(self) -> int:
        return http_status(self.code)


class Unauthorized(ApiError):
    """401: the request names nobody, or a token or session that is not valid. Its answer
    says how to authenticate (``WWW-Authenticate``, RFC 6750)."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(ErrorCode.UNAUTHORIZED, message)
        self.invalid_token = invalid_token

    @property
    def challenge(self) -> str:
        return 'Bearer realm="librarian"' + (', error="invalid_token"' if self.invalid_token
                                             else "")


def error_body(code: ErrorCode, message: str, stage: str | None = None,
               request_id: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code.value, "message": message}
    if stage:
        error["stage"] = stage
    error["request_id"] = request_id or current_request_id()
    return {"error": error}


def error_response(exc: LibrarianError, request_id: str | None = None) -> JSONResponse:
    # An ApiError is the request's own fault: its stage says nothing the status does not.
    stage = None if isinstance(exc, ApiError) else exc.stage
    status = http_status(exc.code)
    headers = retry_headers(status, exc.retry_after)
    if status == 401:  # a 401 always names the scheme that would do (RFC 9110)
        headers["WWW-Authenticate"] = (exc.challenge if isinstance(exc, Unauthorized)
                                       else 'Bearer realm="librarian"')
    return JSONResponse(error_body(exc.code, exc.message, stage, request_id), status_code=status,
                        headers=headers)


def log_failure(request: Request, what: str, exc: BaseException, *, request_id: str,
                level: int = logging.WARNING, traceback: bool = False) -> None:
    """The details a client is not shown, under the request id it was given."""
    log.log(level, "request %s: %s %s: %s: %s: %s", request_id, request.method, request.url.path,
            what, type(exc).__name__, exc, exc_info=exc if traceback else None,
            extra={"request_id": request_id})


async def librarian_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LibrarianError)
    request_id = current_request_id()
    if http_status(exc.code) >= 500:  # something on our side is away: worth a log line
        log_failure(request, exc.code.value, exc, request_id=request_id)
    return error_response(exc, request_id)


async def redis_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = current_request_id()
    message = "the job store (Redis) is unavailable"
    log_failure(request, message, exc, request_id=request_id)
    return error_response(ApiError(ErrorCode.REDIS_UNAVAILABLE, message), request_id)


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = current_request_id()
    message = "the catalog database is unavailable"
    log_failure(request, message, exc, request_id=request_id)
    return error_response(ApiError(ErrorCode.CATALOG_UNAVAILABLE, message), request_id)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The router's refusals (no route has the path; none of the path's routes takes the
    method) in the one error shape, not as Starlette's plain text. A 405's ``Allow`` names every
    method of the path, not only those of the first route that has it."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 405:
        # Not a route's path (a mount's: the static files): what the mount said.
        allowed = allowed_methods(request) or [
            m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()]
        error = ApiError(ErrorCode.METHOD_NOT_ALLOWED,
                         f"{request.method[:20]} is not a method of {path[:200]}; it takes "
                         f"{', '.join(allowed)}")
        response = error_response(error)
        response.headers["Allow"] = ", ".join(allowed)
        return response
    if exc.status_code == 404:
        return error_response(ApiError(ErrorCode.NO_SUCH_PATH,
                                       f"nothing is served at {path[:200]}"))
    # Starlette raises no other status itself; one that a handler raises keeps its status.
    body = error_body(ErrorCode.INVALID_REQUEST, str(exc.detail)[:500])
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route whose path matches the request's (HEAD with GET)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= set(route.methods or ())
    return sorted(methods)


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = current_request_id()
    log_failure(request, "unexpected error", exc, request_id=request_id, level=logging.ERROR,
                traceback=True)
    response = error_response(ApiError(
        ErrorCode.INTERNAL_ERROR, "an unexpected error occurred; the server's log has the details"
                                  " under this request id"), request_id)
    # Starlette runs this handler outside every middleware (it is its outermost layer), so the
    # request-id middleware never sees this response: the header is set here.
    response.headers[HEADER] = request_id
    return response

"""API errors as JSON, and the one place that maps error codes to HTTP statuses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.errors import InvalidURL, LibrarianError


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str, stage: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if stage:
        error["stage"] = stage
    return {"error": error}


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)


async def redis_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("redis_unavailable", f"job store unavailable: {exc}"),
                        status_code=503)


async def database_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("catalog_unavailable", f"catalog unavailable: {exc}"[:500]),
                        status_code=503)


async def internal_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("internal_error", f"{type(exc).__name__}: {exc}"[:500]),
                        status_code=500)


async def librarian_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LibrarianError)
    status = 422 if isinstance(exc, InvalidURL) else 500
    return JSONResponse(error_body(exc.code, exc.message, exc.stage), status_code=status)

"""``GET /api/v1/health``: Redis, the catalog and Dagster, each checked with a short timeout;
the event mirror and the embedding service reported.

Anyone may ask (a load balancer has no token), and gets the status alone: ``200 {"status":
"ok"}`` or ``503 {"status": "unavailable"}``. Which check failed, the mirror's lag, the
embedding model and the restarts per process are for authenticated clients (any scope).

A check that fails is reported in plain words (what is down, and whether it refused or did not
answer); the exception itself, with its hosts and ports, goes to the log under the request id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.authentication import UnauthenticatedUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.cli.supervisor import read_restarts
from librarian.embedding.client import EmbeddingClient
from librarian_api.errors import log_failure, retry_headers
from librarian_api.request_id import current_request_id
from librarian_api.state import app_state

TIMEOUT = 3.0
CHECKED = {"redis": "the job store (Redis)", "catalog": "the catalog database",
           "dagster": "Dagster"}


def plain_reason(name: str, result: object) -> str:
    if not isinstance(result, BaseException):
        return "ok"
    if isinstance(result, TimeoutError):
        return f"down: {CHECKED[name]} did not answer within {TIMEOUT:g} s"
    return f"down: {CHECKED[name]} is unavailable"


async def health(request: Request) -> JSONResponse:
    state = app_state(request)

    async def redis_check() -> None:
        await state.jobs.r.ping()

    async def catalog_check() -> None:
        await run_in_threadpool(state.catalog.ping)

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "redis": redis_check, "catalog": catalog_check, "dagster": state.dagster.ping}
    results = await asyncio.gather(*(asyncio.wait_for(check(), TIMEOUT)
                                     for check in checks.values()), return_exceptions=True)
    report = {name: plain_reason(name, result)
              for name, result in zip(checks, results, strict=True)}
    down = [name for name, value in report.items() if value != "ok"]
    request_id = current_request_id()
    for name, result in zip(checks, results, strict=True):
        if isinstance(result, BaseException):
            log_failure(request, f"health: {name} is down", result, request_id=request_id)
    status = 503 if down else 200
    headers = retry_headers(status)  # a 503 says when to ask again, like every other 503
    if not request.scope.get("user", UnauthenticatedUser()).is_authenticated:
        return JSONResponse({"status": "ok" if not down else "unavailable"},
                            status_code=status, headers=headers)
    mirror: dict[str, float] = {}
    if "redis" not in down:
        raw: Any = await state.jobs.r.hgetall(state.jobs.keys.mirror_stats)
        mirror = {k.decode(): float(v) for k, v in raw.items()}
        if "written_at" in mirror:
            mirror["seconds_since_write"] = round(time.time() - mirror.pop("written_at"), 1)
    # Reported, not checked: without the service each process loads the model itself.
    service = await run_in_threadpool(EmbeddingClient(state.settings.embedding_socket).ping)
    embedding = ({"status": "ok", "model": service.get("model"), "texts": service.get("texts")}
                 if service else {"status": "not running: each process loads the model itself"})
    # The mirror is reported, not checked: an idle mirror has nothing to write. Restarts per
    # process come from ``librarian run``'s supervisor (absent when something else runs us).
    body: dict[str, Any] = {"status": "ok" if not down else "unavailable", "down": down,
                            "checks": report, "mirror": mirror, "embedding_service": embedding,
                            # This process's open event streams, against its cap (0: none).
                            "streams": {"open": state.streams.open,
                                        "max": state.streams.total}}
    if down:
        body["request_id"] = request_id  # the log has why, under this id
    restarts = await run_in_threadpool(read_restarts, state.settings.data_dir)  # file I/O
    if restarts is not None:
        body["restarts"] = restarts
    return JSONResponse(body, status_code=status, headers=headers)

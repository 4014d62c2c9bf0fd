"""What a request says, checked: JSON bodies, paging, library filters, and the job or item a
path names (404 when there is none). Handlers call these and never parse parameters themselves.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from librarian.errors import ErrorCode, OrchestratorUnavailable
from librarian.jobs.events import JobRecord, JobStatus
from librarian.storage.catalog import LibraryFilters
from librarian_api.errors import ApiError
from librarian_api.state import AppState

MAX_LIMIT = 100
# Sizes a request controls, bounded so none costs more than its answer is worth: words to search
# for, values of one filter (each becomes a term of the catalog's query) and their length.
MAX_QUERY_CHARS = 1000
MAX_FILTER_VALUES = 20
MAX_FILTER_CHARS = 200
# Dagster's run statuses as job statuses, for jobs Redis no longer holds.
DAGSTER_STATUS = {
    "QUEUED": JobStatus.QUEUED, "NOT_STARTED": JobStatus.QUEUED, "STARTING": JobStatus.QUEUED,
    "MANAGED": JobStatus.QUEUED, "STARTED": JobStatus.RUNNING, "CANCELING": JobStatus.RUNNING,
    "SUCCESS": JobStatus.COMPLETED, "FAILURE": JobStatus.FAILED,
    "CANCELED": JobStatus.CANCELLED,
}


async def json_body(request: Request, shape: str) -> Any:
    """The request's JSON body; ``shape`` tells the caller what was expected if it is not.

    The body must be declared ``application/json`` (any parameters, e.g. ``charset``): a form
    or ``text/plain`` post, which another site's page can send without asking, is ``415``
    before the body is read.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        got = f" (not {media_type[:100]})" if media_type else ""
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                       f"send the body with Content-Type: application/json{got}")
    try:
        return json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"expected a JSON body {shape}") from exc


def parse_limit(request: Request, default: int = 20) -> int:
    try:
        limit = int(request.query_params.get("limit", str(default)))
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_LIMIT, "limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(ErrorCode.INVALID_LIMIT, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def parse_filters(request: Request) -> LibraryFilters:
    """``tier``, ``language``, ``domain``, ``page_type`` (repeatable or comma-separated),
    ``since`` / ``until`` (ISO dates) and ``q`` (words in title, summary, keywords)."""
    params = request.query_params

    def many(name: str) -> tuple[str, ...]:
        values = tuple(v.strip() for raw in params.getlist(name) for v in raw.split(",")
                       if v.strip())
        if len(values) > MAX_FILTER_VALUES:
            raise ApiError(ErrorCode.INVALID_FILTER,
                           f"{name} takes at most {MAX_FILTER_VALUES} values")
        if any(len(v) > MAX_FILTER_CHARS for v in values):
            raise ApiError(ErrorCode.INVALID_FILTER,
                           f"a {name} value is longer than {MAX_FILTER_CHARS} characters")
        return values

    def date(name: str) -> datetime | None:
        raw = params.get(name)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError as exc:
            raise ApiError(ErrorCode.INVALID_DATE, f"{name} must be an ISO date") from exc

    query = params.get("q") or None
    if query is not None and len(query) > MAX_QUERY_CHARS:
        raise ApiError(ErrorCode.INVALID_QUERY, f"q is longer than {MAX_QUERY_CHARS} characters")
    return LibraryFilters(tier=tuple(t.upper() for t in many("tier")),
                          language=many("language"), domain=many("domain"),
                          page_type=many("page_type"), since=date("since"),
                          until=date("until"), query=query)


def encode_job_cursor(created_at: float, job_id: str) -> str:
    """Where a jobs page ended: the last job examined, by creation time and id."""
    return base64.urlsafe_b64encode(f"{created_at!r}|{job_id}".encode()).decode().rstrip("=")


def parse_job_cursor(request: Request) -> tuple[float, str] | None:
    raw = request.query_params.get("cursor")
    if not raw:
        return None
    try:
        if len(raw) > 200:
            raise ValueError("too long")
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        stamp, job_id = text.split("|", 1)
        created_at = float(stamp)
        if not math.isfinite(created_at) or not job_id:
            raise ValueError("not a position")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(ErrorCode.INVALID_CURSOR, "cursor is not one this API returned") from exc
    return created_at, job_id


async def job_or_404(state: AppState, job_id: str) -> JobRecord:
    record = await find_job(state, job_id)
    if record is None:
        raise ApiError(ErrorCode.JOB_NOT_FOUND, f"no job {job_id}")
    return record


async def find_job(state: AppState, job_id: str) -> JobRecord | None:
    # Every job id is a UUID (issued by the API, or the id of a sensor's run): anything else,
    # of any length, is no job, and costs no Redis key.
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    record = await state.jobs.record(job_id)
    if record is not None:
        return record
    # Redis may have lost or expired the job: Dagster still knows the run.
    try:
        found = await state.unknown_jobs.lookup(
            job_id, lambda: run_in_threadpool(state.dagster.job_status, job_id))
    except OrchestratorUnavailable as exc:
        raise OrchestratorUnavailable(
            f"job {job_id} is not in Redis and Dagster cannot be asked: {exc.message}") from exc
    if found is None:
        return None
    run_id, status = found
    return JobRecord(job_id=job_id, run_id=run_id, url="",
                     status=DAGSTER_STATUS.get(status, JobStatus.QUEUED),
                     message=f"from Dagster: {status}", percent=100 if status == "SUCCESS" else 0)


async def item_or_404(state: AppState, item_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(item_id)
    except ValueError as exc:
        raise ApiError(ErrorCode.ITEM_NOT_FOUND, f"no item {item_id}") from exc
    item = await run_in_threadpool(state.catalog.get_item, item_id)
    if item is None:
        raise ApiError(ErrorCode.ITEM_NOT_FOUND, f"no item {item_id}")
    return item

"""Submitting URLs and reading job records."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.canonical_url import CanonicalURL, canonicalize
from librarian.errors import InvalidURL
from librarian.jobs.events import JobRecord, JobStatus
from librarian_api.dagster_client import OrchestratorUnavailable
from librarian_api.errors import ApiError
from librarian_api.state import AppState, app_state

# Longer than the slowest submission (GraphQL timeout 30 s, plus adding the partition).
CLAIM_SECONDS = 120
MAX_BATCH = 500
DAGSTER_STATUS = {
    "QUEUED": JobStatus.QUEUED, "NOT_STARTED": JobStatus.QUEUED, "STARTING": JobStatus.QUEUED,
    "MANAGED": JobStatus.QUEUED, "STARTED": JobStatus.RUNNING, "CANCELING": JobStatus.RUNNING,
    "SUCCESS": JobStatus.COMPLETED, "FAILURE": JobStatus.FAILED,
    "CANCELED": JobStatus.CANCELLED,
}


class IngestRequest(BaseModel):
    url: str


def job_links(request: Request, job_id: str) -> dict[str, str]:
    return {"status_url": str(request.url_for("job_status", job_id=job_id)),
            "stream_url": str(request.url_for("job_stream", job_id=job_id))}


async def submit(request: Request) -> JSONResponse:
    app_state(request)
    try:
        body = IngestRequest.model_validate(json.loads(await request.body() or b"null"))
    except (ValueError, ValidationError) as exc:
        raise ApiError(422, "invalid_request", 'expected a JSON body {"url": "..."}') from exc
    canonical = canonicalize(body.url)  # InvalidURL → 422 through the error handler
    return await submit_url(request, canonical, source="api")


async def submit_url(request: Request, canonical: CanonicalURL, source: str) -> JSONResponse:
    """One run per URL at a time: an active job for the URL is returned instead (200)."""
    state = app_state(request)
    key = canonical.partition_key

    token = f"pending:{uuid.uuid4()}"
    deadline = time.monotonic() + 10
    while True:
        holder = await state.jobs.claim_url(key, token, CLAIM_SECONDS)
        if holder is None:
            break
        if not holder.startswith("pending:"):
            existing = await state.jobs.record(holder)
            if existing is not None and not existing.status.is_terminal:
                return JSONResponse({"job_id": existing.job_id, "status": existing.status.value,
                                     "url": existing.url, **job_links(request, existing.job_id)},
                                    status_code=200)
            await state.jobs.release_url(key, holder)  # finished or expired: stale claim
            continue
        if time.monotonic() > deadline:
            raise ApiError(503, "submit_busy", "another submission of this URL is in progress")
        await asyncio.sleep(0.1)  # a concurrent request is submitting this URL right now

    try:
        run_id = await run_in_threadpool(state.dagster.submit, canonical, source)
    except BaseException as exc:
        # Whatever went wrong, the URL must not stay claimed by a submission that failed.
        await state.jobs.release_url(key, token)
        if isinstance(exc, OrchestratorUnavailable):
            raise ApiError(503, "orchestrator_unavailable", str(exc)) from exc
        raise
    record = JobRecord(job_id=run_id, status=JobStatus.QUEUED, url=canonical.url,
                       canonical_url=canonical.url, partition_key=key, run_id=run_id,
                       created_at=time.time(), updated_at=time.time())
    await state.jobs.create_queued(record)
    await state.jobs.set_active(key, token, run_id)
    return JSONResponse({"job_id": run_id, "status": "queued", "url": canonical.url,
                         **job_links(request, run_id)}, status_code=202)


async def submit_batch(request: Request) -> JSONResponse:
    """``{"urls": [...]}``: one result per URL, in order — a job, or that URL's error."""
    try:
        body = json.loads(await request.body() or b"null")
        urls = body["urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise TypeError
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(422, "invalid_request", 'expected a JSON body {"urls": ["...", ...]}'
                       ) from exc
    if not 1 <= len(urls) <= MAX_BATCH:
        raise ApiError(422, "invalid_request", f"send between 1 and {MAX_BATCH} URLs")
    accepted, results = await submit_urls(request, urls, source="batch")
    return JSONResponse({"accepted": accepted, "results": results},
                        status_code=202 if accepted else 422)


async def submit_urls(request: Request, urls: list[str], source: str
                      ) -> tuple[int, list[dict[str, Any]]]:
    """One result per URL, in order (a job, or that URL's error), and how many were accepted."""
    results: list[dict[str, Any]] = []
    for url in urls:
        try:
            response = await submit_url(request, canonicalize(url), source=source)
            results.append({"url": url, "status_code": response.status_code,
                            **json.loads(bytes(response.body))})
        except InvalidURL as exc:
            results.append({"url": url, "status_code": 422,
                            "error": {"code": exc.code, "message": exc.message}})
        except ApiError as exc:
            results.append({"url": url, "status_code": exc.status,
                            "error": {"code": exc.code, "message": exc.message}})
    return sum(1 for r in results if r["status_code"] in (200, 202)), results


async def list_jobs(request: Request) -> JSONResponse:
    """Jobs newest first; ``status`` filters (comma-separated); ``cursor`` pages on."""
    state = app_state(request)
    params = request.query_params
    wanted = {s for raw in params.getlist("status") for s in raw.split(",") if s}
    unknown = wanted - {s.value for s in JobStatus}
    if unknown:
        raise ApiError(422, "invalid_status", f"unknown status {sorted(unknown)}")
    try:
        limit = min(100, max(1, int(params.get("limit", "20"))))
        before = float(params["cursor"]) if params.get("cursor") else None
    except ValueError as exc:
        raise ApiError(422, "invalid_request", "limit and cursor must be numbers") from exc
    jobs: list[dict[str, object]] = []
    next_cursor = None
    while len(jobs) < limit:
        batch = await state.jobs.job_ids(limit * 2, before)
        if not batch:
            break
        for job_id, score in batch:
            before = score
            record = await state.jobs.record(job_id)
            if record is None or (wanted and record.status.value not in wanted):
                continue
            jobs.append({**record.model_dump(mode="json", exclude_none=True),
                         **job_links(request, job_id)})
            if len(jobs) == limit:
                next_cursor = str(score)
                break
    return JSONResponse({"jobs": jobs, "next_cursor": next_cursor})


async def cancel(request: Request) -> JSONResponse:
    state = app_state(request)
    job_id = request.path_params["job_id"]
    record = await job_or_404(state, job_id)
    if record.status.is_terminal:
        raise ApiError(409, "job_finished", f"job {job_id} is already {record.status.value}")
    try:
        await run_in_threadpool(state.dagster.terminate, record.run_id or job_id)
    except OrchestratorUnavailable as exc:
        raise ApiError(503, "orchestrator_unavailable", str(exc)) from exc
    return JSONResponse({"job_id": job_id, "status": "cancelling",
                         **job_links(request, job_id)}, status_code=202)


async def retry(request: Request) -> JSONResponse:
    """Re-execute a failed or cancelled job from its failed op, under the same job id."""
    state = app_state(request)
    job_id = request.path_params["job_id"]
    record = await job_or_404(state, job_id)
    if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ApiError(409, "job_not_failed",
                       f"only failed or cancelled jobs can be retried; this one is "
                       f"{record.status.value}")
    try:
        run_id = await run_in_threadpool(state.dagster.reexecute, record.run_id or job_id)
    except OrchestratorUnavailable as exc:
        raise ApiError(503, "orchestrator_unavailable", str(exc)) from exc
    return JSONResponse({"job_id": job_id, "run_id": run_id, "status": "queued",
                         **job_links(request, job_id)}, status_code=202)


async def job_or_404(state: AppState, job_id: str) -> JobRecord:
    record = await find_job(state, job_id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return record


async def find_job(state: AppState, job_id: str) -> JobRecord | None:
    record = await state.jobs.record(job_id)
    if record is not None:
        return record
    # Redis may have lost or expired the job: Dagster still knows the run.
    try:
        uuid.UUID(job_id)
    except ValueError:
        return None
    try:
        status = await run_in_threadpool(state.dagster.run_status, job_id)
    except OrchestratorUnavailable as exc:
        raise ApiError(503, "orchestrator_unavailable",
                       f"job {job_id} is not in Redis and Dagster cannot be asked: {exc}"
                       ) from exc
    if status is None:
        return None
    return JobRecord(job_id=job_id, run_id=job_id, url="",
                     status=DAGSTER_STATUS.get(status, JobStatus.QUEUED),
                     message=f"from Dagster: {status}", percent=100 if status == "SUCCESS" else 0)


async def status(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    record = await job_or_404(app_state(request), job_id)
    return JSONResponse({**record.model_dump(mode="json", exclude_none=True),
                         **job_links(request, job_id)})

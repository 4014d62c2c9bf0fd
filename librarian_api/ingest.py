"""Submitting URLs and reading job records."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.canonical_url import canonicalize
from librarian.job_events import JobRecord, JobStatus
from librarian_api.dagster_client import OrchestratorUnavailable
from librarian_api.errors import ApiError
from librarian_api.state import AppState, app_state

# Longer than the slowest submission (GraphQL timeout 30 s, plus adding the partition).
CLAIM_SECONDS = 120
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
    state = app_state(request)
    try:
        body = IngestRequest.model_validate(json.loads(await request.body() or b"null"))
    except (ValueError, ValidationError) as exc:
        raise ApiError(422, "invalid_request", 'expected a JSON body {"url": "..."}') from exc
    canonical = canonicalize(body.url)  # InvalidURL → 422 through the error handler
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
        run_id = await run_in_threadpool(state.dagster.submit, canonical)
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
    record = await find_job(app_state(request), job_id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return JSONResponse({**record.model_dump(mode="json", exclude_none=True),
                         **job_links(request, job_id)})

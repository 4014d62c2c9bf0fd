"""Turning URLs into jobs: claim the URL, submit its run through Dagster, record the job.

One run per URL at a time: while a URL's job is queued or running, submitting it again (in any
spelling with the same canonical form) returns that job instead of a new one. The claim is a
Redis key per partition, taken before the run is submitted and turned into the job id after,
so two concurrent submissions of one URL make one run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from librarian.canonical_url import CanonicalURL, canonicalize
from librarian.errors import ErrorCode, LibrarianError
from librarian.jobs.events import JobRecord, JobStatus
from librarian.runs import Source, partition_key
from librarian_api.errors import ApiError, http_status
from librarian_api.state import AppState

# Longer than the slowest submission (GraphQL timeout 30 s, plus adding the partition).
CLAIM_SECONDS = 120
CLAIM_WAIT_SECONDS = 10
MAX_BATCH = 500


@dataclass(frozen=True)
class Submission:
    job_id: str
    status: JobStatus
    url: str
    created: bool  # a new job, or the URL's job that was already queued or running


async def submit_url(state: AppState, canonical: CanonicalURL, source: Source) -> Submission:
    key = partition_key(canonical)
    token = f"pending:{uuid.uuid4()}"
    existing = await _claim(state, key, token)
    if existing is not None:
        return existing
    try:
        run_id = await run_in_threadpool(state.dagster.submit, canonical, source)
    except BaseException:
        # Whatever went wrong, the URL must not stay claimed by a submission that failed.
        await state.jobs.release_url(key, token)
        raise
    now = time.time()
    await state.jobs.create_queued(JobRecord(
        job_id=run_id, status=JobStatus.QUEUED, url=canonical.url, canonical_url=canonical.url,
        partition_key=key, run_id=run_id, created_at=now, updated_at=now))
    await state.jobs.set_active(key, token, run_id)
    return Submission(job_id=run_id, status=JobStatus.QUEUED, url=canonical.url, created=True)


async def _claim(state: AppState, key: str, token: str) -> Submission | None:
    """Take the URL's claim (None), or return the job already holding it."""
    deadline = time.monotonic() + CLAIM_WAIT_SECONDS
    while True:
        holder = await state.jobs.claim_url(key, token, CLAIM_SECONDS)
        if holder is None:
            return None
        if not holder.startswith("pending:"):
            record = await state.jobs.record(holder)
            if record is not None and not record.status.is_terminal:
                return Submission(job_id=record.job_id, status=record.status, url=record.url,
                                  created=False)
            await state.jobs.release_url(key, holder)  # finished or expired: stale claim
            continue
        if time.monotonic() > deadline:
            raise ApiError(ErrorCode.SUBMIT_BUSY,
                           "another submission of this URL is in progress")
        await asyncio.sleep(0.1)  # a concurrent request is submitting this URL right now


async def submit_urls(state: AppState, urls: list[str], source: Source
                      ) -> list[Submission | LibrarianError]:
    """One outcome per URL, in order: its job, or the error that refused it."""
    outcomes: list[Submission | LibrarianError] = []
    for url in urls:
        try:
            outcomes.append(await submit_url(state, canonicalize(url), source))
        except LibrarianError as exc:
            outcomes.append(exc)
    return outcomes


def job_links(request: Request, job_id: str) -> dict[str, str]:
    return {"status_url": str(request.url_for("job_status", job_id=job_id)),
            "stream_url": str(request.url_for("job_stream", job_id=job_id))}


def submission_json(request: Request, sub: Submission) -> dict[str, Any]:
    return {"job_id": sub.job_id, "status": sub.status.value, "url": sub.url,
            **job_links(request, sub.job_id)}


def status_code(sub: Submission) -> int:
    return 202 if sub.created else 200


def outcomes_json(request: Request, urls: list[str],
                  outcomes: list[Submission | LibrarianError]) -> tuple[int, list[dict[str, Any]]]:
    """How many were accepted, and one result per URL (a job, or that URL's error)."""
    results: list[dict[str, Any]] = []
    for url, outcome in zip(urls, outcomes, strict=True):
        if isinstance(outcome, Submission):
            results.append({"url": url, "status_code": status_code(outcome),
                            **submission_json(request, outcome)})
        else:
            results.append({"url": url, "status_code": http_status(outcome.code),
                            "error": {"code": outcome.code.value, "message": outcome.message}})
    return sum(isinstance(o, Submission) for o in outcomes), results

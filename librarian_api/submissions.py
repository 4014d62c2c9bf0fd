"""Turning URLs into jobs: accept each URL at once, its run is submitted in the background.

Accepting a URL issues its job id, writes the ``queued`` record, takes the URL's claim and
queues the submission in one Redis script (:meth:`ApiJobStore.accept`), so a batch of 500 URLs
is answered in one round trip and no job id is lost to a slow Dagster. The run itself is made by
:class:`librarian_api.submitter.Submitter`; a submission that fails ends its job with an
``error`` event on the job's own stream.

One job per URL at a time: while a URL's job is queued or running, submitting it again (in any
spelling with the same canonical form) returns that job instead of a new one.

The queue cap (``queue_max_jobs``): while the jobs queued or running, plus the new ones a
submission would add, are more than the cap, the submission is refused with ``503 queue_full``
and nothing of it is accepted. A batch is refused whole rather than cut at the cap: a client
then sends the same batch again later, instead of working out which of its URLs got in. URLs
whose job is already queued or running add nothing and are not refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from librarian.canonical_url import CanonicalURL, canonicalize
from librarian.errors import ErrorCode, LibrarianError, OrchestratorUnavailable
from librarian.jobs.events import JobStatus
from librarian.jobs.store import NewJob, QueueFull
from librarian.runs import Source, partition_key
from librarian_api.errors import ApiError, http_status
from librarian_api.state import AppState

MAX_BATCH = 500
# How soon to come back to a full queue: it drains by the runs that finish, a few a second at
# best, so asking again within seconds only adds load.
QUEUE_FULL_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Submission:
    job_id: str
    status: JobStatus
    url: str
    created: bool  # a new job, or the URL's job that was already queued or running


async def submit_url(state: AppState, canonical: CanonicalURL, source: Source) -> Submission:
    return (await accept(state, [canonical], source))[0]


async def submit_urls(state: AppState, urls: list[str], source: Source
                      ) -> list[Submission | LibrarianError]:
    """One outcome per URL, in order: its job, or the error that refused it."""
    outcomes: list[Submission | LibrarianError | CanonicalURL] = []
    for url in urls:
        try:
            outcomes.append(canonicalize(url))
        except LibrarianError as exc:
            outcomes.append(exc)
    valid = [o for o in outcomes if isinstance(o, CanonicalURL)]
    accepted = iter(await accept(state, valid, source) if valid else [])
    return [next(accepted) if isinstance(o, CanonicalURL) else o for o in outcomes]


async def accept(state: AppState, urls: list[CanonicalURL], source: Source
                 ) -> list[Submission]:
    refusal = state.submitter.refusal()
    if refusal is not None:
        # Dagster has been away longer than a blip: say so now rather than queue behind it.
        raise OrchestratorUnavailable(refusal)
    now = time.time()
    jobs = [NewJob(job_id=str(uuid.uuid4()), url=url.url, partition_key=partition_key(url),
                   source=source.value, created_at=now) for url in urls]
    try:
        holders = await state.jobs.accept(jobs, cap=state.settings.queue_max_jobs)
    except QueueFull as full:
        raise queue_full(full.depth, full.new, full.cap) from full
    state.submitter.wake()
    existing = {h for job, h in zip(jobs, holders, strict=True) if h != job.job_id}
    statuses = {job_id: await state.jobs.status(job_id) for job_id in existing}
    out = []
    for job, holder in zip(jobs, holders, strict=True):
        if holder == job.job_id:
            out.append(Submission(job_id=holder, status=JobStatus.QUEUED, url=job.url,
                                  created=True))
        else:
            out.append(Submission(job_id=holder, status=statuses[holder] or JobStatus.QUEUED,
                                  url=job.url, created=False))
    return out


def queue_full(depth: int, new: int, cap: int) -> ApiError:
    what = "this job" if new == 1 else f"these {new} jobs"
    return ApiError(ErrorCode.QUEUE_FULL,
                    f"the queue is full: {depth} jobs are queued or running, at most {cap}; "
                    f"{what} would not fit (nothing was accepted); try again later",
                    retry_after=QUEUE_FULL_RETRY_AFTER)


async def check_queue(state: AppState, new: int = 1) -> None:
    """Refuse with ``queue_full`` when ``new`` more jobs would take the queue past its cap
    (for work that does not go through :func:`accept`: a retry re-executes an existing job)."""
    cap = state.settings.queue_max_jobs
    if cap:
        depth = await state.jobs.unfinished_jobs()
        if depth + new > cap:
            raise queue_full(depth, new, cap)


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

"""Jobs: submit one URL or many, read a job, list jobs, cancel and retry.

Submitting (one URL, a batch, a retry) counts against the caller's submission rate, one unit
per URL (:mod:`librarian_api.rate_limits`), and new jobs against the queue cap
(:mod:`librarian_api.submissions`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.canonical_url import canonicalize
from librarian.errors import ErrorCode
from librarian.jobs.events import EventType, JobEvent, JobStatus
from librarian.runs import Source
from librarian_api.errors import ApiError
from librarian_api.params import (
    encode_job_cursor,
    job_or_404,
    json_body,
    parse_job_cursor,
    parse_limit,
)
from librarian_api.rate_limits import Bucket, take
from librarian_api.state import app_state
from librarian_api.submissions import (
    MAX_BATCH,
    check_queue,
    job_links,
    outcomes_json,
    status_code,
    submission_json,
    submit_url,
    submit_urls,
)

# A listing reads at most this many job statuses per request, in chunks: a filter that matches
# few of a large index answers with what it found so far and a cursor to go on from, instead of
# reading the whole index in one request.
MAX_EXAMINED = 1000
SCAN_CHUNK = 200


async def submit(request: Request) -> JSONResponse:
    body = await json_body(request, '{"url": "..."}')
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise ApiError(ErrorCode.INVALID_REQUEST, 'expected a JSON body {"url": "..."}')
    await take(request, Bucket.SUBMISSIONS)
    canonical = canonicalize(body["url"])  # InvalidURL → 422 through the error handler
    sub = await submit_url(app_state(request), canonical, Source.API)
    return JSONResponse(submission_json(request, sub), status_code=status_code(sub))


async def submit_batch(request: Request) -> JSONResponse:
    """``{"urls": [...]}``: one result per URL, in order — a job, or that URL's error."""
    shape = '{"urls": ["...", ...]}'
    body = await json_body(request, shape)
    urls = body.get("urls") if isinstance(body, dict) else None
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ApiError(ErrorCode.INVALID_REQUEST, f"expected a JSON body {shape}")
    if not 1 <= len(urls) <= MAX_BATCH:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"send between 1 and {MAX_BATCH} URLs")
    await take(request, Bucket.SUBMISSIONS, cost=len(urls))
    outcomes = await submit_urls(app_state(request), urls, Source.BATCH)
    accepted, results = outcomes_json(request, urls, outcomes)
    return JSONResponse({"accepted": accepted, "results": results},
                        status_code=202 if accepted else 422)


async def list_jobs(request: Request) -> JSONResponse:
    """Jobs newest first; ``status`` filters (comma-separated); ``cursor`` pages on.

    At most :data:`MAX_EXAMINED` jobs are examined per request: a page may hold fewer than
    ``limit`` jobs, even none, and still have a ``next_cursor``; the listing ends when
    ``next_cursor`` is null. ``examined`` says how many jobs this page looked at."""
    state = app_state(request)
    params = request.query_params
    wanted = {s for raw in params.getlist("status") for s in raw.split(",") if s}
    unknown = wanted - {s.value for s in JobStatus}
    if unknown:
        raise ApiError(ErrorCode.INVALID_STATUS, f"unknown status {sorted(unknown)[:10]}")
    limit = parse_limit(request)
    position = parse_job_cursor(request)
    jobs: list[dict[str, object]] = []
    examined = 0
    more = True
    while more and len(jobs) < limit and examined < MAX_EXAMINED:
        # Unfiltered, every job examined is shown: read no more than the page needs.
        want = min(SCAN_CHUNK if wanted else limit - len(jobs), MAX_EXAMINED - examined)
        rows = await state.jobs.job_ids(want, position)
        more = len(rows) == want
        statuses = (await state.jobs.statuses([job_id for job_id, _ in rows]) if wanted
                    else [None] * len(rows))
        picked: list[str] = []
        for i, ((job_id, created_at), status) in enumerate(zip(rows, statuses, strict=True)):
            examined += 1
            position = (created_at, job_id)
            if wanted and status not in wanted:
                continue
            picked.append(job_id)
            if len(jobs) + len(picked) == limit:
                more = more or i < len(rows) - 1
                break
        for job_id, record in zip(picked, await state.jobs.records(picked), strict=True):
            # Gone meanwhile (expired), or its status changed since it was read.
            if record is None or (wanted and record.status.value not in wanted):
                continue
            jobs.append({**record.model_dump(mode="json", exclude_none=True),
                         **job_links(request, job_id)})
    next_cursor = encode_job_cursor(*position) if more and position is not None else None
    return JSONResponse({"jobs": jobs, "next_cursor": next_cursor, "examined": examined})


async def status(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    record = await job_or_404(app_state(request), job_id)
    return JSONResponse({**record.model_dump(mode="json", exclude_none=True),
                         **job_links(request, job_id)})


async def cancel(request: Request) -> JSONResponse:
    state = app_state(request)
    job_id = request.path_params["job_id"]
    record = await job_or_404(state, job_id)
    if record.status.is_terminal:
        raise ApiError(ErrorCode.JOB_FINISHED, f"job {job_id} is already {record.status.value}")
    if record.run_id is None:
        # Not submitted yet: the job ends here (a run its submitter is making goes too).
        event = JobEvent(type=EventType.JOB_CANCELLED, job_id=job_id,
                         message="cancelled before its run was submitted")
        if await state.jobs.end_before_run(job_id, JobStatus.CANCELLED, event):
            return JSONResponse({"job_id": job_id, "status": "cancelled",
                                 **job_links(request, job_id)}, status_code=202)
        record = await job_or_404(state, job_id)  # it got its run meanwhile
    await run_in_threadpool(state.dagster.terminate, record.run_id or job_id)
    return JSONResponse({"job_id": job_id, "status": "cancelling",
                         **job_links(request, job_id)}, status_code=202)


async def retry(request: Request) -> JSONResponse:
    """Re-execute a failed or cancelled job from its failed op, under the same job id."""
    state = app_state(request)
    job_id = request.path_params["job_id"]
    await take(request, Bucket.SUBMISSIONS)
    record = await job_or_404(state, job_id)
    if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise ApiError(ErrorCode.JOB_NOT_FAILED,
                       f"only failed or cancelled jobs can be retried; this one is "
                       f"{record.status.value}")
    if record.run_id is None:
        # It never got a run (its submission failed): there is nothing to re-execute, so the
        # URL is submitted again, as a new job.
        sub = await submit_url(state, canonicalize(record.url), Source.API)
        return JSONResponse({**submission_json(request, sub), "retry_of": job_id},
                            status_code=status_code(sub))
    await check_queue(state)  # the retry's run joins the queue like a new job's
    run_id = await run_in_threadpool(state.dagster.reexecute, record.run_id)
    # Queued again from now on, before the mirror sees the new run: a client that reconnects
    # to the stream at once waits for the retry's events instead of being told it is over.
    await state.jobs.reopen(job_id, "retry submitted")
    return JSONResponse({"job_id": job_id, "run_id": run_id, "status": "queued",
                         **job_links(request, job_id)}, status_code=202)

"""The background submitter: turns accepted jobs into Dagster runs, in bulk, and never loses one.

Accepted jobs wait in a Redis queue (:mod:`librarian.jobs.store`). Each API process runs one
submitter task; it leases up to ``submit_batch`` due jobs at a time and submits their runs in one
GraphQL request. A lease runs out by itself, so jobs leased by a process that died are taken
again by any submitter, and a job leased before is first looked up in Dagster by its tag: a run
made by an attempt whose answer was lost is adopted, never made twice.

Dagster unreachable: the jobs go back to the queue with backoff (their record says why) and are
tried again until ``submit_deadline_seconds`` after they were accepted; then each ends failed
(``orchestrator_unavailable``, stage ``submit``) on its own stream. Dagster refusing a run
(``run_refused``) ends that job at once. Once Dagster has been unreachable longer than
``submit_grace_seconds``, :meth:`Submitter.refusal` tells the API to answer new submissions
with a 503 instead of queueing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.concurrency import run_in_threadpool

from librarian.canonical_url import canonicalize
from librarian.errors import ErrorCode, LibrarianError, OrchestratorUnavailable
from librarian.jobs.events import EventType, JobError, JobEvent, JobStatus
from librarian.jobs.store import ApiJobStore, PendingSubmission
from librarian.runs import Source
from librarian.settings import Settings
from librarian_api.dagster_client import DagsterSubmitter

log = logging.getLogger("librarian.api.submitter")
LEASE_SECONDS = 120.0  # longer than the slowest bulk submission (GraphQL timeout 60 s)
IDLE_POLL_SECONDS = 1.0  # a retry that falls due, or a job another process accepted
MAX_BACKOFF = 30.0


class Submitter:
    def __init__(self, jobs: ApiJobStore, dagster: DagsterSubmitter, settings: Settings) -> None:
        self.jobs = jobs
        self.dagster = dagster
        self.batch = settings.submit_batch
        self.deadline = settings.submit_deadline_seconds
        self.grace = settings.submit_grace_seconds
        self.unreachable_since: float | None = None  # monotonic
        self.last_error = ""
        self.submitted = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def refusal(self) -> str | None:
        """Why new submissions should be refused now, or None to accept them."""
        if self.unreachable_since is None:
            return None
        away = time.monotonic() - self.unreachable_since
        if away <= self.grace:
            return None
        return f"Dagster has been unreachable for {away:.0f} s: {self.last_error}"[:500]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="librarian-submitter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                done = await self.submit_due()
                failures = 0
            except Exception as exc:  # Redis away, or a bug: keep the task alive, back off
                failures += 1
                log.warning("submission pass failed (%s); retrying", type(exc).__name__,
                            exc_info=failures == 1)
                done = 0
                await asyncio.sleep(min(MAX_BACKOFF, 0.5 * 2 ** min(failures, 6)))
            if done:
                continue  # more may be due: a batch is at most ``submit_batch`` jobs
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)

    async def submit_due(self, now: float | None = None) -> int:
        """Submit the runs of the jobs due at ``now``; return how many jobs were handled."""
        now = time.time() if now is None else now
        due = await self.jobs.lease_submissions(now, LEASE_SECONDS, self.batch)
        if not due:
            return 0
        try:
            made = await self._adopt_existing(due)
            todo = [p for p in due if p.job_id not in made]
            outcomes = await self._launch(todo) if todo else []
        except OrchestratorUnavailable as exc:
            await self._unreachable(due, exc, now)
            return len(due)
        if self.unreachable_since is not None:
            log.info("Dagster answers again; submitting")
        self.unreachable_since = None
        for pending, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, str):
                made[pending.job_id] = outcome
            else:
                await self._fail(pending, outcome)
        for job_id in await self.jobs.submitted(made):
            # Cancelled while its run was being made: the run goes too.
            with contextlib.suppress(LibrarianError):
                await run_in_threadpool(self.dagster.terminate, made[job_id])
        self.submitted += len(made)
        return len(due)

    async def _adopt_existing(self, due: list[PendingSubmission]) -> dict[str, str]:
        again = [p.job_id for p in due if p.tries > 1]
        if not again:
            return {}
        runs = await run_in_threadpool(self.dagster.runs_of_jobs, again)
        return {job_id: run_id for job_id, (run_id, _status) in runs.items()}

    async def _launch(self, todo: list[PendingSubmission]) -> list[str | LibrarianError]:
        outcomes: list[str | LibrarianError | None] = []
        jobs = []
        for p in todo:
            try:
                jobs.append((p.job_id, canonicalize(p.url), Source(p.source)))
                outcomes.append(None)
            except (LibrarianError, ValueError) as exc:  # a queue entry this version cannot read
                outcomes.append(exc if isinstance(exc, LibrarianError) else
                                LibrarianError(ErrorCode.INTERNAL_ERROR, str(exc)))
        launched = iter(await run_in_threadpool(self.dagster.submit_many, jobs) if jobs else [])
        return [o if o is not None else next(launched) for o in outcomes]

    async def _unreachable(self, due: list[PendingSubmission],
                           exc: OrchestratorUnavailable, now: float) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = time.monotonic()
            log.warning("Dagster unreachable; %s submissions wait: %s", len(due), exc.message)
        self.last_error = exc.message
        for pending in due:
            if now - pending.accepted_at > self.deadline:
                await self._fail(pending, OrchestratorUnavailable(
                    f"no run could be submitted within {self.deadline:.0f} s: {exc.message}"))
            else:
                wait = min(MAX_BACKOFF, 2.0 ** min(pending.tries - 1, 5))
                await self.jobs.retry_submission(
                    pending.job_id, now + wait, f"waiting for Dagster: {exc.message}"[:500])

    async def _fail(self, pending: PendingSubmission, error: LibrarianError) -> None:
        job_error = JobError(stage="submit", code=error.code.value, message=error.message)
        event = JobEvent(type=EventType.ERROR, job_id=pending.job_id, stage="submit",
                         error=job_error, message=error.message)
        if await self.jobs.end_before_run(pending.job_id, JobStatus.FAILED, event, job_error):
            log.warning("job %s failed to submit: %s", pending.job_id, error.message)

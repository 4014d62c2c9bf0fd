"""Dagster run events → job record updates and job events. Pure: no Dagster, no Redis.

The mirror adapts each Dagster event-log entry into a :class:`SourceEvent`, looks up the run
(:class:`RunInfo`) and the job's running state (:class:`JobState`), and calls :func:`translate`.
One terminal job event per run: ``job_completed`` at RUN_SUCCESS (with the result the ``load`` op
materialized), ``error`` at RUN_FAILURE (with the code of the failed step, or ``run_failed`` when
the worker died without reporting one), ``job_cancelled`` at RUN_CANCELED. Progress comes from
the metadata of the ops' progress events (:func:`librarian.runs.progress_metadata`); log lines
are never parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from librarian.errors import ErrorCode
from librarian.jobs.events import (
    STAGES,
    EventType,
    JobError,
    JobEvent,
    JobResult,
    JobStatus,
    overall_percent,
    record_fields,
)
from librarian.jobs.store import MirrorWrite
from librarian.runs import Tag, job_id_of_run, result_from_metadata


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    job_id: str
    url: str
    partition_key: str | None
    attempt: int
    will_retry: bool = False  # Dagster's run-retry daemon will re-execute this failed run

    @classmethod
    def from_tags(cls, run_id: str, tags: dict[str, str], url_from_config: str | None) -> RunInfo:
        attempt = int(tags.get(Tag.RETRY_NUMBER, "0")) + 1
        return cls(run_id=run_id, job_id=job_id_of_run(run_id, tags),
                   url=tags.get(Tag.URL) or url_from_config or "",
                   partition_key=tags.get(Tag.PARTITION), attempt=attempt,
                   will_retry=tags.get(Tag.WILL_RETRY) == "true")


@dataclass(frozen=True)
class SourceEvent:
    storage_id: int
    run_id: str
    timestamp: float
    event_type: str | None  # None for plain log lines
    step_key: str | None = None
    message: str = ""
    duration_ms: int | None = None
    failure: JobError | None = None
    materialization: dict[str, Any] | None = None
    progress: int | None = None  # the stage's percent, on an op's progress event


@dataclass
class JobState:
    stage: str | None = None
    result: JobResult | None = None
    error: JobError | None = None
    retrying: bool = False  # the last run failed and Dagster said it would run it again


@dataclass
class _Write:
    """What one event does, filled in by its handler."""

    fields: dict[str, Any] = field(default_factory=dict)
    events: list[JobEvent] = field(default_factory=list)
    mode: str = ""  # "", "enqueued" or "terminal"
    clear: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Context:
    ev: SourceEvent
    run: RunInfo
    state: JobState
    stage: str | None
    out: _Write

    def update(self, **fields: Any) -> None:
        self.out.fields.update(fields)

    def event(self, kind: EventType, **kw: Any) -> None:
        self.out.events.append(JobEvent(type=kind, job_id=self.run.job_id, ts=self.ev.timestamp,
                                        **kw))


def translate(ev: SourceEvent, run: RunInfo, state: JobState) -> MirrorWrite | None:
    stage = ev.step_key if ev.step_key in STAGES else None
    handler = _handler(ev, run, stage)
    if handler is None:
        return None
    out = _Write()
    handler(_Context(ev, run, state, stage, out))
    # Identity fields go with every write: a record may be first created by any event (runs
    # launched in process never pass through RUN_ENQUEUED, and Redis may have lost the record).
    fields = {"job_id": run.job_id, "run_id": run.run_id, "url": run.url,
              "partition_key": run.partition_key, "updated_at": ev.timestamp, **out.fields}
    return MirrorWrite(job_id=run.job_id, storage_id=ev.storage_id,
                       partition_key=run.partition_key, fields=record_fields(**fields),
                       events=out.events, mode=out.mode, created_at=ev.timestamp,
                       clear=out.clear)


Handler = Callable[[_Context], None]


def _handler(ev: SourceEvent, run: RunInfo, stage: str | None) -> Handler | None:
    kind = ev.event_type
    if kind in _RUN_HANDLERS:
        if kind == "RUN_FAILURE" and run.will_retry:
            return _run_will_retry
        return _RUN_HANDLERS[kind]
    if kind == "ASSET_MATERIALIZATION" and ev.materialization is not None:
        return _materialized
    if stage is None:
        return None
    if kind == "ENGINE_EVENT" and ev.progress is not None:
        return _stage_progress
    return _STEP_HANDLERS.get(kind or "")


# -- run lifecycle -------------------------------------------------------------------------------

def _run_enqueued(c: _Context) -> None:
    # Everything the API's first record holds, from the event itself: a record rebuilt from
    # the event log is the record the live mirror wrote, to the byte (created_at included).
    c.update(status=JobStatus.QUEUED, attempt=c.run.attempt, canonical_url=c.run.url, percent=0,
             created_at=c.ev.timestamp)
    c.out.mode = "enqueued"


def _run_started(c: _Context) -> None:
    c.state.retrying = False
    c.update(status=JobStatus.RUNNING, started_at=c.ev.timestamp, attempt=c.run.attempt,
             message="started")
    c.event(EventType.JOB_STARTED, url=c.run.url, attempt=c.run.attempt)


def _run_succeeded(c: _Context) -> None:
    c.update(status=JobStatus.COMPLETED, percent=100, finished_at=c.ev.timestamp,
             message="completed", result=c.state.result)
    c.event(EventType.JOB_COMPLETED, url=c.run.url, result=c.state.result)
    c.out.mode = "terminal"


def _run_will_retry(c: _Context) -> None:
    # Not the end: Dagster re-executes the run (a worker that died, not an op failure).
    # The retry's events continue this job's stream under the same job id.
    reason = c.ev.message or "the run failed"
    c.update(status=JobStatus.QUEUED, message=f"retrying the run: {reason}")
    c.event(EventType.STAGE_PROGRESS, stage=c.state.stage,
            message=f"the run failed ({reason}); Dagster retries it")
    c.state.error = None
    c.state.retrying = True
    c.out.clear = ("error",)


def _run_failed(c: _Context) -> None:
    c.state.retrying = False
    error = c.state.error or JobError(stage=c.state.stage or "run", code=ErrorCode.RUN_FAILED,
                                      message=c.ev.message or "the run failed")
    c.update(status=JobStatus.FAILED, finished_at=c.ev.timestamp, error=error,
             message=error.message)
    c.event(EventType.ERROR, stage=error.stage, error=error, message=error.message)
    c.out.mode = "terminal"


def _run_cancelled(c: _Context) -> None:
    c.update(status=JobStatus.CANCELLED, finished_at=c.ev.timestamp, message="cancelled")
    c.event(EventType.JOB_CANCELLED, message=c.ev.message or "cancelled")
    c.out.mode = "terminal"


_RUN_HANDLERS: dict[str, Handler] = {
    "RUN_ENQUEUED": _run_enqueued, "RUN_START": _run_started, "RUN_SUCCESS": _run_succeeded,
    "RUN_FAILURE": _run_failed, "RUN_CANCELED": _run_cancelled,
}


# -- stages --------------------------------------------------------------------------------------

def _stage_started(c: _Context) -> None:
    assert c.stage is not None
    c.state.stage = c.stage
    c.update(stage=c.stage, percent=overall_percent(c.stage, 0),
             message=f"{c.stage} started")
    c.event(EventType.STAGE_STARTED, stage=c.stage, job_percent=overall_percent(c.stage, 0))


def _stage_progress(c: _Context) -> None:
    assert c.stage is not None and c.ev.progress is not None
    job_percent = overall_percent(c.stage, c.ev.progress)
    c.update(stage=c.stage, percent=job_percent, message=c.ev.message)
    c.event(EventType.STAGE_PROGRESS, stage=c.stage, percent=c.ev.progress,
            job_percent=job_percent, message=c.ev.message)


def _stage_retrying(c: _Context) -> None:
    c.update(message=f"{c.stage} will be retried: {c.ev.message}")
    c.event(EventType.STAGE_PROGRESS, stage=c.stage, message=f"retrying: {c.ev.message}")


def _stage_completed(c: _Context) -> None:
    assert c.stage is not None
    job_percent = overall_percent(c.stage, 100)
    c.update(percent=job_percent, message=f"{c.stage} completed")
    c.event(EventType.STAGE_COMPLETED, stage=c.stage, duration_ms=c.ev.duration_ms or 0,
            job_percent=job_percent)


def _stage_failed(c: _Context) -> None:
    assert c.stage is not None
    c.state.error = c.ev.failure or JobError(stage=c.stage, code=ErrorCode.INTERNAL_ERROR,
                                             message=c.ev.message or "step failed")
    c.update(error=c.state.error)


def _materialized(c: _Context) -> None:
    assert c.ev.materialization is not None
    c.state.result = result_from_metadata(c.ev.materialization, c.run.url)
    c.update(result=c.state.result)


_STEP_HANDLERS: dict[str, Handler] = {
    "STEP_START": _stage_started, "STEP_UP_FOR_RETRY": _stage_retrying,
    "STEP_SUCCESS": _stage_completed, "STEP_FAILURE": _stage_failed,
}

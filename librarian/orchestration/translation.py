"""Dagster run events → job record updates and job events. Pure: no Dagster, no Redis.

The mirror adapts each Dagster event-log entry into a :class:`SourceEvent`, looks up the run
(:class:`RunInfo`) and the job's running state (:class:`JobState`), and calls :func:`translate`.
One terminal job event per run: ``job_completed`` at RUN_SUCCESS (with the result the ``load`` op
materialized), ``error`` at RUN_FAILURE (with the code of the failed step, or ``run_failed`` when
the worker died without reporting one), ``job_cancelled`` at RUN_CANCELED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from librarian.jobs.events import (
    EventType,
    JobError,
    JobEvent,
    JobResult,
    JobStatus,
    overall_percent,
    parse_progress,
    record_fields,
)
from librarian.jobs.store import MirrorWrite

ROOT_RUN_TAG = "dagster/root_run_id"
URL_TAG = "librarian/url"
PARTITION_TAG = "dagster/partition"
WILL_RETRY_TAG = "dagster/will_retry"
STAGES = ("extract", "transform", "load")


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
        root = tags.get(ROOT_RUN_TAG)
        attempt = int(tags.get("dagster/retry_number", "0")) + 1
        return cls(run_id=run_id, job_id=root or run_id,
                   url=tags.get(URL_TAG) or url_from_config or "",
                   partition_key=tags.get(PARTITION_TAG), attempt=attempt,
                   will_retry=tags.get(WILL_RETRY_TAG) == "true")


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


@dataclass
class JobState:
    stage: str | None = None
    result: JobResult | None = None
    error: JobError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def translate(ev: SourceEvent, run: RunInfo, state: JobState) -> MirrorWrite | None:
    job = run.job_id
    stage = ev.step_key if ev.step_key in STAGES else None
    # Identity fields go with every write: a record may be first created by any event (runs
    # launched in process never pass through RUN_ENQUEUED, and Redis may have lost the record).
    fields: dict[str, Any] = {"job_id": job, "run_id": run.run_id, "url": run.url,
                              "partition_key": run.partition_key, "updated_at": ev.timestamp}
    events: list[JobEvent] = []
    mode = ""
    clear: tuple[str, ...] = ()

    def event(kind: EventType, **kw: Any) -> None:
        events.append(JobEvent(type=kind, job_id=job, ts=ev.timestamp, **kw))

    match ev.event_type:
        case "RUN_ENQUEUED":
            fields.update(status=JobStatus.QUEUED, url=run.url, run_id=run.run_id,
                          partition_key=run.partition_key, attempt=run.attempt)
            mode = "enqueued"
        case "RUN_START":
            fields.update(status=JobStatus.RUNNING, started_at=ev.timestamp, run_id=run.run_id,
                          url=run.url, attempt=run.attempt, message="started")
            event(EventType.JOB_STARTED, url=run.url, attempt=run.attempt)
        case "STEP_START" if stage:
            state.stage = stage
            fields.update(stage=stage, percent=overall_percent(stage, 0),
                          message=f"{stage} started")
            event(EventType.STAGE_STARTED, stage=stage)
        case None if stage:
            progress = parse_progress(ev.message)
            if progress is None:
                return None
            percent, message = progress
            fields.update(stage=stage, percent=overall_percent(stage, percent), message=message)
            event(EventType.STAGE_PROGRESS, stage=stage, percent=percent, message=message)
        case "STEP_UP_FOR_RETRY" if stage:
            fields.update(message=f"{stage} will be retried: {ev.message}")
            event(EventType.STAGE_PROGRESS, stage=stage, message=f"retrying: {ev.message}")
        case "STEP_SUCCESS" if stage:
            fields.update(percent=overall_percent(stage, 100), message=f"{stage} completed")
            event(EventType.STAGE_COMPLETED, stage=stage, duration_ms=ev.duration_ms or 0)
        case "ASSET_MATERIALIZATION" if ev.materialization is not None:
            state.result = result_from_metadata(ev.materialization, run.url)
            fields.update(result=state.result)
        case "STEP_FAILURE" if stage:
            state.error = ev.failure or JobError(stage=stage, code="internal_error",
                                                 message=ev.message or "step failed")
            fields.update(error=state.error)
        case "RUN_SUCCESS":
            fields.update(status=JobStatus.COMPLETED, percent=100, finished_at=ev.timestamp,
                          message="completed", result=state.result)
            event(EventType.JOB_COMPLETED, url=run.url, result=state.result)
            mode = "terminal"
        case "RUN_FAILURE" if run.will_retry:
            # Not the end: Dagster re-executes the run (a worker that died, not an op failure).
            # The retry's events continue this job's stream under the same job id.
            reason = ev.message or "the run failed"
            fields.update(status=JobStatus.QUEUED, message=f"retrying the run: {reason}")
            event(EventType.STAGE_PROGRESS, stage=state.stage,
                  message=f"the run failed ({reason}); Dagster retries it")
            state.error = None
            clear = ("error",)
        case "RUN_FAILURE":
            error = state.error or JobError(stage=state.stage or "run", code="run_failed",
                                            message=ev.message or "the run failed")
            fields.update(status=JobStatus.FAILED, finished_at=ev.timestamp, error=error,
                          message=error.message)
            event(EventType.ERROR, stage=error.stage, error=error, message=error.message)
            mode = "terminal"
        case "RUN_CANCELED":
            fields.update(status=JobStatus.CANCELLED, finished_at=ev.timestamp,
                          message="cancelled")
            event(EventType.JOB_CANCELLED, message=ev.message or "cancelled")
            mode = "terminal"
        case _:
            return None
    return MirrorWrite(job_id=job, storage_id=ev.storage_id, partition_key=run.partition_key,
                       fields=record_fields(**fields), events=events, mode=mode,
                       created_at=ev.timestamp, clear=clear)


def result_from_metadata(meta: dict[str, Any], url: str) -> JobResult:
    def num(key: str) -> float | None:
        value = meta.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    version = meta.get("version")
    return JobResult(
        item_id=str(meta.get("item_id", "")),
        url=str(meta.get("url") or url),
        title=meta.get("title"),
        tier=meta.get("tier"),
        quality_score=num("quality_score"),
        word_count=int(meta["word_count"]) if isinstance(meta.get("word_count"), int) else None,
        object_key=meta.get("object_key"),
        version=int(version) if isinstance(version, int) else None,
        changed=meta.get("changed") if isinstance(meta.get("changed"), bool) else None,
    )

"""The job record and job event schema: the contract between the event mirror and the API.

Written by the mirror (from Dagster's event log) and by the API (the initial ``queued`` record);
read by the API and its SSE streams. It must not import Dagster.

Events, in the order a client sees them for one job::

    job_started → (stage_started → stage_progress* → stage_completed){extract, transform, load}
                → job_completed | error | job_cancelled

``heartbeat`` is added by the SSE layer only. Exactly one terminal event ends every stream.
Progress events carry the stage's ``percent`` and the whole job's ``job_percent`` (each stage
covers a share of the job, :data:`STAGE_SPAN`), so no client recomputes it.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

# The job's stages, in order: the ops of ``ingest_url`` carry these names.
STAGES = ("extract", "transform", "load")
# Share of the whole job each stage covers, for the overall percent.
STAGE_SPAN = {"extract": (0, 40), "transform": (40, 85), "load": (85, 100)}


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class EventType(StrEnum):
    JOB_STARTED = "job_started"
    STAGE_STARTED = "stage_started"
    STAGE_PROGRESS = "stage_progress"
    STAGE_COMPLETED = "stage_completed"
    JOB_COMPLETED = "job_completed"
    ERROR = "error"
    JOB_CANCELLED = "job_cancelled"
    HEARTBEAT = "heartbeat"


TERMINAL_EVENTS = frozenset({EventType.JOB_COMPLETED, EventType.ERROR, EventType.JOB_CANCELLED})


class JobError(BaseModel):
    stage: str
    code: str
    message: str


class JobResult(BaseModel):
    item_id: str
    url: str
    title: str | None = None
    tier: str | None = None
    quality_score: float | None = None
    word_count: int | None = None
    object_key: str | None = None
    version: int | None = None
    changed: bool | None = None


class JobEvent(BaseModel):
    type: EventType
    job_id: str
    ts: float = Field(default_factory=time.time)
    stage: str | None = None
    percent: int | None = None  # of the stage
    job_percent: int | None = None  # of the whole job
    message: str | None = None
    duration_ms: int | None = None
    url: str | None = None
    attempt: int | None = None
    error: JobError | None = None
    result: JobResult | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> JobEvent:
        return cls.model_validate_json(data)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


class JobRecord(BaseModel):
    job_id: str
    status: JobStatus
    url: str
    canonical_url: str | None = None
    partition_key: str | None = None
    run_id: str | None = None
    stage: str | None = None
    percent: int = 0
    message: str | None = None
    attempt: int = 1
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    error: JobError | None = None
    result: JobResult | None = None

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> JobRecord:
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        for key in ("error", "result"):
            if key in data:
                data[key] = json.loads(data[key])
        data.pop("last_storage_id", None)
        return cls.model_validate(data)


def record_fields(**fields: Any) -> dict[str, str]:
    """Flatten record fields for a Redis hash (nested models as JSON, ``None`` dropped)."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            out[key] = value.model_dump_json(exclude_none=True)
        elif isinstance(value, StrEnum):
            out[key] = value.value
        else:
            out[key] = str(value)
    return out


def overall_percent(stage: str, stage_percent: int) -> int:
    lo, hi = STAGE_SPAN.get(stage, (0, 100))
    return lo + round((hi - lo) * max(0, min(100, stage_percent)) / 100)

"""Dagster run events → job events, as a client of the SSE stream sees them."""

from librarian.jobs.events import EventType, JobError, JobStatus
from librarian.orchestration.translation import JobState, RunInfo, SourceEvent, translate

RUN = RunInfo(run_id="r1", job_id="r1", url="https://example.com/", partition_key="k",
              attempt=1)


def _play(events: list[SourceEvent]) -> tuple[list, dict[str, str]]:
    state = JobState()
    out, fields = [], {}
    for ev in events:
        write = translate(ev, RUN, state)
        if write is not None:
            out.extend(write.events)
            fields.update(write.fields)
    return out, fields


def _ev(sid: int, kind: str | None, step: str | None = None, **kw: object) -> SourceEvent:
    return SourceEvent(storage_id=sid, run_id="r1", timestamp=1000.0 + sid, event_type=kind,
                       step_key=step, **kw)  # type: ignore[arg-type]


def test_successful_run_yields_stage_events_in_order_and_one_terminal_event() -> None:
    events, fields = _play([
        _ev(1, "RUN_ENQUEUED"), _ev(2, "RUN_STARTING"), _ev(3, "RUN_START"),
        _ev(4, "STEP_START", "extract"),
        _ev(5, "ENGINE_EVENT", "extract", progress=50, message="downloaded 10 of 20 bytes"),
        # Text is never parsed: a log line that looks like progress is only a log line, and an
        # engine event without progress metadata (Dagster's own) is not progress either.
        _ev(6, None, "extract", message="[progress 60%] an ordinary log line"),
        _ev(6, "ENGINE_EVENT", "extract", message="Executing steps in process"),
        _ev(7, "STEP_SUCCESS", "extract", duration_ms=120),
        _ev(8, "STEP_START", "transform"), _ev(9, "STEP_SUCCESS", "transform", duration_ms=50),
        _ev(10, "STEP_START", "load"),
        _ev(11, "ASSET_MATERIALIZATION", "load", materialization={
            "item_id": "i1", "title": "T", "tier": "A", "quality_score": 0.8,
            "word_count": 400, "object_key": "items/i1/x/content.md", "version": 1,
            "changed": True, "url": "https://example.com/"}),
        _ev(12, "STEP_SUCCESS", "load", duration_ms=30), _ev(13, "RUN_SUCCESS"),
    ])
    kinds = [(e.type, e.stage) for e in events]
    assert kinds == [
        (EventType.JOB_STARTED, None),
        (EventType.STAGE_STARTED, "extract"), (EventType.STAGE_PROGRESS, "extract"),
        (EventType.STAGE_COMPLETED, "extract"),
        (EventType.STAGE_STARTED, "transform"), (EventType.STAGE_COMPLETED, "transform"),
        (EventType.STAGE_STARTED, "load"), (EventType.STAGE_COMPLETED, "load"),
        (EventType.JOB_COMPLETED, None),
    ]
    assert events[2].percent == 50 and events[2].message == "downloaded 10 of 20 bytes"
    # The whole job's percent travels on the event: extract covers 0-40 % of the job.
    assert events[2].job_percent == 20 and events[3].job_percent == 40
    assert events[3].duration_ms == 120
    done = events[-1]
    assert done.result is not None and done.result.tier == "A" and done.result.version == 1
    assert fields["status"] == JobStatus.COMPLETED.value
    assert fields["percent"] == "100"


def test_failed_step_becomes_one_error_event_with_its_code_at_run_failure() -> None:
    events, fields = _play([
        _ev(1, "RUN_START"), _ev(2, "STEP_START", "extract"),
        _ev(3, "STEP_FAILURE", "extract",
            failure=JobError(stage="extract", code="not_found", message="HTTP 404")),
        _ev(4, "RUN_FAILURE", message="run failed"),
    ])
    assert [e.type for e in events] == [EventType.JOB_STARTED, EventType.STAGE_STARTED,
                                        EventType.ERROR]
    error = events[-1].error
    assert error is not None
    assert (error.stage, error.code, error.message) == ("extract", "not_found", "HTTP 404")
    assert fields["status"] == "failed"


def test_worker_that_dies_without_reporting_fails_the_job_in_its_current_stage() -> None:
    events, _fields = _play([
        _ev(1, "RUN_START"), _ev(2, "STEP_START", "transform"),
        _ev(3, "RUN_FAILURE", message="run worker exited unexpectedly"),
    ])
    error = events[-1].error
    assert error is not None and error.code == "run_failed" and error.stage == "transform"
    assert "exited unexpectedly" in error.message


def test_cancelled_run_ends_with_job_cancelled() -> None:
    events, fields = _play([_ev(1, "RUN_START"), _ev(2, "RUN_CANCELED")])
    assert events[-1].type == EventType.JOB_CANCELLED and events[-1].is_terminal
    assert fields["status"] == "cancelled"


def test_enqueue_registers_the_active_url_and_terminal_events_release_it() -> None:
    state = JobState()
    enqueued = translate(_ev(1, "RUN_ENQUEUED"), RUN, state)
    finished = translate(_ev(2, "RUN_SUCCESS"), RUN, state)
    assert enqueued is not None and enqueued.mode == "enqueued" and not enqueued.events
    assert finished is not None and finished.mode == "terminal"


def test_retry_of_a_run_keeps_the_original_job_id() -> None:
    tags = {"dagster/root_run_id": "r0", "dagster/retry_number": "1",
            "librarian/url": "https://example.com/", "dagster/partition": "k"}
    info = RunInfo.from_tags("r2", tags, None)
    assert info.job_id == "r0" and info.attempt == 2


def test_a_run_dagster_will_retry_is_not_the_end_of_the_job() -> None:
    retried = RunInfo(run_id="r1", job_id="r1", url="u", partition_key="k", attempt=1,
                      will_retry=True)
    state = JobState()
    translate(_ev(1, "RUN_START"), retried, state)
    translate(_ev(2, "STEP_START", "extract"), retried, state)
    write = translate(_ev(3, "RUN_FAILURE", message="worker died"), retried, state)
    assert write is not None and write.mode == ""
    assert [e.type for e in write.events] == [EventType.STAGE_PROGRESS]
    assert write.fields["status"] == "queued"
    second = RunInfo(run_id="r2", job_id="r1", url="u", partition_key="k", attempt=2)
    start = translate(_ev(4, "RUN_START"), second, state)
    assert start is not None and start.events[0].attempt == 2

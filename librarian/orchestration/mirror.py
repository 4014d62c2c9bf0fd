"""The event mirror: tails Dagster's event log (every run of ``ingest_url``) into Redis.

Reads by global storage id through Dagster's own event-log storage API, from a durable cursor
kept in Redis and moved in the same MULTI/EXEC as the writes it covers. Wakes on the
``NOTIFY run_events`` that dagster-postgres emits for every insert, with a 1 s fallback poll, so
a lost notification delays nothing for long.

Ids are allocated before commit, so id N+1 can become visible before N: events are applied in
id order only, and a missing id is waited for ``gap_wait`` seconds before it is taken as
rolled back (see :meth:`EventMirror._in_order`).

Every event a run worker never got to write (RUN_FAILURE after a killed worker, written by the
code server or by run monitoring) is in the same log, so crashed runs end ``failed`` here too.
This module imports Dagster: it runs on the orchestration side, never in the API.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from librarian.errors import ErrorCode
from librarian.jobs.events import JobError, JobStatus
from librarian.jobs.store import MirrorJobStore, MirrorWrite
from librarian.orchestration.translation import JobState, RunInfo, SourceEvent, translate
from librarian.runs import JOB_NAME, Tag, read_progress, url_from_run_config

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from dagster._core.events.log import EventLogEntry

log = logging.getLogger("librarian.orchestration.mirror")
RECONCILE_SECONDS = 30.0
STATUS_WAIT = 10.0
MAX_BACKOFF = 15.0


class EventMirror:
    def __init__(self, instance: DagsterInstance, store: MirrorJobStore, *,
                 job_name: str = JOB_NAME, batch: int = 500, gap_wait: float = 2.0) -> None:
        self.instance = instance
        self.store = store
        self.job_name = job_name
        self.batch = batch
        self.gap_wait = gap_wait
        # Read from Redis now if it answers, else on the first pass: a mirror started while
        # Redis restarts waits for it instead of failing.
        self.cursor = 0
        self._cursor_known = False
        with contextlib.suppress(RedisError):
            self.cursor = store.cursor()
            self._cursor_known = True
        self._gap_since: dict[int, float] = {}
        self._runs: OrderedDict[str, RunInfo | None] = OrderedDict()
        self._states: OrderedDict[str, JobState] = OrderedDict()
        self.applied = 0
        self.last_lag_ms: float | None = None

    # -- one pass --------------------------------------------------------------------------------

    def drain(self) -> int:
        """Mirror every event above the cursor that can be applied in order; return how many."""
        stored = self.store.cursor()
        if not self._cursor_known:
            self.cursor = stored
            self._cursor_known = True
        elif stored < self.cursor:
            # Redis lost writes (restarted from an older snapshot, or flushed): what it holds
            # is consistent up to its own cursor, which moves with the writes. Replay from there
            # (the replay guard skips what it still has); cached job states may be ahead of it.
            log.warning("Redis holds the mirror's cursor at %s, behind %s: it lost writes; "
                        "replaying from there", stored, self.cursor)
            self.cursor = stored
            self._states.clear()
        total = 0
        while True:
            entries = self.instance.event_log_storage.get_logs_for_all_runs_by_log_id(
                after_cursor=self.cursor, limit=self.batch)
            ready, cursor = self._in_order(sorted(entries), time.monotonic())
            if cursor == self.cursor:
                return total
            writes = [w for sid in ready if (w := self._translate(sid, entries[sid]))]
            # The cursor moves only once the writes it covers are in Redis: a failed apply
            # leaves it where it was, and the next pass reads the same events again.
            newest = entries[ready[-1]].timestamp if ready else time.time()
            self.last_lag_ms = max(0.0, (time.time() - newest) * 1000)
            self.store.apply(writes, cursor, stats={
                "lag_ms": round(self.last_lag_ms, 1), "written_at": round(time.time(), 3)})
            self.cursor = cursor
            self.applied += len(writes)
            total += len(ready)
            if len(entries) < self.batch or len(ready) < len(entries):
                return total

    def _in_order(self, ids: list[int], now: float) -> tuple[list[int], int]:
        """The ids that may be applied now, in order, and the cursor after them.

        Events are applied strictly in storage-id order, so the replay guard (an event older
        than the job's last applied one is a replay) never drops a late commit. An id missing
        below a visible one is waited for ``gap_wait`` seconds, then taken as rolled back.
        """
        cursor = self.cursor
        ready: list[int] = []
        for sid in ids:
            while cursor + 1 < sid:
                missing = cursor + 1
                first = self._gap_since.setdefault(missing, now)
                if now - first < self.gap_wait:
                    return ready, cursor
                log.info("event id %s never appeared; skipping it", missing)
                del self._gap_since[missing]
                cursor = missing
            self._gap_since.pop(sid, None)
            ready.append(sid)
            cursor = sid
        return ready, cursor

    def _translate(self, storage_id: int, entry: EventLogEntry) -> MirrorWrite | None:
        run = self._run(entry.run_id)
        if run is None:
            return None
        source = adapt(storage_id, entry)
        state = self._state(run.job_id)
        if source.event_type == "RUN_FAILURE":
            run = replace(run, will_retry=self._will_retry(entry))
        elif state.retrying and source.step_key is None and self._retry_abandoned(entry.run_id):
            # Dagster said it would retry the run, then could not launch the retry (it marks
            # the run will_retry=false and logs why): the job ends here, with that reason.
            source = replace(source, event_type="RUN_FAILURE",
                             message=f"the run failed and Dagster could not retry it:"
                                     f" {source.message}")
            run = replace(run, will_retry=False)
        return translate(source, run, state)

    def _retry_abandoned(self, run_id: str) -> bool:
        dagster_run = self.instance.get_run_by_id(run_id)
        return dagster_run is not None and dagster_run.tags.get(Tag.WILL_RETRY) == "false"

    def _run(self, run_id: str) -> RunInfo | None:
        if run_id in self._runs:
            self._runs.move_to_end(run_id)
            return self._runs[run_id]
        dagster_run = self.instance.get_run_by_id(run_id)
        info = None
        if dagster_run is not None and dagster_run.job_name == self.job_name:
            info = RunInfo.from_tags(run_id, dict(dagster_run.tags),
                                     url_from_run_config(dagster_run.run_config))
        self._runs[run_id] = info
        if len(self._runs) > 10_000:
            self._runs.popitem(last=False)
        return info

    def _will_retry(self, entry: EventLogEntry) -> bool:
        """Whether Dagster re-executes this failed run: its ``dagster/will_retry`` tag, or, when
        the tag is not written yet (Dagster adds it just after storing RUN_FAILURE and the
        run's status), the same decision taken by Dagster's own rule on the same facts. So a
        retried run never ends its job's stream, live or rebuilt, however loaded the host."""
        if not self.instance.run_retries_enabled:
            return False
        from dagster._core.execution.retries import auto_reexecution_should_retry_run
        from dagster._core.storage.dagster_run import DagsterRunStatus

        event = entry.dagster_event
        reason = getattr(event.event_specific_data, "failure_reason", None) if event else None
        deadline = time.monotonic() + STATUS_WAIT
        while True:
            dagster_run = self.instance.get_run_by_id(entry.run_id)
            if dagster_run is None:
                return False
            tag = dagster_run.tags.get(Tag.WILL_RETRY)
            if tag is not None:
                return tag == "true"
            # The rule reads the run's status, which the writer of RUN_FAILURE sets right after
            # storing the event: wait for it rather than decide on a status still STARTED.
            if dagster_run.status == DagsterRunStatus.FAILURE or time.monotonic() > deadline:
                return bool(auto_reexecution_should_retry_run(self.instance, dagster_run,
                                                              reason))
            time.sleep(0.02)

    def _state(self, job_id: str) -> JobState:
        state = self._states.get(job_id)
        if state is None:
            # After a restart the record holds what earlier batches learned (result, error).
            record = self.store.record(job_id)
            # A job back in the queue after it had started is waiting for a retry of its run.
            retrying = bool(record and record.status == JobStatus.QUEUED and record.started_at)
            state = JobState(stage=record.stage if record else None,
                             result=record.result if record else None,
                             error=record.error if record else None, retrying=retrying)
            self._states[job_id] = state
            if len(self._states) > 10_000:
                self._states.popitem(last=False)
        return state

    def reconcile(self) -> int:
        """Bring jobs Redis still shows as unfinished up to date with their Dagster runs.

        Covers records written while the mirror was behind or after Redis lost data: the run's
        events are re-read and applied; the replay guard skips what the record already has.
        """
        repaired = 0
        for job_id in self.store.non_terminal_job_ids():
            record = self.store.record(job_id)
            run_id = record.run_id if record and record.run_id else job_id
            dagster_run = self.instance.get_run_by_id(run_id)
            if dagster_run is None or not dagster_run.is_finished:
                continue
            run = self._run(run_id)
            if run is None:
                continue
            writes = []
            for rec in self.instance.get_records_for_run(run_id, limit=10_000).records:
                write = self._translate(rec.storage_id, rec.event_log_entry)
                if write is not None:
                    writes.append(write)
            self.store.apply(writes, self.cursor)
            repaired += 1
        return repaired

    # -- the process -----------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, listen_dsn: str | None = None,
                    poll_seconds: float = 1.0) -> None:
        """Mirror until ``stop`` is set. A database or Redis that goes away costs a pass, not
        the process: passes are retried with backoff (up to ``MAX_BACKOFF`` s), the listener
        is opened again once the database is back, and polling covers the time between."""
        listener = _Listener(listen_dsn) if listen_dsn else None
        log.info("mirror started at cursor %s", self.cursor)
        next_reconcile = 0.0
        failures = 0
        while not stop.is_set():
            try:
                self.drain()
                if time.monotonic() >= next_reconcile:
                    if repaired := self.reconcile():
                        log.info("reconciled %s unfinished jobs with their runs", repaired)
                    next_reconcile = time.monotonic() + RECONCILE_SECONDS
            except Exception as exc:  # storage or Redis away: retry, never die
                failures += 1
                wait = min(MAX_BACKOFF, poll_seconds * 2 ** min(failures - 1, 5))
                log.warning("mirror pass failed (%s: %s); retrying in %.0f s",
                            type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc)
                            else "", wait)
                stop.wait(wait)
                continue
            if failures:
                log.info("mirror passes succeed again after %s failures", failures)
                failures = 0
            if listener is None or not listener.wait(poll_seconds):
                stop.wait(poll_seconds)
        if listener is not None:
            listener.close()
        log.info("mirror stopped at cursor %s", self.cursor)


class _Listener:
    """``LISTEN run_events`` on its own connection, reopened after the database comes back."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a notification; False when there is no listener now (the
        caller then polls)."""
        import psycopg2

        try:
            if self.conn is None:
                self.conn = _listen(self.dsn)
            ready, _, _ = select.select([self.conn], [], [], seconds)
            if ready:
                self.conn.poll()
                self.conn.notifies.clear()
            return True
        except (psycopg2.Error, OSError, ValueError) as exc:
            log.warning("event notifications lost (%s); polling until the database is back",
                        type(exc).__name__)
            self.close()
            return False

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


def adapt(storage_id: int, entry: EventLogEntry) -> SourceEvent:
    """A Dagster event-log entry as the plain :class:`SourceEvent` the translation reads."""
    event = entry.dagster_event
    # The stored values are legacy names (PIPELINE_START…); the enum names are the current ones.
    kind = event.event_type.name if event is not None else None
    duration = None
    failure = None
    materialization = None
    progress = None
    message = entry.user_message or ""
    if event is not None:
        message = event.message or message
        data: Any = event.event_specific_data
        if kind == "STEP_SUCCESS":
            duration = int(getattr(data, "duration_ms", 0) or 0)
        elif kind == "STEP_FAILURE" and data is not None:
            failure = _failure(entry.step_key or "run", data)
        elif kind == "ASSET_MATERIALIZATION":
            mat = entry.asset_materialization
            if mat is not None:
                materialization = _values(mat.metadata)
        elif kind == "ENGINE_EVENT":
            progress = read_progress(_values(getattr(data, "metadata", None)))
    return SourceEvent(storage_id=storage_id, run_id=entry.run_id, timestamp=entry.timestamp,
                       event_type=kind, step_key=entry.step_key, message=message,
                       duration_ms=duration, failure=failure, materialization=materialization,
                       progress=progress)


def _values(metadata: Any) -> dict[str, Any]:
    """Dagster metadata as plain values."""
    return {k: getattr(v, "value", v) for k, v in (metadata or {}).items()}


def _failure(stage: str, data: Any) -> JobError:
    user = getattr(data, "user_failure_data", None)
    if user is not None:
        meta = _values(user.metadata)
        return JobError(stage=str(meta.get("stage") or stage),
                        code=str(meta.get("code") or ErrorCode.INTERNAL_ERROR),
                        message=user.description or "failed")
    error = getattr(data, "error", None)
    text = (getattr(error, "message", "") or "step failed").strip().splitlines()
    return JobError(stage=stage, code=ErrorCode.INTERNAL_ERROR,
                    message=text[0][:500] if text else "")


def _listen(dsn: str) -> Any:
    import psycopg2
    import psycopg2.extensions

    conn = psycopg2.connect(dsn)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    conn.cursor().execute("LISTEN run_events;")
    return conn


def libpq_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg2://…`` → ``postgresql://…`` for a plain libpq connection."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"

"""``GET /api/v1/stream/{job_id}``: the job's events as Server-Sent Events.

Replays the job's stream from the start (or after ``Last-Event-ID``), then follows it until the
terminal event and closes. Event ids are the Redis stream entry ids, so a reconnecting client
resumes exactly where it left off. Idle streams get a ``heartbeat`` event.

Each stream holds a slot of :mod:`librarian_api.stream_slots` while it runs: over the caller's
cap it is refused with ``429 too_many_streams``, over the process's with ``503 streams_full``,
before its first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from librarian.errors import ErrorCode
from librarian.jobs.events import EventType, JobError, JobEvent, JobRecord, JobStatus
from librarian_api.callers import caller_key
from librarian_api.errors import ApiError
from librarian_api.params import job_or_404
from librarian_api.state import AppState, app_state
from librarian_api.stream_slots import HeldStream

# Both parts of a stream entry id are 64-bit numbers: longer digits are no id Redis can read.
_ENTRY_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")  # not \d: that takes any script's digits
# Streams are woken by the event hub, which also wakes every stream after re-subscribing (the
# only time a publish can be missed); this poll is a last safety net. Short polls cost: 5,000
# streams polling every 5 s made 2,000 Redis calls/s and put p95 delivery at 6 s.
POLL_SECONDS = 60.0


async def stream(request: Request) -> Response:
    state = app_state(request)
    job_id = request.path_params["job_id"]
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if last and not _ENTRY_ID.fullmatch(last):
        raise ApiError(ErrorCode.INVALID_LAST_EVENT_ID, "Last-Event-ID must look like 123-0")
    record = await job_or_404(state, job_id)
    after = last or "0-0"
    finished = record.status.is_terminal
    in_redis = await state.jobs.record(job_id) is not None
    if finished and (not in_redis or not await state.jobs.events_after(job_id, after, count=1)):
        if last:
            # A client reconnecting after the terminal event: 204 tells EventSource to stop.
            return Response(status_code=204)
        if not in_redis:
            # Redis lost the job; Dagster knows how it ended: say that, once.
            return EventSourceResponse(_from_dagster(record))
    shutdown = anyio.Event()
    return HeldStream(EventSourceResponse(
        _events(state, job_id, after, shutdown),
        shutdown_event=shutdown, shutdown_grace_period=2.0,
        ping=state.settings.sse_heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(
            event="heartbeat", data=json.dumps({"job_id": job_id, "ts": time.time()})),
        send_timeout=30,
    ), state.streams, caller_key(request))


async def _from_dagster(record: JobRecord) -> AsyncIterator[ServerSentEvent]:
    kind = {JobStatus.COMPLETED: EventType.JOB_COMPLETED, JobStatus.FAILED: EventType.ERROR,
            JobStatus.CANCELLED: EventType.JOB_CANCELLED}[record.status]
    error = (JobError(stage="run", code=ErrorCode.RUN_FAILED, message=record.message or "")
             if kind == EventType.ERROR else None)
    event = JobEvent(type=kind, job_id=record.job_id, message=record.message, error=error)
    yield ServerSentEvent(id="0-1", event=kind.value, data=event.to_json())


async def _events(state: AppState, job_id: str, after: str, shutdown: anyio.Event
                  ) -> AsyncIterator[ServerSentEvent]:
    with state.hub.waiter(job_id) as wake:
        async def relay_shutdown() -> None:
            await shutdown.wait()
            wake.set()

        relay = asyncio.create_task(relay_shutdown())
        try:
            async for event in _follow(state, job_id, after, wake, shutdown):
                yield event
        finally:
            relay.cancel()


async def _follow(state: AppState, job_id: str, after: str, wake: asyncio.Event,
                  shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    while True:
        # Clear before reading: a publish that lands after the read still wakes us.
        wake.clear()
        entries = await state.jobs.events_after(job_id, after)
        for entry_id, event in entries:
            after = entry_id
            yield ServerSentEvent(id=entry_id, event=event.type.value, data=event.to_json())
            if event.is_terminal:
                return
        if entries:
            continue
        record = await state.jobs.record(job_id)
        if record is None or record.status.is_terminal:
            # Finished (or expired) with nothing left to send: end the stream.
            if not await state.jobs.events_after(job_id, after, count=1):
                return
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), POLL_SECONDS)
        if shutdown.is_set():
            yield ServerSentEvent(event="server_shutdown", data=json.dumps(
                {"job_id": job_id, "last_event_id": after,
                 "message": "the server is restarting; reconnect with Last-Event-ID"}))
            return

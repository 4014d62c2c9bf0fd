"""``GET /api/v1/stream/{job_id}``: the job's events as Server-Sent Events.

Replays the job's stream from the start (or after ``Last-Event-ID``), then follows it until the
terminal event and closes. Event ids are the Redis stream entry ids, so a reconnecting client
resumes exactly where it left off. Idle streams get a ``heartbeat`` event.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from librarian_api.errors import ApiError
from librarian_api.ingest import find_job
from librarian_api.state import AppState, app_state

_ENTRY_ID = re.compile(r"^\d+-\d+$")
BLOCK_MS = 5000


async def stream(request: Request) -> EventSourceResponse:
    state = app_state(request)
    job_id = request.path_params["job_id"]
    last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if last and not _ENTRY_ID.match(last):
        raise ApiError(400, "invalid_last_event_id", "Last-Event-ID must look like 123-0")
    if await find_job(state, job_id) is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return EventSourceResponse(
        _events(state, request, job_id, last or "0-0"),
        ping=state.settings.sse_heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(
            event="heartbeat", data=json.dumps({"job_id": job_id, "ts": time.time()})),
        send_timeout=30,
    )


async def _events(state: AppState, request: Request, job_id: str, after: str
                  ) -> AsyncIterator[ServerSentEvent]:
    while True:
        entries = await state.jobs.wait_events(job_id, after, block_ms=BLOCK_MS)
        for entry_id, event in entries:
            after = entry_id
            yield ServerSentEvent(id=entry_id, event=event.type.value, data=event.to_json())
            if event.is_terminal:
                return
        if entries:
            continue
        if await request.is_disconnected():
            return
        record = await state.jobs.record(job_id)
        if record is None or (record.status.is_terminal and not
                              await state.jobs.events_after(job_id, after, count=1)):
            # Finished (or expired) with nothing left to send: end the stream.
            return

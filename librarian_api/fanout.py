"""One Redis subscriber per API process, waking every open stream whose job has new events.

The mirror publishes a job id on ``{prefix}events`` after each write. Streams do not hold a
Redis connection while they wait: each registers a wake-up for its job here, and reads its
job's Redis stream (a short, non-blocking XRANGE on the shared pool) only when woken — or every
after the subscription is re-established, because pub/sub does not redeliver what a reconnecting
subscriber missed. Nothing is buffered per client: a stream's position is its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("librarian.api.fanout")


class EventHub:
    def __init__(self, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="librarian-event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.wake_all()

    @contextlib.contextmanager
    def waiter(self, job_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def wake_all(self) -> None:
        for waiters in list(self._waiters.values()):
            for event in waiters:
                event.set()

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                # Anything published while we were (re)connecting was missed: re-read all.
                self.wake_all()
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        self.wake(data.decode())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("event subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

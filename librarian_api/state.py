"""What the handlers share, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

from librarian.embedding.model import Embedder
from librarian.jobs.store import ApiJobStore
from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from librarian.storage.objects import ObjectStore
from librarian.storage.vectors import VectorStore
from librarian_api.credentials import SessionStore, TokenCache
from librarian_api.dagster_client import DagsterSubmitter
from librarian_api.fanout import EventHub
from librarian_api.rate_limits import RateLimits
from librarian_api.stream_slots import StreamSlots
from librarian_api.submitter import Submitter

T = TypeVar("T")


class UnknownJobs:
    """Lookups in Dagster of job ids Redis does not hold, kept cheap: at most ``slots`` at a
    time (a flood of unknown ids must not take the threads health and submissions need), and an
    id Dagster does not know as a job is remembered for ``ttl`` seconds (``size`` ids at most).
    """

    def __init__(self, slots: int = 2, ttl: float = 60.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._slots = slots
        self._semaphore: asyncio.Semaphore | None = None
        self._misses: OrderedDict[str, float] = OrderedDict()

    async def lookup(self, job_id: str, fetch: Callable[[], Awaitable[T | None]]
                     ) -> T | None:
        now = time.monotonic()
        expires = self._misses.get(job_id)
        if expires is not None and expires > now:
            return None
        if self._semaphore is None:  # created in the running loop
            self._semaphore = asyncio.Semaphore(self._slots)
        async with self._semaphore:
            status = await fetch()
        if status is None:
            self._misses[job_id] = now + self.ttl
            self._misses.move_to_end(job_id)
            while len(self._misses) > self.size:
                self._misses.popitem(last=False)
        else:
            self._misses.pop(job_id, None)
        return status


@dataclass
class AppState:
    settings: Settings
    jobs: ApiJobStore
    catalog: Catalog
    dagster: DagsterSubmitter
    objects: ObjectStore
    vectors: VectorStore
    hub: EventHub
    submitter: Submitter
    tokens: TokenCache
    sessions: SessionStore
    rate_limits: RateLimits
    streams: StreamSlots
    unknown_jobs: UnknownJobs = field(default_factory=UnknownJobs)
    _embedder: Embedder | None = None

    @property
    def embedder(self) -> Embedder:
        # Loaded on the first search, not at start-up: most API processes never need it.
        if self._embedder is None:
            s = self.settings
            # The pipeline's model, so queries land in the collection its vectors went to. A
            # search waits seconds, not a minute, for a wedged service before embedding itself.
            self._embedder = Embedder.from_settings(s, service=s.embedding_socket,
                                                    service_timeout=5.0)
        return self._embedder


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.librarian
    return state

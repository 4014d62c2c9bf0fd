"""What the handlers share, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from librarian.embedding.model import Embedder
from librarian.jobs.store import ApiJobStore
from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from librarian.storage.objects import ObjectStore
from librarian.storage.vectors import VectorStore
from librarian_api.dagster_client import DagsterSubmitter
from librarian_api.fanout import EventHub


@dataclass
class AppState:
    settings: Settings
    jobs: ApiJobStore
    catalog: Catalog
    dagster: DagsterSubmitter
    objects: ObjectStore
    vectors: VectorStore
    hub: EventHub
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

"""Every external system the ops touch, behind one resource each, configured by the environment.

The resources have no config fields. Run config is whatever a person can type into the
launchpad or send in a GraphQL ``launchRun``; if the SSRF allow-list, the fetch limits, where
files, vectors and catalog rows go, or a database URL could be set there, anyone allowed to
launch a run could point the fetcher at the internal network or the stores elsewhere. So each
resource reads :class:`~librarian.settings.Settings` (the ``LIBRARIAN_*`` environment of the
process that runs it) when a run sets it up, and Dagster refuses a run whose config names any
field under a resource (``{ }`` is their whole schema). Nothing secret is ever a resource value,
so the Dagster UI has none to show.

Clients are built by the same functions the API uses (:mod:`librarian.storage.stores`,
:meth:`Embedder.from_settings`, :meth:`FetchLimits.from_settings`), once per run-worker process,
and nothing here opens a connection at import time.
"""

from __future__ import annotations

from functools import cache

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from librarian.content.fetch import Fetcher, FetchLimits
from librarian.embedding.model import Embedder
from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from librarian.storage.objects import ObjectStore
from librarian.storage.stores import catalog_for, objects_for, vectors_for
from librarian.storage.vectors import VectorStore


class SettingsResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    """A resource without config: its values are the settings of the process that runs it."""

    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Read when the run sets its resources up, so a bad variable fails the run at its
        # start rather than halfway through an op.
        self._settings = Settings()

    def settings(self) -> Settings:
        if self._settings is None:  # used outside a run
            self._settings = Settings()
        return self._settings


class FetcherResource(SettingsResource):
    def fetcher(self) -> Fetcher:
        return Fetcher(FetchLimits.from_settings(self.settings()))

    def pdf_max_pages(self) -> int:
        return self.settings().pdf_max_pages


class EmbedderResource(SettingsResource):
    def embedder(self, threads: int = 0) -> Embedder:
        s = self.settings()
        key = (s.embedding_model_path, s.embedding_tokenizer_path, s.embedding_model_name,
               s.embedding_quantize, s.model_cache_dir, s.embedding_socket, threads)
        # One loaded model per process and model: the ONNX session is the expensive part.
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = Embedder.from_settings(s, threads=threads,
                                                     service=s.embedding_socket)
        return _EMBEDDERS[key]


_EMBEDDERS: dict[tuple[object, ...], Embedder] = {}


class CatalogResource(SettingsResource):
    def catalog(self) -> Catalog:
        return _catalog(self.settings().database_url)


@cache
def _catalog(database_url: str) -> Catalog:
    # A run worker runs one op at a time: one connection is all it needs.
    return catalog_for(Settings.model_validate({"database_url": database_url}), pool_size=1)


class ObjectStoreResource(SettingsResource):
    def store(self) -> ObjectStore:
        return objects_for(self.settings())


class VectorStoreResource(SettingsResource):
    def store(self) -> VectorStore:
        return vectors_for(self.settings())

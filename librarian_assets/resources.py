"""Every external system the ops touch, behind one resource each, configured per deployment.

A resource holds the :class:`~librarian.settings.Settings` fields its client needs and nothing
else: no defaults of its own (they are the settings'), built by ``from_settings`` in
:mod:`librarian_assets.definitions`. Secrets reach Dagster as ``EnvVar`` when they come from the
environment, so its UI never shows their values. Clients are built by the same functions the
API uses (:mod:`librarian.storage.stores`, :meth:`Embedder.from_settings`,
:meth:`FetchLimits.from_settings`), once per run-worker process, and nothing here opens a
connection at import time.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Self

from dagster import ConfigurableResource, EnvVar

from librarian.content.fetch import Fetcher, FetchLimits
from librarian.embedding.model import Embedder
from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from librarian.storage.objects import ObjectStore
from librarian.storage.stores import catalog_for, objects_for, vectors_for
from librarian.storage.vectors import VectorStore

# Settings that must not be shown in the Dagster UI.
SECRETS = frozenset({"database_url", "s3_secret_key", "qdrant_api_key"})


class SettingsResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    """A resource configured with the settings fields it declares (same names, no defaults)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            value = _plain(getattr(settings, name))
            variable = f"LIBRARIAN_{name.upper()}"
            # A secret that came from the environment goes by name, never by value.
            if name in SECRETS and value is not None and os.environ.get(variable) == value:
                values[name] = EnvVar(variable)
            else:
                values[name] = value
        return cls(**values)

    def settings(self) -> Settings:
        # Validated again (strings back to paths and secrets) at the edge of the run worker;
        # the fields this resource does not hold come from its environment, and none of its
        # clients reads them.
        return Settings.model_validate(self.model_dump())


def _plain(value: Any) -> Any:
    """A settings value as resource config: paths absolute, secrets revealed (EnvVar above)."""
    if isinstance(value, Path):
        return str(value.resolve())
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    return value


class FetcherResource(SettingsResource):
    fetch_connect_timeout: float
    fetch_read_timeout: float
    fetch_total_timeout: float
    fetch_max_bytes: int
    fetch_max_redirects: int
    fetch_user_agent: str
    fetch_allow_networks: list[str]
    fetch_respect_robots: bool
    pdf_max_pages: int

    def fetcher(self) -> Fetcher:
        return Fetcher(FetchLimits.from_settings(self.settings()))


class EmbedderResource(SettingsResource):
    data_dir: str
    embedding_model_path: str | None
    embedding_tokenizer_path: str | None
    embedding_model_name: str
    embedding_quantize: bool
    embedding_service_socket: str | None

    def embedder(self, threads: int = 0) -> Embedder:
        return _embedder(self._key(), threads)

    def _key(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)


@cache
def _embedder(config: str, threads: int) -> Embedder:
    # One loaded model per process: the ONNX session is the expensive part.
    settings = Settings.model_validate(json.loads(config))
    return Embedder.from_settings(settings, threads=threads, service=settings.embedding_socket)


class CatalogResource(SettingsResource):
    database_url: str

    def catalog(self) -> Catalog:
        return _catalog(self.database_url)


@cache
def _catalog(database_url: str) -> Catalog:
    # A run worker runs one op at a time: one connection is all it needs.
    return catalog_for(Settings.model_validate({"database_url": database_url}), pool_size=1)


class ObjectStoreResource(SettingsResource):
    data_dir: str
    s3_endpoint: str | None
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    s3_secure: bool

    def store(self) -> ObjectStore:
        return objects_for(self.settings())


class VectorStoreResource(SettingsResource):
    data_dir: str
    qdrant_url: str | None
    qdrant_api_key: str | None

    def store(self) -> VectorStore:
        return vectors_for(self.settings())

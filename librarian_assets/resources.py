"""Every external system the ops touch, behind one resource each, configured per deployment.

Clients are created per run-worker process and reused across ops of the run; nothing here opens
a connection at import time.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from dagster import ConfigurableResource

from librarian.content.fetch import USER_AGENT, Fetcher, FetchLimits
from librarian.embedding.model import Embedder
from librarian.storage.catalog import Catalog
from librarian.storage.objects import LocalObjectStore, MinioObjectStore, ObjectStore
from librarian.storage.vectors import VectorStore


class FetcherResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = USER_AGENT
    allow_networks: list[str] = []
    respect_robots: bool = False
    pdf_max_pages: int = 300

    def fetcher(self) -> Fetcher:
        fields = self.model_dump(exclude={"pdf_max_pages"})
        return Fetcher(FetchLimits(**{**fields, "allow_networks": tuple(self.allow_networks)}))


class EmbedderResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    model_name: str = "all-MiniLM-L6-v2-int8"
    model_path: str | None = None
    tokenizer_path: str | None = None
    cache_dir: str | None = None
    quantize: bool = False
    service_socket: str | None = None

    def embedder(self, threads: int = 0) -> Embedder:
        return _embedder(self.model_name, self.model_path, self.tokenizer_path, threads,
                         self.cache_dir, self.quantize, self.service_socket)


@cache
def _embedder(name: str, model_path: str | None, tokenizer_path: str | None,
              threads: int, cache_dir: str | None, quantize: bool,
              service_socket: str | None) -> Embedder:
    # One loaded model per process: the ONNX session is the expensive part.
    return Embedder(Path(model_path) if model_path else None,
                    Path(tokenizer_path) if tokenizer_path else None, name=name,
                    threads=threads, cache_dir=Path(cache_dir) if cache_dir else None,
                    quantize=quantize,
                    service=Path(service_socket) if service_socket else None)


class CatalogResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    database_url: str

    def catalog(self) -> Catalog:
        return _catalog(self.database_url)


@cache
def _catalog(database_url: str) -> Catalog:
    return Catalog(database_url, pool_size=1)


class ObjectStoreResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    local_path: str | None = None
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    bucket: str = "librarian"
    secure: bool = False

    def store(self) -> ObjectStore:
        if self.endpoint:
            return MinioObjectStore(self.endpoint, self.access_key or "", self.secret_key or "",
                                    self.bucket, self.secure)
        if not self.local_path:
            raise ValueError("object store needs local_path or endpoint")
        return LocalObjectStore(Path(self.local_path))


class VectorStoreResource(ConfigurableResource):  # type: ignore[misc,type-arg]
    url: str | None = None
    path: str | None = None
    api_key: str | None = None
    collection_prefix: str = ""

    def store(self) -> VectorStore:
        return VectorStore(url=self.url, path=Path(self.path) if self.path else None,
                           api_key=self.api_key, collection_prefix=self.collection_prefix)

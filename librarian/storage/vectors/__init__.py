"""Chunk vectors in Qdrant: a server by URL, or an embedded engine under a folder.

:class:`VectorStore` is the one interface; it checks its arguments, hands the work to an engine
(:class:`~librarian.storage.vectors.base.VectorEngine`) and turns the engine's failures into a
:class:`~librarian.errors.StorageError`. Three engines behind it:

* ``url=``: a Qdrant server through qdrant-client (:mod:`.server`).
* ``path=`` (default engine ``"edge"``): Qdrant Edge, the Qdrant engine in process
  (:mod:`.edge`).
* ``path=`` with ``engine="local"``: qdrant-client's local mode (:mod:`.server`), the slower
  former default, kept as a fallback and a baseline.

The data model, the collection naming and search validation are in :mod:`.base`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from librarian.errors import StorageError
from librarian.storage.vectors.base import (
    ChunkPoint,
    Collection,
    Filters,
    SearchMode,
    SearchRequest,
    VectorEngine,
    Version,
    check_chunks,
    collection_name,
    point_id,
    search_request,
)
from librarian.storage.vectors.edge import EdgeEngine, edge_query
from librarian.storage.vectors.server import ClientEngine, client_query

__all__ = [
    "ChunkPoint",
    "Collection",
    "Filters",
    "SearchMode",
    "SearchRequest",
    "VectorEngine",
    "VectorStore",
    "Version",
    "client_query",
    "collection_name",
    "edge_query",
    "point_id",
    "search_request",
]

T = TypeVar("T")


class VectorStore:
    """Exactly one of ``url`` (a server) or ``path`` (embedded, ``engine`` picks which).

    ``lock_timeout`` bounds the wait for an embedded store's lock; ``hold_seconds`` and
    ``max_hold_seconds`` let the edge engine keep a shard open between searches (see
    :class:`~librarian.storage.vectors.edge.EdgeEngine`)."""

    def __init__(self, *, url: str | None = None, path: Path | None = None,
                 api_key: str | None = None, collection_prefix: str = "",
                 engine: Literal["edge", "local"] = "edge", lock_timeout: float = 300.0,
                 hold_seconds: float = 0.0, max_hold_seconds: float = 2.0) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (Qdrant server) or path (embedded)")
        if engine not in ("edge", "local"):
            raise ValueError(f"unknown embedded engine {engine!r}")
        self.url = url
        self.path = path
        self.prefix = collection_prefix
        self.mode: Literal["server", "edge", "local"] = "server" if url is not None else engine
        self.engine: VectorEngine
        if path is not None and engine == "edge":
            self.engine = EdgeEngine(path, lock_timeout=lock_timeout, hold_seconds=hold_seconds,
                                     max_hold_seconds=max_hold_seconds)
        else:
            self.engine = ClientEngine(url=url, path=path, api_key=api_key,
                                       lock_timeout=lock_timeout)

    def collection(self, model: str, dimension: int) -> Collection:
        """The collection this store keeps ``model``'s vectors in."""
        return Collection(self.prefix + collection_name(model, dimension), model, dimension)

    def upsert_version(self, *, item_id: str, content_hash: str, model: str, dimension: int,
                       chunks: Sequence[ChunkPoint], payload: Mapping[str, Any]) -> int:
        """Write this version's chunks; other versions' points stay until :meth:`prune_item`."""
        return self.upsert_versions([Version(item_id, content_hash, chunks, payload)],
                                    model=model, dimension=dimension)

    def upsert_versions(self, versions: Sequence[Version], *, model: str, dimension: int
                        ) -> int:
        """Write several versions in one call (one open and one flush: bulk loads)."""
        for version in versions:
            check_chunks(version.chunks, dimension)
        collection = self.collection(model, dimension)
        self._call("write", collection, lambda: self.engine.upsert(collection, versions))
        return sum(len(v.chunks) for v in versions)

    def prune_item(self, *, item_id: str, keep_hash: str, model: str, dimension: int) -> None:
        """Drop the item's points of every version but ``keep_hash``."""
        self._delete(model, dimension, item_id, keep_hash)

    def delete_item(self, *, item_id: str, model: str, dimension: int) -> None:
        """Drop all of the item's points."""
        self._delete(model, dimension, item_id, None)

    def replace_item(self, *, item_id: str, content_hash: str, model: str, dimension: int,
                     chunks: Sequence[ChunkPoint], payload: Mapping[str, Any]) -> int:
        """Upsert this version's chunks and drop the item's other versions."""
        written = self.upsert_version(item_id=item_id, content_hash=content_hash, model=model,
                                      dimension=dimension, chunks=chunks, payload=payload)
        self.prune_item(item_id=item_id, keep_hash=content_hash, model=model,
                        dimension=dimension)
        return written

    def count_item(self, *, item_id: str, model: str, dimension: int) -> int:
        collection = self.collection(model, dimension)
        return self._call("count", collection, lambda: self.engine.count(collection, item_id))

    def search(self, *, dense: list[float] | None, sparse: tuple[list[int], list[float]] | None,
               model: str, dimension: int, limit: int = 10, mode: SearchMode = "hybrid",
               filters: Filters | None = None, prefetch_limit: int = 100,
               ) -> list[dict[str, Any]]:
        """Hits best first, each ``{"score": ..., **payload}``.

        ``filters`` are exact matches on payload keys, a list meaning any of its values, e.g.
        ``{"tier": ["A", "B"], "language": "en"}``. Hybrid prefetches ``prefetch_limit`` dense
        and sparse candidates and fuses them by reciprocal rank (k=60); its scores are RRF
        scores, not similarities.
        """
        request = search_request(dense=dense, sparse=sparse, dimension=dimension, limit=limit,
                                 mode=mode, filters=filters, prefetch_limit=prefetch_limit)
        if request is None:
            return []
        collection = self.collection(model, dimension)
        return self._call("search", collection,
                          lambda: self.engine.search(collection, request))

    def release(self) -> None:
        """Close whatever the engine holds open between searches (at shutdown)."""
        self.engine.release()

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A qdrant-client for the server or local mode (the edge engine has none)."""
        if not isinstance(self.engine, ClientEngine):
            raise ValueError("the edge engine is not reached through qdrant-client")
        with self.engine.client() as qc:
            yield qc

    def _delete(self, model: str, dimension: int, item_id: str, keep_hash: str | None) -> None:
        collection = self.collection(model, dimension)
        self._call("delete", collection,
                   lambda: self.engine.delete(collection, item_id, keep_hash))

    def _call(self, action: str, collection: Collection, work: Callable[[], T]) -> T:
        """``work``, with the engine's own error types (transport, engine, ValueError) turned
        into a StorageError that names the action and the collection."""
        try:
            return work()
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(self._failure(action, collection, exc)) from exc

    def _failure(self, what: str, collection: Collection, exc: Exception) -> str:
        where = self.url if self.url is not None else f"{self.path} ({self.mode})"
        return (f"vector store {what} failed for collection {collection.name} at {where}:"
                f" {exc}")

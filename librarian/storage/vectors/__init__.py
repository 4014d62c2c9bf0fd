"""Chunk vectors in Qdrant: a server by URL, or an embedded engine under a folder.

One collection per embedding model and dimension (both part of the collection name and recorded
beside the data), one point per chunk with two named vectors: ``dense`` (cosine) and ``bm25``
(sparse, Qdrant's IDF modifier: documents carry BM25 term-frequency weights from
:mod:`librarian.embedding.sparse`, a query carries 1.0 per term, and IDF is computed at query
time). Point
ids derive from the item, content hash and chunk index, so re-loading a version overwrites instead
of duplicating. Searches are dense, sparse, or hybrid (both prefetched, fused by RRF), with exact
payload filters.

Three engines behind one interface:

* ``url=``: a Qdrant server through qdrant-client (payload indexes on the filtered fields).
* ``path=`` (default engine ``"edge"``): Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in
  process. Layout under ``path``::

      <collection>.lock             flock: one process at a time opens the shard
      <collection>/collection.json  model, dimension, vector names (written before it appears)
      <collection>/shard/           the EdgeShard directory (segments, WAL, edge_config.json)

  Run workers and the API are separate processes, and a shard can be open in only one of them:
  loading writes into the shard's files and takes the WAL's own lock (a second open fails with
  ``WouldBlock``), so readers cannot share. Every call therefore takes the collection's exclusive
  lock, loads the shard, works, flushes after writes, and closes. A new collection is built in a
  hidden folder and renamed into place, so no process ever opens a half-created shard, and a
  writer killed mid-update leaves a WAL that the next load replays. Writes end with
  ``optimize()``: a no-op until the appendable segment passes the indexing threshold, then it
  builds the HNSW index (seconds, under the lock), which keeps later loads and searches fast.
* ``path=`` with ``engine="local"``: qdrant-client's local mode, the slower former default, kept
  as a fallback and a baseline (the whole folder under one exclusive lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from librarian.errors import StorageError

if TYPE_CHECKING:
    from qdrant_edge import EdgeShard

log = logging.getLogger(__name__)
T = TypeVar("T")

POINT_NAMESPACE = uuid.UUID("0b4d3c8e-2a61-4a8f-8c35-5d7e9f1a2b3c")
DENSE = "dense"
SPARSE = "bm25"
RRF_K = 60
# Keyword payload indexes (server and edge; qdrant-client's local mode has none).
INDEXED_FIELDS = ("item_id", "tier", "language", "domain", "page_type")
EDGE_FORMAT = 1

SearchMode = Literal["dense", "sparse", "hybrid"]
Filters = Mapping[str, "str | Sequence[str]"]


@dataclass(frozen=True)
class ChunkPoint:
    index: int
    text: str
    heading_path: list[str]
    vector: list[float]
    sparse_indices: list[int] = field(default_factory=list)
    sparse_values: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Version:
    """One item version's chunks, as :meth:`VectorStore.upsert_versions` writes them."""

    item_id: str
    content_hash: str
    chunks: Sequence[ChunkPoint]
    payload: Mapping[str, Any]


def collection_name(model: str, dimension: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"chunks_{model}_{dimension}")


def point_id(item_id: str, content_hash: str, index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{item_id}:{content_hash}:{index}"))


def _chunk_payload(item_id: str, content_hash: str, chunk: ChunkPoint,
                   payload: Mapping[str, Any]) -> dict[str, Any]:
    return {**payload, "item_id": item_id, "content_hash": content_hash,
            "chunk_index": chunk.index, "text": chunk.text, "heading_path": chunk.heading_path}


def _check_chunks(chunks: Sequence[ChunkPoint], dimension: int) -> None:
    for c in chunks:
        if len(c.vector) != dimension:
            raise ValueError(f"chunk {c.index}: dense vector has {len(c.vector)} dimensions,"
                             f" the collection {dimension}")
        if len(c.sparse_indices) != len(c.sparse_values):
            raise ValueError(f"chunk {c.index}: {len(c.sparse_indices)} sparse indices but"
                             f" {len(c.sparse_values)} values")


def _query_plan(dense: Sequence[float] | None, sparse: tuple[Sequence[int], Sequence[float]] | None,
                mode: SearchMode, dimension: int) -> tuple[bool, bool]:
    """Which of the dense and sparse queries to run. Hybrid with one side missing or empty (a
    query of stopwords only) runs the other side alone."""
    if mode not in ("dense", "sparse", "hybrid"):
        raise ValueError(f"unknown search mode {mode!r}")
    if dense is not None and len(dense) != dimension:
        raise ValueError(f"query vector has {len(dense)} dimensions, the collection {dimension}")
    if sparse is not None and len(sparse[0]) != len(sparse[1]):
        raise ValueError("sparse query: indices and values differ in length")
    has_dense = dense is not None
    has_sparse = sparse is not None and len(sparse[0]) > 0
    if mode == "dense" and not has_dense:
        raise ValueError("dense search needs a dense query vector")
    if mode == "sparse" and sparse is None:
        raise ValueError("sparse search needs a sparse query vector")
    if mode == "hybrid" and dense is None and sparse is None:
        raise ValueError("hybrid search needs a dense or a sparse query vector")
    return has_dense and mode != "sparse", has_sparse and mode != "dense"


def _filter_items(filters: Filters | None) -> list[tuple[str, str | list[str]]] | None:
    """Normalized filters, or None when a filter cannot match anything (an empty list)."""
    out: list[tuple[str, str | list[str]]] = []
    for key, value in (filters or {}).items():
        if isinstance(value, str):
            out.append((key, value))
        else:
            values = [str(v) for v in value]
            if not values:
                return None
            out.append((key, values[0] if len(values) == 1 else values))
    return out


def _hits(points: Sequence[Any]) -> list[dict[str, Any]]:
    hits = [{"score": float(p.score),
             **{k: v for k, v in (p.payload or {}).items() if k != "score"}} for p in points]
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits


class VectorStore:
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
        self._api_key = api_key
        self.prefix = collection_prefix
        self.mode: Literal["server", "edge", "local"] = "server" if url is not None else engine
        self.lock_timeout = lock_timeout
        # Searches may keep an embedded shard open for ``hold_seconds`` after the last one
        # (never longer than ``max_hold_seconds`` in a row): opening costs ~70–90 ms, a query
        # 1–4 ms. Writers in other processes wait at most that long for the lock.
        self.hold_seconds = hold_seconds
        self.max_hold_seconds = max_hold_seconds
        self._held: dict[Path, _HeldShard] = {}
        self._held_lock = threading.Lock()

    def _collection(self, model: str, dimension: int) -> str:
        return self.prefix + collection_name(model, dimension)

    # -- public interface ---------------------------------------------------------------------

    def upsert_version(self, *, item_id: str, content_hash: str, model: str, dimension: int,
                       chunks: Sequence[ChunkPoint], payload: Mapping[str, Any]) -> int:
        """Write this version's chunks; other versions' points stay until :meth:`prune_item`."""
        return self.upsert_versions([Version(item_id, content_hash, chunks, payload)],
                                    model=model, dimension=dimension)

    def upsert_versions(self, versions: Sequence[Version], *, model: str, dimension: int
                        ) -> int:
        """Write several versions in one call (one open and one flush: bulk loads)."""
        for version in versions:
            _check_chunks(version.chunks, dimension)
        self._call("write", model, dimension,
                   lambda: self._edge_upsert(model, dimension, versions),
                   lambda: self._client_upsert(model, dimension, versions))
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
        return self._call("count", model, dimension,
                          lambda: self._edge_count(model, dimension, item_id),
                          lambda: self._client_count(model, dimension, item_id))

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
        return self._call("search", model, dimension,
                          lambda: self._edge_search(model, dimension, request),
                          lambda: self._client_search(model, dimension, request))

    def _delete(self, model: str, dimension: int, item_id: str, keep_hash: str | None) -> None:
        self._call("delete", model, dimension,
                   lambda: self._edge_delete(model, dimension, item_id, keep_hash),
                   lambda: self._client_delete(model, dimension, item_id, keep_hash))

    def _call(self, action: str, model: str, dimension: int, edge: Callable[[], T],
              client: Callable[[], T]) -> T:
        """The engine's implementation of ``action``; its own error types (transport, engine,
        ValueError) become a StorageError that names the action and the collection."""
        try:
            return edge() if self.mode == "edge" else client()
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(self._failure(action, model, dimension, exc)) from exc

    def _failure(self, what: str, model: str, dimension: int, exc: Exception) -> str:
        where = self.url if self.url is not None else f"{self.path} ({self.mode})"
        return (f"vector store {what} failed for collection"
                f" {self._collection(model, dimension)} at {where}: {exc}")

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, lock_path: Path) -> Iterator[None]:
        """An exclusive flock on ``lock_path``, or StorageError after ``lock_timeout``.

        Waiting is a blocking flock, not polling: a searcher that locks again right after
        unlocking would otherwise starve a polling writer. The blocking call runs in a helper
        thread so it can time out (flock belongs to the open file, not to the thread)."""
        handle = open(lock_path, "ab")  # noqa: SIM115 - closed below or by the helper
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not _wait_for_flock(handle, self.lock_timeout):
                raise StorageError(f"vector store busy: {lock_path} stayed locked for"
                                   f" {self.lock_timeout:.0f} s") from None
        except BaseException:
            handle.close()
            raise
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    # -- qdrant-client: server and local mode -------------------------------------------------

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A qdrant-client for the server or local mode (the edge engine has none)."""
        from qdrant_client import QdrantClient

        if self.url is not None:
            qc = QdrantClient(url=self.url, api_key=self._api_key, timeout=30)
            try:
                yield qc
            finally:
                qc.close()
            return
        if self.mode != "local":
            raise ValueError("the edge engine is not reached through qdrant-client")
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        with self._exclusive(self.path / ".librarian.lock"):
            qc = QdrantClient(path=str(self.path))
            try:
                yield qc
            finally:
                qc.close()

    def _client_ensure(self, qc: Any, name: str, model: str, dimension: int) -> None:
        from qdrant_client import models as qm

        if not qc.collection_exists(name):
            try:
                qc.create_collection(
                    name,
                    vectors_config={DENSE: qm.VectorParams(size=dimension,
                                                           distance=qm.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: qm.SparseVectorParams(
                        modifier=qm.Modifier.IDF)},
                    metadata={"embedding_model": model, "dimension": dimension})
            except Exception:
                if not qc.collection_exists(name):  # else another worker created it first
                    raise
        info = qc.get_collection(name)
        config = info.config
        vectors = config.params.vectors
        if not isinstance(vectors, dict) or DENSE not in vectors:
            raise StorageError(f"collection {name} predates named dense and sparse vectors:"
                               " delete it and load the items again")
        recorded = (config.metadata or {}).get("embedding_model")
        if recorded not in (None, model):
            raise StorageError(f"collection {name} holds vectors of model {recorded!r},"
                               f" not {model!r}")
        if self.mode == "server":  # local mode has no payload indexes (and warns)
            for key in INDEXED_FIELDS:
                if key not in (info.payload_schema or {}):  # also after a creator died
                    qc.create_payload_index(name, key, qm.PayloadSchemaType.KEYWORD)

    def _client_upsert(self, model: str, dimension: int, versions: Sequence[Version]) -> None:
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        points = []
        for v in versions:
            for c in v.chunks:
                vector: dict[str, Any] = {DENSE: c.vector}
                if c.sparse_indices:
                    vector[SPARSE] = qm.SparseVector(indices=c.sparse_indices,
                                                     values=c.sparse_values)
                points.append(qm.PointStruct(
                    id=point_id(v.item_id, v.content_hash, c.index), vector=vector,
                    payload=_chunk_payload(v.item_id, v.content_hash, c, v.payload)))
        with self.client() as qc:
            self._client_ensure(qc, name, model, dimension)
            if points:
                qc.upsert(name, points=points, wait=True)

    def _client_delete(self, model: str, dimension: int, item_id: str,
                       keep_hash: str | None) -> None:
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        must_not = None if keep_hash is None else qm.FieldCondition(
            key="content_hash", match=qm.MatchValue(value=keep_hash))
        with self.client() as qc:
            if not qc.collection_exists(name):
                return
            qc.delete(name, points_selector=qm.FilterSelector(filter=qm.Filter(
                must=[qm.FieldCondition(key="item_id", match=qm.MatchValue(value=item_id))],
                must_not=must_not,
            )), wait=True)

    def _client_count(self, model: str, dimension: int, item_id: str) -> int:
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        with self.client() as qc:
            if not qc.collection_exists(name):
                return 0
            return int(qc.count(name, count_filter=qm.Filter(must=[qm.FieldCondition(
                key="item_id", match=qm.MatchValue(value=item_id))]), exact=True).count)

    def _client_search(self, model: str, dimension: int, request: _Search
                       ) -> list[dict[str, Any]]:
        name = self._collection(model, dimension)
        with self.client() as qc:
            if not qc.collection_exists(name):
                return []
            return client_query(qc, name, request)

    # -- Qdrant Edge --------------------------------------------------------------------------

    def _edge_home(self, model: str, dimension: int) -> Path:
        assert self.path is not None
        return self.path / self._collection(model, dimension)

    @contextlib.contextmanager
    def _edge_shard(self, model: str, dimension: int, *, create: bool
                    ) -> Iterator[EdgeShard | None]:
        """The collection's shard, open under its lock; None if it does not exist (and
        ``create`` is false)."""
        from qdrant_edge import EdgeShard

        home = self._edge_home(model, dimension)
        if self._held:
            self.release()  # this process's own held shard would block the lock below
        if not create and not home.is_dir():  # appears by an atomic rename: safe to peek
            yield None
            return
        home.parent.mkdir(parents=True, exist_ok=True)
        with self._exclusive(home.parent / f"{home.name}.lock"):
            if not home.is_dir():
                if not create:
                    yield None
                    return
                self._edge_create(home, model, dimension)
            else:
                self._edge_check(home, model, dimension)
            started = time.perf_counter()
            shard = EdgeShard.load(str(home / "shard"))
            opened = time.perf_counter()
            try:
                yield shard
            finally:
                closing = time.perf_counter()
                shard.close()
                log.debug("edge shard %s: open %.1f ms, use %.1f ms, close %.1f ms", home.name,
                          (opened - started) * 1e3, (closing - opened) * 1e3,
                          (time.perf_counter() - closing) * 1e3)

    def _edge_create(self, home: Path, model: str, dimension: int) -> None:
        """Build the shard in a hidden folder and rename it into place (under the lock)."""
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeSparseVectorParams,
            EdgeVectorParams,
            KeywordIndexParams,
            Memory,
            Modifier,
            UpdateOperation,
        )

        for stale in home.parent.glob(f".{home.name}.creating-*"):  # a creator that died
            shutil.rmtree(stale, ignore_errors=True)
        if (home.parent / "collection" / home.name).is_dir():
            log.warning("%s holds a qdrant-client local-mode collection %s that the edge engine"
                        " does not read: load the items again, or use engine='local'",
                        home.parent, home.name)
        building = home.parent / f".{home.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        building.mkdir()
        try:
            # Cold dense vectors and keyword indexes: mapped, not read in at load. Loading is
            # paid on every call, and at 50k chunks this halves it (~70 ms instead of ~140 ms).
            config = EdgeConfig(
                vectors={DENSE: EdgeVectorParams(size=dimension, distance=Distance.Cosine,
                                                 memory=Memory.Cold)},
                sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)})
            shard = EdgeShard.create(str(building / "shard"), config)
            try:
                for key in INDEXED_FIELDS:
                    shard.update(UpdateOperation.create_field_index(
                        key, KeywordIndexParams(memory=Memory.Cold)))
                shard.flush()
            finally:
                shard.close()
            meta = {"engine": "qdrant-edge", "format": EDGE_FORMAT, "embedding_model": model,
                    "dimension": dimension, "dense": {"name": DENSE, "distance": "cosine"},
                    "sparse": {"name": SPARSE, "modifier": "idf"},
                    "payload_indexes": list(INDEXED_FIELDS)}
            (building / "collection.json").write_text(json.dumps(meta, indent=2))
            _fsync_tree(building)
            os.rename(building, home)
            _fsync_dir(home.parent)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def _edge_check(self, home: Path, model: str, dimension: int) -> None:
        try:
            meta = json.loads((home / "collection.json").read_text())
        except (OSError, ValueError) as exc:
            raise StorageError(f"vector collection {home} has no readable collection.json:"
                               f" {exc}") from exc
        if meta.get("embedding_model") != model or meta.get("dimension") != dimension:
            raise StorageError(f"vector collection {home} holds model"
                               f" {meta.get('embedding_model')!r} ({meta.get('dimension')}"
                               f" dimensions), not {model!r} ({dimension})")

    def _edge_write(self, model: str, dimension: int, operations: Sequence[Any], *,
                    create: bool) -> None:
        with self._edge_shard(model, dimension, create=create) as shard:
            if shard is None:
                return
            for operation in operations:
                shard.update(operation)
            shard.flush()
            started = time.perf_counter()
            if shard.optimize():
                shard.flush()
                log.info("edge shard %s optimized in %.1f s",
                         self._collection(model, dimension), time.perf_counter() - started)

    def _edge_upsert(self, model: str, dimension: int, versions: Sequence[Version]) -> None:
        from qdrant_edge import Point, SparseVector, UpdateOperation

        points = []
        for v in versions:
            for c in v.chunks:
                vector: dict[str, Any] = {DENSE: list(c.vector)}
                if c.sparse_indices:
                    vector[SPARSE] = SparseVector(list(c.sparse_indices),
                                                  list(c.sparse_values))
                points.append(Point(point_id(v.item_id, v.content_hash, c.index), vector,
                                    _chunk_payload(v.item_id, v.content_hash, c, v.payload)))
        # One operation: the WAL holds it whole, so a crash replays all of it or none.
        self._edge_write(model, dimension,
                         [UpdateOperation.upsert_points(points)] if points else [], create=True)

    def _edge_delete(self, model: str, dimension: int, item_id: str,
                     keep_hash: str | None) -> None:
        from qdrant_edge import FieldCondition, Filter, MatchValue, UpdateOperation

        selector = Filter(
            must=[FieldCondition("item_id", match=MatchValue(item_id))],
            must_not=None if keep_hash is None else [FieldCondition(
                "content_hash", match=MatchValue(keep_hash))])
        self._edge_write(model, dimension, [UpdateOperation.delete_points_by_filter(selector)],
                         create=False)

    def _edge_count(self, model: str, dimension: int, item_id: str) -> int:
        from qdrant_edge import CountRequest, FieldCondition, Filter, MatchValue

        with self._edge_shard(model, dimension, create=False) as shard:
            if shard is None:
                return 0
            return shard.count(CountRequest(exact=True, filter=Filter(
                must=[FieldCondition("item_id", match=MatchValue(item_id))])))

    def _edge_search(self, model: str, dimension: int, request: _Search
                     ) -> list[dict[str, Any]]:
        if self.hold_seconds <= 0:
            with self._edge_shard(model, dimension, create=False) as shard:
                if shard is None:
                    return []
                return edge_query(shard, request)
        home = self._edge_home(model, dimension)
        with self._held_lock:  # one query at a time on a held shard
            held = self._held.get(home)
            if held is None:
                stack = contextlib.ExitStack()
                shard = stack.enter_context(self._edge_shard(model, dimension, create=False))
                if shard is None:
                    stack.close()
                    return []
                held = self._held[home] = _HeldShard(shard, stack, time.monotonic())
                self._schedule_release(home)
            held.last_used = time.monotonic()
            return edge_query(held.shard, request)

    def _schedule_release(self, home: Path) -> None:
        timer = threading.Timer(min(self.hold_seconds, self.max_hold_seconds) / 2,
                                self._maybe_release, args=(home,))
        timer.daemon = True
        timer.start()

    def _maybe_release(self, home: Path) -> None:
        with self._held_lock:
            held = self._held.get(home)
            if held is None:
                return
            now = time.monotonic()
            if (now - held.last_used < self.hold_seconds
                    and now - held.opened_at < self.max_hold_seconds):
                self._schedule_release(home)
                return
            del self._held[home]
            held.stack.close()  # closes the shard and releases the lock

    def release(self) -> None:
        """Close every shard held open for searches (at shutdown)."""
        with self._held_lock:
            for held in self._held.values():
                held.stack.close()
            self._held.clear()


@dataclass
class _HeldShard:
    shard: Any
    stack: contextlib.ExitStack
    opened_at: float
    last_used: float = 0.0


@dataclass(frozen=True)
class _Search:
    dense: Sequence[float] | None
    sparse: tuple[Sequence[int], Sequence[float]] | None
    limit: int
    prefetch_limit: int
    conditions: list[tuple[str, str | list[str]]]


def edge_query(shard: EdgeShard, request: _Search) -> list[dict[str, Any]]:
    """Run one search on an open shard (also what ``bench/vector_search.py`` times)."""
    from qdrant_edge import (
        FieldCondition,
        Filter,
        Fusion,
        MatchAny,
        MatchValue,
        Prefetch,
        Query,
        QueryRequest,
        SparseVector,
    )

    flt = None
    if request.conditions:
        flt = Filter(must=[
            FieldCondition(key, match=MatchAny(value) if isinstance(value, list)
                           else MatchValue(value))
            for key, value in request.conditions])
    queries = []
    if request.dense is not None:
        queries.append(Query.Nearest(list(request.dense), using=DENSE))
    if request.sparse is not None:
        queries.append(Query.Nearest(SparseVector(list(request.sparse[0]),
                                                  list(request.sparse[1])), using=SPARSE))
    if len(queries) == 2:
        query = QueryRequest(
            limit=request.limit,
            prefetches=[Prefetch(limit=request.prefetch_limit, query=q, filter=flt)
                        for q in queries],
            query=Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub's union omits it
            filter=flt, with_payload=True)
    else:
        query = QueryRequest(limit=request.limit, query=queries[0], filter=flt,
                             with_payload=True)
    return _hits(shard.query(query))


def client_query(qc: Any, name: str, request: _Search) -> list[dict[str, Any]]:
    """Run one search through an open qdrant-client (also what the bench times)."""
    from qdrant_client import models as qm

    flt = None
    if request.conditions:
        flt = qm.Filter(must=[
            qm.FieldCondition(key=key, match=qm.MatchAny(any=value) if isinstance(value, list)
                              else qm.MatchValue(value=value))
            for key, value in request.conditions])
    sparse = None
    if request.sparse is not None:
        sparse = qm.SparseVector(indices=list(request.sparse[0]),
                                 values=list(request.sparse[1]))
    if request.dense is not None and sparse is not None:
        result = qc.query_points(
            name,
            prefetch=[qm.Prefetch(query=list(request.dense), using=DENSE,
                                  limit=request.prefetch_limit, filter=flt),
                      qm.Prefetch(query=sparse, using=SPARSE, limit=request.prefetch_limit,
                                  filter=flt)],
            query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)), query_filter=flt, limit=request.limit,
            with_payload=True)
    else:
        result = qc.query_points(
            name, query=list(request.dense) if request.dense is not None else sparse,
            using=DENSE if request.dense is not None else SPARSE, query_filter=flt,
            limit=request.limit, with_payload=True)
    return _hits(result.points)


def search_request(*, dense: list[float] | None, sparse: tuple[list[int], list[float]] | None,
                   dimension: int, limit: int = 10, mode: SearchMode = "hybrid",
                   filters: Filters | None = None, prefetch_limit: int = 100
                   ) -> _Search | None:
    """The validated request :meth:`VectorStore.search` runs; None when nothing can match (an
    empty sparse query in sparse mode, an empty list in a filter, a limit of 0)."""
    use_dense, use_sparse = _query_plan(dense, sparse, mode, dimension)
    conditions = _filter_items(filters)
    if conditions is None or not (use_dense or use_sparse) or limit <= 0:
        return None
    return _Search(dense if use_dense else None, sparse if use_sparse else None, limit,
                   max(prefetch_limit, limit), conditions)


def _wait_for_flock(handle: IO[bytes], timeout: float) -> bool:
    """Block in a helper thread until ``handle`` holds LOCK_EX; False after ``timeout`` (the
    helper then unlocks and closes the file whenever its flock returns)."""
    acquired = threading.Event()
    state: dict[str, Any] = {"abandoned": False, "error": None}
    guard = threading.Lock()

    def wait() -> None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            state["error"] = exc
        with guard:
            if state["abandoned"]:
                handle.close()  # closing the file also drops a lock it got
                return
            acquired.set()

    threading.Thread(target=wait, name="vector-store-lock", daemon=True).start()
    acquired.wait(timeout)
    with guard:
        if not acquired.is_set():
            state["abandoned"] = True
            return False
    if state["error"] is not None:
        handle.close()
        raise StorageError(f"vector store lock failed: {state['error']}")
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))

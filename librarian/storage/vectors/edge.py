"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in process.

Layout under the store's folder::

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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from librarian.errors import StorageError
from librarian.storage.vectors.base import (
    DENSE,
    INDEXED_FIELDS,
    RRF_K,
    SPARSE,
    Collection,
    SearchRequest,
    Version,
    as_hits,
    chunk_payload,
    point_id,
)
from librarian.storage.vectors.locking import exclusive

if TYPE_CHECKING:
    from qdrant_edge import EdgeShard

log = logging.getLogger(__name__)

EDGE_FORMAT = 1


class EdgeEngine:
    def __init__(self, path: Path, *, lock_timeout: float = 300.0, hold_seconds: float = 0.0,
                 max_hold_seconds: float = 2.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        # Searches may keep a shard open for ``hold_seconds`` after the last one (never longer
        # than ``max_hold_seconds`` in a row): opening costs ~70–90 ms, a query 1–4 ms. Writers
        # in other processes wait at most that long for the lock.
        self.hold_seconds = hold_seconds
        self.max_hold_seconds = max_hold_seconds
        self._held: dict[Path, _HeldShard] = {}
        self._held_lock = threading.Lock()

    def upsert(self, collection: Collection, versions: Sequence[Version]) -> None:
        from qdrant_edge import Point, SparseVector, UpdateOperation

        points = []
        for v in versions:
            for c in v.chunks:
                vector: dict[str, Any] = {DENSE: list(c.vector)}
                if c.sparse_indices:
                    vector[SPARSE] = SparseVector(list(c.sparse_indices),
                                                  list(c.sparse_values))
                points.append(Point(point_id(v.item_id, v.content_hash, c.index), vector,
                                    chunk_payload(v.item_id, v.content_hash, c, v.payload)))
        # One operation: the WAL holds it whole, so a crash replays all of it or none.
        self._write(collection, [UpdateOperation.upsert_points(points)] if points else [],
                    create=True)

    def delete(self, collection: Collection, item_id: str, keep_hash: str | None) -> None:
        from qdrant_edge import FieldCondition, Filter, MatchValue, UpdateOperation

        selector = Filter(
            must=[FieldCondition("item_id", match=MatchValue(item_id))],
            must_not=None if keep_hash is None else [FieldCondition(
                "content_hash", match=MatchValue(keep_hash))])
        self._write(collection, [UpdateOperation.delete_points_by_filter(selector)],
                    create=False)

    def count(self, collection: Collection, item_id: str) -> int:
        from qdrant_edge import CountRequest, FieldCondition, Filter, MatchValue

        with self.shard(collection, create=False) as shard:
            if shard is None:
                return 0
            return shard.count(CountRequest(exact=True, filter=Filter(
                must=[FieldCondition("item_id", match=MatchValue(item_id))])))

    def search(self, collection: Collection, request: SearchRequest) -> list[dict[str, Any]]:
        if self.hold_seconds <= 0:
            with self.shard(collection, create=False) as shard:
                if shard is None:
                    return []
                return edge_query(shard, request)
        home = self._home(collection)
        with self._held_lock:  # one query at a time on a held shard
            held = self._held.get(home)
            if held is None:
                stack = contextlib.ExitStack()
                shard = stack.enter_context(self.shard(collection, create=False))
                if shard is None:
                    stack.close()
                    return []
                held = self._held[home] = _HeldShard(shard, stack, time.monotonic())
                self._schedule_release(home)
            held.last_used = time.monotonic()
            return edge_query(held.shard, request)

    def release(self) -> None:
        """Close every shard held open for searches (at shutdown)."""
        with self._held_lock:
            for held in self._held.values():
                held.stack.close()
            self._held.clear()

    @contextlib.contextmanager
    def shard(self, collection: Collection, *, create: bool) -> Iterator[EdgeShard | None]:
        """The collection's shard, open under its lock; None if it does not exist (and
        ``create`` is false)."""
        from qdrant_edge import EdgeShard

        home = self._home(collection)
        if self._held:
            self.release()  # this process's own held shard would block the lock below
        if not create and not home.is_dir():  # appears by an atomic rename: safe to peek
            yield None
            return
        home.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(home.parent / f"{home.name}.lock", self.lock_timeout):
            if not home.is_dir():
                if not create:
                    yield None
                    return
                self._create(home, collection)
            else:
                self._check(home, collection)
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

    def _home(self, collection: Collection) -> Path:
        return self.path / collection.name

    def _create(self, home: Path, collection: Collection) -> None:
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
                vectors={DENSE: EdgeVectorParams(size=collection.dimension,
                                                 distance=Distance.Cosine, memory=Memory.Cold)},
                sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)})
            shard = EdgeShard.create(str(building / "shard"), config)
            try:
                for key in INDEXED_FIELDS:
                    shard.update(UpdateOperation.create_field_index(
                        key, KeywordIndexParams(memory=Memory.Cold)))
                shard.flush()
            finally:
                shard.close()
            meta = {"engine": "qdrant-edge", "format": EDGE_FORMAT,
                    "embedding_model": collection.model, "dimension": collection.dimension,
                    "dense": {"name": DENSE, "distance": "cosine"},
                    "sparse": {"name": SPARSE, "modifier": "idf"},
                    "payload_indexes": list(INDEXED_FIELDS)}
            (building / "collection.json").write_text(json.dumps(meta, indent=2))
            _fsync_tree(building)
            os.rename(building, home)
            _fsync_dir(home.parent)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def _check(self, home: Path, collection: Collection) -> None:
        try:
            meta = json.loads((home / "collection.json").read_text())
        except (OSError, ValueError) as exc:
            raise StorageError(f"vector collection {home} has no readable collection.json:"
                               f" {exc}") from exc
        model, dimension = collection.model, collection.dimension
        if meta.get("embedding_model") != model or meta.get("dimension") != dimension:
            raise StorageError(f"vector collection {home} holds model"
                               f" {meta.get('embedding_model')!r} ({meta.get('dimension')}"
                               f" dimensions), not {model!r} ({dimension})")

    def _write(self, collection: Collection, operations: Sequence[Any], *, create: bool) -> None:
        with self.shard(collection, create=create) as shard:
            if shard is None:
                return
            for operation in operations:
                shard.update(operation)
            shard.flush()
            started = time.perf_counter()
            if shard.optimize():
                shard.flush()
                log.info("edge shard %s optimized in %.1f s", collection.name,
                         time.perf_counter() - started)

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


@dataclass
class _HeldShard:
    shard: Any
    stack: contextlib.ExitStack
    opened_at: float
    last_used: float = 0.0


def edge_query(shard: EdgeShard, request: SearchRequest) -> list[dict[str, Any]]:
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
    return as_hits(shard.query(query))


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

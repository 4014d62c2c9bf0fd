"""The engine reached through qdrant-client: a Qdrant server, or the client's local mode.

* A server by URL, with keyword payload indexes on the filtered fields.
* qdrant-client's local mode under a folder: the slower former default of the embedded store,
  kept as a fallback and a baseline. It takes the whole folder under one exclusive lock and has
  no payload indexes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from librarian.errors import StorageError
from librarian.storage.vectors import base
from librarian.storage.vectors.locking import exclusive


class ClientEngine:
    """A server when given ``url``, else local mode under ``path``."""

    def __init__(self, *, url: str | None = None, path: Path | None = None,
                 api_key: str | None = None, lock_timeout: float = 300.0) -> None:
        self.url = url
        self.path = path
        self._api_key = api_key
        self.lock_timeout = lock_timeout

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """An open qdrant-client, closed (and in local mode unlocked) afterwards."""
        from qdrant_client import QdrantClient

        if self.url is not None:
            qc = QdrantClient(url=self.url, api_key=self._api_key, timeout=30)
            try:
                yield qc
            finally:
                qc.close()
            return
        assert self.path is not None
        self.path.mkdir(parents=True, exist_ok=True)
        with exclusive(self.path / ".librarian.lock", self.lock_timeout):
            qc = QdrantClient(path=str(self.path))
            try:
                yield qc
            finally:
                qc.close()

    def upsert(self, collection: base.Collection, versions: Sequence[base.Version]) -> None:
        from qdrant_client import models as qm

        points = []
        for v in versions:
            for c in v.chunks:
                vector: dict[str, Any] = {base.DENSE: c.vector}
                if c.sparse_indices:
                    vector[base.SPARSE] = qm.SparseVector(indices=c.sparse_indices,
                                                     values=c.sparse_values)
                points.append(qm.PointStruct(
                    id=base.point_id(v.item_id, v.content_hash, c.index), vector=vector,
                    payload=base.chunk_payload(v.item_id, v.content_hash, c, v.payload)))
        with self.client() as qc:
            self._ensure(qc, collection)
            if points:
                qc.upsert(collection.name, points=points, wait=True)

    def delete(self, collection: base.Collection, item_id: str, keep_hash: str | None) -> None:
        from qdrant_client import models as qm

        must_not = None if keep_hash is None else qm.FieldCondition(
            key="content_hash", match=qm.MatchValue(value=keep_hash))
        with self.client() as qc:
            if not qc.collection_exists(collection.name):
                return
            qc.delete(collection.name, points_selector=qm.FilterSelector(filter=qm.Filter(
                must=[qm.FieldCondition(key="item_id", match=qm.MatchValue(value=item_id))],
                must_not=must_not,
            )), wait=True)

    def count(self, collection: base.Collection, item_id: str) -> int:
        from qdrant_client import models as qm

        with self.client() as qc:
            if not qc.collection_exists(collection.name):
                return 0
            return int(qc.count(collection.name, count_filter=qm.Filter(must=[qm.FieldCondition(
                key="item_id", match=qm.MatchValue(value=item_id))]), exact=True).count)

    def search(self, collection: base.Collection, request: base.SearchRequest
               ) -> list[dict[str, Any]]:
        with self.client() as qc:
            if not qc.collection_exists(collection.name):
                return []
            return client_query(qc, collection.name, request)

    def release(self) -> None:
        """Nothing to release: every call opens and closes its own client."""

    def _ensure(self, qc: Any, collection: base.Collection) -> None:
        from qdrant_client import models as qm

        name, model = collection.name, collection.model
        if not qc.collection_exists(name):
            try:
                qc.create_collection(
                    name,
                    vectors_config={base.DENSE: qm.VectorParams(size=collection.dimension,
                                                           distance=qm.Distance.COSINE)},
                    sparse_vectors_config={base.SPARSE: qm.SparseVectorParams(
                        modifier=qm.Modifier.IDF)},
                    metadata={"embedding_model": model, "dimension": collection.dimension})
            except Exception:
                if not qc.collection_exists(name):  # else another worker created it first
                    raise
        info = qc.get_collection(name)
        config = info.config
        vectors = config.params.vectors
        if not isinstance(vectors, dict) or base.DENSE not in vectors:
            raise StorageError(f"collection {name} predates named dense and sparse vectors:"
                               " delete it and load the items again")
        recorded = (config.metadata or {}).get("embedding_model")
        if recorded not in (None, model):
            raise StorageError(f"collection {name} holds vectors of model {recorded!r},"
                               f" not {model!r}")
        if self.url is not None:  # local mode has no payload indexes (and warns)
            for key in base.INDEXED_FIELDS:
                if key not in (info.payload_schema or {}):  # also after a creator died
                    qc.create_payload_index(name, key, qm.PayloadSchemaType.KEYWORD)


def client_query(qc: Any, name: str, request: base.SearchRequest) -> list[dict[str, Any]]:
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
            prefetch=[qm.Prefetch(query=list(request.dense), using=base.DENSE,
                                  limit=request.prefetch_limit, filter=flt),
                      qm.Prefetch(query=sparse, using=base.SPARSE, limit=request.prefetch_limit,
                                  filter=flt)],
            query=qm.RrfQuery(rrf=qm.Rrf(k=base.RRF_K)), query_filter=flt, limit=request.limit,
            with_payload=True)
    else:
        result = qc.query_points(
            name, query=list(request.dense) if request.dense is not None else sparse,
            using=base.DENSE if request.dense is not None else base.SPARSE, query_filter=flt,
            limit=request.limit, with_payload=True)
    return base.as_hits(result.points)

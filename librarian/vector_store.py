"""Chunk vectors in Qdrant: a server by URL, or Qdrant's embedded local mode under a folder.

One collection per embedding model (its name and dimension are part of the collection name and
recorded in the collection's metadata), one point per chunk. Point ids derive from the item,
content hash and chunk index, so re-loading a version overwrites instead of duplicating.

Embedded mode keeps the whole collection in one process and locks its folder; run workers are
separate processes, so each access takes an exclusive file lock and closes the client after.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from librarian.errors import StorageError

POINT_NAMESPACE = uuid.UUID("0b4d3c8e-2a61-4a8f-8c35-5d7e9f1a2b3c")


@dataclass(frozen=True)
class ChunkPoint:
    index: int
    text: str
    heading_path: list[str]
    vector: list[float]


def collection_name(model: str, dimension: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"chunks_{model}_{dimension}")


class VectorStore:
    def __init__(self, *, url: str | None = None, path: Path | None = None,
                 api_key: str | None = None, collection_prefix: str = "") -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (Qdrant server) or path (embedded)")
        self.url = url
        self.path = path
        self._api_key = api_key
        self.prefix = collection_prefix

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
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
        with open(self.path / ".librarian.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            qc = QdrantClient(path=str(self.path))
            try:
                yield qc
            finally:
                qc.close()

    def _collection(self, model: str, dimension: int) -> str:
        return self.prefix + collection_name(model, dimension)

    def upsert_version(self, *, item_id: str, content_hash: str, model: str, dimension: int,
                       chunks: Sequence[ChunkPoint], payload: dict[str, Any]) -> int:
        """Write this version's chunks; other versions' points stay until :meth:`prune_item`."""
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        points = [
            qm.PointStruct(
                id=str(uuid.uuid5(POINT_NAMESPACE, f"{item_id}:{content_hash}:{c.index}")),
                vector=c.vector,
                payload={**payload, "item_id": item_id, "content_hash": content_hash,
                         "chunk_index": c.index, "text": c.text,
                         "heading_path": c.heading_path},
            )
            for c in chunks
        ]
        try:
            with self.client() as qc:
                if not qc.collection_exists(name):
                    qc.create_collection(
                        name, vectors_config=qm.VectorParams(size=dimension,
                                                             distance=qm.Distance.COSINE),
                        metadata={"embedding_model": model, "dimension": dimension})
                    if self.url is not None:  # local mode has no payload indexes
                        qc.create_payload_index(name, "item_id", qm.PayloadSchemaType.KEYWORD)
                if points:
                    qc.upsert(name, points=points, wait=True)
        except StorageError:
            raise
        except Exception as exc:  # qdrant-client raises transport- and mode-specific errors
            raise StorageError(f"vector store write failed: {exc}") from exc
        return len(points)

    def prune_item(self, *, item_id: str, keep_hash: str, model: str, dimension: int) -> None:
        """Drop the item's points of every version but ``keep_hash``."""
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        try:
            with self.client() as qc:
                if not qc.collection_exists(name):
                    return
                qc.delete(name, points_selector=qm.FilterSelector(filter=qm.Filter(
                    must=[qm.FieldCondition(key="item_id", match=qm.MatchValue(value=item_id))],
                    must_not=[qm.FieldCondition(key="content_hash",
                                                match=qm.MatchValue(value=keep_hash))],
                )), wait=True)
        except Exception as exc:
            raise StorageError(f"vector store delete failed: {exc}") from exc

    def replace_item(self, *, item_id: str, content_hash: str, model: str, dimension: int,
                     chunks: Sequence[ChunkPoint], payload: dict[str, Any]) -> int:
        """Upsert this version's chunks and drop the item's other versions."""
        written = self.upsert_version(item_id=item_id, content_hash=content_hash, model=model,
                                      dimension=dimension, chunks=chunks, payload=payload)
        self.prune_item(item_id=item_id, keep_hash=content_hash, model=model,
                        dimension=dimension)
        return written

    def count_item(self, *, item_id: str, model: str, dimension: int) -> int:
        from qdrant_client import models as qm

        name = self._collection(model, dimension)
        with self.client() as qc:
            if not qc.collection_exists(name):
                return 0
            return int(qc.count(name, count_filter=qm.Filter(must=[qm.FieldCondition(
                key="item_id", match=qm.MatchValue(value=item_id))]), exact=True).count)

    def search(self, vector: list[float], *, model: str, dimension: int, limit: int = 10
               ) -> list[dict[str, Any]]:
        name = self._collection(model, dimension)
        with self.client() as qc:
            if not qc.collection_exists(name):
                return []
            hits = qc.query_points(name, query=vector, limit=limit, with_payload=True).points
        return [{"score": h.score, **(h.payload or {})} for h in hits]

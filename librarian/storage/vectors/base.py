"""What every vector engine shares: the data model, the search request, and the engine contract.

One collection per embedding model and dimension (both part of the collection name and recorded
beside the data), one point per chunk with two named vectors: ``dense`` (cosine) and ``bm25``
(sparse, Qdrant's IDF modifier: documents carry BM25 term-frequency weights from
:mod:`librarian.embedding.sparse`, a query carries 1.0 per term, and IDF is computed at query
time). Point ids derive from the item, content hash and chunk index, so re-loading a version
overwrites instead of duplicating. Searches are dense, sparse, or hybrid (both prefetched, fused
by RRF), with exact payload filters.

Nothing here imports an engine's library: the engines build their own filters and queries from
the request validated here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

POINT_NAMESPACE = uuid.UUID("0b4d3c8e-2a61-4a8f-8c35-5d7e9f1a2b3c")
DENSE = "dense"
SPARSE = "bm25"
RRF_K = 60
# Keyword payload indexes (server and edge; qdrant-client's local mode has none).
INDEXED_FIELDS = ("item_id", "tier", "language", "domain", "page_type")

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


@dataclass(frozen=True)
class Collection:
    """A collection as an engine receives it: the full (prefixed) name, and the model and
    dimension it must hold (engines create it from these and refuse a mismatch)."""

    name: str
    model: str
    dimension: int


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: the queries to run (at least one) and normalized filters."""

    dense: Sequence[float] | None
    sparse: tuple[Sequence[int], Sequence[float]] | None
    limit: int
    prefetch_limit: int
    conditions: list[tuple[str, str | list[str]]]


class VectorEngine(Protocol):
    """What :class:`~librarian.storage.vectors.VectorStore` needs from an engine.

    Arguments arrive checked (chunk dimensions, search requests). Engines raise their own error
    types; the store turns them into a StorageError naming the action and the collection."""

    def upsert(self, collection: Collection, versions: Sequence[Version]) -> None:
        """Write the versions' points, creating the collection if needed."""

    def delete(self, collection: Collection, item_id: str, keep_hash: str | None) -> None:
        """Drop the item's points, but those of ``keep_hash``; a missing collection is empty."""

    def count(self, collection: Collection, item_id: str) -> int:
        """The item's points (exact); 0 for a missing collection."""

    def search(self, collection: Collection, request: SearchRequest) -> list[dict[str, Any]]:
        """Hits best first, ``{"score": ..., **payload}``; none for a missing collection."""

    def release(self) -> None:
        """Let go of anything kept open between calls."""


def collection_name(model: str, dimension: int) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"chunks_{model}_{dimension}")


def point_id(item_id: str, content_hash: str, index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{item_id}:{content_hash}:{index}"))


def chunk_payload(item_id: str, content_hash: str, chunk: ChunkPoint,
                  payload: Mapping[str, Any]) -> dict[str, Any]:
    return {**payload, "item_id": item_id, "content_hash": content_hash,
            "chunk_index": chunk.index, "text": chunk.text, "heading_path": chunk.heading_path}


def check_chunks(chunks: Sequence[ChunkPoint], dimension: int) -> None:
    for c in chunks:
        if len(c.vector) != dimension:
            raise ValueError(f"chunk {c.index}: dense vector has {len(c.vector)} dimensions,"
                             f" the collection {dimension}")
        if len(c.sparse_indices) != len(c.sparse_values):
            raise ValueError(f"chunk {c.index}: {len(c.sparse_indices)} sparse indices but"
                             f" {len(c.sparse_values)} values")


def search_request(*, dense: list[float] | None, sparse: tuple[list[int], list[float]] | None,
                   dimension: int, limit: int = 10, mode: SearchMode = "hybrid",
                   filters: Filters | None = None, prefetch_limit: int = 100
                   ) -> SearchRequest | None:
    """The validated request :meth:`VectorStore.search` runs; None when nothing can match (an
    empty sparse query in sparse mode, an empty list in a filter, a limit of 0)."""
    use_dense, use_sparse = _query_plan(dense, sparse, mode, dimension)
    conditions = _filter_items(filters)
    if conditions is None or not (use_dense or use_sparse) or limit <= 0:
        return None
    return SearchRequest(dense if use_dense else None, sparse if use_sparse else None, limit,
                         max(prefetch_limit, limit), conditions)


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


def as_hits(points: Sequence[Any]) -> list[dict[str, Any]]:
    """Scored points (either engine's) as hits, best first; a payload ``score`` cannot shadow
    the real one."""
    hits = [{"score": float(p.score),
             **{k: v for k, v in (p.payload or {}).items() if k != "score"}} for p in points]
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits

"""The vector store's request validation and the embedded engine on a tiny collection."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from librarian.errors import StorageError
from librarian.storage.vectors import (
    ChunkPoint,
    VectorStore,
    collection_name,
    point_id,
    search_request,
)


def test_chunk_points_without_sparse_vectors_keep_working() -> None:
    chunk = ChunkPoint(0, "text", ["H"], [1.0, 0.0])
    assert chunk.sparse_indices == [] and chunk.sparse_values == []
    assert point_id("item", "hash", 0) == point_id("item", "hash", 0) != point_id("item",
                                                                                  "hash", 1)
    assert collection_name("all-MiniLM-L6-v2/int8", 384) == "chunks_all-MiniLM-L6-v2_int8_384"


def test_search_requests_are_validated() -> None:
    def plan(**kw: object) -> tuple[bool, bool] | None:
        args: dict[str, object] = {"dense": [1.0, 0.0], "sparse": ([7], [1.0]), "dimension": 2}
        args.update(kw)
        request = search_request(**args)  # type: ignore[arg-type]
        return None if request is None else (request.dense is not None,
                                             request.sparse is not None)

    assert plan() == (True, True)
    assert plan(mode="dense") == (True, False)
    assert plan(mode="sparse") == (False, True)
    assert plan(sparse=([], [])) == (True, False)  # stopwords only: hybrid runs dense alone
    assert plan(dense=None) == (False, True)
    assert plan(mode="sparse", sparse=([], [])) is None  # nothing to match
    assert plan(filters={"tier": []}) is None
    assert plan(limit=0) is None
    request = search_request(dense=[1.0, 0.0], sparse=None, dimension=2, limit=50,
                             prefetch_limit=10, filters={"tier": ["A"], "language": "en",
                                                         "domain": ["a", "b"]})
    assert request is not None and request.prefetch_limit == 50
    assert request.conditions == [("tier", "A"), ("language", "en"), ("domain", ["a", "b"])]
    cases: list[tuple[dict[str, object], str]] = [
        ({"mode": "dense", "dense": None}, "needs a dense"),
        ({"mode": "sparse", "sparse": None}, "needs a sparse"),
        ({"dense": None, "sparse": None}, "needs a dense or a sparse"),
        ({"dense": [1.0]}, "dimensions"),
        ({"sparse": ([1, 2], [1.0])}, "differ in length"),
        ({"mode": "fuzzy"}, "unknown search mode"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            plan(**bad)


def test_edge_store_round_trip_and_layout(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path)
    assert store.count_item(item_id="a", model="m", dimension=2) == 0
    assert store.search(dense=[1.0, 0.0], sparse=None, model="m", dimension=2) == []
    assert not any(tmp_path.iterdir())  # reads create nothing
    store.upsert_version(item_id="a", content_hash="h1", model="m", dimension=2,
                         chunks=[ChunkPoint(0, "alpha beta", [], [1.0, 0.0], [11, 4294967295],
                                            [0.9, 1.1])],
                         payload={"tier": "A"})
    assert (tmp_path / "chunks_m_2" / "collection.json").is_file()
    assert (tmp_path / "chunks_m_2" / "shard" / "edge_config.json").is_file()
    hits = store.search(dense=None, sparse=([4294967295], [1.0]), model="m", dimension=2,
                        mode="sparse")
    assert [(h["item_id"], h["chunk_index"], h["tier"]) for h in hits] == [("a", 0, "A")]
    store.delete_item(item_id="a", model="m", dimension=2)
    assert store.count_item(item_id="a", model="m", dimension=2) == 0


def test_an_unreadable_collection_record_is_a_storage_error(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path)
    store.upsert_version(item_id="a", content_hash="h", model="m", dimension=2, chunks=[],
                         payload={})
    (tmp_path / "chunks_m_2" / "collection.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"collection\.json"):
        store.count_item(item_id="a", model="m", dimension=2)


def test_a_waiting_caller_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path, lock_timeout=10)
    store.upsert_version(item_id="a", content_hash="h", model="m", dimension=2,
                         chunks=[ChunkPoint(0, "t", [], [1.0, 0.0])], payload={})
    held = open(tmp_path / "chunks_m_2.lock", "ab")  # noqa: SIM115
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.3, held.close).start()
    started = time.monotonic()
    assert store.count_item(item_id="a", model="m", dimension=2) == 1
    assert time.monotonic() - started >= 0.25


def test_the_engine_is_chosen_by_the_constructor(tmp_path: Path) -> None:
    assert VectorStore(path=tmp_path).mode == "edge"
    assert VectorStore(path=tmp_path, engine="local").mode == "local"
    assert VectorStore(url="http://127.0.0.1:6333").mode == "server"
    with pytest.raises(ValueError, match="exactly one"):
        VectorStore()
    with pytest.raises(ValueError, match="qdrant-client"), VectorStore(path=tmp_path).client():
        pass

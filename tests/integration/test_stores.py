"""Object stores (local disk; an S3 API server through the minio SDK) and Qdrant vectors.

The vector tests run on both embedded engines: Qdrant Edge (the default) and qdrant-client's
local mode, which goes through the same qdrant-client code as a Qdrant server."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from librarian.embedding.sparse import document_vector, query_vector
from librarian.errors import StorageError
from librarian.storage.objects import LocalObjectStore, MinioObjectStore
from librarian.storage.vectors import ChunkPoint, VectorStore
from librarian.storage.vectors.edge import EdgeEngine


def test_local_store_round_trips_and_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("items/a/b/raw", b"bytes", "application/octet-stream")
    assert store.get("items/a/b/raw") == b"bytes" and store.exists("items/a/b/raw")
    assert not store.exists("items/a/b/missing")
    with pytest.raises(StorageError, match="escapes"):
        store.put("../../etc/x", b"no", "text/plain")


def test_minio_store_round_trips_against_an_s3_server(s3_endpoint: str) -> None:
    store = MinioObjectStore(s3_endpoint, "minioadmin", "minioadmin", "store-test")
    store.ping()
    store.put("items/x/y/content.md", "# Hi ✓".encode(), "text/markdown")
    assert store.get("items/x/y/content.md").decode() == "# Hi ✓"
    assert store.exists("items/x/y/content.md") and not store.exists("items/x/y/none")


def test_minio_store_down_is_a_storage_error() -> None:
    from librarian.cli.local_servers import free_port

    store = MinioObjectStore(f"127.0.0.1:{free_port()}", "a", "b", "bucket")
    with pytest.raises(StorageError) as info:
        store.put("k", b"v", "text/plain")
    assert info.value.code == "storage_error" and info.value.stage == "load"


ENGINES = ["edge", "local"]
DIM = 8
# Five items on distinct subjects: a dense direction each, and text for the BM25 side.
CORPUS = {
    "tomato": ("Tomato basil sauce: simmer tomatoes with garlic and fresh basil.",
               {"tier": "A", "language": "en", "domain": "food.example"}),
    "rust": ("The Rust borrow checker enforces lifetimes of references at compile time.",
             {"tier": "B", "language": "en", "domain": "code.example"}),
    "k8s": ("Kubernetes schedules pods onto nodes; the scheduler weighs resource requests.",
            {"tier": "C", "language": "en", "domain": "code.example"}),
    "bread": ("Sauerteig braucht Mehl, Wasser und Zeit; der Teig geht über Nacht.",
              {"tier": "A", "language": "de", "domain": "food.example"}),
    "tide": ("Ocean tides follow the moon; spring tides come with full and new moons.",
             {"tier": "D", "language": "en", "domain": "science.example"}),
}


def direction(item: str, noise: float = 0.0) -> list[float]:
    vector = [noise] * DIM
    vector[list(CORPUS).index(item)] = 1.0
    return vector


def chunk(item: str, index: int = 0, text: str | None = None) -> ChunkPoint:
    text = text or CORPUS[item][0]
    indices, values = document_vector(text)
    return ChunkPoint(index, text, ["Intro"], direction(item, 0.1 * index), indices, values)


def load_corpus(store: VectorStore) -> None:
    for item, (_, payload) in CORPUS.items():
        store.replace_item(item_id=item, content_hash="v1", model="m", dimension=DIM,
                           chunks=[chunk(item)], payload={"url": f"https://{item}", **payload})


@pytest.fixture(params=ENGINES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    return VectorStore(path=tmp_path / "qdrant", engine=request.param)


def test_replacing_an_items_vectors_drops_the_old_version(store: VectorStore) -> None:
    def chunks(n: int, offset: float) -> list[ChunkPoint]:
        return [ChunkPoint(i, f"chunk {i}", ["H"], [offset + i, 1.0, 0.5]) for i in range(n)]

    store.replace_item(item_id="item-1", content_hash="v1", model="m", dimension=3,
                       chunks=chunks(4, 0.0), payload={"url": "u"})
    store.replace_item(item_id="item-2", content_hash="v1", model="m", dimension=3,
                       chunks=chunks(2, 0.0), payload={"url": "u2"})
    assert store.count_item(item_id="item-1", model="m", dimension=3) == 4
    store.replace_item(item_id="item-1", content_hash="v2", model="m", dimension=3,
                       chunks=chunks(3, 1.0), payload={"url": "u"})
    assert store.count_item(item_id="item-1", model="m", dimension=3) == 3
    assert store.count_item(item_id="item-2", model="m", dimension=3) == 2
    hits = store.search(dense=[1.0, 1.0, 0.5], sparse=None, model="m", dimension=3, limit=1,
                        mode="dense")
    assert hits[0]["item_id"] in {"item-1", "item-2"} and "text" in hits[0]
    assert store.count_item(item_id="item-1", model="other", dimension=3) == 0
    assert store.search(dense=[1.0, 1.0, 0.5], sparse=None, model="other", dimension=3) == []


def test_dense_sparse_and_hybrid_search_find_the_right_item(store: VectorStore) -> None:
    load_corpus(store)

    def search(query: str, mode: Any, dense: list[float] | None = None) -> list[dict[str, Any]]:
        return store.search(dense=dense, sparse=query_vector(query), model="m", dimension=DIM,
                            mode=mode, limit=3)

    dense_hits = search("", "dense", direction("k8s", 0.05))
    assert dense_hits[0]["item_id"] == "k8s" and dense_hits[0]["score"] > 0.9
    sparse_hits = search("borrow checker", "sparse")
    assert [h["item_id"] for h in sparse_hits] == ["rust"]  # only it has the words
    assert search("scheduler pods", "sparse")[0]["item_id"] == "k8s"
    assert search("zeppelin", "sparse") == []
    # Hybrid: the words point at "tide", the dense vector half at "tide", half at "bread";
    # fused, "tide" wins and "bread" (dense only) still comes back.
    mixed = [0.0] * DIM
    mixed[list(CORPUS).index("tide")] = mixed[list(CORPUS).index("bread")] = 1.0
    hybrid = search("moon tides", "hybrid", mixed)
    assert hybrid[0]["item_id"] == "tide" and "bread" in {h["item_id"] for h in hybrid}
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
    top = hybrid[0]
    assert top["text"] == CORPUS["tide"][0] and top["heading_path"] == ["Intro"]
    assert {top["url"], top["tier"], top["language"], top["domain"], top["content_hash"],
            top["chunk_index"]} == {"https://tide", "D", "en", "science.example", "v1", 0}
    # Hybrid with an empty sparse side (stopwords only) is the dense search.
    assert search("the of and", "hybrid", direction("rust"))[0]["item_id"] == "rust"
    with pytest.raises(ValueError, match="dense search needs"):
        store.search(dense=None, sparse=([1], [1.0]), model="m", dimension=DIM, mode="dense")
    with pytest.raises(ValueError, match="dimensions"):
        store.search(dense=[1.0], sparse=None, model="m", dimension=DIM)


def test_filters_are_exact_payload_matches(store: VectorStore) -> None:
    load_corpus(store)
    everything = [1.0] * DIM

    def ids(filters: dict[str, Any], mode: Any = "hybrid") -> set[str]:
        hits = store.search(dense=everything, sparse=query_vector("tomato moon rust sauerteig"),
                            model="m", dimension=DIM, mode=mode, limit=10, filters=filters)
        return {h["item_id"] for h in hits}

    assert ids({}) == set(CORPUS)
    assert ids({"tier": "A"}) == {"tomato", "bread"}
    assert ids({"tier": ["B", "C", "D"], "language": "en"}) == {"rust", "k8s", "tide"}
    assert ids({"domain": "food.example", "language": "de"}, "dense") == {"bread"}
    assert ids({"domain": ["science.example"]}, "sparse") == {"tide"}
    assert ids({"tier": []}) == set()
    assert ids({"language": "fr"}) == set()


def test_delete_item_removes_only_that_item(store: VectorStore) -> None:
    load_corpus(store)
    store.upsert_version(item_id="rust", content_hash="v2", model="m", dimension=DIM,
                         chunks=[chunk("rust", i) for i in range(3)], payload={"tier": "B"})
    assert store.count_item(item_id="rust", model="m", dimension=DIM) == 4  # v1 and v2
    store.delete_item(item_id="rust", model="m", dimension=DIM)
    store.delete_item(item_id="never-stored", model="m", dimension=DIM)
    store.delete_item(item_id="rust", model="unknown-model", dimension=DIM)
    assert store.count_item(item_id="rust", model="m", dimension=DIM) == 0
    assert store.count_item(item_id="tomato", model="m", dimension=DIM) == 1
    hits = store.search(dense=direction("rust"), sparse=query_vector("borrow checker"),
                        model="m", dimension=DIM, limit=10)
    assert "rust" not in {h["item_id"] for h in hits} and len(hits) == len(CORPUS) - 1


def test_edge_collections_are_per_model_and_checked(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path / "qdrant")
    store.replace_item(item_id="a", content_hash="v1", model="mini/lm", dimension=DIM,
                       chunks=[chunk("tomato")], payload={})
    store.replace_item(item_id="a", content_hash="v1", model="other", dimension=DIM,
                       chunks=[chunk("tomato"), chunk("tomato", 1)], payload={})
    assert store.count_item(item_id="a", model="mini/lm", dimension=DIM) == 1
    assert store.count_item(item_id="a", model="other", dimension=DIM) == 2
    assert sorted(p.name for p in (tmp_path / "qdrant").iterdir()) == [
        "chunks_mini_lm_8", "chunks_mini_lm_8.lock", "chunks_other_8", "chunks_other_8.lock"]
    # "mini_lm" sanitizes to the same collection as "mini/lm": the recorded model tells them
    # apart instead of mixing two models' vectors.
    with pytest.raises(StorageError, match="holds model 'mini/lm'"):
        store.count_item(item_id="a", model="mini_lm", dimension=DIM)
    with pytest.raises(ValueError, match="dimensions"):
        store.upsert_version(item_id="a", content_hash="v1", model="other", dimension=DIM,
                             chunks=[ChunkPoint(0, "t", [], [1.0])], payload={})


def test_a_wedged_lock_holder_is_a_storage_error(tmp_path: Path) -> None:
    import fcntl

    store = VectorStore(path=tmp_path / "qdrant", lock_timeout=0.3)
    load_corpus(store)
    with open(tmp_path / "qdrant" / "chunks_m_8.lock", "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(StorageError, match="busy") as info:
            store.count_item(item_id="rust", model="m", dimension=DIM)
    assert info.value.code == "storage_error"
    assert store.count_item(item_id="rust", model="m", dimension=DIM) == 1


def _writer(root: str, worker: int, items: int) -> None:
    store = VectorStore(path=Path(root))
    for n in range(items):
        item = f"w{worker}-{n}"
        text = f"worker{worker} document{n} shared words"
        store.upsert_version(
            item_id=item, content_hash="v1", model="m", dimension=DIM,
            chunks=[ChunkPoint(i, text, [], direction(list(CORPUS)[worker], 0.01 * i),
                               *document_vector(text)) for i in range(3)],
            payload={"tier": "AB"[worker]})
        store.prune_item(item_id=item, keep_hash="v1", model="m", dimension=DIM)


def _reader(root: str, until: int, out: Any) -> None:
    import time

    store = VectorStore(path=Path(root))
    seen: list[int] = []
    deadline = time.monotonic() + 200
    while (not seen or seen[-1] < until) and time.monotonic() < deadline:
        hits = store.search(dense=[1.0] * DIM, sparse=query_vector("shared"), model="m",
                            dimension=DIM, limit=100)
        assert all(len(h["text"]) > 0 for h in hits)
        seen.append(len(hits))
    out.put(seen)


def test_processes_share_an_edge_store(tmp_path: Path) -> None:
    """Two run workers write (both create the collection) while the API process searches."""
    root = str(tmp_path / "qdrant")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(root, w, 12)) for w in (0, 1)]
    procs.append(ctx.Process(target=_reader, args=(root, 2 * 12 * 3, results)))
    for p in procs:
        p.start()
    seen = results.get(timeout=240)
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    assert seen[-1] == 72 and len({n for n in seen if 0 < n < 72}) >= 3  # read during writes
    assert seen == sorted(seen)  # chunks only ever appear (readers see whole writes)
    assert all(n % 3 == 0 for n in seen)  # an item's three chunks arrive together
    store = VectorStore(path=Path(root))
    for w in (0, 1):
        for n in range(12):
            assert store.count_item(item_id=f"w{w}-{n}", model="m", dimension=DIM) == 3
    hits = store.search(dense=None, sparse=query_vector("worker1 document7"), model="m",
                        dimension=DIM, mode="sparse", limit=3)
    assert hits[0]["item_id"] == "w1-7"
    assert len(store.search(dense=[1.0] * DIM, sparse=None, model="m", dimension=DIM,
                            limit=100, filters={"tier": "B"})) == 36
    assert not list(tmp_path.joinpath("qdrant").glob(".*creating*"))


def _killed_mid_write(root: str) -> None:
    from qdrant_edge import Point, UpdateOperation

    store = VectorStore(path=Path(root))
    assert isinstance(store.engine, EdgeEngine)
    with store.engine.shard(store.collection("m", DIM), create=True) as shard:
        assert shard is not None
        shard.update(UpdateOperation.upsert_points(
            [Point(i + 1, {"dense": direction("tide")}, {"item_id": "half", "text": "t"})
             for i in range(5)]))
        os.kill(os.getpid(), signal.SIGKILL)  # no flush, no close, lock held


def test_a_writer_killed_mid_write_leaves_a_loadable_store(tmp_path: Path) -> None:
    root = tmp_path / "qdrant"
    load_corpus(VectorStore(path=root))
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_killed_mid_write, args=(str(root),))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == -signal.SIGKILL
    store = VectorStore(path=root, lock_timeout=30)
    # The kernel dropped the dead writer's lock; the WAL replays its whole update.
    assert store.count_item(item_id="half", model="m", dimension=DIM) == 5
    assert store.count_item(item_id="tide", model="m", dimension=DIM) == 1
    hits = store.search(dense=direction("rust"), sparse=query_vector("borrow"), model="m",
                        dimension=DIM, limit=1)
    assert hits[0]["item_id"] == "rust"


def test_a_collection_of_the_old_layout_is_a_storage_error(tmp_path: Path) -> None:
    """Collections made before named dense and sparse vectors (one unnamed vector)."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    old = QdrantClient(path=str(tmp_path))
    old.create_collection("chunks_m_3", vectors_config=qm.VectorParams(
        size=3, distance=qm.Distance.COSINE))
    old.close()
    store = VectorStore(path=tmp_path, engine="local")
    with pytest.raises(StorageError, match="predates named dense and sparse vectors"):
        store.upsert_version(item_id="a", content_hash="v1", model="m", dimension=3,
                             chunks=[ChunkPoint(0, "t", [], [1.0, 0.0, 0.0])], payload={})
    with pytest.raises(StorageError, match="search failed for collection chunks_m_3"):
        store.search(dense=[1.0, 0.0, 0.0], sparse=None, model="m", dimension=3)


def _late_writer(root: str, out: Any) -> None:
    import time

    store = VectorStore(path=Path(root))
    started = time.monotonic()
    store.replace_item(item_id="late", content_hash="v1", model="m", dimension=DIM,
                       chunks=[chunk("tide", text="a late write about the tide")],
                       payload={"url": "https://late"})
    out.put(time.monotonic() - started)


def test_searches_hold_the_shard_briefly_and_writers_still_get_through(tmp_path: Path) -> None:
    import time

    root = tmp_path / "qdrant"
    load_corpus(VectorStore(path=root))
    searcher = VectorStore(path=root, hold_seconds=0.5, max_hold_seconds=1.5)

    def search() -> list[dict[str, Any]]:
        return searcher.search(dense=direction("tide"), sparse=query_vector("tide"),
                               model="m", dimension=DIM, limit=3)

    assert search()[0]["item_id"] == "tide"
    started = time.monotonic()
    for _ in range(20):
        assert search()[0]["item_id"] == "tide"
    held_ms = (time.monotonic() - started) / 20 * 1000
    assert held_ms < 20, f"held searches took {held_ms:.1f} ms each"

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    writer = ctx.Process(target=_late_writer, args=(str(root), results))
    writer.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # keep searching: the hold is capped, not renewed forever
        search()
        time.sleep(0.05)
    writer.join(60)
    assert writer.exitcode == 0
    assert results.get(timeout=5) < 3.5
    time.sleep(0.6)  # the hold lapses, the next search sees the write
    assert "late" in [h["item_id"] for h in searcher.search(
        dense=direction("tide"), sparse=query_vector("late write"), model="m", dimension=DIM,
        limit=10)]
    searcher.release()

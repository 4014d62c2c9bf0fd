"""Object stores (local disk; an S3 API server through the minio SDK) and Qdrant vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from librarian.errors import StorageError
from librarian.object_store import LocalObjectStore, MinioObjectStore
from librarian.vector_store import ChunkPoint, VectorStore


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
    from librarian.embedded import free_port

    store = MinioObjectStore(f"127.0.0.1:{free_port()}", "a", "b", "bucket")
    with pytest.raises(StorageError) as info:
        store.put("k", b"v", "text/plain")
    assert info.value.code == "storage_error" and info.value.stage == "load"


def test_replacing_an_items_vectors_drops_the_old_version(tmp_path: Path) -> None:
    store = VectorStore(path=tmp_path / "qdrant")

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
    hits = store.search([1.0, 1.0, 0.5], model="m", dimension=3, limit=1)
    assert hits[0]["item_id"] in {"item-1", "item-2"} and "text" in hits[0]

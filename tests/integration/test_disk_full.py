"""The object store's disk fills up during ``load``: the job fails ``storage_error`` in
``load``, and nothing of the new version is left anywhere — no catalog row, no file, no
temporary file, no vectors. The disk is a tmpfs of 64 KiB (mounting one needs root; the test
is skipped, saying so, where that is not allowed)."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from librarian.canonical_url import canonicalize
from librarian.jobs.events import JobStatus
from librarian.jobs.store import MirrorJobStore
from librarian.orchestration.mirror import EventMirror
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, item_id_for
from librarian.storage.stores import vectors_for
from tests.support.ingest import ingest_in_process
from tests.support.pages import PageServer

DISK_BYTES = 64 * 1024


@pytest.fixture
def small_disk(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings whose object store is a 64 KiB tmpfs."""
    ours = settings.model_copy(update={"data_dir": tmp_path / "data"})
    objects = ours.objects_path
    objects.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                              str(objects)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield ours
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(objects)], check=False)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_disk_that_fills_during_load_fails_the_job_and_leaves_nothing_half_written(
        instance: Any, small_disk: Settings, page_server: PageServer,
        sync_redis: redis.Redis) -> None:
    # ~40 KB of text: the raw copy fits the disk, its Markdown twin no longer does.
    words = " ".join(f"word{i % 997}" for i in range(5_000))
    url = page_server.add_text(f"/disk-full-{uuid.uuid4().hex[:8]}.txt", words)
    result = ingest_in_process(instance, small_disk, url)
    assert not result.success
    store = MirrorJobStore(sync_redis, small_disk.redis_prefix, small_disk.job_ttl_seconds)
    EventMirror(instance, store, gap_wait=0.5).drain()
    record = store.record(result.run_id)
    assert record is not None and record.status == JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.code) == ("load", "storage_error")
    assert "No space left" in record.error.message
    item_id = item_id_for(canonicalize(url).url)
    catalog = Catalog(small_disk.database_url)
    try:
        assert catalog.get_item(item_id) is None
    finally:
        catalog.close()
    assert _files(small_disk.objects_path) == []  # not the raw copy, not a temporary file
    vectors = vectors_for(small_disk)
    try:
        assert vectors.count_item(item_id=item_id, model=small_disk.stored_embedding_model,
                                  dimension=384) == 0
    finally:
        vectors.release()

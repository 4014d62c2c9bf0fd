"""The ``ingest_url`` job on a real Dagster instance (PostgreSQL storage), real catalog, files,
vectors and Redis; the mirror reads the same event log the daemon-launched runs write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from librarian.canonical_url import canonicalize
from librarian.jobs.events import EventType, JobEvent, JobStatus
from librarian.jobs.store import MirrorJobStore
from librarian.orchestration.mirror import EventMirror
from librarian.runs import partition_key
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, item_id_for
from librarian.storage.objects import LocalObjectStore
from librarian.storage.vectors import VectorStore
from tests.support.ingest import ingest_in_process
from tests.support.pages import PageServer


def _events(client: redis.Redis, store: MirrorJobStore, job_id: str) -> list[JobEvent]:
    return [JobEvent.from_json(data[b"data"])
            for _id, data in client.xrange(store.keys.events(job_id))]


@pytest.fixture
def mirror_store(sync_redis: redis.Redis, settings: Settings) -> MirrorJobStore:
    return MirrorJobStore(sync_redis, settings.redis_prefix, settings.job_ttl_seconds)


def test_ingesting_a_page_stores_files_vectors_catalog_and_materialization(
        instance: Any, settings: Settings, page_server: PageServer,
        mirror_store: MirrorJobStore, sync_redis: redis.Redis) -> None:
    url = page_server.url("/article.html")
    result = ingest_in_process(instance, settings, url)
    assert result.success

    canonical = canonicalize(url)
    item_id = item_id_for(canonical.url)
    catalog = Catalog(settings.database_url)
    item = catalog.get_item(item_id)
    assert item is not None
    assert item["title"] == "Growing Tomatoes at Home"
    assert item["tier"] in {"A", "B", "C"} and 0 < item["quality_score"] <= 1
    assert item["language"] == "en" and item["current_version"] == 1
    keys = item["versions"][0]["object_keys"]
    files = LocalObjectStore(settings.objects_path)
    assert b"Cherry tomatoes" in files.get(keys["markdown"])
    assert files.get(keys["raw"]) == page_server.pages["/article.html"][2]
    chunks = item["versions"][0]["chunk_count"]
    vectors = VectorStore(path=settings.qdrant_path)
    assert vectors.count_item(item_id=item_id, model=settings.stored_embedding_model,
                              dimension=384) == chunks > 0

    mats = result.asset_materializations_for_node("load")
    assert len(mats) == 1
    assert mats[0].partition == partition_key(canonical)
    assert mats[0].metadata["title"].value == "Growing Tomatoes at Home"
    assert {"tier", "quality_score", "word_count", "object_key", "url"} <= set(mats[0].metadata)

    # The mirror turns the run's event log into the job's record and events.
    mirror = EventMirror(instance, mirror_store, gap_wait=0.5)
    mirror.drain()
    record = mirror_store.record(result.run_id)
    assert record is not None and record.status == JobStatus.COMPLETED
    assert record.result is not None and record.result.item_id == item_id
    events = _events(sync_redis, mirror_store, result.run_id)
    assert events[0].type == EventType.JOB_STARTED
    assert events[-1].type == EventType.JOB_COMPLETED
    stages = [(e.type, e.stage) for e in events
              if e.type in (EventType.STAGE_STARTED, EventType.STAGE_COMPLETED)]
    assert stages == [(t, s) for s in ("extract", "transform", "load")
                      for t in (EventType.STAGE_STARTED, EventType.STAGE_COMPLETED)]
    assert all(e.duration_ms is not None and e.duration_ms >= 0 for e in events
               if e.type == EventType.STAGE_COMPLETED)
    # Every op reports progress as it goes; each event carries the stage's and the job's
    # percent, and the job's percent never goes back.
    progress = [e for e in events if e.type == EventType.STAGE_PROGRESS]
    assert {e.stage for e in progress} == {"extract", "transform", "load"}
    assert all(e.percent is not None and e.job_percent is not None and e.message
               for e in progress)
    job_percents = [e.job_percent for e in progress]
    assert job_percents == sorted(job_percents) and job_percents[-1] == 100

    # A restarted mirror (cursor from Redis) and a full replay from the start add nothing.
    before = len(events)
    EventMirror(instance, mirror_store).drain()
    replay = EventMirror(instance, mirror_store)
    replay.cursor = 0
    replay.drain()
    assert len(_events(sync_redis, mirror_store, result.run_id)) == before

    # Re-ingesting: a conditional request (304), no new version, nothing re-embedded.
    not_modified = page_server.not_modified
    again = ingest_in_process(instance, settings, url)
    assert again.success
    assert page_server.not_modified == not_modified + 1
    assert len(catalog.get_item(item_id)["versions"]) == 1
    mat = again.asset_materializations_for_node("load")[0]
    assert mat.metadata["changed"].value is False
    assert mat.metadata["vectors_reused"].value is True
    assert vectors.count_item(item_id=item_id, model=settings.stored_embedding_model,
                              dimension=384) == chunks

    # Changed content: a new version, and the old version's vectors replaced by the new ones.
    status, ctype, body = page_server.pages["/article.html"]
    page_server.pages["/article.html"] = (status, ctype, body.replace(
        b"Harvest</h2>", b"Harvest</h2><p>Pick tomatoes in the cool of the morning, when the "
        b"fruit is firm, and leave them to finish ripening on a sunny windowsill.</p>"))
    try:
        changed = ingest_in_process(instance, settings, url)
    finally:
        page_server.pages["/article.html"] = (status, ctype, body)
    assert changed.success
    assert len(catalog.get_item(item_id)["versions"]) == 2
    latest = catalog.get_item(item_id)
    assert latest is not None and latest["current_version"] == 2
    assert vectors.count_item(item_id=item_id, model=settings.stored_embedding_model,
                              dimension=384) == latest["versions"][0]["chunk_count"]
    catalog.close()


@pytest.mark.parametrize(("path", "code"), [
    ("/missing", "not_found"), ("/binary.bin", "unsupported_type")])
def test_failed_ingestion_reports_stage_and_code_and_writes_no_item(
        instance: Any, settings: Settings, page_server: PageServer,
        mirror_store: MirrorJobStore, sync_redis: redis.Redis, path: str, code: str) -> None:
    url = page_server.url(path)
    result = ingest_in_process(instance, settings, url)
    assert not result.success
    EventMirror(instance, mirror_store, gap_wait=0.5).drain()
    record = mirror_store.record(result.run_id)
    assert record is not None and record.status == JobStatus.FAILED
    assert record.error is not None
    assert (record.error.stage, record.error.code) == ("extract", code)
    last = _events(sync_redis, mirror_store, result.run_id)[-1]
    assert last.type == EventType.ERROR and last.error == record.error
    catalog = Catalog(settings.database_url)
    assert catalog.get_item(item_id_for(canonicalize(url).url)) is None
    catalog.close()


def test_connection_refused_fails_in_extract(
        instance: Any, settings: Settings, mirror_store: MirrorJobStore) -> None:
    from librarian.cli.local_servers import free_port

    result = ingest_in_process(instance, settings, f"http://127.0.0.1:{free_port()}/nothing-listens")
    assert not result.success
    EventMirror(instance, mirror_store, gap_wait=0.5).drain()
    record = mirror_store.record(result.run_id)
    assert record is not None and record.error is not None
    assert record.error.code == "connect_error" and record.error.stage == "extract"


def test_objects_land_in_an_s3_server_through_the_minio_sdk(
        instance: Any, settings: Settings, page_server: PageServer, s3_endpoint: str,
        tmp_path: Path) -> None:
    from librarian.storage.objects import MinioObjectStore

    s3_settings = settings.model_copy(update={"s3_endpoint": s3_endpoint,
                                              "s3_bucket": "pipeline-test"})
    url = page_server.url("/notes.txt")
    assert ingest_in_process(instance, s3_settings, url).success
    catalog = Catalog(settings.database_url)
    item = catalog.get_item(item_id_for(canonicalize(url).url))
    catalog.close()
    assert item is not None
    store = MinioObjectStore(s3_endpoint, "minioadmin", "minioadmin", "pipeline-test")
    markdown = store.get(item["versions"][0]["object_keys"]["markdown"])
    assert b"sourdough starter" in markdown


def test_a_transient_failure_is_retried_by_dagster_and_the_stream_says_so(
        instance: Any, settings: Settings, page_server: PageServer,
        mirror_store: MirrorJobStore, sync_redis: redis.Redis) -> None:
    result = ingest_in_process(instance, settings, page_server.url("/flaky"))
    assert result.success
    assert page_server.hits["/flaky"] == 3
    EventMirror(instance, mirror_store, gap_wait=0.5).drain()
    events = _events(sync_redis, mirror_store, result.run_id)
    retries = [e for e in events if e.type == EventType.STAGE_PROGRESS
               and (e.message or "").startswith("retrying")]
    assert len(retries) == 2 and all(e.stage == "extract" for e in retries)
    assert events[-1].type == EventType.JOB_COMPLETED


def test_a_permanent_failure_is_not_retried(instance: Any, settings: Settings,
                                            page_server: PageServer) -> None:
    before = page_server.hits.get("/missing", 0)
    assert not ingest_in_process(instance, settings, page_server.url("/missing")).success
    assert page_server.hits["/missing"] == before + 1


def test_a_failed_refresh_leaves_the_last_good_version(
        instance: Any, settings: Settings, page_server: PageServer) -> None:
    path = "/refresh-then-gone.txt"
    url = page_server.add_text(path, "Field notes on lichens\n\nLichens grow slowly on old "
                                     "stone walls and tell how clean the air around them is.")
    assert ingest_in_process(instance, settings, url).success
    item_id = item_id_for(canonicalize(url).url)
    catalog = Catalog(settings.database_url)
    before = catalog.get_item(item_id)
    del page_server.pages[path]  # the page disappears: the refresh fails with not_found
    assert not ingest_in_process(instance, settings, url).success
    after = catalog.get_item(item_id)
    catalog.close()
    assert after is not None and before is not None
    assert after["current_version"] == before["current_version"] == 1
    assert after["versions"] == before["versions"]
    vectors = VectorStore(path=settings.qdrant_path)
    assert vectors.count_item(item_id=item_id, model=settings.stored_embedding_model,
                              dimension=384) == before["versions"][0]["chunk_count"]


def test_after_a_model_change_unchanged_content_is_embedded_again_and_recorded(
        instance: Any, settings: Settings, page_server: PageServer) -> None:
    url = page_server.add_text("/model-change.txt",
                               "Notes on sourdough\n\nA starter needs flour, water and a warm "
                               "kitchen; feed it daily and it will raise a loaf in a day.")
    canonical = canonicalize(url).url
    item_id = item_id_for(canonical)
    packaged = settings.model_copy(update={"embedding_quantize": False})
    assert ingest_in_process(instance, packaged, url).success
    catalog = Catalog(settings.database_url)
    vectors = VectorStore(path=settings.qdrant_path)
    current = settings.stored_embedding_model
    stale, count = catalog.embedded_with_other_model(current, 10_000)
    assert canonical in stale and count >= 1

    assert ingest_in_process(instance, settings, url).success  # same content, the configured model
    item = catalog.get_item(item_id)
    assert item is not None and item["current_version"] == 1  # no new version...
    [version] = item["versions"]
    assert version["embedding_model"] == current  # ...but its vectors are the new model's
    assert vectors.count_item(item_id=item_id, model=current,
                              dimension=384) == version["chunk_count"] > 0
    assert canonical not in catalog.embedded_with_other_model(current, 10_000)[0]
    # A third run finds nothing to redo: the vectors of the current model are kept.
    third = ingest_in_process(instance, settings, url)
    assert third.asset_materializations_for_node("load")[0].metadata[
        "vectors_reused"].value is True
    catalog.close()


def test_a_rebuild_restores_jobs_redis_lost(
        instance: Any, settings: Settings, page_server: PageServer,
        mirror_store: MirrorJobStore, sync_redis: redis.Redis) -> None:
    result = ingest_in_process(instance, settings, page_server.url("/notes.txt") + "?rebuild=1")
    EventMirror(instance, mirror_store, gap_wait=0.5).drain()
    before = _events(sync_redis, mirror_store, result.run_id)
    record = mirror_store.record(result.run_id)
    raw_record = sync_redis.hgetall(mirror_store.keys.record(result.run_id))
    raw_stream = sync_redis.xrange(mirror_store.keys.events(result.run_id))
    sync_redis.delete(mirror_store.keys.record(result.run_id),
                      mirror_store.keys.events(result.run_id), mirror_store.keys.mirror_cursor)
    rebuilt = EventMirror(instance, mirror_store, gap_wait=0.5)  # what `mirror --rebuild` does
    assert rebuilt.cursor == 0
    rebuilt.drain()
    after = _events(sync_redis, mirror_store, result.run_id)
    assert [(e.type, e.stage, e.message) for e in after] == [
        (e.type, e.stage, e.message) for e in before]
    again = mirror_store.record(result.run_id)
    assert again is not None and record is not None
    assert (again.status, again.result) == (record.status, record.result)
    # The same record and stream to the byte: same ids, same fields, same timestamps.
    assert sync_redis.hgetall(mirror_store.keys.record(result.run_id)) == raw_record
    assert sync_redis.xrange(mirror_store.keys.events(result.run_id)) == raw_stream

"""The HTTP API over real HTTP (uvicorn on 127.0.0.1), real Redis and the real catalog.

Submission through Dagster is exercised end to end in ``tests/e2e``; here Dagster is absent on
purpose, so the tests also show what the API does when it is down.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from librarian.cli.local_servers import free_port
from librarian.jobs.events import EventType, JobEvent, JobStatus, record_fields
from librarian.jobs.store import JobKeys, MirrorJobStore, MirrorWrite
from librarian.settings import Settings
from librarian_api.app import create_app
from tests.support.servers import api_in_thread, api_process


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with api_in_thread(settings.model_copy(update={"dagster_port": free_port(),
                                                   "sse_heartbeat_seconds": 1.0})) as base:
        yield base


def _write(store: MirrorJobStore, job_id: str, sid: int, kind: EventType,
           mode: str = "", **fields: object) -> None:
    event = JobEvent(type=kind, job_id=job_id, stage=fields.pop("stage", None))  # type: ignore[arg-type]
    store.apply([MirrorWrite(job_id=job_id, storage_id=sid, partition_key="pk-" + job_id,
                             fields=record_fields(job_id=job_id, url="https://e.example/",
                                                  **fields),
                             events=[event], mode=mode, created_at=time.time())],
                cursor=store.cursor())


@pytest.fixture
def store(sync_redis: redis.Redis, settings: Settings) -> MirrorJobStore:
    return MirrorJobStore(sync_redis, settings.redis_prefix, settings.job_ttl_seconds)


def test_enqueue_marks_the_url_active_and_the_terminal_event_releases_it(
        store: MirrorJobStore, sync_redis: redis.Redis) -> None:
    job = str(uuid.uuid4())
    key = store.keys.active("pk-" + job)
    _write(store, job, 1, EventType.JOB_STARTED, mode="enqueued", status=JobStatus.QUEUED)
    assert sync_redis.get(key) == job.encode()
    assert sync_redis.ttl(store.keys.record(job)) == -1  # unfinished jobs do not expire
    _write(store, job, 2, EventType.JOB_COMPLETED, mode="terminal", status=JobStatus.COMPLETED)
    assert sync_redis.get(key) is None
    assert 0 < sync_redis.ttl(store.keys.record(job)) <= store._ttl
    # A replayed event changes nothing.
    _write(store, job, 2, EventType.JOB_COMPLETED, mode="terminal", status=JobStatus.COMPLETED)
    assert sync_redis.xlen(store.keys.events(job)) == 2


def test_a_terminal_event_does_not_release_another_jobs_claim(
        store: MirrorJobStore, sync_redis: redis.Redis) -> None:
    job = str(uuid.uuid4())
    key = store.keys.active("pk-" + job)
    sync_redis.set(key, "another-job")
    _write(store, job, 1, EventType.JOB_COMPLETED, mode="terminal", status=JobStatus.COMPLETED)
    assert sync_redis.get(key) == b"another-job"


def _sse(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.lstrip(" ")
        if fields:
            events.append(fields)
    return events


@pytest.mark.parametrize("url", ["ftp://example.com/", "https://user:pw@example.com/",
                                 "https://example.com/" + "a" * 2100, "notaurl", ""])
def test_invalid_urls_get_422_with_a_json_error(api: str, url: str) -> None:
    response = httpx.post(f"{api}/api/v1/ingest", json={"url": url})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_url"


def test_a_body_without_url_gets_422(api: str) -> None:
    response = httpx.post(f"{api}/api/v1/ingest", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.fixture(scope="module")
def api_short_deadline(settings: Settings) -> Iterator[str]:
    """An API whose Dagster is down, with a submission deadline and grace of seconds."""
    with api_in_thread(settings.model_copy(update={
            "dagster_port": free_port(), "sse_heartbeat_seconds": 1.0,
            "submit_deadline_seconds": 3.0, "submit_grace_seconds": 2.0})) as base:
        yield base


def test_a_url_submitted_while_dagster_is_down_is_accepted_then_fails_on_its_own_stream(
        api_short_deadline: str, sync_redis: redis.Redis, settings: Settings) -> None:
    api = api_short_deadline
    url = f"https://down.example/{uuid.uuid4()}"
    started = time.monotonic()
    response = httpx.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=30)
    assert response.status_code == 202, response.text  # a blip must not cost the submission
    assert time.monotonic() - started < 1.0
    job = response.json()
    # Waiting for Dagster, and saying so.
    deadline = time.monotonic() + 10
    while "waiting for Dagster" not in (httpx.get(job["status_url"]).json().get("message")
                                        or ""):
        assert time.monotonic() < deadline, "the record never said what it waits for"
        time.sleep(0.1)
    with httpx.stream("GET", job["stream_url"], timeout=30) as stream:
        events = _sse(stream.read().decode())
    data = [json.loads(e["data"]) for e in events if e.get("event") not in (None, "heartbeat")]
    assert [d["type"] for d in data] == ["error"]  # one terminal event, nothing made up
    assert data[0]["error"]["code"] == "orchestrator_unavailable"
    assert data[0]["stage"] == "submit"
    record = httpx.get(job["status_url"]).json()
    assert record["status"] == "failed" and record["error"]["stage"] == "submit"
    # Nothing is left behind: no claim on the URL, nothing in the submission queue.
    keys = JobKeys(settings.redis_prefix)
    assert not list(sync_redis.scan_iter(match=f"{settings.redis_prefix}active:down.example-*"))
    assert sync_redis.zscore(keys.submit_queue, job["job_id"]) is None
    assert not sync_redis.hexists(keys.submit_args, job["job_id"])


def test_once_dagster_has_been_down_past_the_grace_submissions_get_503_at_once(
        api_short_deadline: str) -> None:
    api = api_short_deadline
    first = httpx.post(f"{api}/api/v1/ingest", json={"url": f"https://down.example/{uuid.uuid4()}"},
                       timeout=30)
    assert first.status_code in (202, 503)
    deadline = time.monotonic() + 15
    while True:
        started = time.monotonic()
        response = httpx.post(f"{api}/api/v1/ingest",
                              json={"url": f"https://down.example/{uuid.uuid4()}"}, timeout=30)
        took = time.monotonic() - started
        if response.status_code == 503:
            break
        assert time.monotonic() < deadline, "submissions were never refused"
        time.sleep(0.5)
    assert took < 1.0
    error = response.json()["error"]
    assert error["code"] == "orchestrator_unavailable"
    assert "unreachable" in error["message"]
    assert int(response.headers["retry-after"]) > 0  # come back later, not at once


def test_a_job_cancelled_before_its_run_exists_ends_with_one_cancel_event(
        api: str, sync_redis: redis.Redis, settings: Settings) -> None:
    job = httpx.post(f"{api}/api/v1/ingest", json={"url": f"https://down.example/{uuid.uuid4()}"},
                     timeout=30).json()
    response = httpx.post(f"{api}/api/v1/ingest/{job['job_id']}/cancel", timeout=30)
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    with httpx.stream("GET", job["stream_url"], timeout=30) as stream:
        data = [json.loads(e["data"]) for e in _sse(stream.read().decode())
                if e.get("event") not in (None, "heartbeat")]
    assert [d["type"] for d in data] == ["job_cancelled"]
    assert httpx.get(job["status_url"]).json()["status"] == "cancelled"
    assert sync_redis.zscore(JobKeys(settings.redis_prefix).submit_queue, job["job_id"]) is None
    again = httpx.post(f"{api}/api/v1/ingest/{job['job_id']}/cancel", timeout=30)
    assert again.status_code == 409


def test_a_batch_of_500_urls_is_answered_at_once_with_every_job_id(api: str) -> None:
    urls = [f"https://batch.example/{uuid.uuid4()}/{i}" for i in range(500)]
    urls[7] = "ftp://not-http.example/"
    urls[9] = urls[8]  # the same URL twice in one batch is one job
    started = time.monotonic()
    response = httpx.post(f"{api}/api/v1/ingest/batch", json={"urls": urls}, timeout=30)
    took = time.monotonic() - started
    assert response.status_code == 202
    body = response.json()
    assert took < 2.0, f"{took:.2f} s"
    results = body["results"]
    assert len(results) == 500 and body["accepted"] == 499
    assert results[7]["error"]["code"] == "invalid_url"
    assert results[9]["job_id"] == results[8]["job_id"] and results[9]["status_code"] == 200
    ids = {r["job_id"] for r in results if "job_id" in r}
    assert len(ids) == 498
    assert httpx.get(results[0]["status_url"]).json()["status"] == "queued"


def test_a_job_id_that_cannot_exist_is_404_for_status_and_stream(api: str) -> None:
    for path in ("ingest", "stream"):
        response = httpx.get(f"{api}/api/v1/{path}/not-a-run-id")
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_a_job_missing_from_redis_while_dagster_is_down_is_503_not_404(api: str) -> None:
    response = httpx.get(f"{api}/api/v1/ingest/{uuid.uuid4()}", timeout=30)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "orchestrator_unavailable"


def test_health_names_what_is_down(api: str) -> None:
    response = httpx.get(f"{api}/api/v1/health", timeout=10)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["dagster"]
    assert body["checks"]["redis"] == "ok" and body["checks"]["catalog"] == "ok"
    # No embedding service in this test: reported, and not counted as down.
    assert body["embedding_service"]["status"].startswith("not running")


def test_stream_replays_from_the_start_then_follows_until_the_terminal_event(
        api: str, store: MirrorJobStore) -> None:
    job = str(uuid.uuid4())
    _write(store, job, 10, EventType.JOB_STARTED, status=JobStatus.RUNNING)
    _write(store, job, 11, EventType.STAGE_STARTED, stage="extract")

    def finish_later() -> None:
        time.sleep(1.5)
        _write(store, job, 12, EventType.STAGE_COMPLETED, stage="extract")
        _write(store, job, 13, EventType.JOB_COMPLETED, mode="terminal",
               status=JobStatus.COMPLETED)

    threading.Thread(target=finish_later).start()
    with httpx.stream("GET", f"{api}/api/v1/stream/{job}", timeout=20) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = _sse(body)
    real = [e for e in events if e.get("event") != "heartbeat"]
    assert [e["event"] for e in real] == ["job_started", "stage_started", "stage_completed",
                                          "job_completed"]
    assert [e["id"] for e in real] == ["10-0", "11-0", "12-0", "13-0"]
    assert json.loads(real[-1]["data"])["job_id"] == job
    # Idle for 1.5 s with a 1 s heartbeat: at least one heartbeat event came through.
    assert any(e.get("event") == "heartbeat" for e in events)

    status = httpx.get(f"{api}/api/v1/ingest/{job}").json()
    assert status["status"] == "completed" and status["stream_url"].endswith(f"/stream/{job}")

    # The server, not the client, ends a finished stream: read to EOF.
    started = time.monotonic()
    replay = httpx.get(f"{api}/api/v1/stream/{job}", timeout=10).text
    assert time.monotonic() - started < 3
    assert [e["id"] for e in _sse(replay)] == ["10-0", "11-0", "12-0", "13-0"]
    # EventSource reconnects after the terminal event: 204 tells it to stop.
    again = httpx.get(f"{api}/api/v1/stream/{job}", headers={"Last-Event-ID": "13-0"})
    assert again.status_code == 204


def test_last_event_id_resumes_after_that_event(api: str, store: MirrorJobStore) -> None:
    job = str(uuid.uuid4())
    for sid, kind in ((20, EventType.JOB_STARTED), (21, EventType.STAGE_STARTED),
                      (22, EventType.STAGE_COMPLETED)):
        _write(store, job, sid, kind, stage="extract", status=JobStatus.RUNNING)
    _write(store, job, 23, EventType.ERROR, mode="terminal", status=JobStatus.FAILED)
    body = httpx.get(f"{api}/api/v1/stream/{job}", headers={"Last-Event-ID": "21-0"},
                     timeout=10).text
    assert [e["id"] for e in _sse(body)] == ["22-0", "23-0"]
    assert httpx.get(f"{api}/api/v1/stream/{job}",
                     headers={"Last-Event-ID": "garbage"}).status_code == 400


def test_library_lists_catalog_items_newest_first_with_cursor(api: str, settings: Settings
                                                              ) -> None:
    from librarian.storage.catalog import Catalog
    from tests.integration.test_catalog import _version

    catalog = Catalog(settings.database_url)
    urls = [f"https://lib.example/{uuid.uuid4()}" for _ in range(3)]
    for url in urls:
        catalog.record_version(_version(url))
    catalog.close()
    first = httpx.get(f"{api}/api/v1/library", params={"limit": 2}).json()
    assert [i["url"] for i in first["items"]] == [urls[2], urls[1]]
    assert first["next_cursor"]
    second = httpx.get(f"{api}/api/v1/library",
                       params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["url"] == urls[0]
    item = httpx.get(f"{api}/api/v1/library/{first['items'][0]['id']}").json()
    assert item["versions"][0]["version"] == 1
    assert httpx.get(f"{api}/api/v1/library", params={"limit": 0}).status_code == 422
    assert httpx.get(f"{api}/api/v1/library", params={"cursor": "x"}).status_code == 422
    assert httpx.get(f"{api}/api/v1/library/{uuid.uuid4()}").status_code == 404


def test_openapi_document_lists_exactly_the_real_routes(api: str) -> None:
    from librarian_api.openapi import OPERATIONS, api_routes

    app = create_app(Settings())
    real = set(api_routes(app.routes))
    assert real == set(OPERATIONS), real ^ set(OPERATIONS)
    document = httpx.get(f"{api}/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    listed = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert listed == real


def test_the_web_page_and_its_script_are_served(api: str) -> None:
    page = httpx.get(f"{api}/")
    assert page.status_code == 200 and "EventSource" not in page.text
    assert '<script src="/static/app.js">' in page.text
    script = httpx.get(f"{api}/static/app.js")
    assert script.status_code == 200 and "new EventSource" in script.text


def test_a_server_shutting_down_ends_open_streams_with_where_to_resume(
        settings: Settings, store: MirrorJobStore) -> None:
    """SIGTERM to a real uvicorn process, as a deployment restart sends it."""
    import signal

    with api_process(settings) as (base, proc):
        job = str(uuid.uuid4())
        _write(store, job, 30, EventType.JOB_STARTED, status=JobStatus.RUNNING)
        threading.Timer(1.0, lambda: proc.send_signal(signal.SIGTERM)).start()
        started = time.monotonic()
        body = httpx.get(f"{base}/api/v1/stream/{job}", timeout=15).text
        assert time.monotonic() - started < 8
        events = _sse(body)
        assert [e.get("event") for e in events] == ["job_started", "server_shutdown"]
        assert json.loads(events[-1]["data"])["last_event_id"] == "30-0"
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(15) in (0, -signal.SIGTERM)


def test_streams_on_two_api_processes_see_the_same_events(
        api: str, settings: Settings, store: MirrorJobStore) -> None:
    """Any number of API workers: each fans out what the mirror writes to its own streams."""
    from concurrent.futures import ThreadPoolExecutor

    with api_process(settings) as (port_base, _proc):
        job = str(uuid.uuid4())
        _write(store, job, 40, EventType.JOB_STARTED, status=JobStatus.RUNNING)

        def follow(base: str) -> list[str]:
            return [e["id"] for e in _sse(httpx.get(f"{base}/api/v1/stream/{job}",
                                                    timeout=20).text)]

        with ThreadPoolExecutor(2) as pool:
            streams = [pool.submit(follow, base) for base in (api, port_base)]
            time.sleep(1.0)  # both streams are open and waiting
            _write(store, job, 41, EventType.STAGE_STARTED, stage="extract")
            _write(store, job, 42, EventType.JOB_COMPLETED, mode="terminal",
                   status=JobStatus.COMPLETED)
            results = [s.result(timeout=20) for s in streams]
        assert results == [["40-0", "41-0", "42-0"]] * 2

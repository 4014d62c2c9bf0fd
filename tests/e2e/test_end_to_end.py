"""The whole stack as processes — code server, dagster-webserver, dagster-daemon, the mirror and
the API, started by the same launcher as ``make run`` — ingesting pages served from 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from librarian.canonical_url import canonicalize
from librarian.cli.local_servers import free_port
from librarian.cli.stack import Stack
from librarian.embedding.client import EmbeddingClient
from librarian.runs import partition_key
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, item_id_for
from librarian.storage.objects import LocalObjectStore
from librarian.storage.vectors import VectorStore
from tests.e2e.conftest import stack_prefix
from tests.support.pages import PageServer

pytestmark = pytest.mark.e2e
TERMINAL = {"job_completed", "error", "job_cancelled"}
# The stack runs with authentication on: every request here carries the admin token.
http = httpx.Client()


@pytest.fixture(autouse=True)
def _authenticated(api_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    http.headers["Authorization"] = f"Bearer {api_token}"
    monkeypatch.setenv("LIBRARIAN_API_TOKEN", api_token)  # for the CLI the tests run


def first_run(instance: Any, job_id: str, timeout: float = 60) -> str:
    """The id of the job's first run (the API issues job ids; each run carries its job's)."""
    from dagster import RunsFilter

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(RunsFilter(tags={"librarian/job": job_id}))
        roots = [r.run_id for r in runs if r.parent_run_id is None]
        if roots:
            return str(roots[0])
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got a run")


def read_stream(url: str, timeout: float = 90) -> list[dict[str, Any]]:
    """SSE events (parsed) until the terminal one."""
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    with http.stream("GET", url, timeout=timeout) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                key, _, value = line.partition(":")
                current[key] = value.lstrip(" ")
                continue
            if current:
                event = {"id": current.get("id"), "event": current.get("event"),
                         **json.loads(current.get("data", "{}"))}
                events.append(event)
                current = {}
                if event["event"] in TERMINAL:
                    break
    return events


def test_a_submitted_url_streams_its_progress_and_lands_in_the_library(
        api: str, stack: Stack, page_server: PageServer, instance: Any) -> None:
    url = page_server.url("/article.html") + "?utm_source=newsletter"
    embedder = EmbeddingClient(stack.embedder_socket)
    before = embedder.ping()
    assert before is not None
    response = http.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=30)
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) >= {"job_id", "status_url", "stream_url"}

    again = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/article.html")},
                       timeout=30)
    assert again.status_code == 200 and again.json()["job_id"] == job["job_id"]

    events = read_stream(job["stream_url"])
    kinds = [e["event"] for e in events if e["event"] != "heartbeat"]
    assert kinds[0] == "job_started" and kinds[-1] == "job_completed", kinds
    order = [(e["event"], e.get("stage")) for e in events
             if e["event"] in ("stage_started", "stage_completed")]
    assert order == [(k, s) for s in ("extract", "transform", "load")
                     for k in ("stage_started", "stage_completed")]
    assert "stage_progress" in kinds
    ids = [tuple(map(int, e["id"].split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    result = events[-1]["result"]
    canonical = canonicalize(url)
    assert result["item_id"] == item_id_for(canonical.url)
    assert result["title"] == "Growing Tomatoes at Home"

    record = http.get(job["status_url"]).json()
    assert record["status"] == "completed" and record["percent"] == 100
    assert record["result"]["item_id"] == result["item_id"]

    item = http.get(f"{api}/api/v1/library/{result['item_id']}").json()
    assert item["canonical_url"] == canonical.url and item["current_version"] == 1
    library = http.get(f"{api}/api/v1/library").json()["items"]
    assert result["item_id"] in [i["id"] for i in library]

    stack_settings = Settings(data_dir=stack.data_dir)
    markdown = LocalObjectStore(stack_settings.objects_path).get(result["object_key"])
    assert b"Cherry tomatoes" in markdown
    vectors = VectorStore(path=stack_settings.qdrant_path)
    chunks = item["versions"][0]["chunk_count"]
    assert vectors.count_item(item_id=result["item_id"], model="all-MiniLM-L6-v2-int8-dq8",
                              dimension=384) == chunks
    # The run embedded through the host's embedding service, not a model of its own.
    after = embedder.ping()
    assert after is not None and after["texts"] - before["texts"] >= chunks > 0
    # The API embeds the query with the same model (through the same service): dense search
    # lands in the collection the run wrote.
    found = http.get(f"{api}/api/v1/search", params={"q": "how to grow cherry tomatoes",
                                                      "mode": "dense"}, timeout=30).json()
    assert found["results"][0]["item_id"] == result["item_id"], found
    assert embedder.ping()["texts"] > after["texts"]  # type: ignore[index]

    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey("library_item"))
    assert event is not None
    partitions = {r.partition_key for r in instance.fetch_materializations(
        AssetKey("library_item"), limit=100).records}
    assert partition_key(canonical) in partitions

    # A replay of the finished stream gives the same events and closes.
    assert [e["id"] for e in read_stream(job["stream_url"])] == [e["id"] for e in events]


@pytest.mark.parametrize(("target", "code"), [
    ("/missing", "not_found"), ("refused", "connect_error"), ("/binary.bin", "unsupported_type")])
def test_a_failing_url_ends_with_an_error_event_and_no_item(
        api: str, page_server: PageServer, target: str, code: str) -> None:
    url = (f"http://127.0.0.1:{free_port()}/nothing" if target == "refused"
           else page_server.url(target))
    job = http.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=30).json()
    events = read_stream(job["stream_url"])
    last = events[-1]
    assert last["event"] == "error"
    assert last["error"]["stage"] == "extract" and last["error"]["code"] == code
    record = http.get(job["status_url"]).json()
    assert record["status"] == "failed" and record["error"]["code"] == code
    item_id = item_id_for(canonicalize(url).url)
    assert http.get(f"{api}/api/v1/library/{item_id}").status_code == 404


def test_a_url_added_to_the_watchlist_is_ingested_by_the_sensor(
        api: str, stack: Stack, page_server: PageServer) -> None:
    url = page_server.url("/notes.txt")
    watchlist = Path(stack.env["LIBRARIAN_WATCHLIST_PATH"])
    with watchlist.open("a") as fh:
        fh.write(url + "\n")
    item_id = item_id_for(canonicalize(url).url)
    deadline = time.monotonic() + 120
    while True:
        response = http.get(f"{api}/api/v1/library/{item_id}")
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, "the sensor's run did not land in time"
        time.sleep(1)
    assert response.json()["title"] == "Notes on sourdough baking"


def test_runs_are_started_by_the_warm_run_pool(
        api: str, page_server: PageServer, instance: Any) -> None:
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/notes.txt") +
                                                   "?pool=1"}, timeout=30).json()
    assert read_stream(job["stream_url"])[-1]["event"] == "job_completed"
    tags = instance.get_run_by_id(first_run(instance, job["job_id"])).tags
    assert tags["librarian/launcher"] == "warm" and tags["librarian/worker"]


def test_with_the_run_pool_down_runs_still_complete_through_the_stock_launcher(
        api: str, stack: Stack, page_server: PageServer, instance: Any) -> None:
    stack.stop_process("run-pool")
    try:
        job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/notes.txt") +
                                                       "?pool=down"}, timeout=30).json()
        assert read_stream(job["stream_url"])[-1]["event"] == "job_completed"
        run = instance.get_run_by_id(first_run(instance, job["job_id"]))
        assert run.tags["librarian/launcher"] == "default"
        assert any("Warm run pool unavailable" in (e.message or "")
                   for e in instance.all_logs(run.run_id))
    finally:
        stack.start_pool()
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/notes.txt") +
                                                   "?pool=back"}, timeout=30).json()
    assert read_stream(job["stream_url"])[-1]["event"] == "job_completed"
    assert instance.get_run_by_id(first_run(instance, job["job_id"])
                                  ).tags["librarian/launcher"] == "warm"


def test_items_embedded_with_another_model_are_embedded_again_on_request(
        api: str, stack: Stack, page_server: PageServer) -> None:
    url = page_server.url("/notes.txt") + "?reembed=1"
    job = http.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=30).json()
    assert read_stream(job["stream_url"])[-1]["event"] == "job_completed"
    canonical = canonicalize(url).url
    item_id = item_id_for(canonical)
    catalog = Catalog(stack.env["LIBRARIAN_DATABASE_URL"])
    try:
        # As if ingested before the model changed.
        with catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE item_versions SET embedding_model = 'older-model'"
                                 " WHERE item_id = :id"), {"id": item_id})
        body = http.post(f"{api}/api/v1/library/reembed", timeout=60).json()
        assert body["model"] == "all-MiniLM-L6-v2-int8-dq8" and body["stale"] >= 1, body
        [mine] = [r for r in body["results"] if r["url"] == canonical]
        assert mine["status_code"] == 202
        assert read_stream(mine["stream_url"])[-1]["event"] == "job_completed"
        item = catalog.get_item(item_id)
        assert item is not None and item["current_version"] == 1
        assert item["versions"][0]["embedding_model"] == "all-MiniLM-L6-v2-int8-dq8"
        # The command-line client asks the same endpoint: nothing of this item is left.
        cli = subprocess.run([sys.executable, "-m", "librarian", "reembed", "--api", api,
                              "--json"], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        again = json.loads(cli.stdout)
        assert canonical not in [r["url"] for r in again["results"]]
    finally:
        catalog.close()


def test_health_is_ok_when_everything_runs(api: str) -> None:
    body = http.get(f"{api}/api/v1/health", timeout=10).json()
    assert (body["status"], body["down"]) == ("ok", [])
    assert body["checks"] == {"redis": "ok", "catalog": "ok", "dagster": "ok"}
    # The mirror has written (earlier tests ran jobs) and says how far behind it was.
    assert body["mirror"]["lag_ms"] >= 0 and body["mirror"]["cursor"] > 0
    service = body["embedding_service"]
    assert service["status"] == "ok" and service["model"] == "all-MiniLM-L6-v2-int8-dq8"
    assert service["texts"] > 0  # earlier tests' runs embedded through it


def _worker_pid(instance: Any, run_id: str, timeout: float = 60) -> int:
    """The pid of the process executing ``run_id``, from its STEP_START event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is not None and event.event_type.name == "STEP_START" and event.pid:
                return int(event.pid)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never started a step")


def _latest_run_of(instance: Any, job_id: str, after: set[str]) -> str:
    from dagster import RunsFilter

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = instance.get_runs(RunsFilter(tags={"librarian/job": job_id}))
        fresh = [r.run_id for r in runs if r.run_id not in after]
        if fresh:
            return str(fresh[0])
        time.sleep(0.2)
    raise AssertionError("Dagster did not retry the run")


def test_a_killed_run_worker_is_retried_once_then_reported_failed(
        api: str, page_server: PageServer, instance: Any) -> None:
    import os
    import signal

    url = page_server.url("/slow") + "?3"
    job = http.post(f"{api}/api/v1/ingest", json={"url": url}, timeout=30).json()
    run_id = first_run(instance, job["job_id"])
    os.kill(_worker_pid(instance, run_id), signal.SIGKILL)
    retry = _latest_run_of(instance, job["job_id"], after={run_id})
    _worker_pid(instance, retry)
    with http.stream("GET", job["stream_url"], timeout=60) as live:
        assert live.status_code == 200
        lines = live.iter_lines()
        os.kill(_worker_pid(instance, retry), signal.SIGKILL)
        killed = time.monotonic()
        for line in lines:
            if line.startswith("event:") and line.split(":", 1)[1].strip() in TERMINAL:
                break
        # Kill -9 of a run worker → RUN_FAILURE → the `error` event on a live stream.
        assert time.monotonic() - killed < 5

    events = read_stream(job["stream_url"])
    assert [e.get("attempt") for e in events if e["event"] == "job_started"] == [1, 2]
    assert any(e["event"] == "stage_progress" and "retries" in e.get("message", "")
               for e in events)
    last = events[-1]
    assert last["event"] == "error" and last["error"]["code"] == "run_failed"
    assert last["error"]["stage"] == "extract"
    record = http.get(job["status_url"]).json()
    assert record["status"] == "failed" and record["attempt"] == 2
    assert http.get(f"{api}/api/v1/library/{item_id_for(canonicalize(url).url)}"
                     ).status_code == 404


def test_unknown_run_id_is_404_and_a_job_redis_lost_is_answered_from_dagster(
        api: str, page_server: PageServer, settings: Settings) -> None:
    import uuid

    import redis

    assert http.get(f"{api}/api/v1/ingest/{uuid.uuid4()}", timeout=30).status_code == 404
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/notes.txt") +
                                                   "?lost=1"}, timeout=30).json()
    assert read_stream(job["stream_url"])[-1]["event"] == "job_completed"
    client = redis.Redis.from_url(settings.redis_url)
    prefix = stack_prefix(settings)
    client.delete(f"{prefix}job:{job['job_id']}", f"{prefix}job:{job['job_id']}:events")
    client.close()
    record = http.get(job["status_url"], timeout=30).json()
    assert record["status"] == "completed"
    events = read_stream(job["stream_url"])
    assert [e["event"] for e in events] == ["job_completed"]


def test_cancelling_a_running_job_ends_its_stream_with_job_cancelled(
        api: str, page_server: PageServer, instance: Any) -> None:
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/slow") + "?4"},
                     timeout=30).json()
    _worker_pid(instance, first_run(instance, job["job_id"]))  # the run is executing extract
    response = http.post(f"{api}/api/v1/ingest/{job['job_id']}/cancel", timeout=30)
    assert response.status_code == 202, response.text
    events = read_stream(job["stream_url"])
    assert events[-1]["event"] == "job_cancelled"
    assert http.get(job["status_url"]).json()["status"] == "cancelled"
    again = http.post(f"{api}/api/v1/ingest/{job['job_id']}/cancel", timeout=30)
    assert again.status_code == 409


def test_a_failed_job_retried_continues_its_stream_to_completion(
        api: str, page_server: PageServer) -> None:
    path = "/appears-later"
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url(path)},
                     timeout=30).json()
    first = read_stream(job["stream_url"])
    assert first[-1]["event"] == "error" and first[-1]["error"]["code"] == "not_found"
    failed = http.get(f"{api}/api/v1/jobs", params={"status": "failed", "limit": 100}).json()
    assert job["job_id"] in [j["job_id"] for j in failed["jobs"]]

    page_server.pages[path] = page_server.pages["/notes.txt"]
    response = http.post(f"{api}/api/v1/ingest/{job['job_id']}/retry", timeout=30)
    assert response.status_code == 202, response.text
    assert response.json()["job_id"] == job["job_id"]
    rest = read_stream(job["stream_url"] + f"?last_event_id={first[-1]['id']}")
    assert rest[0]["event"] == "job_started" and rest[-1]["event"] == "job_completed"
    assert http.get(job["status_url"]).json()["status"] == "completed"


def test_a_batch_submission_answers_per_url(api: str, page_server: PageServer) -> None:
    urls = [page_server.url("/notes.txt") + "?batch=1", "ftp://nope.example/"]
    response = http.post(f"{api}/api/v1/ingest/batch", json={"urls": urls}, timeout=60)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    ok, bad = body["results"]
    assert ok["status_code"] == 202 and ok["job_id"]
    assert bad["status_code"] == 422 and bad["error"]["code"] == "invalid_url"
    assert read_stream(ok["stream_url"])[-1]["event"] == "job_completed"


def _cli(api: str, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "librarian", *args, "--api", api],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_follows_jobs_and_exits_non_zero_when_one_fails(
        api: str, page_server: PageServer) -> None:
    good = page_server.url("/notes.txt") + "?cli=1"
    bad = page_server.url("/missing") + "?cli=1"
    done = _cli(api, "ingest", good, bad, "--follow")
    assert done.returncode == 1, done.stderr
    assert f"✓ {canonicalize(good).url}" in done.stdout
    assert "not_found" in done.stdout

    jobs = json.loads(_cli(api, "jobs", "--failed", "--json", "--limit", "100").stdout)
    failed = [j for j in jobs["jobs"] if j["url"] == canonicalize(bad).url]
    assert failed and failed[0]["error"]["code"] == "not_found"
    status = _cli(api, "status", failed[0]["job_id"])
    assert status.returncode == 1 and "not_found in extract" in status.stdout
    assert _cli(api, "ingest", "ftp://x/").returncode == 1


def test_reconnecting_at_any_point_sees_every_event_once_in_order(
        api: str, page_server: PageServer) -> None:
    """The reconnect matrix: a client that drops after any event (before, during and after
    each stage, live and after the end) and resumes with Last-Event-ID misses nothing and
    sees nothing twice."""
    job = http.post(f"{api}/api/v1/ingest", json={"url": page_server.url("/slow") + "?1.5"},
                     timeout=30).json()
    # Live: drop as soon as the transform stage starts, resume to the end.
    first: list[dict[str, Any]] = []
    with http.stream("GET", job["stream_url"], timeout=60) as response:
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                key, _, value = line.partition(":")
                current[key] = value.lstrip(" ")
            elif current:
                first.append({"id": current.get("id"), "event": current.get("event"),
                              **json.loads(current.get("data", "{}"))})
                current = {}
                if first[-1]["event"] == "stage_started" and first[-1].get("stage") == \
                        "transform":
                    break
    rest = read_stream(job["stream_url"] + f"?last_event_id={first[-1]['id']}")
    live = [e for e in first + rest if e["event"] != "heartbeat"]
    full = [e for e in read_stream(job["stream_url"]) if e["event"] != "heartbeat"]
    assert [e["id"] for e in live] == [e["id"] for e in full]
    assert full[-1]["event"] == "job_completed"
    # After the end: resuming after each event k gives exactly the events after k.
    for k, event in enumerate(full[:-1]):
        resumed = [e["id"] for e in read_stream(
            job["stream_url"] + f"?last_event_id={event['id']}") if e["event"] != "heartbeat"]
        assert resumed == [e["id"] for e in full[k + 1:]], (k, event["event"])
    resumed_end = http.get(job["stream_url"], headers={"Last-Event-ID": full[-1]["id"]})
    assert resumed_end.status_code == 204

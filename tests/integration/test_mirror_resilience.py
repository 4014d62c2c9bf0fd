"""The event mirror through database and Redis trouble: it waits and carries on, never dies."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from librarian.cli.local_servers import EmbeddedRedis as LocalRedis
from librarian.cli.local_servers import free_port
from librarian.jobs.store import MirrorJobStore
from librarian.orchestration.mirror import EventMirror, _Listener, libpq_dsn
from librarian.settings import Settings


def _kill_backend(dsn: str, pid: int) -> None:
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        admin.close()


def _channels(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_listening_channels()")
        return [row[0] for row in cur.fetchall()]


def test_the_listener_reopens_after_the_database_drops_its_connection(
        settings: Settings) -> None:
    dsn = libpq_dsn(settings.dagster_database_url)
    listener = _Listener(dsn)
    try:
        assert listener.wait(0.05)
        first = listener.conn.get_backend_pid()
        _kill_backend(dsn, first)
        # The dropped connection is noticed (the caller polls meanwhile)...
        deadline = time.monotonic() + 10
        while listener.wait(0.2):
            assert time.monotonic() < deadline, "the dropped connection was never noticed"
        # ...and the next wait listens again on a new connection.
        assert listener.wait(0.05)
        assert listener.conn.get_backend_pid() != first
        assert _channels(listener.conn) == ["run_events"]
    finally:
        listener.close()


def test_a_mirror_started_while_redis_is_down_waits_then_catches_up(
        instance: Any, settings: Settings, tmp_path: Path) -> None:
    """Passes fail while Redis is down; the mirror backs off instead of dying, and once Redis
    is back it writes everything from its cursor."""
    port = free_port()
    server = LocalRedis(tmp_path / "redis", port)
    client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)  # with its password
    store = MirrorJobStore(client, "resilience:", 60)
    # At least one event in the log for the mirror to carry over.
    instance.report_engine_event("resilience probe", job_name="ingest_url",
                                 run_id=str(uuid.uuid4()))
    mirror = EventMirror(instance, store)
    stop = threading.Event()
    thread = threading.Thread(target=mirror.run_forever, args=(stop,),
                              kwargs={"listen_dsn": libpq_dsn(settings.dagster_database_url),
                                      "poll_seconds": 0.05}, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        assert thread.is_alive() and mirror.cursor == 0
        server.start()
        deadline = time.monotonic() + 20
        while not client.get(store.keys.mirror_cursor):
            assert thread.is_alive() and time.monotonic() < deadline, "no catch-up"
            time.sleep(0.1)
        assert int(client.get(store.keys.mirror_cursor) or 0) > 0
    finally:
        stop.set()
        thread.join(20)
        server.stop()
    assert not thread.is_alive()


def _failed_run_awaiting_retry(instance: Any) -> Any:
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    run = create_run_for_test(instance, job_name="ingest_url", status=DagsterRunStatus.STARTED,
                              tags={"librarian/url": "https://example.com/retry"})
    instance.report_run_failed(run, "run worker pid 1 is gone")  # not a step failure
    # Dagster decides at once that it will run it again (run retries are on in dagster.yaml).
    assert instance.get_run_by_id(run.run_id).tags.get("dagster/will_retry") == "true"
    return run


def _events_of(client: redis.Redis, store: MirrorJobStore, job_id: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(data[b"data"]) for _id, data in client.xrange(store.keys.events(job_id))]


@pytest.mark.parametrize("flip_first", [True, False], ids=["tag-then-event", "event-then-tag"])
def test_a_retry_dagster_could_not_launch_ends_the_job_once(
        instance: Any, sync_redis: redis.Redis, flip_first: bool) -> None:
    """Dagster says it will retry a failed run, then fails to launch the retry (it logs why and
    sets will_retry=false): the job must end ``failed`` with one terminal event, not wait in
    the queue forever; whichever of the two Dagster writes first."""
    store = MirrorJobStore(sync_redis, f"abandoned-{uuid.uuid4().hex[:8]}:", 60)
    mirror = EventMirror(instance, store, gap_wait=0.2)
    run = _failed_run_awaiting_retry(instance)
    mirror.drain()
    record = store.record(run.run_id)
    assert record is not None and record.status.value == "queued"  # waiting for the retry

    def abandon() -> None:
        instance.add_run_tags(run.run_id, {"dagster/will_retry": "false"})

    if flip_first:
        abandon()
    instance.report_engine_event("Failed to retry run", run)
    if not flip_first:
        abandon()
    mirror.drain()
    mirror.reconcile()  # what the running mirror does every 30 s
    mirror.drain()
    events = _events_of(sync_redis, store, run.run_id)
    terminal = [e for e in events if e["type"] in ("job_completed", "error", "job_cancelled")]
    assert [e["type"] for e in terminal] == ["error"]
    assert terminal[0]["error"]["code"] == "run_failed"
    assert "could not retry" in terminal[0]["error"]["message"]
    record = store.record(run.run_id)
    assert record is not None and record.status.value == "failed"
    # Nothing more comes of later passes.
    mirror.reconcile()
    mirror.drain()
    assert len(_events_of(sync_redis, store, run.run_id)) == len(events)

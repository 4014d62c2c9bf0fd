"""The event mirror through database and Redis trouble: it waits and carries on, never dies."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
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
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
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

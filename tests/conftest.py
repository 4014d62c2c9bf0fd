"""Test session infrastructure: real PostgreSQL and Redis, isolated per session.

PostgreSQL and Redis on 127.0.0.1 (5432, 6379) are used when they answer; otherwise the session
starts private servers with the same launcher code as ``make run``. Each session gets its own
databases (catalog and Dagster storage) and its own Redis key prefix, removed at the end, so
concurrent sessions never collide. Test pages are served from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from librarian.cli.local_servers import EmbeddedPostgres, EmbeddedRedis, port_open
from librarian.settings import Settings
from tests.support.pages import PageServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def session_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("librarian")


@pytest.fixture(scope="session")
def postgres_base(session_dir: Path) -> Iterator[str]:
    """A superuser URL (without database) of a PostgreSQL server."""
    if port_open("127.0.0.1", 5432):
        yield "postgresql+psycopg2://postgres@127.0.0.1:5432"
        return
    server = EmbeddedPostgres(Path("/tmp") / f"librarian-test-pg-{os.getpid()}",
                              port=_free_port())
    server.start()
    try:
        yield server.admin_url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(session_dir: Path) -> Iterator[str]:
    if port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    server = EmbeddedRedis(session_dir / "redis", port=_free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _free_port() -> int:
    from librarian.cli.local_servers import free_port

    return free_port()


def _admin(base: str) -> psycopg2.extensions.connection:
    dsn = base.replace("postgresql+psycopg2://", "postgresql://") + "/postgres"
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def databases(postgres_base: str, session_id: str) -> Iterator[dict[str, str]]:
    # The end-to-end stack gets a catalog of its own: its files and vectors live in its own
    # data folder, so it must not share catalog rows with the in-process pipeline tests.
    names = {"catalog": f"librarian_test_{session_id}", "dagster": f"dagster_test_{session_id}",
             "e2e_catalog": f"librarian_e2e_{session_id}"}
    conn = _admin(postgres_base)
    with conn.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield {k: f"{postgres_base}/{v}" for k, v in names.items()}
    conn = _admin(postgres_base)
    with conn.cursor() as cur:
        for name in names.values():
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str, session_id: str) -> Iterator[str]:
    prefix = f"librarian-test:{session_id}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(databases: dict[str, str], redis_url: str, redis_prefix: str,
             session_dir: Path) -> Settings:
    from librarian.storage.catalog import migrate

    migrate(databases["catalog"])
    migrate(databases["e2e_catalog"])
    return Settings(
        environment="test",
        data_dir=session_dir / "data",
        database_url=databases["catalog"],
        dagster_database_url=databases["dagster"],
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        fetch_allow_networks=["127.0.0.1/32"],
        fetch_total_timeout=15,
        fetch_read_timeout=5,
        fetch_connect_timeout=3,
        watchlist_interval_seconds=1,
        sse_heartbeat_seconds=15,
        # Every test API listens on 127.0.0.1. Authentication has tests of its own
        # (tests/integration/test_auth.py), and the end-to-end stack runs with it on.
        auth="off",
        # Every test submits and searches from 127.0.0.1, hundreds of URLs within seconds:
        # the rates are off here, and on in the tests of the limits themselves.
        rate_limit_submissions_per_minute=0,
        rate_limit_searches_per_minute=0,
    )


@pytest.fixture(scope="session")
def dagster_home(settings: Settings, session_dir: Path) -> Iterator[Path]:
    """A Dagster instance on the session's PostgreSQL database, for in-process runs."""
    home = session_dir / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "LIBRARIAN_DAGSTER_DATABASE_URL")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["LIBRARIAN_DAGSTER_DATABASE_URL"] = settings.dagster_database_url
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def instance(dagster_home: Path) -> Iterator[object]:
    from dagster import DagsterInstance

    with DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    with contextlib.suppress(Exception):
        client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 API server (moto's) on 127.0.0.1 for the MinIO-SDK code path."""
    from moto.server import ThreadedMotoServer

    from librarian.cli.local_servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()

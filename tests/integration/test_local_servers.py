"""The private servers ``make run`` starts: real PostgreSQL and Redis under a folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg2
import pytest
import redis

from librarian.cli.local_servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
)
from librarian.errors import LocalServerError
from librarian.storage.catalog import Catalog, migrate


def test_embedded_postgres_starts_serves_the_catalog_restarts_and_stops() -> None:
    root = Path("/tmp") / f"librarian-embedded-{free_port()}"
    server = EmbeddedPostgres(root, free_port())
    server.start()
    try:
        server.create_database("librarian")
        server.create_database("librarian")  # idempotent
        migrate(f"{server.url}/librarian")
        catalog = Catalog(f"{server.url}/librarian")
        catalog.ping()
        assert catalog.list_items() == ([], None)
        catalog.close()
        server.stop()
        server.start()  # warm start on the existing data folder
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                                dbname="librarian")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM items")
            assert cur.fetchone() == (0,)
        conn.close()
    finally:
        server.stop()
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                         dbname="librarian", connect_timeout=2)


def test_embedded_redis_starts_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
        with pytest.raises(LocalServerError, match="taken"):
            EmbeddedRedis(tmp_path / "other", server.port).start()
    finally:
        server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_as_root_a_data_folder_the_server_user_cannot_enter_still_works(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = EmbeddedPostgres(private / "data" / "postgres", free_port())
    assert server.home != server.root  # moved where the server user can reach it
    try:
        server.start()
        server.create_database("librarian")
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                                dbname="librarian")
        conn.close()
        assert (server.root / "LOCATION").read_text().strip() == str(server.home)
        assert server.alive()
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
    assert not server.alive()

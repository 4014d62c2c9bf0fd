"""The private servers ``make run`` starts: real PostgreSQL and Redis under a folder, each
answering only Librarian's own processes (passwords from a 0600 file of the data folder)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
import redis

from librarian.cli.local_servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
)
from librarian.errors import LocalServerError
from librarian.storage.catalog import Catalog, migrate

SECRETS = "secrets.json"  # where the servers keep their passwords, in their folder by default


@pytest.fixture(autouse=True)
def _no_password_from_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # libpq would take a password from these: a refusal must be the server's.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)


def _dsn(url: str, database: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://") + f"/{database}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def postgres() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(Path("/tmp") / f"librarian-embedded-{free_port()}", free_port())
    server.start()
    server.create_database("librarian")
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


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
        conn = psycopg2.connect(_dsn(server.url, "librarian"))
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM items")
            assert cur.fetchone() == (0,)
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(_dsn(server.url, "librarian"), connect_timeout=2)


@pytest.mark.parametrize("user", ["librarian", "librarian_admin", "postgres"])
@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_the_private_postgres_refuses_a_connection_without_the_right_password(
        postgres: EmbeddedPostgres, user: str, password: str | None) -> None:
    for host in ("127.0.0.1", str(postgres.home / "run")):  # TCP and the socket
        # A role that does not exist is refused the same way (no hint that it is missing).
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(host=host, port=postgres.port, user=user, password=password,
                             dbname="librarian", connect_timeout=5)


def test_the_application_role_owns_its_database_but_is_no_superuser(
        postgres: EmbeddedPostgres) -> None:
    conn = psycopg2.connect(_dsn(postgres.url, "librarian"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper, rolcreaterole, rolcreatedb "
                        "FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == ("librarian", False, False, False)
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database "
                        "WHERE datname = 'librarian'")
            assert cur.fetchone() == ("librarian",)
    finally:
        conn.close()


def test_the_application_role_cannot_run_programs_on_the_server(
        postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    proof = tmp_path / "ran"
    conn = psycopg2.connect(_dsn(postgres.url, "librarian"))
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(f"COPY (SELECT 1) TO PROGRAM 'touch {proof}'")
        conn.rollback()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT pg_read_file('postgresql.conf')")
    finally:
        conn.close()
    assert not proof.exists()


def test_the_secrets_file_is_never_readable_by_others_and_a_second_start_reuses_it(
        tmp_path: Path) -> None:
    root = Path("/tmp") / f"librarian-embedded-{free_port()}"
    server = EmbeddedPostgres(root, free_port())
    old_umask = os.umask(0)  # the file's mode must not depend on the caller's umask
    try:
        server.start()
    finally:
        os.umask(old_umask)
    try:
        secrets = root / SECRETS
        assert _mode(secrets) == 0o600
        first = json.loads(secrets.read_text())
        assert len(set(first.values())) == len(first) >= 2
        server.create_database("librarian")
        conn = psycopg2.connect(_dsn(server.url, "librarian"))
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
        conn.close()
        server.stop()

        again = EmbeddedPostgres(root, server.port)  # as a new `librarian run` would
        again.start()
        try:
            again.create_database("librarian")
            assert json.loads(secrets.read_text()) == first
            assert again.url == server.url
            assert _mode(secrets) == 0o600
            conn = psycopg2.connect(_dsn(again.url, "librarian"))
            with conn.cursor() as cur:
                cur.execute("SELECT note FROM kept")
                assert cur.fetchall() == [("still here",)]
            conn.close()
        finally:
            again.stop()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_lost_secrets_file_gets_new_passwords_and_keeps_the_data() -> None:
    root = Path("/tmp") / f"librarian-embedded-{free_port()}"
    server = EmbeddedPostgres(root, free_port())
    server.start()
    try:
        server.create_database("librarian")
        old_url = server.url
        conn = psycopg2.connect(_dsn(old_url, "librarian"))
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('still here')")
        conn.close()
        server.stop()
        (root / SECRETS).unlink()

        again = EmbeddedPostgres(root, server.port)
        again.start()
        try:
            again.create_database("librarian")
            assert again.url != old_url
            with pytest.raises(psycopg2.OperationalError, match="password"):
                psycopg2.connect(_dsn(old_url, "librarian"), connect_timeout=5)
            conn = psycopg2.connect(_dsn(again.url, "librarian"))
            with conn.cursor() as cur:
                cur.execute("SELECT note FROM kept")
                assert cur.fetchall() == [("still here",)]
            conn.close()
        finally:
            again.stop()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _trust_era_cluster(server: EmbeddedPostgres) -> None:
    """A data folder as ``librarian run`` made it before passwords: ``initdb --auth=trust``
    with ``librarian`` as the superuser, a database and objects of every common kind."""
    server.home.mkdir(parents=True)
    (server.home / "run").mkdir()
    if os.geteuid() == 0:
        assert server._owner is not None
        for path in (server.home, server.home / "run"):
            os.chown(path, *server._owner)
    run = server._run  # as the server user, as the old start-up ran them
    run(str(server.bin / "initdb"), "-D", str(server.pgdata), "-U", "librarian", "--auth=trust",
        "-E", "UTF8", "--no-sync")
    run(str(server.bin / "pg_ctl"), "-D", str(server.pgdata), "-l",
        str(server.home / "postgres.log"), "-w", "-o",
        f"-p {server.port} -c listen_addresses=127.0.0.1 "
        f"-c unix_socket_directories={server.home / 'run'}", "start")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE librarian")
        conn.close()
        conn = psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                                dbname="librarian")
        with conn, conn.cursor() as cur:
            cur.execute("""
                CREATE SCHEMA extra;
                CREATE TYPE mood AS ENUM ('ok', 'good');
                CREATE TABLE notes (id serial PRIMARY KEY, body text, m mood);
                CREATE TABLE extra.counted (id bigint GENERATED ALWAYS AS IDENTITY, n int);
                CREATE SEQUENCE loose;
                CREATE VIEW note_bodies AS SELECT body FROM notes;
                CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2';
                INSERT INTO notes (body, m) VALUES ('from before', 'ok');
            """)
        conn.close()
    finally:
        run(str(server.bin / "pg_ctl"), "-D", str(server.pgdata), "-m", "fast", "-w", "stop")


def test_a_data_folder_made_with_trust_needs_passwords_after_its_first_start() -> None:
    root = Path("/tmp") / f"librarian-embedded-{free_port()}"
    server = EmbeddedPostgres(root, free_port())
    _trust_era_cluster(server)
    server.start()
    try:
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(host="127.0.0.1", port=server.port, user="librarian",
                             dbname="librarian", connect_timeout=5)
        server.create_database("librarian")  # what `librarian run` does next
        conn = psycopg2.connect(_dsn(server.url, "librarian"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone() == (False,)
            # Its data, and everything it owned, is the application role's now.
            cur.execute("SELECT body FROM notes")
            assert cur.fetchall() == [("from before",)]
            cur.execute("INSERT INTO notes (body, m) VALUES ('after', 'good')")
            cur.execute("INSERT INTO extra.counted (n) VALUES (1)")
            cur.execute("SELECT nextval('loose'), twice(2), count(*) FROM note_bodies")
            assert cur.fetchone() == (1, 4, 2)
            cur.execute("ALTER TABLE notes ADD COLUMN added int")  # as a migration would
            cur.execute("ALTER TYPE mood ADD VALUE 'great'")
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        conn.close()
        admin = psycopg2.connect(_dsn(server.admin_url, "postgres"))
        with admin.cursor() as cur:
            cur.execute("SELECT rolname, rolsuper FROM pg_roles WHERE oid = 10")
            assert cur.fetchone() == ("librarian_admin", True)
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'librarian%' "
                        "ORDER BY rolname")
            assert cur.fetchall() == [("librarian",), ("librarian_admin",)]
        admin.close()
        hba = (server.pgdata / "pg_hba.conf").read_text()
        assert "trust" not in hba.replace("# Written by Librarian", "")
        server.stop()
        server.start()  # later starts: the same passwords, nothing more to move
        conn = psycopg2.connect(_dsn(server.url, "librarian"))
        conn.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


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


def test_the_private_redis_refuses_clients_without_its_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        for password in (None, "wrong-password"):
            client = redis.Redis(host="127.0.0.1", port=server.port, password=password)
            with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
                client.ping()
            client.close()
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.close()
    finally:
        server.stop()
    # Not on its command line, which every local user can read.
    secrets = json.loads((tmp_path / "redis" / SECRETS).read_text())
    assert _mode(tmp_path / "redis" / SECRETS) == 0o600
    again = EmbeddedRedis(tmp_path / "redis", server.port)
    again.start()
    try:
        assert again.url == server.url
        assert json.loads((tmp_path / "redis" / SECRETS).read_text()) == secrets
        assert again._proc is not None
        cmdline = Path(f"/proc/{again._proc.pid}/cmdline").read_bytes().decode()
        assert not any(value in cmdline for value in secrets.values())
        client = redis.Redis.from_url(again.url)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        again.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_as_root_a_data_folder_the_server_user_cannot_enter_still_works(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    server = EmbeddedPostgres(private / "data" / "postgres", free_port())
    assert server.home != server.root  # moved where the server user can reach it
    try:
        server.start()
        server.create_database("librarian")
        conn = psycopg2.connect(_dsn(server.url, "librarian"))
        conn.close()
        assert (server.root / "LOCATION").read_text().strip() == str(server.home)
        assert server.alive()
        # The passwords stay with the data folder (root's), not with the server's files.
        assert _mode(server.root / SECRETS) == 0o600
        assert (server.root / SECRETS).stat().st_uid == 0
        assert not list(server.home.glob("*secret*")) and not list(server.home.glob(".initdb*"))
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
    assert not server.alive()

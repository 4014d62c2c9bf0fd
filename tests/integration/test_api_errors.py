"""Errors say what, not how: the real app over real HTTP, with the catalog and Redis on ports
where nothing listens, and an unexpected exception inside a handler. Clients get the stable code,
a plain message and the request id; the log gets the exception under the same request id."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from librarian.cli.local_servers import free_port
from librarian.jobs.events import EventType, JobStatus
from librarian.jobs.store import MirrorJobStore
from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from tests.integration.test_jobs_api import _sse, _write
from tests.support.servers import api_in_thread

# What an exception's text carries and a client must never see.
LEAKS = ("psycopg", "OperationalError", "Traceback", "sqlalche", "redis.exceptions",
         "ConnectionError", "Connection refused", "127.0.0.1", "RuntimeError", "/srv/",
         "db.internal", "SELECT", ".py")
HOST_PORT = re.compile(r"\b[\w.-]+:\d{2,5}\b")


@pytest.fixture(scope="module")
def dead_ports() -> dict[str, int]:
    return {"postgres": free_port(), "redis": free_port()}


@pytest.fixture(scope="module")
def broken_api(settings: Settings, dead_ports: dict[str, int],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API with its catalog and Redis on ports where nothing listens."""
    broken = settings.model_copy(update={
        "database_url": f"postgresql+psycopg2://librarian@127.0.0.1:{dead_ports['postgres']}/x",
        "redis_url": f"redis://127.0.0.1:{dead_ports['redis']}/0",
        "dagster_port": free_port(),
        "data_dir": tmp_path_factory.mktemp("broken-api")})
    with api_in_thread(broken) as base:
        yield base


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with api_in_thread(settings.model_copy(update={"dagster_port": free_port()})) as base:
        yield base


def _assert_plain(text: str, *secrets: object) -> None:
    for leak in (*LEAKS, *(str(s) for s in secrets)):
        assert leak not in text, f"{leak!r} leaked into {text!r}"
    assert not HOST_PORT.search(text), text


def _logged(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    records = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    assert request_id in records[0].getMessage()
    return records[0]


@pytest.mark.parametrize(("path", "code", "message", "port"), [
    ("/api/v1/library", "catalog_unavailable", "the catalog database is unavailable",
     "postgres"),
    (f"/api/v1/ingest/{uuid.uuid4()}", "redis_unavailable",
     "the job store (Redis) is unavailable", "redis"),
])
def test_a_database_or_redis_error_is_answered_plainly_and_logged_in_full(
        broken_api: str, dead_ports: dict[str, int], caplog: pytest.LogCaptureFixture,
        path: str, code: str, message: str, port: str) -> None:
    caplog.set_level(logging.WARNING, logger="librarian.api")
    response = httpx.get(broken_api + path, timeout=30)
    assert response.status_code == 503 and response.headers["retry-after"]
    error = response.json()["error"]
    assert error["code"] == code and error["message"] == message
    assert error["request_id"] == response.headers["x-request-id"]
    _assert_plain(response.text, dead_ports[port])
    # The log line has what the client was not told, under the same request id.
    record = _logged(caplog, error["request_id"])
    logged = record.getMessage()
    assert str(dead_ports[port]) in logged and path in logged
    assert ("OperationalError" if port == "postgres" else "ConnectionError") in logged


def test_an_unexpected_exception_is_an_internal_error_without_its_text(
        api: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("cannot open /srv/private/catalog.py on db.internal:5432 for "
                           "SELECT * FROM items")

    monkeypatch.setattr(Catalog, "list_items", broken)
    caplog.set_level(logging.WARNING, logger="librarian.api")
    response = httpx.get(f"{api}/api/v1/library",
                         headers={"X-Request-ID": "client-trace-42"}, timeout=30)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "unexpected" in error["message"]
    # A sane id of the client's own is kept, in the header and in the body.
    assert error["request_id"] == response.headers["x-request-id"] == "client-trace-42"
    _assert_plain(response.text)
    record = _logged(caplog, "client-trace-42")
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "db.internal:5432" in record.getMessage()


def test_health_names_what_is_down_in_plain_words(
        broken_api: str, dead_ports: dict[str, int], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="librarian.api")
    response = httpx.get(f"{broken_api}/api/v1/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis", "catalog", "dagster"]
    assert body["checks"] == {"redis": "down: the job store (Redis) is unavailable",
                              "catalog": "down: the catalog database is unavailable",
                              "dagster": "down: Dagster is unavailable"}
    assert body["request_id"] == response.headers["x-request-id"]
    _assert_plain(response.text, *dead_ports.values())
    logged = [r.getMessage() for r in caplog.records
              if getattr(r, "request_id", None) == body["request_id"]]
    assert len(logged) == 3
    assert any(str(dead_ports["postgres"]) in line for line in logged)
    assert any(str(dead_ports["redis"]) in line for line in logged)


@pytest.mark.parametrize("sent", ["has space", "x" * 65, "semi;colon", "<script>", ""])
def test_an_unusable_request_id_is_replaced(api: str, sent: str) -> None:
    response = httpx.get(f"{api}/api/v1/library/{uuid.uuid4()}",
                         headers={"X-Request-ID": sent})
    assert response.status_code == 404
    given = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", given) and given != sent
    assert response.json()["error"]["request_id"] == given


def test_every_response_carries_a_request_id_and_streams_still_stream(
        api: str, settings: Settings, sync_redis: redis.Redis) -> None:
    for path in ("/", "/static/app.js", "/api/v1/openapi.json", "/api/v1/library",
                 "/no/such/route"):
        response = httpx.get(api + path)
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), path
    store = MirrorJobStore(sync_redis, settings.redis_prefix, settings.job_ttl_seconds)
    job = str(uuid.uuid4())
    _write(store, job, 50, EventType.JOB_STARTED, status=JobStatus.RUNNING)
    _write(store, job, 51, EventType.JOB_COMPLETED, mode="terminal", status=JobStatus.COMPLETED)
    with httpx.stream("GET", f"{api}/api/v1/stream/{job}", timeout=20,
                      headers={"X-Request-ID": "stream-1"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"] == "stream-1"
        events = _sse(response.read().decode())
    assert [e["id"] for e in events] == ["50-0", "51-0"]

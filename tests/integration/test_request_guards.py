"""What other sites, other host names and oversized bodies get from the API: the request guards
and security headers over real HTTP (uvicorn on 127.0.0.1, real Redis and catalog; Dagster is
absent, so a request that gets through to a submission answers 503 or 404)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from librarian.cli.client import ApiClient
from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from tests.integration.test_library_api import _add
from tests.support.servers import api_in_thread

EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def guard_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("guards"),
                                       "dagster_port": free_port()})


@pytest.fixture(scope="module")
def api(guard_settings: Settings) -> Iterator[str]:
    with api_in_thread(guard_settings) as base:
        yield base


def _code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# -- other sites ----------------------------------------------------------------------------


def test_a_cross_site_form_post_is_refused(api: str) -> None:
    """What a hidden form on another site sends: a form body, that site's Origin."""
    response = httpx.post(f"{api}/api/v1/ingest", data={"url": "https://a.example/"},
                          headers={"Origin": EVIL})
    assert response.status_code == 403 and _code(response) == "forbidden_origin"


def test_bodyless_posts_and_deletes_from_another_origin_are_refused(
        api: str, guard_settings: Settings) -> None:
    item_id = _add(guard_settings, "guards")
    for method, path in (("POST", f"/library/{item_id}/refresh"), ("POST", "/library/reembed"),
                         ("POST", f"/ingest/{uuid.uuid4()}/cancel"),
                         ("POST", f"/ingest/{uuid.uuid4()}/retry"),
                         ("DELETE", f"/library/{item_id}")):
        response = httpx.request(method, f"{api}/api/v1{path}", headers={"Origin": EVIL})
        assert response.status_code == 403 and _code(response) == "forbidden_origin", path
    # The origin "null" (a sandboxed page, a data: URL) is another origin too.
    response = httpx.delete(f"{api}/api/v1/library/{item_id}", headers={"Origin": "null"})
    assert response.status_code == 403
    assert httpx.get(f"{api}/api/v1/library/{item_id}").status_code == 200  # still there


def test_a_request_its_browser_marks_cross_site_is_refused(api: str,
                                                           guard_settings: Settings) -> None:
    item_id = _add(guard_settings, "fetch-site")
    response = httpx.delete(f"{api}/api/v1/library/{item_id}",
                            headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and _code(response) == "forbidden_origin"
    assert httpx.get(f"{api}/api/v1/library/{item_id}").status_code == 200


def test_the_pages_own_origin_and_requests_without_origin_get_through(api: str) -> None:
    port = api.rsplit(":", 1)[1]
    for origin in (api, f"http://localhost:{port}"):
        host = origin.split("//")[1]
        response = httpx.post(f"{api}/api/v1/ingest", json={"url": "ftp://a.example/"},
                              headers={"Origin": origin, "Host": host,
                                       "Sec-Fetch-Site": "same-origin"})
        assert response.status_code == 422 and _code(response) == "invalid_url", origin
    # The same origin on another port is another origin.
    response = httpx.post(f"{api}/api/v1/ingest", json={"url": "ftp://a.example/"},
                          headers={"Origin": "http://127.0.0.1:1"})
    assert response.status_code == 403
    # The CLI sends no Origin: its bodyless POSTs reach the handler (no such job here).
    with pytest.raises(SystemExit, match="error 404: job_not_found"):
        ApiClient(api).call("POST", "/ingest/not-a-job/cancel")


def test_an_allowed_origin_may_post(settings: Settings) -> None:
    allowed = settings.model_copy(update={"allowed_origins": ["https://ui.example"],
                                          "dagster_port": free_port()})
    with api_in_thread(allowed) as base:
        response = httpx.post(f"{base}/api/v1/ingest", json={"url": "ftp://a.example/"},
                              headers={"Origin": "https://ui.example:443"})
        assert response.status_code == 422
        assert httpx.post(f"{base}/api/v1/ingest", json={"url": "ftp://a.example/"},
                          headers={"Origin": "http://ui.example"}).status_code == 403


# -- JSON bodies ----------------------------------------------------------------------------


def test_a_json_endpoint_takes_only_bodies_declared_json(api: str) -> None:
    """A form or text/plain body is what another site can send without asking first."""
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain",
                         "multipart/form-data; boundary=x"):
        headers = {"Content-Type": content_type} if content_type else {}
        for path, body in (("/ingest", b'{"url": "ftp://a.example/"}'),
                           ("/ingest/batch", b'{"urls": ["ftp://a.example/"]}')):
            response = httpx.post(f"{api}/api/v1{path}", content=body, headers=headers)
            assert response.status_code == 415, (path, content_type)
            assert _code(response) == "unsupported_media_type"
    # JSON with a charset (in any case) is JSON: the URL itself is what is wrong here.
    response = httpx.post(f"{api}/api/v1/ingest", content=b'{"url": "ftp://a.example/"}',
                          headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 422 and _code(response) == "invalid_url"


# -- host names -----------------------------------------------------------------------------


def test_a_request_for_another_host_name_is_refused_with_a_json_error(api: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: the Host header says so."""
    port = api.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example",
                 "localhost@evil.example"):
        response = httpx.get(f"{api}/api/v1/library", headers={"Host": host})
        assert response.status_code == 400, host
        assert _code(response) == "untrusted_host"
        assert response.headers["x-content-type-options"] == "nosniff"
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}",
                 f"[::1]:{port}"):
        assert httpx.get(f"{api}/api/v1/library", headers={"Host": host}).status_code == 200


def test_other_host_names_are_answered_when_listed_or_when_the_check_is_off(
        settings: Settings) -> None:
    listed = settings.model_copy(update={"allowed_hosts": ["*.lan.example", "librarian.test"],
                                         "dagster_port": free_port()})
    with api_in_thread(listed) as base:
        def status(host: str) -> int:
            return httpx.get(f"{base}/api/v1/library", headers={"Host": host}).status_code

        assert status("librarian.test") == 200 and status("box.lan.example:8000") == 200
        assert status("localhost") == 400 and status("lan.example.evil") == 400
        # The address the server listens on is its own name.
        assert status("127.0.0.1") == 200
    with api_in_thread(listed.model_copy(update={"allowed_hosts": ["*"]})) as base:
        response = httpx.get(f"{base}/api/v1/library", headers={"Host": "anything.example"})
        assert response.status_code == 200


# -- body size ------------------------------------------------------------------------------


def _address(api: str) -> tuple[str, int]:
    host, port = api.split("//")[1].split(":")
    return host, int(port)


def _status_line(sock: socket.socket) -> bytes:
    return sock.makefile("rb").readline()


def test_a_huge_content_length_is_refused_before_the_body_is_sent(api: str) -> None:
    started = time.monotonic()
    with socket.create_connection(_address(api), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 200000000000\r\n\r\n")
        assert _status_line(sock).startswith(b"HTTP/1.1 413 ")
    assert time.monotonic() - started < 2
    # A body under the cap (about 460 KB here) is read as before.
    urls = [f"ftp://a.example/{'x' * 900}/{i}" for i in range(500)]
    response = httpx.post(f"{api}/api/v1/ingest/batch", json={"urls": urls})
    assert response.status_code == 422 and len(response.json()["results"]) == 500


def test_a_200_mb_chunked_body_is_cut_off_at_the_cap(api: str) -> None:
    """No Content-Length to go by: the bytes are counted as the handler reads them."""
    chunk = b"x" * 65_536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    total = 200 * 1024 * 1024
    sent = 0

    def pump(sock: socket.socket) -> None:
        nonlocal sent
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: the point

    started = time.monotonic()
    with socket.create_connection(_address(api), timeout=20) as sock:
        sock.sendall(b"POST /api/v1/ingest/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        sender = threading.Thread(target=pump, args=(sock,), daemon=True)
        sender.start()
        status = _status_line(sock)
        answered = time.monotonic() - started
        sender.join(20)
    assert status.startswith(b"HTTP/1.1 413 ")
    assert answered < 5
    # The server stopped reading: far less than the body went out before it hung up.
    assert not sender.is_alive() and sent < total // 4, sent


# -- response headers -----------------------------------------------------------------------


def test_every_response_carries_nosniff_no_referrer_and_no_framing(api: str) -> None:
    for path in ("/", "/static/app.js", "/api/v1/library", "/api/v1/openapi.json",
                 "/api/v1/ingest/not-a-job", "/api/v1/stream/not-a-job"):
        headers = httpx.get(f"{api}{path}").headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path


def test_the_page_runs_only_its_own_files(api: str) -> None:
    csp = httpx.get(f"{api}/").headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp


def test_the_openapi_document_declares_what_the_guards_answer(api: str) -> None:
    paths = httpx.get(f"{api}/api/v1/openapi.json").json()["paths"]
    for path, methods in paths.items():
        for method, op in methods.items():
            codes = set(op["responses"])
            assert "400" in codes, (path, method)
            if method in ("post", "put", "patch", "delete"):
                assert {"403", "413"} <= codes, (path, method)
            if "requestBody" in op:
                assert "415" in codes, (path, method)
    assert "415" in paths["/api/v1/ingest"]["post"]["responses"]

"""The fetcher's limits and error codes, through httpx's MockTransport (no sockets)."""

import ipaddress
from typing import Any

import httpx
import pytest

from librarian.content.fetch import Fetcher, is_blocked_address
from librarian.errors import FetchError
from tests.support.fetching import fetch_limits

ALLOW = ("127.0.0.1/32",)


def _fetcher(handler, **limits) -> Fetcher:  # type: ignore[no-untyped-def]
    return Fetcher(fetch_limits(allow_networks=ALLOW, **limits),
                   transport=httpx.MockTransport(handler))


def test_redirects_are_followed_up_to_the_limit() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/") or 0)
        if n < 3:
            return httpx.Response(302, headers={"location": f"/{n + 1}"})
        return httpx.Response(200, text="done", headers={"content-type": "text/plain"})

    ok = _fetcher(handler, max_redirects=3).fetch("http://127.0.0.1/0")
    assert ok.final_url == "http://127.0.0.1/3" and len(ok.redirects) == 3
    with pytest.raises(FetchError) as info:
        _fetcher(handler, max_redirects=2).fetch("http://127.0.0.1/0")
    assert info.value.code == "too_many_redirects"


def test_a_redirect_to_a_private_address_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://10.0.0.1/admin"})

    with pytest.raises(FetchError) as info:
        _fetcher(handler).fetch("http://127.0.0.1/")
    assert info.value.code == "blocked_address"


def test_loopback_is_refused_unless_allow_listed() -> None:
    fetcher = Fetcher(fetch_limits(), transport=httpx.MockTransport(
        lambda r: httpx.Response(200, text="x")))
    with pytest.raises(FetchError) as info:
        fetcher.fetch("http://127.0.0.1/")
    assert info.value.code == "blocked_address"


def test_body_over_the_cap_fails_while_streaming_even_without_content_length() -> None:
    def stream():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 1000

    handler = lambda r: httpx.Response(200, content=stream(),  # noqa: E731
                                       headers={"content-type": "text/plain"})
    with pytest.raises(FetchError) as info:
        _fetcher(handler, max_bytes=10_000).fetch("http://127.0.0.1/")
    assert info.value.code == "too_large"


def test_declared_content_length_over_the_cap_fails_before_download() -> None:
    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=b"x", headers={"content-length": "999999999"})
    with pytest.raises(FetchError, match="Content-Length") as info:
        _fetcher(handler, max_bytes=1000).fetch("http://127.0.0.1/")
    assert info.value.code == "too_large"


@pytest.mark.parametrize(("status", "code", "transient"), [
    (404, "not_found", False), (410, "not_found", False), (429, "rate_limited", True),
    (500, "http_error", True), (503, "http_error", True), (403, "http_error", False),
])
def test_http_errors_map_to_stable_codes(status: int, code: str, transient: bool) -> None:
    handler = lambda r: httpx.Response(status, text="no", headers={"retry-after": "7"})  # noqa: E731
    with pytest.raises(FetchError) as info:
        _fetcher(handler).fetch("http://127.0.0.1/")
    assert (info.value.code, info.value.transient) == (code, transient)
    if status == 429:
        assert info.value.retry_after == 7


def test_progress_is_reported_from_content_length() -> None:
    seen: list[int] = []

    def body():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"y" * 30_000

    handler = lambda r: httpx.Response(200, content=body(),  # noqa: E731
                                       headers={"content-type": "text/plain",
                                                "content-length": "300000"})
    _fetcher(handler).fetch("http://127.0.0.1/", progress=lambda p, m: seen.append(p))
    assert seen == sorted(seen) and seen[-1] == 100 and len(seen) >= 3


def test_unresolvable_host_is_a_dns_error() -> None:
    with pytest.raises(FetchError) as info:
        _fetcher(lambda r: httpx.Response(200)).fetch("http://no-such-host.invalid/")
    assert info.value.code == "dns_error"


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fc00::1", "fec0::1", "::ffff:127.0.0.1",
    "64:ff9b::a00:1", "2002:a00:1::", "::",
])
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert is_blocked_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert not is_blocked_address(ipaddress.ip_address(address))


def test_robots_txt_is_honoured_when_asked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            return httpx.Response(200, text="User-agent: *\nDisallow: /private/\n")
        return httpx.Response(200, text="ok", headers={"content-type": "text/plain"})

    polite = _fetcher(handler, respect_robots=True)
    assert polite.fetch("http://127.0.0.1/public/page").body == b"ok"
    with pytest.raises(FetchError) as info:
        polite.fetch("http://127.0.0.1/private/page")
    assert info.value.code == "blocked_by_robots"
    assert _fetcher(handler).fetch("http://127.0.0.1/private/page").body == b"ok"


def test_validators_make_a_conditional_request_and_304_is_not_modified() -> None:
    seen: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(304, headers={"etag": '"v1"'})

    response = _fetcher(handler).fetch("http://127.0.0.1/", etag='"v1"',
                                       last_modified="Tue, 01 Jan 2030 00:00:00 GMT")
    assert response.not_modified and response.body == b""
    assert seen["if-none-match"] == '"v1"'
    assert seen["if-modified-since"] == "Tue, 01 Jan 2030 00:00:00 GMT"


def test_a_challenge_page_behind_403_is_blocked_by_site() -> None:
    page = b"<html><head><title>Just a moment...</title></head><body></body></html>"
    handler = lambda r: httpx.Response(403, content=page)  # noqa: E731
    with pytest.raises(FetchError) as info:
        _fetcher(handler).fetch("http://127.0.0.1/")
    assert info.value.code == "blocked_by_site"


def test_a_slow_name_lookup_ends_at_the_total_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A site's own name server can take its time: the total time limit covers lookups too."""
    import socket
    import threading
    import time

    release = threading.Event()
    real = socket.getaddrinfo

    def slow(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.example":
            release.wait(30)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    fetcher = _fetcher(lambda r: httpx.Response(200, text="x"), total_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as info:
            fetcher.fetch("http://slow.example/")
    finally:
        release.set()
    assert info.value.code == "timeout" and info.value.transient
    assert "looking up slow.example" in info.value.message
    assert time.monotonic() - started < 2.0

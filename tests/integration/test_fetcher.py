"""Hostile and broken inputs served from 127.0.0.1: each a clear error code, or a correct page.

These go through real sockets: the guarded connection, the bounded decoders and the total
deadline are exercised as in production.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from librarian.content.extract import ExtractedDocument, extract_content
from librarian.content.fetch import Fetcher, FetchLimits
from librarian.errors import ContentError, FetchError, LibrarianError
from tests.support.fetching import fetch_limits
from tests.support.hostile import HostileServer

LIMITS = fetch_limits(allow_networks=("127.0.0.1/32",), max_bytes=2 * 1024 * 1024,
                     total_timeout=3.0, read_timeout=2.0, connect_timeout=2.0,
                     max_redirects=5)


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    server.start()
    yield server
    server.stop()


def ingest(url: str, limits: FetchLimits = LIMITS) -> ExtractedDocument:
    with Fetcher(limits) as fetcher:
        return extract_content(fetcher.fetch(url), pdf_max_pages=300)


def code_of(url: str, limits: FetchLimits = LIMITS) -> tuple[str, str]:
    with pytest.raises(LibrarianError) as info:
        ingest(url, limits)
    return info.value.code, info.value.stage


@pytest.mark.parametrize(("path", "code"), [
    ("/chain/20", "too_many_redirects"),
    ("/to-private", "blocked_address"),
    ("/to-metadata", "blocked_address"),
    ("/huge", "too_large"),
    ("/endless", "too_large"),
    ("/gzip-bomb", "too_large"),
    ("/brotli-bomb", "too_large"),
    ("/short-body", "incomplete_response"),
    ("/no-body", "empty_content"),
    ("/js-only", "empty_content"),
    ("/challenge", "blocked_by_site"),
    ("/challenge-200", "blocked_by_site"),
    ("/soft-404", "not_found"),
    ("/image.png", "unsupported_type"),
    ("/encrypted.pdf", "encrypted_document"),
    ("/corrupt.pdf", "corrupt_document"),
    ("/rate-limited", "rate_limited"),
])
def test_bad_input_fails_with_its_code_in_the_extract_stage(
        hostile: HostileServer, path: str, code: str) -> None:
    assert code_of(hostile.url(path)) == (code, "extract")


def test_a_server_sending_one_byte_per_second_hits_the_total_timeout(
        hostile: HostileServer) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        ingest(hostile.url("/drip"))
    assert info.value.code == "timeout" and info.value.transient
    assert time.monotonic() - started < LIMITS.total_timeout + 1.5


# The total time covers more than the body: a server trickling its status line and headers (no
# read timeout ever fires), on the first response, on a redirect hop, or on robots.txt, holds a
# fetch no longer than the total either.
@pytest.mark.parametrize(("path", "limits"), [
    ("/slow-headers", LIMITS),
    ("/slow-redirect", LIMITS),
    ("/to-slow-redirect", LIMITS),
    ("/latin1-undeclared", dataclasses.replace(LIMITS, respect_robots=True)),
], ids=["headers", "redirect-headers", "second-hop-headers", "robots-txt"])
def test_a_server_trickling_its_headers_hits_the_total_timeout(
        hostile: HostileServer, path: str, limits: FetchLimits) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        ingest(hostile.url(path), limits)
    elapsed = time.monotonic() - started
    assert (info.value.code, info.value.stage) == ("timeout", "extract")
    assert info.value.transient and "total time limit" in info.value.message
    assert elapsed < limits.total_timeout + 2, elapsed


def test_a_tls_handshake_that_never_ends_hits_the_total_timeout() -> None:
    """A listener that accepts and says nothing: the handshake's own limit is longer than the
    total, and the total still ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    limits = dataclasses.replace(LIMITS, connect_timeout=30.0, read_timeout=30.0)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError) as info, Fetcher(limits) as fetcher:
            fetcher.fetch(f"https://127.0.0.1:{listener.getsockname()[1]}/")
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert info.value.code == "timeout" and "total time limit" in info.value.message
    assert time.monotonic() - started < limits.total_timeout + 2


def test_a_redirect_to_a_decimal_spelling_of_loopback_is_refused(hostile: HostileServer) -> None:
    # Allow-listing 127.0.0.1 must not let "2130706433" (127.0.0.1 in decimal) through a
    # stricter guard; with no allow-list both spellings are refused.
    strict = fetch_limits(total_timeout=3.0)
    assert code_of(hostile.url("/to-decimal-loopback"), strict) == ("blocked_address", "extract")
    assert code_of("http://2130706433/", strict) == ("blocked_address", "extract")
    assert code_of("http://0x7f.0.0.1/", strict) == ("blocked_address", "extract")


def test_the_connection_itself_is_guarded_when_dns_changes_after_the_check(
        hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the pre-check sees a public address, the connection would see 127.0.0.1."""
    fetcher = Fetcher(fetch_limits(total_timeout=3.0))
    monkeypatch.setattr(fetcher, "_check_url", lambda url: None)  # the pre-check is fooled
    with pytest.raises(FetchError) as info:
        fetcher.fetch(hostile.url("/latin1-undeclared"))
    assert info.value.code == "blocked_address"


@pytest.mark.parametrize("path", ["/latin1-undeclared", "/wrong-charset"])
def test_pages_in_a_legacy_charset_are_decoded_right(hostile: HostileServer, path: str) -> None:
    doc = ingest(hostile.url(path))
    assert "Crème brûlée" in doc.text and "garçon" in doc.text


def test_invalid_utf8_keeps_the_valid_text(hostile: HostileServer) -> None:
    doc = ingest(hostile.url("/invalid-utf8"))
    assert doc.text.startswith("Valid start of a note about bread.")
    assert "flour and water" in doc.text


def test_a_pdf_is_read_page_by_page_with_its_metadata(hostile: HostileServer) -> None:
    doc = ingest(hostile.url("/doc.pdf"))
    assert doc.title == "Urban Gardening Report" and doc.author == "Test Author"
    assert "urban gardening" in doc.text and "about soil" in doc.text
    assert doc.page_count == 2 and not doc.truncated


def test_a_2000_page_pdf_is_capped_not_refused(hostile: HostileServer) -> None:
    started = time.monotonic()
    with Fetcher(LIMITS) as fetcher:
        doc = extract_content(fetcher.fetch(hostile.url("/long.pdf")), pdf_max_pages=100)
    assert doc.page_count == 2000 and doc.truncated
    assert "Page 99 of a very long" in doc.text and "Page 100 of" not in doc.text
    assert "first 100 of 2000 pages" in doc.markdown
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x",
                                 "javascript:alert(1)", "data:text/html,<h1>x</h1>",
                                 "http://user:secret@127.0.0.1/"])
def test_non_http_urls_and_credentials_are_invalid(url: str) -> None:
    assert code_of(url) == ("invalid_url", "extract")


def test_an_idn_host_is_looked_up_in_punycode(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    asked: list[str] = []

    def fake_getaddrinfo(host: str, *args: object, **kwargs: object) -> list[object]:
        asked.append(host)
        raise socket.gaierror("no network here")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert code_of("http://bücher.example/straße") == ("dns_error", "extract")
    assert asked == ["xn--bcher-kva.example"]


def test_content_error_codes_are_typed() -> None:
    assert issubclass(ContentError, LibrarianError) and ContentError.stage == "extract"

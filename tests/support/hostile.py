"""A server on 127.0.0.1 that misbehaves on purpose: the bad inputs of the fetch tests."""

from __future__ import annotations

import contextlib
import gzip
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import brotli

from tests.support.local_server import LocalServer
from tests.support.pdfs import make_pdf

LATIN1_TEXT = ("Crème brûlée et pâtisserie française, déjà servie à la fenêtre du café. "
               "Le garçon a commandé une tarte aux pommes, très appréciée des habitués.")
CHALLENGE = (b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
             b"<noscript>Enable JavaScript and cookies to continue</noscript>"
             b"<script src='/cdn-cgi/challenge-platform/h/b/orchestrate/jsch/v1'></script>"
             b"</body></html>")
SOFT_404 = (b"<html><head><title>Page not found | Example</title></head><body><h1>Oops! "
            b"Page not found</h1><p>The page you are looking for does not exist anymore. "
            b"Try the search box or go back to the home page.</p></body></html>")

Handler = Callable[[BaseHTTPRequestHandler], None]


def _send(h: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes,
          headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    h.wfile.write(body)


def _chunks_forever(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    block = b"<p>" + b"x" * 65_000 + b"</p>"
    for _ in range(100_000):  # bounded: ~6.5 GB at most, the client stops long before
        h.wfile.write(block)


def _huge_declared(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", str(5 * 1024**3))
    h.end_headers()
    for _ in range(1000):
        h.wfile.write(b"y" * 65_536)


def _drip(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    for _ in range(60):
        h.wfile.write(b"a")
        h.wfile.flush()
        time.sleep(1)


def _dribbled_head(head: bytes, body: bytes = b"") -> Handler:
    """Status line and headers one byte per second (no read timeout ever fires), then ``body``."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        for byte in head:
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(1)
        h.wfile.write(body)
        h.close_connection = True

    return handler


def _short_body(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b"<html><body><p>only the start</p>")
    h.wfile.flush()
    h.close_connection = True


def _bomb(encoding: str) -> Handler:
    payload = b"\0" * (50 * 1024 * 1024)
    body = gzip.compress(payload, 9) if encoding == "gzip" else brotli.compress(payload)

    def handler(h: BaseHTTPRequestHandler) -> None:
        _send(h, 200, "text/html", body, {"Content-Encoding": encoding})

    return handler


def _redirect(location: str) -> Handler:
    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handler


def _page(status: int, ctype: str, body: bytes) -> Handler:
    return lambda h: _send(h, status, ctype, body)


def routes() -> dict[str, Handler]:
    return {
        "/huge": _huge_declared,
        "/endless": _chunks_forever,
        "/drip": _drip,
        "/slow-headers": _dribbled_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                        b"Connection: close\r\n\r\n", b"<p>too late</p>"),
        "/slow-redirect": _dribbled_head(b"HTTP/1.1 302 Found\r\nLocation: /latin1-undeclared"
                                         b"\r\nContent-Length: 0\r\n\r\n"),
        "/to-slow-redirect": _redirect("/slow-redirect"),
        # Only asked for by a fetcher that respects robots.txt.
        "/robots.txt": _dribbled_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                      b"Connection: close\r\n\r\n", b"User-agent: *\n"),
        "/short-body": _short_body,
        "/gzip-bomb": _bomb("gzip"),
        "/brotli-bomb": _bomb("br"),
        "/to-private": _redirect("http://10.0.0.1/admin"),
        "/to-metadata": _redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-decimal-loopback": _redirect("http://2130706433:1/"),
        "/latin1-undeclared": _page(200, "text/html", (
            "<html><body><article><h1>Café</h1><p>" + LATIN1_TEXT + "</p></article></body>"
            "</html>").encode("latin-1")),
        "/wrong-charset": _page(200, "text/html; charset=utf-8", (
            "<html><body><article><h1>Café</h1><p>" + LATIN1_TEXT + "</p></article></body>"
            "</html>").encode("latin-1")),
        "/invalid-utf8": _page(200, "text/plain; charset=utf-8",
                               b"Valid start of a note about bread. \xff\xfe\xfd broken bytes "
                               b"and then more valid words about flour and water."),
        "/no-body": _page(200, "text/html", b"<html><head><title>Nothing</title></head></html>"),
        "/js-only": _page(200, "text/html", b"<html><head><title>App</title></head><body>"
                          b"<div id='root'></div><script src='/app.js'></script>"
                          b"<script>render(document.getElementById('root'))</script>"
                          b"</body></html>"),
        "/challenge": _page(503, "text/html", CHALLENGE),
        "/challenge-200": _page(200, "text/html", CHALLENGE),
        "/soft-404": _page(200, "text/html", SOFT_404),
        "/image.png": _page(200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100),
        "/doc.pdf": _page(200, "application/pdf", make_pdf(
            ["Annual report on urban gardening in three cities", "Second page about soil"],
            title="Urban Gardening Report")),
        "/encrypted.pdf": _page(200, "application/pdf", make_pdf(["secret"], password="pw")),
        "/corrupt.pdf": _page(200, "application/pdf", make_pdf(["broken"])[:300]),
        "/long.pdf": _page(200, "application/pdf", make_pdf(
            [f"Page {i} of a very long document about rivers" for i in range(2000)])),
        "/rate-limited": _page(429, "text/html", b"slow down"),
    }


class HostileServer(LocalServer):
    def __init__(self) -> None:
        table = routes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.startswith("/chain/"):
                    hops = int(path.rsplit("/", 1)[1])
                    target = f"/chain/{hops - 1}" if hops > 1 else "/latin1-undeclared"
                    return _redirect(target)(self)
                handler = table.get(path)
                if handler is None:
                    return _send(self, 404, "text/plain", b"no such route")
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    handler(self)  # the client may give up early, as it should

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)

"""What the fault tests share: a site of generated pages, and a stream follower that
reconnects with ``Last-Event-ID`` like a browser's ``EventSource``."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import httpx

TERMINAL = {"job_completed", "error", "job_cancelled"}


class _Pages(http.server.BaseHTTPRequestHandler):
    """``/<name>?delay=S``: a page of its own text, answered after S seconds; ``/missing/…``
    is a 404."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if query.startswith("delay="):
            time.sleep(float(query.removeprefix("delay=")))
        if path.startswith("/missing/"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        words = " ".join(f"{path.strip('/')} soil water seed root leaf {i}" for i in range(60))
        body = (f"<html lang=en><head><title>Note {path}</title></head><body><article>"
                f"<h1>Note {path}</h1><p>{words}.</p><p>{words}!</p></article></body></html>"
                ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


class PageSite:
    """Generated pages on 127.0.0.1, each URL a page of its own."""

    def __init__(self) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, name: str, delay: float = 0.0) -> str:
        return f"{self.base}/{name}" + (f"?delay={delay:g}" if delay else "")

    def missing(self, name: str) -> str:
        return f"{self.base}/missing/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def follow(api: str, job_id: str, timeout: float) -> list[dict[str, Any]]:
    """Every event of the job until its terminal one, reconnecting with ``Last-Event-ID``
    whenever the connection drops (a killed API, a restart)."""
    events: list[dict[str, Any]] = []
    last: str | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last} if last else {}
        try:
            with httpx.stream("GET", f"{api}/api/v1/stream/{job_id}", headers=headers,
                              timeout=httpx.Timeout(10, read=30)) as response:
                if response.status_code != 200:
                    time.sleep(0.5)
                    continue
                current: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith(":"):
                        continue
                    if line:
                        key, _, value = line.partition(":")
                        current[key] = value.lstrip(" ")
                        continue
                    if current.get("event") in (None, "heartbeat", "server_shutdown"):
                        current = {}
                        continue
                    event = {"id": current.get("id"), "event": current["event"],
                             **json.loads(current.get("data", "{}"))}
                    current = {}
                    events.append(event)
                    last = event["id"]
                    if event["event"] in TERMINAL:
                        return events
        except httpx.HTTPError:
            time.sleep(0.5)
    return events

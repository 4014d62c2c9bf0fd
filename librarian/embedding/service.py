"""One loaded embedding model per host, shared by run workers and the API over a Unix socket.

Why a service: every run worker is a fresh fork of the warm run pool, and the pool cannot load
the model before forking (``import onnxruntime`` already starts a native thread, and a fork
after that is unsafe). Without the service each run imports ONNX Runtime and the tokenizer,
builds a session and pays its first inference again, and holds its own copy of the model.

Requests run concurrently, one core each (a session with one intra-op thread, called from one
thread per connection, at most one call per core at a time): for many runs that is the least CPU
per chunk, and one page's few chunks take ~0.15 s on one core anyway.

The protocol and its client are in :mod:`librarian.embedding.client`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from librarian.embedding.client import MAX_TEXTS, REQUEST_LIMIT
from librarian.errors import LocalServerError

if TYPE_CHECKING:
    from librarian.embedding.model import Embedder

class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, embedder: Embedder, slots: int) -> None:
        self.embedder = embedder
        self.slots = threading.BoundedSemaphore(slots)
        self.texts = 0  # embedded so far, reported by ping
        self.counting = threading.Lock()
        super().__init__(path, _Handler)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            self.connection.settimeout(30)
            line = self.rfile.readline(REQUEST_LIMIT + 1)
            if len(line) > REQUEST_LIMIT or not line.endswith(b"\n"):
                return self._refuse("request too large or cut short")
            request = json.loads(line)
            if not isinstance(request, dict):
                return self._refuse("a request is a JSON object")
            embedder = self.server.embedder
            if request.get("op") == "ping":
                status = {"ok": True, "model": embedder.name, "texts": self.server.texts}
                self.wfile.write(json.dumps(status).encode() + b"\n")
                return None
            texts = request.get("texts")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) \
                    or len(texts) > MAX_TEXTS:
                return self._refuse(f"texts must be a list of at most {MAX_TEXTS} strings")
            if request.get("model") != embedder.name:
                return self._refuse(f"this service embeds with model {embedder.name!r}")
            try:
                with self.server.slots:
                    vectors = embedder.embed(texts) if texts else np.zeros((0, 0), np.float32)
            except Exception as exc:  # tokenizer and engine raise their own types
                return self._refuse(f"embedding failed: {type(exc).__name__}: {exc}")
            with self.server.counting:
                self.server.texts += len(texts)
            header = {"ok": True, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1])}
            self.wfile.write(json.dumps(header).encode() + b"\n")
            self.wfile.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        except (OSError, ValueError) as exc:
            self._refuse(f"bad request: {exc}")

    def _refuse(self, error: str) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps({"ok": False, "error": error}).encode() + b"\n")


def serve(path: Path, embedder: Embedder, stop: threading.Event | None = None) -> None:
    """Load the model, then answer requests until ``stop`` is set (or forever)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # One service per socket: the lock is held for the service's life (the kernel drops it
    # when the process dies, however it dies), so a second one never unlinks a live socket.
    lock = open(path.with_name(path.name + ".lock"), "w")  # noqa: SIM115 (held until return)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise LocalServerError(f"an embedding service already serves {path}") from None
    try:
        _serve_locked(path, embedder, stop)
    finally:
        lock.close()


def _serve_locked(path: Path, embedder: Embedder, stop: threading.Event | None) -> None:
    embedder.embed(["load the model and run it once before the first request"])
    path.unlink(missing_ok=True)  # a socket file left by a killed service
    slots = max(1, len(os.sched_getaffinity(0)))
    try:
        with _Server(str(path), embedder, slots) as server:
            os.chmod(path, 0o600)  # vectors for this user's processes only
            if stop is None:
                server.serve_forever(poll_interval=0.5)
                return
            thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
            thread.start()
            stop.wait()
            server.shutdown()
            thread.join()
    finally:
        path.unlink(missing_ok=True)

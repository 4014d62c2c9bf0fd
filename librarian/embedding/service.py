"""One loaded embedding model per host, shared by run workers and the API over a Unix socket.

Why a service: every run worker is a fresh fork of the warm run pool, and the pool cannot load
the model before forking (``import onnxruntime`` already starts a native thread, and a fork
after that is unsafe). Without the service each run imports ONNX Runtime and the tokenizer,
builds a session and pays its first inference again, and holds its own copy of the model.

Requests run concurrently, one core each (a session with one intra-op thread, called from one
thread per connection, at most one call per core at a time): for many runs that is the least CPU
per chunk, and one page's few chunks take ~0.15 s on one core anyway.

Protocol, one request per connection: the client sends one JSON line
``{"model": name, "texts": [...]}``; the service answers one JSON line, ``{"ok": true, "rows":
n, "dim": d}`` followed by n × d little-endian float32, or ``{"ok": false, "error": ...}``.
The model name is checked so a client never gets vectors of another model than it stores under.

The client side (:class:`EmbeddingClient`) is what
:class:`librarian.embedding.model.Embedder` uses when a socket is configured; when the service
is not there, or fails mid-request, the embedder loads the model itself (embedding is a pure function: redoing it is safe).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from librarian.embedding.model import Embedder

REQUEST_LIMIT = 16 * 1024 * 1024  # 256 chunks of 180 words are ~0.3 MB
MAX_TEXTS = 1024
MAX_TEXT_CHARS = 64 * 1024


class ServiceUnavailable(Exception):
    """No answer, a broken answer or a refusal: the caller embeds locally instead."""


class EmbeddingClient:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        self.timeout = timeout

    def embed(self, model: str, texts: list[str]) -> np.ndarray:
        # The model reads 256 tokens at most: longer texts are cut where no token can be lost
        # (a token is at most ~100 characters), so no page's chunk makes a request too large.
        texts = [t[:MAX_TEXT_CHARS] for t in texts]
        request = json.dumps({"model": model, "texts": texts}, ensure_ascii=False).encode()
        if len(texts) > MAX_TEXTS or len(request) >= REQUEST_LIMIT:
            raise ServiceUnavailable(f"request of {len(texts)} texts is too large to send")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(request + b"\n")
                with sock.makefile("rb") as reader:
                    header = json.loads(reader.readline(65536) or b"{}")
                    if not isinstance(header, dict) or not header.get("ok"):
                        error = header.get("error") if isinstance(header, dict) else header
                        raise ServiceUnavailable(f"embedding service refused: {error}")
                    rows, dim = int(header["rows"]), int(header["dim"])
                    if rows != len(texts):
                        raise ServiceUnavailable(f"{rows} vectors for {len(texts)} texts")
                    body = reader.read(rows * dim * 4)
            if len(body) != rows * dim * 4:
                raise ServiceUnavailable("embedding service reply cut short")
            return np.frombuffer(body, dtype="<f4").reshape(rows, dim).astype(np.float32)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable(f"embedding service at {self.path}: {exc}") from exc

    def ping(self) -> dict[str, Any] | None:
        """The service's model and how many texts it embedded; None when none answers."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2.0)
                sock.connect(str(self.path))
                sock.sendall(b'{"op": "ping"}\n')
                with sock.makefile("rb") as reader:
                    reply = json.loads(reader.readline(65536) or b"{}")
            return dict(reply) if isinstance(reply, dict) and reply.get("ok") else None
        except (OSError, ValueError):
            return None


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
        raise RuntimeError(f"an embedding service already serves {path}") from None
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

"""The client of the host's embedding service (see :mod:`librarian.embedding.service`).

Protocol, one request per connection: the client sends one JSON line
``{"model": name, "texts": [...]}``; the service answers one JSON line, ``{"ok": true, "rows":
n, "dim": d}`` followed by n × d little-endian float32, or ``{"ok": false, "error": ...}``.
The model name is checked so a client never gets vectors of another model than it stores under.
Any failure is :class:`~librarian.errors.EmbeddingServiceUnavailable`: the caller
(:class:`librarian.embedding.model.Embedder`) then embeds locally, which is safe because
embedding is a pure function.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np

from librarian.errors import EmbeddingServiceUnavailable

REQUEST_LIMIT = 16 * 1024 * 1024  # 256 chunks of 180 words are ~0.3 MB
MAX_TEXTS = 1024
MAX_TEXT_CHARS = 64 * 1024


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
            raise EmbeddingServiceUnavailable(f"request of {len(texts)} texts is too large to send")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(request + b"\n")
                with sock.makefile("rb") as reader:
                    header = json.loads(reader.readline(65536) or b"{}")
                    if not isinstance(header, dict) or not header.get("ok"):
                        error = header.get("error") if isinstance(header, dict) else header
                        raise EmbeddingServiceUnavailable(f"embedding service refused: {error}")
                    rows, dim = int(header["rows"]), int(header["dim"])
                    if rows != len(texts):
                        raise EmbeddingServiceUnavailable(f"{rows} vectors for {len(texts)} texts")
                    body = reader.read(rows * dim * 4)
            if len(body) != rows * dim * 4:
                raise EmbeddingServiceUnavailable("embedding service reply cut short")
            return np.frombuffer(body, dtype="<f4").reshape(rows, dim).astype(np.float32)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServiceUnavailable(f"embedding service at {self.path}: {exc}") from exc

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

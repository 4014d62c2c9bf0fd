"""The host's embedding service: same vectors as a local model, and never a lost embedding."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from librarian.embedding.client import EmbeddingClient
from librarian.embedding.model import Embedder
from librarian.embedding.service import serve
from librarian.errors import LocalServerError

TEXTS = ["A knowledge library built from URLs.",
         "Each page becomes Markdown, metadata and chunks with vectors. " * 12,
         "Qdrant keeps the vectors; PostgreSQL keeps the history."]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture
def service(tmp_path: Path, cache: Path) -> Iterator[Path]:
    path = tmp_path / "embedder.sock"
    stop = threading.Event()
    thread = threading.Thread(
        target=serve, args=(path, Embedder(cache_dir=cache, quantize=True, threads=1), stop))
    thread.start()
    client = EmbeddingClient(path)
    for _ in range(300):
        if client.ping() is not None:
            break
        stop.wait(0.1)
    yield path
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_worker_gets_the_same_vectors_without_loading_the_model(
        service: Path, cache: Path) -> None:
    local = Embedder(cache_dir=cache, quantize=True, threads=1).embed(TEXTS)
    remote = Embedder(cache_dir=cache, quantize=True, service=service)
    np.testing.assert_allclose(remote.embed(TEXTS), local, atol=1e-5)
    assert remote._session is None  # no model in this process
    assert remote.dimension == local.shape[1]
    status = EmbeddingClient(service).ping()
    assert status is not None and status["model"] == remote.name and status["texts"] == len(TEXTS)


def test_concurrent_callers_each_get_their_own_vectors(service: Path, cache: Path) -> None:
    local = Embedder(cache_dir=cache, quantize=True, threads=1)
    batches = [[f"page {i}: {text}" for text in TEXTS] for i in range(8)]
    expected = [local.embed(batch) for batch in batches]
    remote = Embedder(cache_dir=cache, quantize=True, service=service)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(remote.embed, batches))
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-5)
    assert remote._session is None


def test_a_caller_of_another_model_embeds_locally(service: Path, cache: Path) -> None:
    other = Embedder(cache_dir=cache, quantize=False, service=service)  # the unquantised model
    vectors = other.embed(TEXTS)
    assert other._session is not None  # refused by the service, so it loaded its own
    np.testing.assert_allclose(vectors, Embedder().embed(TEXTS), atol=1e-5)


def test_no_service_means_local_embedding(tmp_path: Path, cache: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    embedder = Embedder(cache_dir=cache, quantize=True, service=tmp_path / "absent.sock")
    vectors = embedder.embed(TEXTS)
    assert vectors.shape[0] == len(TEXTS) and embedder._session is not None
    assert "embedding locally" in caplog.text


@pytest.mark.parametrize("line", [b"not json\n", b'{"model": "x", "texts": "one"}\n',
                                  b'{"texts": [1, 2]}\n', b"x" * 70000, b"[1]\n", b"null\n",
                                  # a lone surrogate: the tokenizer refuses it
                                  b'{"model": "all-MiniLM-L6-v2-int8-dq8",'
                                  b' "texts": ["\\ud800"]}\n'])
def test_a_bad_request_gets_an_error_and_the_service_keeps_serving(
        service: Path, cache: Path, line: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(service))
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"] is False and reply["error"]
    remote = Embedder(cache_dir=cache, quantize=True, service=service)
    assert remote.embed(TEXTS[:1]).shape == (1, 384) and remote._session is None


def test_a_second_service_on_the_same_socket_refuses_to_start(service: Path,
                                                              cache: Path) -> None:
    with pytest.raises(LocalServerError, match="already serves"):
        serve(service, Embedder(cache_dir=cache, quantize=True, threads=1))


def test_a_reply_cut_short_falls_back_to_the_local_model(tmp_path: Path, cache: Path) -> None:
    """A service that dies mid-reply: the caller's vectors still come, from its own model."""
    path = tmp_path / "dying.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def answer_half() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.makefile("rb").readline()
            conn.sendall(b'{"ok": true, "rows": 3, "dim": 384}\n' + b"\0" * 100)

    thread = threading.Thread(target=answer_half)
    thread.start()
    embedder = Embedder(cache_dir=cache, quantize=True, service=path)
    vectors = embedder.embed(TEXTS)
    thread.join(timeout=10)
    listener.close()
    assert embedder._session is not None  # loaded its own after the broken reply
    np.testing.assert_allclose(
        vectors, Embedder(cache_dir=cache, quantize=True, threads=1).embed(TEXTS), atol=1e-5)


def test_the_socket_is_private_to_its_user(service: Path) -> None:
    assert service.stat().st_mode & 0o777 == 0o600


def test_a_very_long_text_is_cut_where_the_model_stops_reading(service: Path,
                                                               cache: Path) -> None:
    long = "word " * 200_000  # 1 MB: far beyond the model's 256 tokens
    remote = Embedder(cache_dir=cache, quantize=True, service=service)
    vectors = remote.embed([long])
    assert remote._session is None  # served, not refused as too large
    local = Embedder(cache_dir=cache, quantize=True, threads=1).embed([long])
    np.testing.assert_allclose(vectors, local, atol=1e-5)

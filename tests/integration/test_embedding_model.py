"""The packaged model with the optimised-graph cache: same vectors, one file, reused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from librarian.embedding.model import Embedder

TEXTS = ["The library keeps a searchable copy of each page.",
         "Chunks are embedded one batch at a time. " * 20]


def test_the_cached_optimised_graph_gives_the_same_vectors(tmp_path: Path) -> None:
    reference = Embedder().embed(TEXTS)
    first = Embedder(cache_dir=tmp_path / "onnx")
    assert np.array_equal(first.embed(TEXTS), reference)  # writes the cache
    files = list((tmp_path / "onnx").iterdir())
    assert len(files) == 1 and files[0].suffix == ".onnx"
    written = files[0].stat().st_mtime_ns
    second = Embedder(cache_dir=tmp_path / "onnx", threads=1)
    np.testing.assert_allclose(second.embed(TEXTS), reference, atol=1e-6)  # reads it
    assert files[0].stat().st_mtime_ns == written
    assert list((tmp_path / "onnx").iterdir()) == files  # no partial file left behind


def test_another_model_file_gets_its_own_cache_entry(tmp_path: Path) -> None:
    source = Embedder()
    copy = tmp_path / "model.onnx"
    copy.write_bytes(Path(str(source.model_path)).read_bytes())
    Embedder(cache_dir=tmp_path / "onnx").embed(TEXTS[:1])
    Embedder(model_path=copy, tokenizer_path=source.tokenizer_path,
             cache_dir=tmp_path / "onnx").embed(TEXTS[:1])
    os.utime(copy, ns=(0, 0))  # the same path with another identity: a new entry
    Embedder(model_path=copy, tokenizer_path=source.tokenizer_path,
             cache_dir=tmp_path / "onnx").embed(TEXTS[:1])
    assert len(list((tmp_path / "onnx").iterdir())) == 3

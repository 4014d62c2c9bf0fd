"""The int8 copy of the packaged model: made once, cached, close to the original's vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from librarian.embedding.model import Embedder
from librarian.embedding.quantize import _drop_nan_guards, _fold_constants
from librarian.settings import Settings

TEXTS = ["The library keeps a searchable copy of each page.",
         "PostgreSQL stores the metadata and the history of every ingestion run.",
         "Chunks are embedded one batch at a time, " * 30,
         "Le modèle produit un vecteur par passage de texte."]


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_the_quantised_model_is_cached_and_its_vectors_stay_close(tmp_path: Path) -> None:
    reference = Embedder().embed(TEXTS)
    quantised = Embedder(cache_dir=tmp_path, quantize=True, threads=1)
    assert quantised.name == "all-MiniLM-L6-v2-int8-dq8"
    vectors = quantised.embed(TEXTS)
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() > 0.97, cosine
    assert not np.allclose(vectors, reference, atol=1e-4)  # it really is another model
    # The quantised copy of model.onnx, and the graph ONNX Runtime optimised from it.
    assert len(list(tmp_path.iterdir())) == 2
    [copy] = [p for p in tmp_path.iterdir() if p.name.startswith("model-dq8-")]
    ops = _ops(copy)
    assert "MatMulInteger" in ops and "IsNaN" not in ops
    made = copy.stat().st_mtime_ns
    again = Embedder(cache_dir=tmp_path, quantize=True, threads=1).embed(TEXTS)
    np.testing.assert_allclose(again, vectors, atol=1e-6)
    assert copy.stat().st_mtime_ns == made  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]


def test_dropping_the_nan_guards_changes_no_vector(tmp_path: Path) -> None:
    source = Embedder()
    folded, unguarded = tmp_path / "folded.onnx", tmp_path / "unguarded.onnx"
    _fold_constants(Path(str(source.model_path)), folded)
    assert _drop_nan_guards(folded, unguarded) == 6  # one per attention layer
    assert "IsNaN" in _ops(folded) and "IsNaN" not in _ops(unguarded)
    plain = Embedder(model_path=unguarded, tokenizer_path=source.tokenizer_path)
    np.testing.assert_allclose(plain.embed(TEXTS), source.embed(TEXTS), atol=1e-5)


def test_a_quantised_model_needs_somewhere_to_keep_its_copy() -> None:
    with pytest.raises(ValueError, match="cache_dir"):
        Embedder(quantize=True)


def test_vectors_are_stored_under_the_name_of_the_model_that_made_them(tmp_path: Path) -> None:
    assert Settings(embedding_quantize=True).stored_embedding_model.endswith("-dq8")
    assert Settings(embedding_quantize=False).stored_embedding_model == "all-MiniLM-L6-v2-int8"
    # Every process builds its embedder from the settings: the name it stores under agrees.
    for quantize in (True, False):
        settings = Settings(data_dir=tmp_path, embedding_quantize=quantize)
        assert Embedder.from_settings(settings).name == settings.stored_embedding_model


def test_a_model_of_ones_own_runs_as_given(tmp_path: Path) -> None:
    """The recipe was checked on the packaged model only; another model is not rewritten."""
    source = Embedder()
    own = Embedder(model_path=Path(str(source.model_path)), tokenizer_path=source.tokenizer_path,
                   name="my-model", cache_dir=tmp_path, quantize=True)
    assert own.name == "my-model"
    np.testing.assert_allclose(own.embed(TEXTS), source.embed(TEXTS), atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if "-dq8-" in p.name]
    settings = Settings(embedding_model_path=Path("/models/my.onnx"),
                        embedding_model_name="my-model")
    assert settings.stored_embedding_model == "my-model"

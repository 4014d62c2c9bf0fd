"""Awkward documents through the transform stage: each a sensible result, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from librarian.content.enrich import enrich
from librarian.content.extract import ExtractedDocument


class TinyEmbedder:
    """Deterministic 8-dimensional vectors: the transform logic, not the model, is tested."""

    name = "tiny"

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [[(hash((t, i)) % 1000) / 1000 for i in range(8)] for t in texts]
        return np.asarray(rows, dtype=np.float32)


def _doc(markdown: str) -> ExtractedDocument:
    return ExtractedDocument(url="https://e.example/x", final_url="https://e.example/x",
                             content_type="text/markdown", markdown=markdown, text=markdown,
                             raw_size=len(markdown))


def _enrich(markdown: str):  # type: ignore[no-untyped-def]
    return enrich(_doc(markdown), canonical_url="https://e.example/x", partition_key="k",
                  domain="e.example", embedder=TinyEmbedder())  # type: ignore[arg-type]


def test_a_one_word_page_is_tier_c_with_one_chunk() -> None:
    result = _enrich("Hello")
    assert result.tier == "C" and len(result.chunks) == 1 and result.word_count == 1
    assert result.title == "https://e.example/x"


def test_a_5_mb_text_is_chunked_within_the_token_window() -> None:
    paragraph = "Rivers carry sediment from mountains to the sea over many centuries. " * 20
    result = _enrich("\n\n".join([paragraph] * 2600))  # ~5 MB
    assert len(result.chunks) > 1000
    assert max(len(c.text.split()) for c in result.chunks) <= 360
    assert len(result.summary) <= 600


def test_only_code_keeps_the_code_block_whole() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(50)) + "\n```"
    result = _enrich(code)
    assert any("x49 = 49" in c.text and "x0 = 0" in c.text for c in result.chunks)


def test_only_a_table_is_summarised_and_chunked() -> None:
    table = "| name | colour |\n|---|---|\n" + "\n".join(f"| apple {i} | red |"
                                                       for i in range(40))
    result = _enrich(table)
    assert result.chunks and result.tier in {"B", "C"}


@pytest.mark.parametrize(("text", "language"), [
    ("Der Hund läuft schnell über die große Wiese, und die Kinder spielen im Garten "
     "hinter dem Haus, während die Sonne scheint.", "de"),
    ("The dog runs quickly across the wide meadow while the children play in the garden "
     "behind the house. Der Hund läuft schnell.", "en"),
])
def test_language_is_the_main_language_of_mixed_text(text: str, language: str) -> None:
    assert _enrich(text).language == language


def test_empty_text_is_rejected_before_transform() -> None:
    from librarian.content.extract import extract_content
    from librarian.content.fetch import FetchedResponse
    from librarian.errors import ContentError

    with pytest.raises(ContentError) as info:
        extract_content(FetchedResponse(url="u", final_url="u", status_code=200,
                                        content_type="text/plain", charset="utf-8",
                                        body=b"   \n  "), pdf_max_pages=300)
    assert info.value.code == "empty_content"

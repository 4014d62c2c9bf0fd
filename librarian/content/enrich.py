"""The transform stage: metadata, summary, keywords, language, quality, chunks, embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pydantic import BaseModel

from librarian.content.chunking import Chunk, chunk_markdown
from librarian.content.extract import ExtractedDocument
from librarian.content.quality import assess
from librarian.content.summarize import keywords, summarize
from librarian.embedding.model import Embedder
from librarian.embedding.sparse import document_vector
from librarian.errors import EnrichmentError, ErrorCode

WORDS_PER_MINUTE = 230


class EnrichedChunk(BaseModel):
    index: int
    text: str
    heading_path: list[str]
    vector: list[float]
    sparse_indices: list[int] = []
    sparse_values: list[float] = []


class EnrichedDocument(BaseModel):
    document: ExtractedDocument
    canonical_url: str
    partition_key: str
    domain: str
    content_hash: str
    title: str
    language: str | None
    word_count: int
    reading_minutes: int
    summary: str
    keywords: list[str]
    quality_score: float
    tier: str
    quality_parts: dict[str, float]
    embedding_model: str
    embedding_dimension: int
    vectors_reused: bool = False
    chunks: list[EnrichedChunk]


def detect_language(text: str) -> str | None:
    import py3langid

    lang, _score = py3langid.classify(text[:5000])
    return str(lang) if lang else None


def enrich(doc: ExtractedDocument, *, canonical_url: str, partition_key: str, domain: str,
           embedder: Embedder, progress: Callable[[int, str], None] | None = None
           ) -> EnrichedDocument:
    report = progress or (lambda _p, _m: None)
    title = (doc.title or "").strip() or _first_heading(doc.markdown) or canonical_url
    language = doc.language or detect_language(doc.text)
    word_count = len(doc.text.split())
    quality = assess(doc.markdown, html_text_ratio=doc.html_text_ratio, title=doc.title,
                     author=doc.author, date=doc.date, description=doc.description)
    summary = summarize(doc.markdown)
    tags = keywords(doc.markdown, title)
    report(20, f"language {language or 'unknown'}, {word_count:,} words, tier {quality.tier}")
    chunks = chunk_markdown(doc.markdown)
    content_hash = hashlib.sha256(doc.markdown.encode()).hexdigest()
    # Unchanged content embedded by the same model: its vectors are in the store already.
    reuse = doc.previous_hash == content_hash and doc.previous_model == embedder.name
    report(30, f"{len(chunks)} chunks" + (" (unchanged: vectors kept)" if reuse else ""))
    vectors: list[list[float]] = []
    batch = 16
    try:
        for start in range(0, 0 if reuse else len(chunks), batch):
            part = chunks[start:start + batch]
            texts = [" > ".join(c.heading_path) + "\n" + c.text if c.heading_path else c.text
                     for c in part]
            vectors.extend(embedder.embed(texts).tolist())
            done = min(len(chunks), start + batch)
            report(30 + 65 * done // max(1, len(chunks)), f"embedded {done}/{len(chunks)} chunks")
    except Exception as exc:  # onnxruntime raises its own types; keep the stage and a code
        raise EnrichmentError(ErrorCode.EMBEDDING_ERROR, f"embedding failed: {exc}",
                              url=doc.url) from exc
    return EnrichedDocument(
        document=doc, canonical_url=canonical_url, partition_key=partition_key, domain=domain,
        content_hash=content_hash, title=title[:500], vectors_reused=reuse,
        language=language, word_count=word_count,
        reading_minutes=max(1, round(word_count / WORDS_PER_MINUTE)), summary=summary,
        keywords=tags, quality_score=quality.score, tier=quality.tier,
        quality_parts=quality.parts, embedding_model=embedder.name,
        embedding_dimension=len(vectors[0]) if vectors else 0,
        chunks=[_chunk(c, vectors[c.index] if vectors else []) for c in chunks],
    )


def _chunk(chunk: Chunk, vector: list[float]) -> EnrichedChunk:
    # The heading path is part of what a chunk is about, for BM25 as for the embedding.
    indices, values = document_vector(" ".join([*chunk.heading_path, chunk.text]))
    return EnrichedChunk(index=chunk.index, text=chunk.text, heading_path=list(chunk.heading_path),
                         vector=vector, sparse_indices=indices, sparse_values=values)


def _first_heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip("# ").strip() or None
    return None

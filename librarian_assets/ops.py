"""The three ops of ``ingest_url``: extract → transform → load.

(No ``from __future__ import annotations`` here: Dagster reads the annotations at run time.)

Failures leave each op as a :class:`dagster.Failure` whose metadata carries the stable error
``code`` and ``stage`` (the mirror turns them into the job's ``error`` event). Transient failures
(timeouts, 429, 5xx, storage) are retried by Dagster with exponential backoff; permanent ones
fail at once. Progress goes out as progress events (:mod:`librarian.orchestration.progress`).
The work itself is in :mod:`librarian.content` and :mod:`librarian.storage`; the ops hold only
what ties it to Dagster and the order in which it is stored.
"""


import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    RetryRequested,
    op,
)

from librarian.canonical_url import CanonicalURL, canonicalize
from librarian.content.enrich import EnrichedDocument, enrich
from librarian.content.extract import ExtractedDocument, extract_content
from librarian.content.fetch import FetchedResponse
from librarian.errors import ErrorCode, InvalidURL, LibrarianError, StorageError
from librarian.jobs.events import JobResult
from librarian.orchestration.progress import report_progress
from librarian.runs import ASSET_NAME, is_bulk, partition_key, result_metadata
from librarian.storage.catalog import NewVersion, RecordedVersion, item_id_for
from librarian.storage.objects import ObjectStore, version_prefix
from librarian.storage.vectors import ChunkPoint, VectorStore
from librarian_assets.resources import (
    CatalogResource,
    EmbedderResource,
    FetcherResource,
    ObjectStoreResource,
    VectorStoreResource,
)

MAX_TRANSIENT_RETRIES = 2
BACKOFF_SECONDS = 2.0
Report = Callable[[int, str], None]


class ExtractConfig(Config):  # type: ignore[misc]
    url: str


@contextlib.contextmanager
def stage_errors(context: OpExecutionContext, stage: str) -> Iterator[None]:
    try:
        yield
    except LibrarianError as exc:
        if exc.transient and context.retry_number < MAX_TRANSIENT_RETRIES:
            wait = exc.retry_after or BACKOFF_SECONDS * (2 ** context.retry_number)
            context.log.warning(f"{exc.code}: {exc.message}; retrying in {wait:.0f}s")
            raise RetryRequested(max_retries=MAX_TRANSIENT_RETRIES,
                                 seconds_to_wait=min(wait, 60)) from exc
        raise Failure(
            description=exc.message,
            metadata={"code": exc.code.value, "stage": stage, "url": exc.url or ""},
            allow_retries=False,
        ) from exc


def _reporter(context: OpExecutionContext, stage: str) -> Report:
    return lambda percent, message: report_progress(context, stage, percent, message)


@op(description="Fetch the URL over HTTP and extract its main content and metadata.")
def extract(context: OpExecutionContext, config: ExtractConfig, fetcher: FetcherResource,
            catalog: CatalogResource, objects: ObjectStoreResource) -> ExtractedDocument:
    report = _reporter(context, "extract")
    with stage_errors(context, "extract"):
        canonical = _canonical_for_partition(context, config.url)
        previous = catalog.catalog().current_version(canonical.url)
        report(0, f"fetching {canonical.url}" + (" (refresh)" if previous else ""))
        with fetcher.fetcher() as client:
            response = client.fetch(
                canonical.url, progress=lambda p, m: report(p * 8 // 10, m),
                etag=previous["etag"] if previous else None,
                last_modified=previous["last_modified"] if previous else None)
        if response.not_modified and previous:
            report(80, "not modified since the last fetch; using the stored copy")
            if not _reuse_stored_copy(response, previous, objects.store()):
                context.log.warning("the stored copy is missing; fetching the page again")
                with fetcher.fetcher() as client:
                    response = client.fetch(canonical.url)
                previous = None  # nothing stored to reuse
        report(85, f"HTTP {response.status_code}, {response.content_type or 'no type'},"
                   f" {len(response.body):,} bytes; extracting main content")
        doc = extract_content(response, pdf_max_pages=fetcher.pdf_max_pages())
        # The catalog keys on the canonical URL, whatever spelling was submitted.
        doc.url = canonical.url
        if previous:
            doc.previous_hash = previous["content_hash"]
            doc.previous_model = previous["embedding_model"]
        report(100, f"extracted {len(doc.text.split()):,} words")
        return doc


def _canonical_for_partition(context: OpExecutionContext, url: str) -> CanonicalURL:
    try:
        canonical = canonicalize(url)
    except InvalidURL as exc:
        raise LibrarianError(ErrorCode.INVALID_URL, exc.message, url=url) from exc
    if context.has_partition_key and context.partition_key != partition_key(canonical):
        raise LibrarianError(
            ErrorCode.PARTITION_MISMATCH,
            f"partition {context.partition_key!r} is not the key of {canonical.url}", url=url)
    return canonical


def _reuse_stored_copy(response: FetchedResponse, previous: dict[str, Any],
                       store: ObjectStore) -> bool:
    """After a 304, make ``response`` the stored raw copy, so the rest of the run sees the same
    document (and finds it unchanged); False if that copy is gone."""
    try:
        stored = store.get(previous["object_keys"]["raw"])
    except StorageError:
        return False
    response.body, response.status_code = stored, 200
    response.content_type = previous["content_type"] or ""
    response.etag = response.etag or previous["etag"]
    response.last_modified = response.last_modified or previous["last_modified"]
    return True


@op(description="Metadata, summary, keywords, language, quality tier, chunks and embeddings.")
def transform(context: OpExecutionContext, doc: ExtractedDocument,
              embedder: EmbedderResource) -> EnrichedDocument:
    report = _reporter(context, "transform")
    with stage_errors(context, "transform"):
        canonical = canonicalize(doc.url)
        # Runs submitted in bulk share the cores: one embedding thread each spends the least
        # CPU per chunk. A single URL someone is waiting for gets every core.
        threads = 1 if is_bulk(dict(context.run.tags)) else 0
        enriched = enrich(doc, canonical_url=canonical.url,
                          partition_key=partition_key(canonical), domain=canonical.host,
                          embedder=embedder.embedder(threads), progress=report)
        report(100, f"{len(enriched.chunks)} chunks embedded")
        return enriched


@op(description="Store files, vectors and the catalog version; materialize library_item.")
def load(context: OpExecutionContext, doc: EnrichedDocument, catalog: CatalogResource,
         objects: ObjectStoreResource, vectors: VectorStoreResource) -> Iterator[Any]:
    report = _reporter(context, "load")
    with stage_errors(context, "load"):
        item_id = item_id_for(doc.canonical_url)
        # Order matters: files, then vectors, then the catalog row that points to both, so a
        # failure at any step leaves the catalog without a half-written version.
        store = objects.store()
        prefix = version_prefix(item_id, doc.content_hash)
        # Files of a version already stored (same content) belong to a recorded version and
        # stay whatever happens; files this run writes for new content go if a later step
        # before the catalog fails (a full disk, the vector store away): no orphans.
        fresh = not store.exists(prefix + "metadata.json")
        try:
            keys = _store_files(store, item_id, doc)
            report(30, "files stored")
            vector_store = vectors.store()
            report(70, _store_vectors(vector_store, item_id, doc))
        except BaseException:
            if fresh:
                with contextlib.suppress(StorageError):
                    store.delete_prefix(prefix)
            raise
        recorded = catalog.catalog().record_version(_new_version(doc, keys, context.run_id))
        # Only now that the catalog points to this version may older vectors go: a failure
        # before this line leaves the last good version searchable.
        if not doc.vectors_reused:
            vector_store.prune_item(item_id=item_id, keep_hash=doc.content_hash,
                                    model=doc.embedding_model,
                                    dimension=doc.embedding_dimension)
        report(100, f"catalog version {recorded.version}"
                    f" ({'new content' if recorded.changed else 'unchanged'})")
    yield _materialization(context, doc, item_id, keys["markdown"], recorded)
    yield Output({"item_id": item_id, "version": recorded.version})


def _store_files(store: ObjectStore, item_id: str, doc: EnrichedDocument) -> dict[str, str]:
    prefix = version_prefix(item_id, doc.content_hash)
    keys = {"raw": prefix + "raw", "markdown": prefix + "content.md",
            "metadata": prefix + "metadata.json"}
    source = doc.document
    store.put(keys["raw"], source.raw, source.content_type or "application/octet-stream")
    store.put(keys["markdown"], source.markdown.encode(), "text/markdown; charset=utf-8")
    store.put(keys["metadata"], json.dumps(_file_metadata(item_id, doc), indent=2).encode(),
              "application/json")
    return keys


def _file_metadata(item_id: str, doc: EnrichedDocument) -> dict[str, Any]:
    source = doc.document
    return {
        "item_id": item_id, "url": doc.canonical_url, "final_url": source.final_url,
        "title": doc.title, "author": source.author, "date": source.date,
        "sitename": source.sitename, "description": source.description,
        "image": source.image, "language": doc.language, "word_count": doc.word_count,
        "reading_minutes": doc.reading_minutes, "summary": doc.summary,
        "page_type": source.page_type,
        "keywords": doc.keywords, "quality_score": doc.quality_score, "tier": doc.tier,
        "quality_parts": doc.quality_parts, "content_hash": doc.content_hash,
        "content_type": source.content_type, "chunks": len(doc.chunks),
        "embedding_model": doc.embedding_model,
    }


def _store_vectors(store: VectorStore, item_id: str, doc: EnrichedDocument) -> str:
    if doc.vectors_reused:
        return "content unchanged: vectors kept"
    points = store.upsert_version(
        item_id=item_id, content_hash=doc.content_hash, model=doc.embedding_model,
        dimension=doc.embedding_dimension,
        chunks=[ChunkPoint(c.index, c.text, c.heading_path, c.vector,
                           sparse_indices=c.sparse_indices, sparse_values=c.sparse_values)
                for c in doc.chunks],
        payload={"url": doc.canonical_url, "title": doc.title, "tier": doc.tier,
                 "language": doc.language, "domain": doc.domain,
                 "page_type": doc.document.page_type},
    )
    return f"{points} vectors stored"


def _new_version(doc: EnrichedDocument, keys: dict[str, str], run_id: str) -> NewVersion:
    source = doc.document
    return NewVersion(
        canonical_url=doc.canonical_url, url=doc.canonical_url, domain=doc.domain,
        partition_key=doc.partition_key, title=doc.title, author=source.author,
        published=source.date, language=doc.language, summary=doc.summary,
        keywords=doc.keywords, tier=doc.tier, quality_score=doc.quality_score,
        word_count=doc.word_count, content_hash=doc.content_hash,
        final_url=source.final_url, status_code=source.status_code,
        content_type=source.content_type, etag=source.etag,
        last_modified=source.last_modified, object_keys=keys,
        chunk_count=len(doc.chunks), embedding_model=doc.embedding_model,
        run_id=run_id, page_type=source.page_type,
    )


def _materialization(context: OpExecutionContext, doc: EnrichedDocument, item_id: str,
                     markdown_key: str, recorded: RecordedVersion) -> AssetMaterialization:
    result = JobResult(item_id=item_id, url=doc.canonical_url, title=doc.title, tier=doc.tier,
                       quality_score=doc.quality_score, word_count=doc.word_count,
                       object_key=markdown_key, version=recorded.version,
                       changed=recorded.changed)
    return AssetMaterialization(
        asset_key=ASSET_NAME,
        partition=context.partition_key if context.has_partition_key else None,
        description=doc.summary[:300],
        metadata={**result_metadata(result), "url": MetadataValue.url(doc.canonical_url),
                  "chunks": len(doc.chunks), "vectors_reused": doc.vectors_reused},
    )

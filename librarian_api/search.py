"""``GET /api/v1/search``: hybrid search over chunks (dense + BM25, fused by RRF), by item.

Each result is one library item with its best score and its matching passages, the query's
words marked in them. Filters are the library's: tier, language, domain, page_type. Every
search counts against its caller's search rate (:mod:`librarian_api.rate_limits`), checked
first: a refused search costs one Redis round trip and nothing else.
"""

from __future__ import annotations

import html
import re
from typing import Any, Literal, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.embedding.sparse import query_vector, terms
from librarian.errors import ErrorCode
from librarian_api.errors import ApiError
from librarian_api.params import MAX_QUERY_CHARS, parse_filters, parse_limit
from librarian_api.rate_limits import Bucket, take
from librarian_api.state import AppState, app_state

SearchMode = Literal["dense", "sparse", "hybrid"]
MODES = ("hybrid", "dense", "sparse")
PASSAGES_PER_ITEM = 3
CHUNKS_PER_ITEM = 4  # chunks fetched per wanted item, so grouping still fills the page


async def search(request: Request) -> JSONResponse:
    state = app_state(request)
    await take(request, Bucket.SEARCHES)
    query = (request.query_params.get("q") or "").strip()
    if not query:
        raise ApiError(ErrorCode.INVALID_QUERY, "q must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(ErrorCode.INVALID_QUERY, f"q is longer than {MAX_QUERY_CHARS} characters")
    mode = request.query_params.get("mode", "hybrid")
    if mode not in MODES:
        raise ApiError(ErrorCode.INVALID_MODE, f"mode must be one of {', '.join(MODES)}")
    limit = parse_limit(request, default=10)
    filters = parse_filters(request)
    hits = await run_in_threadpool(run_search, state, query, mode, limit * CHUNKS_PER_ITEM,
                                   filters.payload())
    results = group_by_item(hits, query, limit)
    return JSONResponse({"query": query, "mode": mode, "results": results})


def run_search(state: AppState, query: str, mode: str, limit: int,
               filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    embedder = state.embedder
    dense = embedder.embed([query])[0].tolist() if mode != "sparse" else None
    sparse = query_vector(query) if mode != "dense" else None
    hits: list[dict[str, Any]] = state.vectors.search(
        dense=dense, sparse=sparse, model=embedder.name, dimension=embedder.dimension,
        limit=limit, mode=cast(SearchMode, mode), filters=dict(filters) or None)
    return hits


def group_by_item(hits: list[dict[str, Any]], query: str, limit: int) -> list[dict[str, Any]]:
    words = {w for w in terms(query)}
    items: dict[str, dict[str, Any]] = {}
    for hit in hits:  # best first
        item = items.get(hit["item_id"])
        if item is None:
            if len(items) >= limit:
                continue
            item = items[hit["item_id"]] = {
                "item_id": hit["item_id"], "url": hit.get("url"), "title": hit.get("title"),
                "tier": hit.get("tier"), "language": hit.get("language"),
                "domain": hit.get("domain"), "score": hit["score"], "passages": []}
        if len(item["passages"]) < PASSAGES_PER_ITEM:
            item["passages"].append({
                "chunk_index": hit.get("chunk_index"), "score": hit["score"],
                "heading_path": hit.get("heading_path") or [],
                "highlight": highlight(hit.get("text") or "", words)})
    return list(items.values())


def highlight(text: str, words: set[str], width: int = 320) -> str:
    """An HTML-escaped excerpt around the first query word, query words in ``<mark>``."""
    if not words:
        return html.escape(text[:width])
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len,
                                                                        reverse=True))
                         + r")\b", re.I)
    first = pattern.search(text)
    start = max(0, (first.start() if first else 0) - width // 3)
    excerpt = text[start:start + width]
    marked = pattern.sub(lambda m: f"\0{m.group(0)}\1", excerpt)
    escaped = html.escape(marked).replace("\0", "<mark>").replace("\1", "</mark>")
    return ("…" if start else "") + escaped + ("…" if start + width < len(text) else "")

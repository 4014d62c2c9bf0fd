"""The library: items from the catalog (filtered, newest first), their files, delete, refresh."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from librarian.canonical_url import canonicalize
from librarian.errors import StorageError
from librarian.storage.catalog import LibraryFilters
from librarian.storage.objects import item_prefix
from librarian_api.errors import ApiError
from librarian_api.ingest import MAX_BATCH, submit_url, submit_urls
from librarian_api.state import AppState, app_state

log = logging.getLogger("librarian.api")
MAX_LIMIT = 100
FILE_TYPES = {"markdown": "text/markdown; charset=utf-8", "metadata": "application/json",
              "raw": "application/octet-stream"}


def parse_limit(request: Request, default: int = 20) -> int:
    try:
        limit = int(request.query_params.get("limit", str(default)))
    except ValueError as exc:
        raise ApiError(422, "invalid_limit", "limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def parse_filters(request: Request) -> LibraryFilters:
    """``tier``, ``language``, ``domain``, ``page_type`` (repeatable or comma-separated),
    ``since`` / ``until`` (ISO dates) and ``q`` (words in title, summary, keywords)."""
    params = request.query_params

    def many(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for raw in params.getlist(name) for v in raw.split(",")
                     if v.strip())

    def date(name: str) -> datetime | None:
        raw = params.get(name)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError as exc:
            raise ApiError(422, "invalid_date", f"{name} must be an ISO date") from exc

    return LibraryFilters(tier=tuple(t.upper() for t in many("tier")),
                          language=many("language"), domain=many("domain"),
                          page_type=many("page_type"), since=date("since"),
                          until=date("until"), query=params.get("q") or None)


async def list_items(request: Request) -> JSONResponse:
    state = app_state(request)
    limit = parse_limit(request)
    filters = parse_filters(request)
    cursor = request.query_params.get("cursor") or None
    try:
        items, next_cursor = await run_in_threadpool(state.catalog.list_items, limit, cursor,
                                                     filters)
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", "cursor is not one this API returned") from exc
    return JSONResponse({"items": [_with_links(request, i) for i in items],
                         "next_cursor": next_cursor, "limit": limit})


async def _item_or_404(state: AppState, item_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(item_id)
    except ValueError as exc:
        raise ApiError(404, "item_not_found", f"no item {item_id}") from exc
    item = await run_in_threadpool(state.catalog.get_item, item_id)
    if item is None:
        raise ApiError(404, "item_not_found", f"no item {item_id}")
    return item


async def get_item(request: Request) -> JSONResponse:
    state = app_state(request)
    item = await _item_or_404(state, request.path_params["item_id"])
    for version in item["versions"]:
        version["files"] = {}
        for kind, key in (version.get("object_keys") or {}).items():
            signed = await run_in_threadpool(state.objects.presigned_url, key)
            version["files"][kind] = signed or str(request.url_for(
                "library_file", item_id=item["id"], version=version["version"], kind=kind))
    return JSONResponse(_with_links(request, item))


async def get_file(request: Request) -> Response:
    state = app_state(request)
    item = await _item_or_404(state, request.path_params["item_id"])
    kind = request.path_params["kind"]
    version = next((v for v in item["versions"]
                    if v["version"] == request.path_params["version"]), None)
    key = (version or {}).get("object_keys", {}).get(kind)
    if version is None or key is None or kind not in FILE_TYPES:
        raise ApiError(404, "file_not_found", f"no {kind} file for that version")
    try:
        data = await run_in_threadpool(state.objects.get, key)
    except StorageError as exc:
        raise ApiError(503, "storage_error", exc.message) from exc
    media = version.get("content_type") if kind == "raw" else FILE_TYPES[kind]
    return Response(data, media_type=media or FILE_TYPES[kind])


async def delete_item(request: Request) -> JSONResponse:
    """Catalog rows first (the item leaves the library at once), then files and vectors."""
    state = app_state(request)
    item_id = request.path_params["item_id"]
    await _item_or_404(state, item_id)
    removed = await run_in_threadpool(state.catalog.delete_item, item_id)
    if removed is None:
        raise ApiError(404, "item_not_found", f"no item {item_id}")
    problems = []
    try:
        files = await run_in_threadpool(state.objects.delete_prefix, item_prefix(item_id))
    except StorageError as exc:
        files = 0
        problems.append(exc.message)
    models = {v["embedding_model"] for v in removed["versions"] if v.get("embedding_model")}
    for model in models:
        if model != state.embedder.name:
            problems.append(f"vectors of the retired model {model} were left in place")
            continue
        try:
            # The dimension may take a model round trip: never on the event loop.
            dimension = await run_in_threadpool(lambda: state.embedder.dimension)
            await run_in_threadpool(partial(state.vectors.delete_item, item_id=item_id,
                                            model=model, dimension=dimension))
        except StorageError as exc:
            problems.append(exc.message)
    for problem in problems:
        log.warning("deleting item %s: %s", item_id, problem)
    return JSONResponse({"deleted": item_id, "files_deleted": files, "problems": problems})


async def refresh_item(request: Request) -> JSONResponse:
    state = app_state(request)
    item = await _item_or_404(state, request.path_params["item_id"])
    return await submit_url(request, canonicalize(item["canonical_url"]), source="refresh")


async def reembed(request: Request) -> JSONResponse:
    """Refresh every item whose vectors come from another model than the configured one (after
    changing ``LIBRARIAN_EMBEDDING_MODEL_*`` or ``_QUANTIZE``): dense search only sees vectors of
    the current model. Up to ``MAX_BATCH`` runs per call; call again until ``remaining`` is 0."""
    state = app_state(request)
    model = state.settings.stored_embedding_model
    urls, stale = await run_in_threadpool(state.catalog.embedded_with_other_model, model,
                                          MAX_BATCH)
    accepted, results = await submit_urls(request, urls, source="reembed")
    body: dict[str, Any] = {"model": model, "stale": stale, "accepted": accepted,
                            "remaining": stale - accepted, "results": results}
    if stale and not accepted:
        body["error"] = {"code": "submit_failed",
                         "message": f"none of {len(urls)} refresh runs could be submitted; "
                                    "each result says why"}
        return JSONResponse(body, status_code=503)
    return JSONResponse(body, status_code=202)


def _with_links(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    item["links"] = {"self": str(request.url_for("library_item", item_id=item["id"])),
                     "original": item.get("canonical_url") or item.get("url")}
    return item

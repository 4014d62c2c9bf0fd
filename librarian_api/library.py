"""The library: items from the catalog (filtered, newest first), their files, delete, refresh.

A refresh counts against the caller's submission rate like any submission; ``reembed`` does
not (it submits only items embedded by another model, each once while its job is unfinished)
but its jobs count against the queue cap.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from librarian.canonical_url import canonicalize
from librarian.errors import ErrorCode, OrchestratorUnavailable, StorageError
from librarian.runs import Source
from librarian.storage.objects import item_prefix
from librarian_api.errors import ApiError, error_body, retry_headers
from librarian_api.params import item_or_404, parse_filters, parse_limit
from librarian_api.rate_limits import Bucket, take
from librarian_api.security import stored_file_headers
from librarian_api.state import AppState, app_state
from librarian_api.submissions import (
    MAX_BATCH,
    outcomes_json,
    status_code,
    submission_json,
    submit_url,
    submit_urls,
)

log = logging.getLogger("librarian.api")
# Markdown and metadata are shown as plain text and JSON; the raw copy (the page as fetched,
# scripts and all) is only ever a download. All of them are sandboxed (librarian_api.security).
FILE_TYPES = {"markdown": "text/plain; charset=utf-8", "metadata": "application/json",
              "raw": "application/octet-stream"}
SHOWN_INLINE = {"markdown", "metadata"}
EXTENSIONS = {"markdown": "md", "metadata": "json", "text/html": "html",
              "application/xhtml+xml": "xhtml", "application/pdf": "pdf", "text/plain": "txt",
              "text/markdown": "md"}
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


async def list_items(request: Request) -> JSONResponse:
    state = app_state(request)
    limit = parse_limit(request)
    filters = parse_filters(request)
    cursor = request.query_params.get("cursor") or None
    try:
        items, next_cursor = await run_in_threadpool(state.catalog.list_items, limit, cursor,
                                                     filters)
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_CURSOR, "cursor is not one this API returned") from exc
    return JSONResponse({"items": [_with_links(request, i) for i in items],
                         "next_cursor": next_cursor, "limit": limit})


async def get_item(request: Request) -> JSONResponse:
    state = app_state(request)
    item = await item_or_404(state, request.path_params["item_id"])
    for version in item["versions"]:
        version["files"] = {}
        for kind, key in (version.get("object_keys") or {}).items():
            # A link straight to an S3 store: that server cannot send a sandbox, so what it
            # serves is always a download, of a type no browser renders.
            _media, name = file_facts(item, version, kind)
            download = (stored_file_headers(name, download=True)["content-disposition"],
                        FILE_TYPES["raw"])
            signed = await run_in_threadpool(partial(state.objects.presigned_url, key,
                                                     download=download))
            version["files"][kind] = signed or str(request.url_for(
                "library_file", item_id=item["id"], version=version["version"], kind=kind))
    return JSONResponse(_with_links(request, item))


async def get_file(request: Request) -> Response:
    state = app_state(request)
    item = await item_or_404(state, request.path_params["item_id"])
    kind = request.path_params["kind"]
    version = next((v for v in item["versions"]
                    if v["version"] == request.path_params["version"]), None)
    key = (version or {}).get("object_keys", {}).get(kind)
    if version is None or key is None or kind not in FILE_TYPES:
        raise ApiError(ErrorCode.FILE_NOT_FOUND, f"no {kind} file for that version")
    try:
        data = await run_in_threadpool(state.objects.get, key)
    except StorageError as exc:
        raise ApiError(ErrorCode.STORAGE_ERROR, exc.message) from exc
    media, name = file_facts(item, version, kind)
    return Response(data, media_type=media,
                    headers=stored_file_headers(name, download=kind not in SHOWN_INLINE))


def file_facts(item: dict[str, Any], version: dict[str, Any], kind: str) -> tuple[str, str]:
    """The media type a stored file is served as, and its file name."""
    media = raw_media_type(version.get("content_type")) if kind == "raw" else FILE_TYPES.get(
        kind, FILE_TYPES["raw"])
    name = file_name(item.get("canonical_url") or item.get("url") or "", version["version"],
                     EXTENSIONS.get(kind) or EXTENSIONS.get(media.split(";")[0], "bin"))
    return media, name


def raw_media_type(recorded: str | None) -> str:
    """The fetched page's media type (and charset), if it is a well-formed one."""
    media, _, params = (recorded or "").partition(";")
    media = media.strip().lower()
    if not _MEDIA_TYPE.match(media):
        return FILE_TYPES["raw"]
    charset = re.search(r"charset=\"?([A-Za-z0-9._-]{1,40})", params)
    return f"{media}; charset={charset.group(1)}" if charset else media


def file_name(url: str, version: int, extension: str) -> str:
    """``example.com-my-article-v2.html``: the page's host and last path segment."""
    parts = urllib.parse.urlsplit(url)
    segment = urllib.parse.unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    stem = segment.rsplit(".", 1)[0] if "." in segment else segment
    return "-".join(p for p in (parts.hostname or "file", stem[:80], f"v{version}") if p) + (
        "." + extension)


async def delete_item(request: Request) -> JSONResponse:
    """Catalog rows first (the item leaves the library at once), then files, vectors and the
    item's Dagster partition.

    Refused with ``409 job_in_progress`` while a job of the item's URL is queued or running:
    that run would write the item back, and it needs the partition. Files, vectors and the
    partition are removed as well as they can be; what was left in place is in ``problems``
    (the item is gone either way)."""
    state = app_state(request)
    item_id = request.path_params["item_id"]
    item = await item_or_404(state, item_id)
    partition = item.get("partition_key")
    if partition and (active := await state.jobs.active_job(partition)):
        job_id, status = active
        raise ApiError(ErrorCode.JOB_IN_PROGRESS,
                       f"the item's URL has a {status.value} job ({job_id}); cancel it or let "
                       "it end, then delete the item")
    removed = await run_in_threadpool(state.catalog.delete_item, item_id)
    if removed is None:
        raise ApiError(ErrorCode.ITEM_NOT_FOUND, f"no item {item_id}")
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
    partition_deleted = False
    if partition:
        try:
            partition_deleted = await _delete_partition(state, partition)
        except OrchestratorUnavailable as exc:
            problems.append(f"the Dagster partition {partition} was left in place: "
                            f"{exc.message}"[:500])
    for problem in problems:
        log.warning("deleting item %s: %s", item_id, problem)
    return JSONResponse({"deleted": item_id, "files_deleted": files,
                         "partition_deleted": partition_deleted, "problems": problems})


async def _delete_partition(state: AppState, partition: str) -> bool:
    """Delete the partition; False when a submission of the URL came in meanwhile (its run
    needs the partition, so it is added back: that job makes the item anew)."""
    await run_in_threadpool(state.dagster.delete_partition, partition)
    if await state.jobs.active_job(partition) is None:
        return True
    await run_in_threadpool(state.dagster.add_partition, partition)
    return False


async def refresh_item(request: Request) -> JSONResponse:
    state = app_state(request)
    await take(request, Bucket.SUBMISSIONS)
    item = await item_or_404(state, request.path_params["item_id"])
    sub = await submit_url(state, canonicalize(item["canonical_url"]), Source.REFRESH)
    return JSONResponse(submission_json(request, sub), status_code=status_code(sub))


async def reembed(request: Request) -> JSONResponse:
    """Refresh every item whose vectors come from another model than the configured one (after
    changing ``LIBRARIAN_EMBEDDING_MODEL_*`` or ``_QUANTIZE``): dense search only sees vectors of
    the current model. Up to ``MAX_BATCH`` runs per call; call again until ``remaining`` is 0."""
    state = app_state(request)
    model = state.settings.stored_embedding_model
    urls, stale = await run_in_threadpool(state.catalog.embedded_with_other_model, model,
                                          MAX_BATCH)
    outcomes = await submit_urls(state, urls, Source.REEMBED)
    accepted, results = outcomes_json(request, urls, outcomes)
    body: dict[str, Any] = {"model": model, "stale": stale, "accepted": accepted,
                            "remaining": stale - accepted, "results": results}
    if stale and not accepted:
        body.update(error_body(ErrorCode.SUBMIT_FAILED, f"none of {len(urls)} refresh runs"
                               " could be submitted; each result says why"))
        return JSONResponse(body, status_code=503, headers=retry_headers(503))
    return JSONResponse(body, status_code=202)


def _with_links(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    item["links"] = {"self": str(request.url_for("library_item", item_id=item["id"])),
                     "original": item.get("canonical_url") or item.get("url")}
    return item

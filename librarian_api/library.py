"""The library: items from the catalog, newest first."""

from __future__ import annotations

import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian_api.errors import ApiError
from librarian_api.state import app_state

MAX_LIMIT = 100


async def list_items(request: Request) -> JSONResponse:
    state = app_state(request)
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError as exc:
        raise ApiError(422, "invalid_limit", "limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(422, "invalid_limit", f"limit must be between 1 and {MAX_LIMIT}")
    cursor = request.query_params.get("cursor") or None
    try:
        items, next_cursor = await run_in_threadpool(state.catalog.list_items, limit, cursor)
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", "cursor is not one this API returned") from exc
    return JSONResponse({"items": items, "next_cursor": next_cursor, "limit": limit})


async def get_item(request: Request) -> JSONResponse:
    state = app_state(request)
    item_id = request.path_params["item_id"]
    try:
        uuid.UUID(item_id)
    except ValueError as exc:
        raise ApiError(404, "item_not_found", f"no item {item_id}") from exc
    item = await run_in_threadpool(state.catalog.get_item, item_id)
    if item is None:
        raise ApiError(404, "item_not_found", f"no item {item_id}")
    return JSONResponse(item)

"""``/api/v1/tokens``: API tokens for admins — list, create (the token is shown once), revoke.

What ``librarian token`` does through the API. A revoke takes effect at once in this API
process and within ``LIBRARIAN_AUTH_CACHE_SECONDS`` (30 s) in the others (see
:mod:`librarian_api.credentials`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from librarian.errors import ErrorCode
from librarian.storage.tokens import Scope, check_name
from librarian_api.errors import ApiError
from librarian_api.params import json_body
from librarian_api.state import app_state


async def list_tokens(request: Request) -> JSONResponse:
    tokens = await run_in_threadpool(app_state(request).tokens.tokens.all)
    return JSONResponse({"tokens": [t.as_json() for t in tokens]})


async def create_token(request: Request) -> JSONResponse:
    shape = '{"name": "...", "scope": "read" | "write" | "admin"}'
    body = await json_body(request, shape)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise ApiError(ErrorCode.INVALID_REQUEST, f"expected a JSON body {shape}")
    try:
        name = check_name(body["name"])
        scope = Scope(body.get("scope", "read"))
    except ValueError as exc:
        raise ApiError(ErrorCode.INVALID_REQUEST, f"expected a JSON body {shape}: {exc}"
                       ) from exc
    info, token = await run_in_threadpool(app_state(request).tokens.tokens.create, name, scope)
    # The only time the token is shown: the catalog keeps its hash.
    return JSONResponse({**info.as_json(), "token": token}, status_code=201)


async def revoke_token(request: Request) -> JSONResponse:
    state = app_state(request)
    token_id = request.path_params["token_id"]
    info = await run_in_threadpool(state.tokens.tokens.revoke, token_id)
    if info is None:
        raise ApiError(ErrorCode.TOKEN_NOT_FOUND, f"no token {token_id}")
    state.tokens.forget()
    return JSONResponse(info.as_json())

"""``/api/v1/session``: the web page's sign-in with an API token, who is signed in, sign-out.

Signing in checks the token once and sets the ``librarian_session`` cookie: a random session id
(the session itself is in Redis, see :mod:`librarian_api.credentials`), ``HttpOnly`` (no script
reads it), ``SameSite=Strict`` (no other site's page sends it), ``Path=/``, and ``Secure`` when
the request came over https. The answer carries the session's CSRF token, which the page sends
back in ``X-CSRF-Token`` on every request that changes something; ``GET`` gives it again (after
a reload), and sign-out ends the session in Redis, not only in the browser.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from librarian.errors import ErrorCode
from librarian_api.auth import SESSION_COOKIE, Principal
from librarian_api.errors import ApiError, Unauthorized
from librarian_api.params import json_body
from librarian_api.state import app_state


async def sign_in(request: Request) -> JSONResponse:
    body = await json_body(request, '{"token": "..."}')
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise ApiError(ErrorCode.INVALID_REQUEST, 'expected a JSON body {"token": "..."}')
    state = app_state(request)
    info = await state.tokens.by_token(token.strip())
    if info is None:
        raise Unauthorized("the token is not valid (unknown or revoked)", invalid_token=True)
    previous = request.user.session if isinstance(request.user, Principal) else None
    if previous is not None:  # one browser, one session
        await state.sessions.close(previous)
    session_id, session = await state.sessions.open(info.id)
    state.tokens.used(info)
    response = JSONResponse({"name": info.name, "scope": info.scope.value, "via": "cookie",
                             "csrf_token": session.csrf_token,
                             "expires_in": state.settings.session_ttl_seconds}, status_code=201)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=state.settings.session_ttl_seconds,
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def current(request: Request) -> JSONResponse:
    principal: Principal = request.user
    session = principal.session
    return JSONResponse({"name": principal.name, "scope": principal.scope.value,
                         "via": principal.via,
                         "csrf_token": session.csrf_token if session else None})


async def sign_out(request: Request) -> Response:
    principal: Principal = request.user
    if principal.session is not None:
        await app_state(request).sessions.close(principal.session)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response

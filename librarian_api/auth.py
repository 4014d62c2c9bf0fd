"""Who sent a request and whether it may do what it asks: API tokens, the web page's session
cookie, its CSRF token, and the one table of the scope each route needs.

:data:`ROUTE_SCOPES` names, for every API route and method, the scope it needs (``read`` <
``write`` < ``admin``, see :mod:`librarian.storage.tokens`) or :data:`PUBLIC`. The application
does not start with an API route missing from it (:class:`Authorization` checks at start-up),
and the tests check it against the real routes, so no route is left open by forgetting it.

A request proves who it is with ``Authorization: Bearer <token>`` (scripts, the CLI) or with
the ``librarian_session`` cookie the sign-in (``POST /api/v1/session``) sets (the web page, its
``EventSource`` streams). A cookie is sent by the browser whatever page asks, so a
state-changing request (POST, PUT, PATCH, DELETE) authenticated by the cookie must also carry
the session's CSRF token in ``X-CSRF-Token``, which only the page itself can read (from the
sign-in's answer or ``GET /api/v1/session``); a Bearer token is never sent by a browser on its
own, so it needs none. The request guards (:mod:`librarian_api.security`) run first and refuse
other origins' state-changing requests as well.

Answers: no credentials, or ones that are not valid (unknown, revoked, an expired session) are
``401 unauthorized`` with ``WWW-Authenticate: Bearer``; a valid credential without the scope,
or a cookie request without its CSRF token, is ``403 forbidden`` / ``403 invalid_csrf_token``.
On public routes credentials are optional: health says more to an authenticated client.

With ``LIBRARIAN_AUTH=off`` (allowed only for an API on loopback, see the settings) every
client on this machine is admin; a request that arrives from another address anyway (an API
started on another ``--host`` than it was told) is refused.

Pure ASGI, like the guards: streams pass through untouched. It sets ``scope["user"]`` (a
:class:`Principal`) and ``scope["auth"]`` as Starlette's ``AuthenticationMiddleware`` does, so
handlers read ``request.user``; that middleware and its ``@requires`` decorator would spread
the scopes over the handlers, where no test can see that one is missing.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from librarian.errors import ErrorCode
from librarian.settings import Settings, is_loopback
from librarian.storage.tokens import Scope as TokenScope
from librarian.storage.tokens import TokenInfo
from librarian_api.credentials import Session
from librarian_api.errors import ApiError, Unauthorized
from librarian_api.security import STATE_CHANGING, refuse

log = logging.getLogger("librarian.api.auth")

SESSION_COOKIE = "librarian_session"
CSRF_HEADER = "X-CSRF-Token"
PUBLIC = None
READ, WRITE, ADMIN = TokenScope.READ, TokenScope.WRITE, TokenScope.ADMIN

# Every API route, by (path, method) as the OpenAPI document writes them: the scope it needs.
ROUTE_SCOPES: dict[tuple[str, str], TokenScope | None] = {
    ("/api/v1/ingest", "post"): WRITE,
    ("/api/v1/ingest/batch", "post"): WRITE,
    ("/api/v1/ingest/{job_id}", "get"): READ,
    ("/api/v1/ingest/{job_id}/cancel", "post"): WRITE,
    ("/api/v1/ingest/{job_id}/retry", "post"): WRITE,
    ("/api/v1/jobs", "get"): READ,
    ("/api/v1/stream/{job_id}", "get"): READ,
    ("/api/v1/library", "get"): READ,
    ("/api/v1/library/{item_id}", "get"): READ,
    ("/api/v1/library/{item_id}", "delete"): ADMIN,
    ("/api/v1/library/reembed", "post"): ADMIN,
    ("/api/v1/library/{item_id}/refresh", "post"): WRITE,
    ("/api/v1/library/{item_id}/files/{version}/{kind}", "get"): READ,
    ("/api/v1/search", "get"): READ,
    ("/api/v1/tokens", "get"): ADMIN,
    ("/api/v1/tokens", "post"): ADMIN,
    ("/api/v1/tokens/{token_id}", "delete"): ADMIN,
    # Signing in takes the token in its body; who is signed in, and signing out, need a session
    # (or a token).
    ("/api/v1/session", "post"): PUBLIC,
    ("/api/v1/session", "get"): READ,
    ("/api/v1/session", "delete"): READ,
    # Load balancers ask without credentials: they get the status and nothing else.
    ("/api/v1/health", "get"): PUBLIC,
    ("/api/v1/openapi.json", "get"): PUBLIC,
}


def api_path(route_path: str) -> str:
    """A route's path as the table and the OpenAPI document write it (no converters)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", route_path)


def api_routes(routes: Iterable[Any]) -> list[tuple[str, str]]:
    """(path, method) of every API route."""
    return [(api_path(route.path), method.lower()) for route in routes
            if isinstance(route, Route) and route.path.startswith("/api/")
            for method in sorted(route.methods or []) if method != "HEAD"]


@dataclass(frozen=True, eq=False)
class Principal(BaseUser):
    """Whoever a request comes from: a token (by header or through a session), or, with
    authentication off, the local user."""

    name: str
    scope: TokenScope
    via: Literal["bearer", "cookie", "local"]
    token: TokenInfo | None = None
    session: Session | None = None

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def identity(self) -> str:
        return str(self.token.id) if self.token else self.via


LOCAL = Principal(name="local", scope=ADMIN, via="local")


class Refusal(Exception):
    """Why a request's credentials are not accepted (a 401)."""

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.invalid_token = invalid_token


class Authorization:
    def __init__(self, app: ASGIApp, settings: Settings, routes: Iterable[Any]) -> None:
        self.app = app
        self.off = settings.auth == "off"
        self.routes = [r for r in routes if isinstance(r, Route) and r.path.startswith("/api/")]
        missing = sorted(set(api_routes(self.routes)) - set(ROUTE_SCOPES))
        if missing:
            # Fail closed, at start-up: a route nobody decided about is not served open.
            raise RuntimeError(f"API routes without an entry in ROUTE_SCOPES: {missing}")

    def needed(self, scope: Scope) -> TokenScope | None:
        """The scope the request's route needs; a path or method the API does not have needs
        ``read``, so only clients that may read learn what is there."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                method = "get" if scope["method"] == "HEAD" else scope["method"].lower()
                return ROUTE_SCOPES[(api_path(route.path), method)]
        return READ

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        needed = self.needed(scope)
        try:
            principal = await self.authenticate(scope)
        except Refusal as refusal:
            if needed is PUBLIC:  # credentials are optional here: a bad one is none
                principal = None
            else:
                await refuse(Unauthorized(refusal.message, invalid_token=refusal.invalid_token),
                             scope, receive, send)
                return
        except (RedisError, SQLAlchemyError) as exc:
            if needed is PUBLIC:
                principal = None
            else:
                await refuse(unavailable(exc), scope, receive, send)
                return
        if principal is None:
            if needed is not PUBLIC:
                await refuse(Unauthorized("sign in, or send an API token (Authorization: "
                                          "Bearer <token>)"), scope, receive, send)
                return
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
            await self.app(scope, receive, send)
            return
        # Public routes act on nobody's authority: a cookie there needs no CSRF token.
        if (needed is not PUBLIC and principal.via == "cookie"
                and scope["method"] in STATE_CHANGING):
            sent = Headers(scope=scope).get(CSRF_HEADER, "")
            if principal.session is None or not hmac.compare_digest(
                    sent.encode(), principal.session.csrf_token.encode()):
                await refuse(ApiError(ErrorCode.INVALID_CSRF_TOKEN, (
                    f"a request signed in by cookie that changes something must carry the "
                    f"session's {CSRF_HEADER} header")), scope, receive, send)
                return
        if needed is not PUBLIC and not principal.scope.covers(needed):
            await refuse(ApiError(ErrorCode.FORBIDDEN, (
                f"this needs a token with the {needed.value} scope; "
                f"{principal.name!r} has {principal.scope.value}")), scope, receive, send)
            return
        scope["user"] = principal
        scope["auth"] = AuthCredentials([s.value for s in principal.scope.granted])
        if principal.token is not None:
            scope["app"].state.librarian.tokens.used(principal.token)
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope) -> Principal | None:
        """Who the request comes from; None when it names nobody; :class:`Refusal` when what
        it names is not valid."""
        if self.off:
            client = scope.get("client")
            if client is None or is_loopback(client[0]):  # no client: a Unix socket
                return LOCAL
            raise Refusal("authentication is off (LIBRARIAN_AUTH=off): only clients on this "
                          "machine are let in")
        state = scope["app"].state.librarian
        headers = Headers(scope=scope)
        authorization = headers.get("authorization")
        if authorization is not None:
            kind, _, token = authorization.strip().partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                raise Refusal("send the token as 'Authorization: Bearer <token>'",
                              invalid_token=True)
            info = await state.tokens.by_token(token.strip())
            if info is None:
                raise Refusal("the token is not valid (unknown or revoked)", invalid_token=True)
            return Principal(name=info.name, scope=info.scope, via="bearer", token=info)
        session_id = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
        if not session_id:
            return None
        session = await state.sessions.get(session_id)
        if session is None:
            raise Refusal("the session has ended: sign in again")
        info = await state.tokens.by_id(session.token_id)
        if info is None:
            await state.sessions.close(session)
            raise Refusal("the session's token was revoked: sign in again")
        return Principal(name=info.name, scope=info.scope, via="cookie", token=info,
                         session=session)


def unavailable(exc: Exception) -> ApiError:
    if isinstance(exc, RedisError):
        log.warning("authentication: the job store (Redis) is unavailable: %s", exc)
        return ApiError(ErrorCode.REDIS_UNAVAILABLE, "the job store (Redis) is unavailable")
    log.warning("authentication: the catalog database is unavailable: %s", exc)
    return ApiError(ErrorCode.CATALOG_UNAVAILABLE, "the catalog database is unavailable")

"""What keeps other sites out: request guards and response headers, as pure ASGI middleware.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``, which buffers and breaks streaming): both
only look at the request's headers, wrap ``receive`` and change the headers of
``http.response.start``; Server-Sent Events pass through untouched.

:class:`RequestGuard`, in this order, before any handler runs:

* a ``Host`` the API does not answer to (``allowed_hosts``; loopback names by default, and the
  address the server is bound to) is ``400 untrusted_host``: a page on a rebinding DNS name
  cannot talk to the API through the browser;
* a state-changing request (POST, PUT, PATCH, DELETE) sent by a page of another origin (its
  ``Origin`` is neither the API's own, as the ``Host`` header names it, nor one of
  ``allowed_origins``; or ``Sec-Fetch-Site: cross-site``) is ``403 forbidden_origin``. Requests
  without ``Origin`` (the CLI, curl, scripts) pass;
* a body larger than ``max_body_bytes`` is ``413 body_too_large``: at once when its
  ``Content-Length`` says so, else as soon as the bytes read pass the cap (chunked bodies).

:class:`SecurityHeaders` adds to every response ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``,
``Cross-Origin-Resource-Policy: same-origin`` and, unless the handler set one, a
Content-Security-Policy: :data:`PAGE_CSP` (scripts and styles from the API's own files only,
nothing inline) for HTML, :data:`NONE_CSP` for everything else. Stored files carry
:func:`stored_file_headers`: a sandbox with nothing allowed, and a download unless they are
shown as plain text, so nothing a fetched page holds ever runs on the API's origin.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from librarian.errors import ErrorCode
from librarian.settings import Settings
from librarian_api.errors import ApiError, error_response

# The web page: its own script and stylesheet, API calls and streams to its own origin.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# JSON, scripts, streams: nothing of theirs is a document that may load anything.
NONE_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# A stored file: a sandboxed document (unique origin, no scripts, no forms) that loads nothing.
SANDBOX_CSP = "sandbox; " + NONE_CSP
COMMON_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
}
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                html = headers.get("content-type", "").lower().startswith("text/html")
                headers.setdefault("content-security-policy", PAGE_CSP if html else NONE_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.BODY_TOO_LARGE,
                         f"the request body is larger than {limit} bytes")


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = HostRule(settings.allowed_hosts)
        self.origins = {o for o in (normalized_origin(raw) for raw in settings.allowed_origins)
                        if o}
        self.max_body = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.refusal(scope, headers)
        if refusal is not None:
            await refuse(refusal, scope, receive, send)
            return
        await self.limited(scope, receive, send)

    def refusal(self, scope: Scope, headers: Headers) -> ApiError | None:
        host = headers.get("host", "")
        server = scope.get("server")
        if not self.hosts.allows(host, bound=server[0] if server else None):
            return ApiError(ErrorCode.UNTRUSTED_HOST,
                            f"this API does not answer to the host {host[:100]!r}")
        if scope["method"] in STATE_CHANGING:
            if headers.get("sec-fetch-site", "").lower() == "cross-site":
                return ApiError(ErrorCode.FORBIDDEN_ORIGIN,
                                "state-changing requests from other sites are refused")
            origin = headers.get("origin")
            if origin is not None and not self.same_origin(origin, scope["scheme"], host):
                return ApiError(ErrorCode.FORBIDDEN_ORIGIN,
                                f"state-changing requests from {origin[:100]!r} are refused")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return BodyTooLarge(self.max_body)
        return None

    def same_origin(self, origin: str, scheme: str, host: str) -> bool:
        ours = normalized_origin(f"{scheme}://{host}")
        theirs = normalized_origin(origin)
        return theirs is not None and (theirs == ours or theirs in self.origins)

    async def limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Counts the body's bytes as the handler reads them; past the cap, a 413."""
        received = 0
        started = overflowed = False

        async def counting_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    overflowed = True
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if overflowed:  # the rest of the body is not worth reading
                    MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # The app's error handlers usually answer it; if the error got past them, here.
            if started:
                raise
            await refuse(exc, scope, receive, send)


async def refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """The error as JSON, and the connection closed after it: the body, if any, is not read
    (the server would otherwise read and discard all of it to keep the connection)."""
    response = error_response(error)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class HostRule:
    """Host names as ``allowed_hosts`` lists them: exact, ``*.domain`` or ``*`` for any."""

    def __init__(self, patterns: Iterable[str]) -> None:
        names = {p.strip().lower().strip("[]") for p in patterns if p.strip()}
        self.any = "*" in names
        self.exact = {n for n in names if not n.startswith("*")}
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))

    def allows(self, host_header: str, bound: str | None = None) -> bool:
        if self.any:
            return True
        name = host_name(host_header)
        if not name:
            return False
        if name in self.exact or name.endswith(self.suffixes):
            return True
        # The address the server was told to listen on (not a wildcard) is its own name.
        return bound is not None and bound not in ("0.0.0.0", "::") and name == bound.lower()


def host_name(host_header: str) -> str | None:
    """``example.com:8000`` → ``example.com``, ``[::1]:8000`` → ``::1``; None if malformed."""
    try:
        parts = urllib.parse.urlsplit("//" + host_header.strip())
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    if parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname or None


def normalized_origin(origin: str) -> str | None:
    """``scheme://host:port`` with the port always written; None if it is not an origin."""
    try:
        parts = urllib.parse.urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def stored_file_headers(filename: str, *, download: bool) -> dict[str, str]:
    """Headers of a stored file served by the API: sandboxed, never sniffed, a download (or
    plain text shown inline), under a safe ASCII ``filename`` with the exact name as
    ``filename*`` (RFC 6266)."""
    ascii_name = _UNSAFE_FILENAME.sub("_", filename).strip("._")[:150] or "file"
    disposition = f'{"attachment" if download else "inline"}; filename="{ascii_name}"'
    if ascii_name != filename:
        disposition += "; filename*=UTF-8''" + urllib.parse.quote(filename, safe="")
    return {"content-disposition": disposition, "content-security-policy": SANDBOX_CSP,
            "x-content-type-options": "nosniff"}

"""Who is asking: the one identity every per-caller limit counts by.

A caller is the API token a request was authenticated with (by Bearer or by a session signed
in with it): every limit keyed by it (submission and search rates, open streams) counts per
token, wherever its requests come from. With authentication off (loopback only) it is the
client's address.

Behind a reverse proxy every request comes from the proxy's address, so all clients would
share one caller: run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` naming the
proxy, so that ``request.client`` is the real client.
"""

from __future__ import annotations

from starlette.requests import Request


def caller_key(request: Request) -> str:
    # Set by the authentication middleware (librarian_api.auth.Principal); read by duck type so
    # this low room imports nothing above it.
    user = request.scope.get("user")
    identity = getattr(user, "identity", None)
    if isinstance(identity, str) and identity not in ("local", "bearer", "cookie"):
        return f"token:{identity}"
    client = request.client
    # No peer address (a Unix socket, a test client): one shared caller, limited as one.
    return client.host if client is not None else "unknown"

"""Who is asking: the one identity every per-caller limit counts by.

Today a caller is the client's address (``request.client.host``): the API has no accounts.
Once requests carry API tokens, this function returns the token's id instead, and every limit
keyed by it (submission and search rates, open streams) follows without another change.

Behind a reverse proxy every request comes from the proxy's address, so all clients would
share one caller: run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` naming the
proxy, so that ``request.client`` is the real client.
"""

from __future__ import annotations

from starlette.requests import Request


def caller_key(request: Request) -> str:
    client = request.client
    # No peer address (a Unix socket, a test client): one shared caller, limited as one.
    return client.host if client is not None else "unknown"

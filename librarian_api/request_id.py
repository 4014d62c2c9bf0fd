"""The request id: every response carries one in ``X-Request-ID``, error bodies repeat it and
log lines about a request name it, so what a client reports leads to the log line that has the
details the client is not shown.

A client's own ``X-Request-ID`` is kept when it is a short plain token; anything else is
replaced by a new id (it is echoed into headers and log lines, where it must not be able to
split a line or carry markup). The middleware is asgi-correlation-id's pure ASGI one, which
leaves streamed responses (SSE) alone.
"""

from __future__ import annotations

import re
import uuid

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.middleware import Middleware

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9-]{1,64}")


def is_sane(value: str) -> bool:
    return _SANE.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def middleware() -> Middleware:
    return Middleware(CorrelationIdMiddleware, header_name=HEADER, validator=is_sane,
                      generator=new_request_id)


def current_request_id() -> str:
    """The id of the request being handled; outside a request (a test calling a handler
    directly), a new one, so an error body always has one."""
    return correlation_id.get() or new_request_id()

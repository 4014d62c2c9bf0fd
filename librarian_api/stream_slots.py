"""Caps on open event streams: per caller and in all, counted in this API process.

Every open stream holds a slot here for as long as its response runs: a stream over
the caller's cap is refused with ``429 too_many_streams``, one over the process's cap with
``503 streams_full``, both before anything is sent. The slot is taken when the response starts
and given back in a ``finally`` when it ends, however it ends: the terminal event, the client
going away, the server shutting down (``server_shutdown``) or an error. A response that is
never started never takes one, so nothing can leak a slot.

The counts live in the process, not in Redis: a stream is a connection to this process, which
is the thing its cap protects (memory, file descriptors), and a count in memory cannot outlive
a killed process. ``librarian run`` and the compose file run one API process, so the per-caller
cap is per caller; with several worker processes it applies in each of them.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from librarian.errors import ErrorCode
from librarian_api.errors import ApiError

RETRY_AFTER_SECONDS = 5.0


class StreamSlots:
    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller  # 0: no cap
        self.total = total
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return self._open.total()

    def open_for(self, caller: str) -> int:
        return self._open[caller]

    @contextlib.contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        """A slot for one stream of ``caller`` while the block runs; ApiError if none is free."""
        if self.total and self.open >= self.total:
            raise ApiError(ErrorCode.STREAMS_FULL,
                           f"this server has {self.open} event streams open, its most; "
                           "try again shortly", retry_after=RETRY_AFTER_SECONDS)
        if self.per_caller and self._open[caller] >= self.per_caller:
            raise ApiError(ErrorCode.TOO_MANY_STREAMS,
                           f"you have {self._open[caller]} event streams open, the most one "
                           "caller may; close one first", retry_after=RETRY_AFTER_SECONDS)
        self._open[caller] += 1
        try:
            yield
        finally:
            self._open[caller] -= 1
            if self._open[caller] <= 0:
                del self._open[caller]


class HeldStream(Response):
    """A streaming response that runs only while it holds a slot of ``slots`` for ``caller``.

    The slot is taken when the server calls the response, before its first byte: a refusal
    raised there is answered by the app's error handlers like any other (JSON, its status and
    ``Retry-After``), and the ``finally`` that gives it back runs whenever the response ends.
    """

    def __init__(self, response: Response, slots: StreamSlots, caller: str) -> None:
        # Not Response.__init__: this only wraps ``response``, which has its own body.
        self.response = response
        self.slots = slots
        self.caller = caller
        self.status_code = response.status_code
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.slots.hold(self.caller):
            await self.response(scope, receive, send)

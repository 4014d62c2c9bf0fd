"""Where a request's credentials are checked: API tokens against the catalog (remembered
briefly), and the web page's sessions in Redis.

:class:`TokenCache` keeps what the catalog said about a token (valid: its id, name and scope;
or not) for ``auth_cache_seconds`` (30 s): a busy client costs the catalog one query per token
per 30 s per API process, not one per request, and a revoked token stops working within that
time. While the catalog cannot be reached, a token that was valid stays valid (nothing can be
revoked while the catalog is away) and unknown ones are refused with ``503``. Lookups of tokens
the cache does not know run two at a time at most, so a flood of made-up tokens cannot take
every database connection. When a token was last used is written at most once a minute per
token and process, in the background.

:class:`SessionStore` holds the sessions of the web page's sign-in::

    {p}session:{sha256 of the session id}   string   JSON: token id, CSRF token, when

under the job store's Redis prefix, expiring ``session_ttl_seconds`` after sign-in. The key is
a hash of the session id, so what Redis holds (a dump, a replica) signs nobody in. A session
stands for the token it was opened with, checked through the cache on every request: revoking
the token ends its sessions within the same 30 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from librarian.storage.tokens import ApiTokens, TokenInfo, looks_like_token, token_hash

log = logging.getLogger("librarian.api.auth")
TOUCH_EVERY_SECONDS = 60.0
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass
class _Entry:
    token: TokenInfo | None
    expires: float


class TokenCache:
    def __init__(self, tokens: ApiTokens, ttl: float, *, slots: int = 2, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tokens = tokens
        self.ttl = ttl
        self.size = size
        self._slots = slots
        self._clock = clock
        self._semaphore: asyncio.Semaphore | None = None
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._touched: dict[int, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def by_token(self, token: str) -> TokenInfo | None:
        """The valid token ``token`` is, or None (malformed, unknown or revoked)."""
        if not looks_like_token(token):
            return None
        digest = token_hash(token)
        return await self._lookup("hash:" + digest,
                                  lambda: self.tokens.valid_by_hash(digest))

    async def by_id(self, token_id: int) -> TokenInfo | None:
        """The token ``token_id`` if it is still valid (a session's token)."""
        return await self._lookup(f"id:{token_id}", lambda: self.tokens.valid_by_id(token_id))

    def forget(self) -> None:
        """Ask the catalog again next time (after a revoke through this process)."""
        self._entries.clear()

    def used(self, token: TokenInfo) -> None:
        """Note a use; written to the catalog at most once a minute per token."""
        now = self._clock()
        if now - self._touched.get(token.id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            return
        self._touched[token.id] = now
        task = asyncio.create_task(self._touch(token.id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _touch(self, token_id: int) -> None:
        try:
            await run_in_threadpool(self.tokens.touch, [token_id])
        except SQLAlchemyError as exc:  # a missed last-used time is not worth an error
            log.warning("could not record the use of token %s: %s", token_id, exc)

    async def _lookup(self, key: str, fetch: Callable[[], TokenInfo | None]
                      ) -> TokenInfo | None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            return entry.token
        if self._semaphore is None:  # made in the running loop
            self._semaphore = asyncio.Semaphore(self._slots)
        try:
            async with self._semaphore:
                token = await run_in_threadpool(fetch)
        except SQLAlchemyError:
            if entry is not None and entry.token is not None:
                log.warning("the catalog is unavailable: token %s stays trusted meanwhile",
                            entry.token.id)
                return entry.token
            raise
        self._entries[key] = _Entry(token, self._clock() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return token


@dataclass(frozen=True)
class Session:
    key: str
    token_id: int
    csrf_token: str
    created_at: float


class SessionStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}session:{hashlib.sha256(session_id.encode()).hexdigest()}"

    async def open(self, token_id: int) -> tuple[str, Session]:
        """A new session for the token: the session id (the cookie's value) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(key=self._key(session_id), token_id=token_id,
                          csrf_token=secrets.token_urlsafe(32), created_at=time.time())
        await self.redis.set(session.key, json.dumps({
            "token_id": token_id, "csrf_token": session.csrf_token,
            "created_at": session.created_at}), ex=self.ttl)
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        # The cookie's value comes from anyone: only what a session id looks like is looked up.
        if _SESSION_ID.fullmatch(session_id) is None:
            return None
        key = self._key(session_id)
        raw: Any = await self.redis.get(key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return Session(key=key, token_id=int(data["token_id"]),
                           csrf_token=str(data["csrf_token"]),
                           created_at=float(data["created_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def close(self, session: Session) -> None:
        await self.redis.delete(session.key)

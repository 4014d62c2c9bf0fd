"""The rules of authentication that need no server: scopes, the token cache (one catalog query
per token per cache time, one last-used write a minute), the route table failing closed, and
authentication off letting in only this machine."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from starlette.routing import Route

from librarian.settings import Settings
from librarian.storage.tokens import Scope, TokenInfo, looks_like_token, new_token, token_hash
from librarian_api.app import create_app
from librarian_api.auth import Authorization
from librarian_api.credentials import TokenCache


def test_scopes_are_ordered_read_write_admin() -> None:
    assert Scope.ADMIN.covers(Scope.WRITE) and Scope.WRITE.covers(Scope.READ)
    assert not Scope.READ.covers(Scope.WRITE) and not Scope.WRITE.covers(Scope.ADMIN)
    assert Scope.WRITE.granted == [Scope.READ, Scope.WRITE]


def test_tokens_are_random_recognisable_and_stored_as_a_hash() -> None:
    made = {new_token() for _ in range(100)}
    assert len(made) == 100 and all(looks_like_token(t) and t.startswith("lbr_") for t in made)
    token = made.pop()
    assert len(token) == 47 and token_hash(token) == token_hash(token)
    assert token not in token_hash(token) and len(token_hash(token)) == 64
    for bad in ("", "lbr_", "lbr_" + "a" * 42, "lbr_" + "a" * 44, "xyz_" + "a" * 43,
                "lbr_" + "a" * 42 + "!"):
        assert not looks_like_token(bad), bad


class FakeTokens:
    def __init__(self) -> None:
        self.valid = {token_hash(t): TokenInfo(id=i, name=f"t{i}", scope=Scope.READ,
                                               created_at=datetime.now(UTC))
                      for i, t in enumerate(TOKENS)}
        self.queries = 0
        self.touched: list[int] = []
        self.down = False

    def valid_by_hash(self, digest: str) -> TokenInfo | None:
        self.queries += 1
        if self.down:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return self.valid.get(digest)

    def valid_by_id(self, token_id: int) -> TokenInfo | None:
        self.queries += 1
        return next((t for t in self.valid.values() if t.id == token_id), None)

    def touch(self, token_ids: list[int]) -> None:
        self.touched.extend(token_ids)


TOKENS = [new_token() for _ in range(3)]


def test_the_cache_asks_the_catalog_once_per_token_per_cache_time() -> None:
    now = itertools.count(0.0, 0.001)  # a clock that moves 1 ms per reading
    fake = FakeTokens()
    cache = TokenCache(fake, ttl=30.0, clock=lambda: next(now))  # type: ignore[arg-type]

    async def scenario() -> None:
        for _ in range(200):
            info = await cache.by_token(TOKENS[0])
            assert info is not None and info.id == 0
            cache.used(info)
        assert fake.queries == 1
        assert await cache.by_token(new_token()) is None  # unknown: asked, remembered
        assert await cache.by_token("lbr_not-a-token") is None  # malformed: never asked
        assert fake.queries == 2
        await asyncio.sleep(0.05)  # the background write
        assert fake.touched == [0]  # 200 uses, one write

    asyncio.run(scenario())


def test_a_revoke_is_seen_after_the_cache_time_and_a_catalog_outage_keeps_known_tokens() -> None:
    clock = [0.0]
    fake = FakeTokens()
    cache = TokenCache(fake, ttl=30.0, clock=lambda: clock[0])  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await cache.by_token(TOKENS[1]) is not None
        revoked = fake.valid.pop(token_hash(TOKENS[1]))
        clock[0] = 29.0
        assert await cache.by_token(TOKENS[1]) is not None  # still within the cache time
        clock[0] = 31.0
        assert await cache.by_token(TOKENS[1]) is None
        fake.valid[token_hash(TOKENS[1])] = revoked
        clock[0] = 62.0
        assert await cache.by_token(TOKENS[1]) is not None
        fake.down = True
        clock[0] = 100.0
        assert await cache.by_token(TOKENS[1]) is not None  # known valid: kept meanwhile
        with pytest.raises(OperationalError):
            await cache.by_token(TOKENS[2])  # never seen: cannot be let in

    asyncio.run(scenario())


def test_an_api_route_without_a_scope_stops_the_app_from_starting() -> None:
    async def endpoint(_request: object) -> None:
        return None

    routes = [Route("/api/v1/new-thing", endpoint, methods=["POST"])]
    with pytest.raises(RuntimeError, match="new-thing"):
        Authorization(app=endpoint, settings=Settings(), routes=routes)  # type: ignore[arg-type]


def test_with_auth_off_only_clients_on_this_machine_get_in() -> None:
    app = create_app(Settings(auth="off"))  # no lifespan: the refusal comes before any state

    async def ask(client: tuple[str, int]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get("/api/v1/tokens")

    refused = asyncio.run(ask(("192.168.1.7", 50000)))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert "only clients on this machine" in refused.json()["error"]["message"]

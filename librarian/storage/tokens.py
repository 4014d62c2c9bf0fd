"""API tokens in the catalog database: made once, stored only as a hash, revocable.

A token is ``lbr_`` and 43 URL-safe characters from :func:`secrets.token_urlsafe` (256 random
bits); the prefix makes a leaked one easy to recognise (secret scanners, logs). The table keeps
its SHA-256 and nothing from which the token could be rebuilt: a salted slow hash protects
guessable passwords, and a token of 256 random bits is not guessable, so one fast hash is
enough and a lookup stays one index probe. The row found by the hash is compared with
:func:`hmac.compare_digest` as well, so no answer depends on how much of a hash matched.

Scopes are ordered: ``read`` (the library, search, jobs, streams, files) < ``write`` (also
submit, refresh, retry, cancel) < ``admin`` (also delete, reembed and tokens). A revoked token
keeps its row (name, times) for the record and never matches again. ``last_used_at`` is written
by the API at most once a minute per token, not on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

PREFIX = "lbr_"
_TOKEN = re.compile(r"lbr_[A-Za-z0-9_-]{43}")
MAX_NAME = 100


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Scope).index(self)

    def covers(self, needed: Scope) -> bool:
        """A scope grants everything the scopes below it grant."""
        return self.rank >= needed.rank

    @property
    def granted(self) -> list[Scope]:
        return [s for s in Scope if self.covers(s)]


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_token(text: str) -> bool:
    """Whether ``text`` has a token's shape: anything else is refused without a lookup."""
    return _TOKEN.fullmatch(text) is not None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {"id": self.id, "name": self.name, "scope": self.scope.value,
                "created_at": stamp(self.created_at), "last_used_at": stamp(self.last_used_at),
                "revoked_at": stamp(self.revoked_at)}


_COLUMNS = "id, name, scope, created_at, last_used_at, revoked_at"


def _info(row: Any) -> TokenInfo:
    return TokenInfo(id=int(row.id), name=row.name, scope=Scope(row.scope),
                     created_at=row.created_at, last_used_at=row.last_used_at,
                     revoked_at=row.revoked_at)


def check_name(name: str) -> str:
    """A token's name as people gave it: 1–100 printable characters."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise ValueError(f"a token's name is 1 to {MAX_NAME} printable characters")
    return name


class ApiTokens:
    """The ``api_tokens`` table (migration 0003) on the catalog's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, name: str, scope: Scope | str) -> tuple[TokenInfo, str]:
        """A new token: its record, and the token itself, which is not stored anywhere."""
        token = new_token()
        with self.engine.begin() as conn:
            row = conn.execute(sa.text(
                f"INSERT INTO api_tokens (name, scope, token_hash) VALUES (:name, :scope, :hash)"
                f" RETURNING {_COLUMNS}"),
                {"name": check_name(name), "scope": Scope(scope).value,
                 "hash": token_hash(token)}).one()
        return _info(row), token

    def all(self) -> list[TokenInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id")).all()
        return [_info(r) for r in rows]

    def revoke(self, token_id: int) -> TokenInfo | None:
        """Revoked from now on (a second revoke keeps the first time); None if unknown."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.text(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())"
                f" WHERE id = :id RETURNING {_COLUMNS}"), {"id": token_id}).first()
        return _info(row) if row else None

    def valid_by_hash(self, digest: str) -> TokenInfo | None:
        """The unrevoked token with this SHA-256, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                f"SELECT {_COLUMNS}, token_hash FROM api_tokens"
                " WHERE token_hash = :hash AND revoked_at IS NULL"), {"hash": digest}).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return _info(row)

    def valid_by_id(self, token_id: int) -> TokenInfo | None:
        """The token ``token_id`` if it is not revoked (a session's token, checked again)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE id = :id AND revoked_at IS NULL"),
                {"id": token_id}).first()
        return _info(row) if row else None

    def verify(self, token: str) -> TokenInfo | None:
        """The unrevoked token ``token`` is, if it is one."""
        return self.valid_by_hash(token_hash(token)) if looks_like_token(token) else None

    def touch(self, token_ids: list[int]) -> None:
        """Record that these tokens were used just now."""
        if not token_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(sa.text("UPDATE api_tokens SET last_used_at = now()"
                                 " WHERE id = ANY(:ids)"), {"ids": token_ids})

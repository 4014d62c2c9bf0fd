"""The catalog in PostgreSQL: library items keyed by canonical URL, and every ingested version.

Dedup is the database's job: ``items.canonical_url`` and ``(item_id, content_hash)`` are unique,
and a version is recorded under a row lock on its item, so concurrent loads of one URL cannot
create two items or two versions of the same content.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from librarian.errors import StorageError

ITEM_NAMESPACE = uuid.UUID("6f1c2a52-3f7e-4f4e-9a51-3b0d1c2e7a10")


def item_id_for(canonical_url: str) -> str:
    return str(uuid.uuid5(ITEM_NAMESPACE, canonical_url))


def migrate(database_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()


@dataclass(frozen=True)
class LibraryFilters:
    """Filters shared by the library listing and search: all given ones must match."""

    tier: tuple[str, ...] = ()
    language: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    page_type: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    query: str | None = None

    def sql(self, params: dict[str, Any]) -> list[str]:
        clauses = []
        for column in ("tier", "language", "domain", "page_type"):
            values = getattr(self, column)
            if values:
                clauses.append(f"{column} = ANY(:f_{column})")
                params[f"f_{column}"] = list(values)
        if self.since:
            clauses.append("updated_at >= :f_since")
            params["f_since"] = self.since
        if self.until:
            clauses.append("updated_at < :f_until")
            params["f_until"] = self.until
        if self.query:
            clauses.append("search_tsv @@ websearch_to_tsquery('simple', :f_query)")
            params["f_query"] = self.query
        return clauses

    def payload(self) -> dict[str, list[str]]:
        """The same filters as exact matches on vector payloads (no dates, no text)."""
        return {k: list(getattr(self, k)) for k in ("tier", "language", "domain", "page_type")
                if getattr(self, k)}


@dataclass(frozen=True)
class NewVersion:
    canonical_url: str
    url: str
    domain: str
    partition_key: str
    title: str | None
    author: str | None
    published: str | None
    language: str | None
    summary: str
    keywords: list[str]
    tier: str
    quality_score: float
    word_count: int
    content_hash: str
    final_url: str
    status_code: int
    content_type: str
    etag: str | None
    last_modified: str | None
    object_keys: dict[str, str]
    chunk_count: int
    embedding_model: str
    run_id: str | None
    page_type: str | None = None


@dataclass(frozen=True)
class RecordedVersion:
    item_id: str
    version: int
    changed: bool


class Catalog:
    def __init__(self, database_url: str, *, pool_size: int = 5) -> None:
        self.engine: Engine = sa.create_engine(database_url, pool_pre_ping=True,
                                               pool_size=pool_size, max_overflow=pool_size)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def record_version(self, v: NewVersion) -> RecordedVersion:
        item_id = item_id_for(v.canonical_url)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text("""
                    INSERT INTO items (id, canonical_url, url, domain, partition_key)
                    VALUES (:id, :canonical_url, :url, :domain, :partition_key)
                    ON CONFLICT DO NOTHING"""),  # any unique index: id and URL go together,
                    # and naming one lets a concurrent insert fail on the other
                    {"id": item_id, "canonical_url": v.canonical_url, "url": v.url,
                     "domain": v.domain, "partition_key": v.partition_key})
                conn.execute(sa.text("SELECT 1 FROM items WHERE id = :id FOR UPDATE"),
                             {"id": item_id})
                existing = conn.execute(sa.text(
                    "SELECT version FROM item_versions WHERE item_id = :id AND content_hash = :h"),
                    {"id": item_id, "h": v.content_hash}).scalar()
                changed = existing is None
                if existing is not None:
                    version = int(existing)
                    # Same content embedded again, by another model (after a model change): the
                    # version's vectors are now that model's.
                    conn.execute(sa.text("""
                        UPDATE item_versions SET embedding_model = :embedding_model,
                            chunk_count = :chunk_count
                        WHERE item_id = :id AND version = :version
                          AND embedding_model IS DISTINCT FROM :embedding_model"""),
                        {"id": item_id, "version": version, "chunk_count": v.chunk_count,
                         "embedding_model": v.embedding_model})
                else:
                    version = conn.execute(sa.text("""
                        INSERT INTO item_versions (item_id, version, content_hash, final_url,
                            status_code, content_type, etag, last_modified, object_keys,
                            quality_score, tier, word_count, chunk_count, embedding_model, run_id)
                        SELECT :id, COALESCE(MAX(version), 0) + 1, :h, :final_url, :status_code,
                            :content_type, :etag, :last_modified, CAST(:object_keys AS jsonb),
                            :quality_score, :tier, :word_count, :chunk_count, :embedding_model,
                            :run_id
                        FROM item_versions WHERE item_id = :id
                        RETURNING version"""),
                        {"id": item_id, "h": v.content_hash, "final_url": v.final_url,
                         "status_code": v.status_code, "content_type": v.content_type,
                         "etag": v.etag, "last_modified": v.last_modified,
                         "object_keys": json.dumps(v.object_keys),
                         "quality_score": v.quality_score, "tier": v.tier,
                         "word_count": v.word_count, "chunk_count": v.chunk_count,
                         "embedding_model": v.embedding_model, "run_id": v.run_id}).scalar_one()
                conn.execute(sa.text("""
                    UPDATE items SET url = :url, title = :title, author = :author,
                        published = :published, language = :language, summary = :summary,
                        keywords = CAST(:keywords AS jsonb), tier = :tier,
                        quality_score = :quality_score, word_count = :word_count,
                        page_type = :page_type, current_version = :version,
                        last_checked_at = now(),
                        updated_at = CASE WHEN :changed THEN now() ELSE updated_at END
                    WHERE id = :id"""),
                    {"id": item_id, "url": v.url, "title": v.title, "author": v.author,
                     "published": v.published, "language": v.language, "summary": v.summary,
                     "keywords": json.dumps(v.keywords), "tier": v.tier,
                     "quality_score": v.quality_score, "word_count": v.word_count,
                     "version": version, "page_type": v.page_type, "changed": changed})
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"catalog write failed: {exc}", url=v.url) from exc
        return RecordedVersion(item_id=item_id, version=version, changed=changed)

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text("SELECT * FROM items WHERE id = :id"),
                               {"id": item_id}).mappings().first()
            if row is None:
                return None
            versions = conn.execute(sa.text(
                "SELECT version, content_hash, fetched_at, final_url, status_code, content_type,"
                " etag, last_modified, object_keys, quality_score, tier, word_count, chunk_count,"
                " embedding_model, run_id FROM item_versions WHERE item_id = :id"
                " ORDER BY version DESC"), {"id": item_id}).mappings().all()
        # The search index column is the catalog's own business, not part of an item.
        item = _jsonable({k: v for k, v in row.items() if k != "search_tsv"})
        item["versions"] = [_jsonable(dict(v)) for v in versions]
        return item

    def current_version(self, canonical_url: str) -> dict[str, Any] | None:
        """The item's current version (validators, content hash, object keys), if any."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT v.version, v.content_hash, v.etag, v.last_modified, v.content_type,"
                " v.object_keys, v.embedding_model FROM items i JOIN item_versions v"
                " ON v.item_id = i.id AND v.version = i.current_version WHERE i.id = :id"),
                {"id": item_id_for(canonical_url)}).mappings().first()
        return dict(row) if row else None

    def embedded_with_other_model(self, model: str, limit: int) -> tuple[list[str], int]:
        """Canonical URLs (oldest first, at most ``limit``) of items whose current version's
        vectors come from another model than ``model``, and how many such items there are."""
        stale = ("FROM items i JOIN item_versions v ON v.item_id = i.id"
                 " AND v.version = i.current_version"
                 " WHERE v.embedding_model IS DISTINCT FROM :model")
        with self.engine.connect() as conn:
            total = int(conn.execute(sa.text(f"SELECT count(*) {stale}"),
                                     {"model": model}).scalar_one())
            urls = conn.execute(sa.text(
                f"SELECT i.canonical_url {stale} ORDER BY i.updated_at, i.id LIMIT :limit"),
                {"model": model, "limit": limit}).scalars().all()
        return [str(u) for u in urls], total

    def list_items(self, limit: int = 20, cursor: str | None = None,
                   filters: LibraryFilters | None = None
                   ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``cursor`` is the opaque ``next_cursor`` of the previous page."""
        params: dict[str, Any] = {"limit": limit + 1}
        clauses = (filters or LibraryFilters()).sql(params)
        if cursor:
            updated_at, item_id = decode_cursor(cursor)
            clauses.append("(updated_at, id) < (:c_updated, :c_id)")
            params.update(c_updated=updated_at, c_id=item_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, url, canonical_url, domain, title, language, summary, keywords, tier,"
                " quality_score, word_count, page_type, current_version, created_at, updated_at"
                f" FROM items {where} ORDER BY updated_at DESC, id DESC LIMIT :limit"),
                params).mappings().all()
        items = [dict(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(last["updated_at"], str(last["id"]))
        return [_jsonable(i) for i in items], next_cursor

    def delete_item(self, item_id: str) -> dict[str, Any] | None:
        """Remove the item and its versions; returns what was removed (for files and vectors)."""
        item = self.get_item(item_id)
        if item is None:
            return None
        with self.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM items WHERE id = :id"), {"id": item_id})
        return item


def encode_cursor(updated_at: datetime, item_id: str) -> str:
    raw = f"{updated_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, item_id = raw.split("|", 1)
        uuid.UUID(item_id)
        return datetime.fromisoformat(stamp), item_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        return value

    return {k: convert(v) for k, v in row.items()}

"""The stores the settings describe, built in one place for the API and the code location."""

from __future__ import annotations

from librarian.settings import Settings
from librarian.storage.catalog import Catalog
from librarian.storage.objects import LocalObjectStore, MinioObjectStore, ObjectStore
from librarian.storage.vectors import VectorStore


def catalog_for(settings: Settings, *, pool_size: int = 5) -> Catalog:
    return Catalog(settings.database_url, pool_size=pool_size)


def objects_for(settings: Settings) -> ObjectStore:
    """An S3 API server when an endpoint is set, else local disk under the data folder."""
    if settings.s3_endpoint:
        return MinioObjectStore(settings.s3_endpoint, settings.s3_access_key,
                                settings.s3_secret_key.get_secret_value(), settings.s3_bucket,
                                settings.s3_secure)
    return LocalObjectStore(settings.objects_path)


def vectors_for(settings: Settings, *, hold_seconds: float = 0.0) -> VectorStore:
    """A Qdrant server when a URL is set, else the embedded engine under the data folder.

    ``hold_seconds``: how long the embedded shard stays open after a search (see
    :class:`VectorStore`), for a process that searches often.
    """
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return VectorStore(url=settings.qdrant_url,
                       path=None if settings.qdrant_url else settings.qdrant_path,
                       api_key=api_key, hold_seconds=hold_seconds)

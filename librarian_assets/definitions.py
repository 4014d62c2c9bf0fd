"""The code location: ``workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from librarian.settings import Settings
from librarian_assets.job import ingest_url
from librarian_assets.partitions import library_item
from librarian_assets.resources import (
    CatalogResource,
    EmbedderResource,
    FetcherResource,
    ObjectStoreResource,
    VectorStoreResource,
)
from librarian_assets.sensors import build_watchlist_sensor


def build_definitions(settings: Settings) -> Definitions:
    data_dir = settings.data_dir.resolve()
    # Secrets reach the resources as EnvVar so the Dagster UI never shows their values.
    s3_secret = (EnvVar("LIBRARIAN_S3_SECRET_KEY") if "LIBRARIAN_S3_SECRET_KEY" in os.environ
                 else settings.s3_secret_key.get_secret_value())
    return Definitions(
        jobs=[ingest_url],
        assets=[library_item],
        sensors=[build_watchlist_sensor(
            settings.resolved_watchlist_path.resolve(),
            interval_seconds=settings.watchlist_interval_seconds,
            max_runs_per_tick=settings.watchlist_max_runs_per_tick)],
        resources={
            "fetcher": FetcherResource(
                connect_timeout=settings.fetch_connect_timeout,
                read_timeout=settings.fetch_read_timeout,
                total_timeout=settings.fetch_total_timeout,
                max_bytes=settings.fetch_max_bytes,
                max_redirects=settings.fetch_max_redirects,
                user_agent=settings.fetch_user_agent,
                allow_networks=settings.fetch_allow_networks,
                respect_robots=settings.fetch_respect_robots,
                pdf_max_pages=settings.pdf_max_pages),
            "embedder": EmbedderResource(
                model_name=settings.embedding_model_name,
                model_path=str(settings.embedding_model_path)
                if settings.embedding_model_path else None,
                tokenizer_path=str(settings.embedding_tokenizer_path)
                if settings.embedding_tokenizer_path else None,
                cache_dir=str(settings.model_cache_dir),
                quantize=settings.embedding_quantize,
                service_socket=str(settings.embedding_socket)),
            "catalog": CatalogResource(database_url=settings.database_url),
            "objects": ObjectStoreResource(
                local_path=None if settings.s3_endpoint else str(data_dir / "objects"),
                endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                secret_key=s3_secret, bucket=settings.s3_bucket, secure=settings.s3_secure),
            "vectors": VectorStoreResource(
                url=settings.qdrant_url,
                path=None if settings.qdrant_url else str(data_dir / "qdrant"),
                api_key=settings.qdrant_api_key.get_secret_value()
                if settings.qdrant_api_key else None),
        },
    )


defs = build_definitions(Settings())

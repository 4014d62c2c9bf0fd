"""The code location: ``workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

from dagster import Definitions

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
    """The code location; ``settings`` configure its sensor. The resources take none: they read
    the settings of the process that runs them (see :mod:`librarian_assets.resources`)."""
    return Definitions(
        jobs=[ingest_url],
        assets=[library_item],
        sensors=[build_watchlist_sensor(
            settings.resolved_watchlist_path.resolve(),
            interval_seconds=settings.watchlist_interval_seconds,
            max_runs_per_tick=settings.watchlist_max_runs_per_tick)],
        resources={
            "fetcher": FetcherResource(),
            "embedder": EmbedderResource(),
            "catalog": CatalogResource(),
            "objects": ObjectStoreResource(),
            "vectors": VectorStoreResource(),
        },
    )


defs = build_definitions(Settings())

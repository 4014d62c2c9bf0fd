"""The Starlette application. Run with ``uvicorn librarian_api.app:create_app --factory``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.routing import Route

from librarian.catalog import Catalog
from librarian.errors import LibrarianError
from librarian.job_store import ApiJobStore
from librarian.settings import Settings
from librarian_api import health, ingest, library, stream
from librarian_api.dagster_client import DagsterSubmitter
from librarian_api.errors import (
    ApiError,
    api_error_handler,
    database_error_handler,
    internal_error_handler,
    librarian_error_handler,
    redis_error_handler,
)
from librarian_api.state import AppState


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Streams block in XREAD for a few seconds: the socket timeout must be longer than that.
        client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=30,
                                         socket_timeout=30, socket_connect_timeout=5)
        catalog = Catalog(settings.database_url)
        app.state.librarian = AppState(settings=settings,
                                       jobs=ApiJobStore(client, settings.redis_prefix),
                                       catalog=catalog, dagster=DagsterSubmitter(settings))
        try:
            yield
        finally:
            await client.aclose()
            catalog.close()

    routes = [
        Route("/api/v1/ingest", ingest.submit, methods=["POST"]),
        Route("/api/v1/ingest/{job_id}", ingest.status, methods=["GET"], name="job_status"),
        Route("/api/v1/stream/{job_id}", stream.stream, methods=["GET"], name="job_stream"),
        Route("/api/v1/library", library.list_items, methods=["GET"]),
        Route("/api/v1/library/{item_id}", library.get_item, methods=["GET"]),
        Route("/api/v1/health", health.health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ApiError: api_error_handler,
                            LibrarianError: librarian_error_handler,
                            RedisError: redis_error_handler,
                            OperationalError: database_error_handler,
                            # Anything else is still a JSON error with a code, never bare text.
                            Exception: internal_error_handler},
    )

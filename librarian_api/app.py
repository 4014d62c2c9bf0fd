"""The Starlette application. Run with ``uvicorn librarian_api.app:create_app --factory``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from librarian.errors import LibrarianError
from librarian.jobs.store import ApiJobStore, JobKeys
from librarian.settings import Settings
from librarian.storage.stores import catalog_for, objects_for, vectors_for
from librarian.storage.tokens import ApiTokens
from librarian_api import health, ingest, library, openapi, search, session, stream, tokens
from librarian_api.auth import Authorization
from librarian_api.credentials import SessionStore, TokenCache
from librarian_api.dagster_client import DagsterSubmitter
from librarian_api.errors import (
    database_error_handler,
    http_error_handler,
    internal_error_handler,
    librarian_error_handler,
    redis_error_handler,
)
from librarian_api.fanout import EventHub
from librarian_api.rate_limits import RateLimits
from librarian_api.request_id import middleware as request_id_middleware
from librarian_api.security import RequestGuard, SecurityHeaders
from librarian_api.state import AppState
from librarian_api.stream_slots import StreamSlots
from librarian_api.submitter import Submitter


# A job's or an item's id in a path: any segment but the fixed word of the route beside it
# (``/ingest/batch``, ``/library/reembed``). OpenAPI matches a concrete path before a templated
# one, and so does the API: ``GET /api/v1/ingest/batch`` is the batch route's (``405``, it takes
# POST), not a lookup of a job called "batch".
class JobId(StringConvertor):
    regex = "(?!batch$)[^/]+"


class ItemId(StringConvertor):
    regex = "(?!reembed$)[^/]+"


register_url_convertor("job", JobId())
register_url_convertor("item", ItemId())


class LibrarianApp(Starlette):
    """Starlette with the security headers outermost: on every response, the 500s that
    Starlette's own error middleware writes included."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> LibrarianApp:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A bounded pool: streams borrow a connection only for a short read, so thousands of
        # open streams share a few dozen connections (and wait briefly if all are busy).
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=64, timeout=10, health_check_interval=30,
            socket_connect_timeout=5)
        client = aioredis.Redis(connection_pool=pool)
        hub = EventHub(client, JobKeys(settings.redis_prefix).channel)
        await hub.start()
        catalog = catalog_for(settings)
        jobs = ApiJobStore(client, settings.redis_prefix, settings.job_ttl_seconds)
        dagster = DagsterSubmitter(settings)
        submitter = Submitter(jobs, dagster, settings)
        await submitter.start()
        app.state.librarian = AppState(
            settings=settings, jobs=jobs, catalog=catalog, dagster=dagster,
            objects=objects_for(settings), hub=hub, submitter=submitter,
            rate_limits=RateLimits(client, settings),
            streams=StreamSlots(settings.sse_max_streams_per_caller, settings.sse_max_streams),
            # Searches keep the embedded shard open briefly between them (see VectorStore).
            vectors=vectors_for(settings, hold_seconds=0.5),
            tokens=TokenCache(ApiTokens(catalog.engine), settings.auth_cache_seconds),
            sessions=SessionStore(client, settings.redis_prefix, settings.session_ttl_seconds))
        try:
            yield
        finally:
            await submitter.stop()
            await hub.stop()
            app.state.librarian.vectors.release()
            await client.aclose()
            await pool.aclose()
            catalog.close()

    static = Path(__file__).parent / "static"
    routes = [
        Route("/", lambda _request: FileResponse(static / "index.html"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
        Route("/api/v1/ingest", ingest.submit, methods=["POST"]),
        Route("/api/v1/ingest/batch", ingest.submit_batch, methods=["POST"]),
        Route("/api/v1/ingest/{job_id}/cancel", ingest.cancel, methods=["POST"]),
        Route("/api/v1/ingest/{job_id}/retry", ingest.retry, methods=["POST"]),
        Route("/api/v1/jobs", ingest.list_jobs, methods=["GET"]),
        Route("/api/v1/ingest/{job_id:job}", ingest.status, methods=["GET"],
              name="job_status"),
        Route("/api/v1/stream/{job_id}", stream.stream, methods=["GET"], name="job_stream"),
        Route("/api/v1/library", library.list_items, methods=["GET"]),
        Route("/api/v1/library/reembed", library.reembed, methods=["POST"]),
        Route("/api/v1/library/{item_id:item}", library.get_item, methods=["GET"],
              name="library_item"),
        Route("/api/v1/library/{item_id:item}", library.delete_item, methods=["DELETE"]),
        Route("/api/v1/library/{item_id}/refresh", library.refresh_item, methods=["POST"]),
        Route("/api/v1/library/{item_id}/files/{version:int}/{kind}", library.get_file,
              methods=["GET"], name="library_file"),
        Route("/api/v1/search", search.search, methods=["GET"]),
        Route("/api/v1/session", session.sign_in, methods=["POST"]),
        Route("/api/v1/session", session.current, methods=["GET"]),
        Route("/api/v1/session", session.sign_out, methods=["DELETE"]),
        Route("/api/v1/tokens", tokens.list_tokens, methods=["GET"]),
        Route("/api/v1/tokens", tokens.create_token, methods=["POST"]),
        Route("/api/v1/tokens/{token_id:int}", tokens.revoke_token, methods=["DELETE"]),
        Route("/api/v1/health", health.health, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi.openapi, methods=["GET"]),
    ]
    return LibrarianApp(
        routes=routes,
        lifespan=lifespan,
        # Pure ASGI (not BaseHTTPMiddleware): streamed responses pass through untouched. The
        # request id first, so even a refused request has one; then host, origin and body size
        # are checked before any handler runs; then who sent the request, and whether its
        # scope covers the route.
        middleware=[request_id_middleware(), Middleware(RequestGuard, settings=settings),
                    Middleware(Authorization, settings=settings, routes=routes)],
        exception_handlers={LibrarianError: librarian_error_handler,
                            HTTPException: http_error_handler,
                            RedisError: redis_error_handler,
                            OperationalError: database_error_handler,
                            # Anything else is still a JSON error with a code, never bare text.
                            Exception: internal_error_handler},
    )

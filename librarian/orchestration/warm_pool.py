"""The warm run pool: starts Dagster run workers by forking a process that has already imported
Dagster and the code location, instead of spawning a fresh interpreter per run.

A stock run pays for a new interpreter, ``import dagster``, the code location's imports and a cold
``DagsterInstance`` before its first op (2–3.5 s on a 2-core machine). Here that is paid once:
the pool imports everything, runs a throwaway job to load Dagster's execution machinery, freezes
the heap (``gc.freeze``: children then share those pages copy-on-write) and forks one child per
run. The child runs the run with Dagster's own entry point for ``dagster api execute_run``
(``_execute_run_command_body``), so run events, compute logs, interrupts and failure handling
are Dagster's. :class:`librarian.orchestration.warm_launcher.WarmRunLauncher` talks to the
pool over a Unix socket.

Fork safety. ``fork`` copies memory but only the calling thread, so anything that owns a thread,
a lock another thread may hold, or a connection to a server must not exist in the parent:

* Safe to preload (and preloaded): modules — Dagster, SQLAlchemy, psycopg2, the code location
  with trafilatura, lxml, numpy and tokenizers' Python module; the ``Definitions`` object.
  Imports create no threads (checked before every fork); ``onnxruntime`` is the exception (its
  import starts one), so the pool never imports it. Workers do not load the embedding model at
  all: they ask the host's embedding service (:mod:`librarian.embedding.service`), and load it
  themselves only when that service is away.
* Not safe, so never created in the parent: the ONNX ``InferenceSession`` (it starts a native
  thread pool whose threads would not exist in the child, and its ``Run`` waits on them), a
  tokenizer that has encoded anything (its Rust thread pool), gRPC channels (gRPC's core threads
  and poller), Redis/MinIO/httpx clients and pools, the embedded Qdrant shard (it holds file
  locks), asyncio event loops. Each run creates its own on first use, exactly as a fresh worker.
* Database connections: the parent's ``DagsterInstance`` (used only to report runs whose worker
  died) is backed by dagster-postgres storage with ``NullPool``, so no connection outlives a call.
  Before each fork :func:`fork_hazards` reads ``/proc/self`` and refuses to fork when the parent
  has more than one thread or any socket besides the pool's own; the launcher then falls back to
  Dagster's default launcher for that run.

Code changes. A pool that imported old code must not start runs with it: the pool fingerprints
the source files of the modules it imported from this project (path, size, mtime) and compares
the code server's ``server_id`` (new after every code reload) sent with each launch. When either
changed it re-executes itself (``execv``; same pid, so running workers stay its children and are
still reaped) keeping the listening socket open, so a launch waiting on it is served by the new
code.

Linux and single host: workers are children of the pool, found in ``/proc``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from librarian.orchestration.warm_protocol import (
    WorkerRef,
    private_memory_kb,
    read_line,
    start_ticks,
)
from librarian.runs import Tag

log = logging.getLogger("librarian.orchestration.warm_pool")

LISTEN_FD_ENV = "LIBRARIAN_RUN_POOL_LISTEN_FD"
WORKERS_ENV = "LIBRARIAN_RUN_POOL_WORKERS"  # workers handed over to the replacing pool
PROFILE_ENV = "LIBRARIAN_RUN_POOL_PROFILE_DIR"  # set: profile every run into this folder
GENERATION_ENV = "LIBRARIAN_RUN_POOL_GENERATION"  # how many times this pool replaced itself
STALE_CHECK_SECONDS = 2.0


@dataclass
class Worker:
    pid: int
    run_id: str
    ticks: int | None
    started: float
    peak_uss_kb: int = 0


@dataclass
class Exited:
    pid: int
    run_id: str
    exitcode: int  # negative: killed by that signal
    seconds: float
    cpu_seconds: float
    max_rss_kb: int
    peak_uss_kb: int


@dataclass
class PoolState:
    workers: dict[int, Worker] = field(default_factory=dict)
    exited: dict[str, Exited] = field(default_factory=dict)  # by run id: pids get reused

    def worker_of(self, run_id: str) -> Worker | None:
        return next((w for w in self.workers.values() if w.run_id == run_id), None)
    code_version: str | None = None


def fork_hazards(allowed_fds: set[int]) -> list[str]:
    """What in this process would be unsafe to copy into a forked child."""
    problems = []
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        problems.append(f"{threads} threads")
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in allowed_fds:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                problems.append(f"socket on fd {fd}")
    return problems


def project_files(modules: list[str]) -> list[str]:
    """Source files of the project packages the pool imported (not site-packages at large):
    the packages of the preloaded modules and ``librarian`` itself."""
    roots = {name.split(".")[0] for name in modules} | {"librarian"}
    dirs = []
    for root in roots:
        module = sys.modules.get(root)
        path = getattr(module, "__file__", None)
        if path:
            dirs.append(os.path.dirname(path) + os.sep)
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and any(path.startswith(d) for d in dirs):
            files.add(path)
    return sorted(files)


def code_fingerprint(files: list[str]) -> str:
    """Size and mtime of each file: a change on disk means the pool runs stale code."""
    digest = hashlib.sha256()
    for path in files:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0gone\n".encode())
    return digest.hexdigest()


def preload(modules: list[str]) -> None:
    """Import Dagster, the run entry point and the code location; warm the execution path."""
    import importlib

    import dagster
    from dagster._cli.api import _execute_run_command_body  # noqa: F401 - the point is the import
    from dagster._core.instance import DagsterInstance

    for name in modules:
        module = importlib.import_module(name)
        warm = getattr(module, "warm_up", None)
        if callable(warm):
            warm()  # the code location's own fork-safe warm-up (see librarian_assets.warm)
    # A throwaway in-process run on an in-memory instance imports the executor, the event
    # machinery and the compute-log plumbing that a first run would otherwise import.
    @dagster.op
    def warm_up_op() -> int:
        return 1

    @dagster.job
    def warm_up_job() -> None:
        warm_up_op()

    with DagsterInstance.ephemeral() as instance:
        warm_up_job.execute_in_process(instance=instance)
    # The real instance's storage classes (dagster-postgres, SQLAlchemy dialect, alembic).
    with DagsterInstance.get() as instance:
        instance.get_run_records(limit=1)
    with contextlib.suppress(Exception):
        # Definitions resolve their repository lazily: do it once here, not in every worker.
        for name in modules:
            defs = getattr(sys.modules[name], "defs", None)
            if defs is not None:
                defs.get_repository_def()
    gc.collect()
    gc.freeze()


class WarmPool:
    def __init__(self, socket_path: str, modules: list[str], listen_fd: int | None = None,
                 generation: int = 0):
        self.socket_path = socket_path
        self.generation = generation
        self.modules = modules
        self.state = PoolState()
        self.stopping = False
        self._listen_fd = listen_fd
        self._fingerprint = ""
        self._watched: list[str] = []
        self._selector = selectors.DefaultSelector()
        self._last_stale_check = 0.0
        self._last_sample = 0.0
        self._instance: Any = None

    # -- lifecycle -----------------------------------------------------------------------------

    def serve_forever(self) -> None:
        started = time.perf_counter()
        preload(self.modules)
        from dagster._core.instance import DagsterInstance

        self._instance = DagsterInstance.get()
        self._watched = project_files(self.modules)
        self._fingerprint = code_fingerprint(self._watched)
        server = self._listen()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(wake_w)
        # Handlers that only wake the loop (via the wakeup fd); work happens in the loop.
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        selector = self._selector
        selector.register(server, selectors.EVENT_READ, "accept")
        selector.register(wake_r, selectors.EVENT_READ, "wake")
        self._keep_fds = {server.fileno(), wake_r, wake_w}
        log.info("warm run pool ready on %s (pid %d, preload %.2f s)", self.socket_path,
                 os.getpid(), time.perf_counter() - started)
        print(f"warm run pool ready on {self.socket_path}", flush=True)
        self._server, self._wake = server, (wake_r, wake_w)
        while not self.stopping:
            for key, _ in selector.select(timeout=0.25):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                else:
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _ = server.accept()
                        self._serve_connection(conn)
            self._reap()
            # smaps_rollup makes the kernel walk the worker's page tables: not too often.
            if time.monotonic() - self._last_sample > 1.0:
                self._last_sample = time.monotonic()
                self._sample_memory()
            if time.monotonic() - self._last_stale_check > STALE_CHECK_SECONDS:
                self._last_stale_check = time.monotonic()
                if self._fingerprint != code_fingerprint(self._watched):
                    self._replace_self("project code changed on disk")
        self._shutdown()

    def _listen(self) -> socket.socket:
        if self._listen_fd is not None:
            server = socket.socket(fileno=self._listen_fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(self.socket_path)
            os.chmod(self.socket_path, 0o600)  # same user only: a launch runs code
            server.listen(128)
        server.setblocking(False)
        return server

    def _request_stop(self, *_: object) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        """Stop workers the way Dagster's termination does (SIGTERM → interrupt → CANCELED)."""
        for worker in list(self.state.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.state.workers and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for worker in list(self.state.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
        self._reap(block=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def _replace_self(self, reason: str) -> None:
        """Re-execute with fresh code, keeping the pid (workers stay our children) and socket."""
        log.info("replacing the warm run pool: %s", reason)
        self._reap()
        fd = self._server.fileno()
        os.set_inheritable(fd, True)
        signal.set_wakeup_fd(-1)
        workers = [[w.pid, w.run_id, w.ticks] for w in self.state.workers.values()]
        env = {**os.environ, LISTEN_FD_ENV: str(fd), WORKERS_ENV: json.dumps(workers),
               GENERATION_ENV: str(self.generation + 1)}
        argv = [sys.executable, "-m", "librarian", "run-pool", "--socket", self.socket_path]
        for name in self.modules:
            argv += ["--module", name]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)

    # -- requests ------------------------------------------------------------------------------

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            conn.setblocking(True)
            try:
                # One deadline for the whole request: a stalled client costs at most 2 s.
                message = json.loads(read_line(conn, deadline=time.monotonic() + 2) or b"{}")
                reply = self.handle(message, conn)
            except Exception as exc:  # a bad request must not stop the pool
                log.exception("request failed")
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if reply is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def handle(self, message: dict[str, Any], conn: socket.socket) -> dict[str, Any] | None:
        match message.get("op"):
            case "ping":
                return {"ok": True, "pid": os.getpid(), "generation": self.generation,
                        "workers": len(self.state.workers)}
            case "launch":
                return self._launch(str(message["run_id"]), message.get("code_version"), conn)
            case "status":
                return self._status(str(message["run_id"]))
            case "terminate":
                return self._terminate(str(message["run_id"]))
            case "stats":
                self._reap()
                return {"ok": True, "exited": [vars(e) for e in self.state.exited.values()]}
            case other:
                return {"ok": False, "error": f"unknown op {other!r}"}

    def _launch(self, run_id: str, code_version: str | None, conn: socket.socket,
                ) -> dict[str, Any] | None:
        stale = ("the code location was reloaded"
                 if code_version and self.state.code_version not in (None, code_version)
                 else "project code changed on disk"
                 if self._fingerprint != code_fingerprint(self._watched) else None)
        if stale:
            # Reply first: the launcher retries and reaches the replaced pool on this socket.
            conn.sendall(json.dumps({"ok": False, "retry": True}).encode() + b"\n")
            conn.close()
            self._replace_self(stale)
        self.state.code_version = code_version or self.state.code_version
        hazards = fork_hazards(self._keep_fds | {conn.fileno(), 0, 1, 2})
        if hazards:
            log.error("not forking for run %s: %s", run_id, ", ".join(hazards))
            return {"ok": False, "error": f"not fork-safe: {', '.join(hazards)}"}
        pid = os.fork()
        if pid == 0:
            self._run_child(run_id, conn)
        ticks = start_ticks(pid)
        self.state.workers[pid] = Worker(pid, run_id, ticks, time.monotonic())
        log.info("run %s: worker pid %d", run_id, pid)
        return {"ok": True, "pid": pid, "ticks": ticks}

    def _run_child(self, run_id: str, conn: socket.socket) -> None:
        """In the forked child: become a plain run worker and never return."""
        code = 1
        try:
            # The pool's handlers would swallow a termination until Dagster installs its own.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.set_wakeup_fd(-1)
            for fd in (*self._wake, self._server.fileno(), conn.fileno(),
                       self._selector.fileno()):
                with contextlib.suppress(OSError):
                    os.close(fd)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            from dagster._cli.api import _execute_run_command_body
            from dagster._core.instance import DagsterInstance
            from dagster._utils.interrupts import setup_interrupt_handlers

            setup_interrupt_handlers()  # SIGTERM interrupts the run like SIGINT, as in the CLI
            with DagsterInstance.get() as instance:
                # Dagster's PostgreSQL storage opens a new connection per call (NullPool), which
                # costs ~8 ms for each of a run's ~45 events. One worker runs one run, so hold
                # one connection instead, as the webserver does (no statement timeout).
                instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600,
                                                max_overflow=4)
                # Written by the worker, before the run starts: the launcher's health checks and
                # terminations never see a run without its worker (nor a retry with its
                # parent's worker, whose tags Dagster copies).
                instance.add_run_tags(run_id, {
                    Tag.LAUNCHER: "warm",
                    Tag.WORKER: WorkerRef.for_current_process(run_id).tag()})
                profile_dir = os.environ.get(PROFILE_ENV)
                if profile_dir:  # where a run's CPU goes, one cProfile file per run
                    import cProfile

                    profiler = cProfile.Profile()
                    code = profiler.runcall(_execute_run_command_body, run_id, instance,
                                            lambda _event: None, set_exit_code_on_failure=True)
                    profiler.dump_stats(os.path.join(profile_dir, f"{run_id}.prof"))
                else:
                    code = _execute_run_command_body(run_id, instance, lambda _event: None,
                                                     set_exit_code_on_failure=True)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _status(self, run_id: str) -> dict[str, Any]:
        self._reap()
        if self.state.worker_of(run_id) is not None:
            return {"ok": True, "state": "running"}
        if run_id in self.state.exited:
            return {"ok": True, "state": "exited", **vars(self.state.exited[run_id])}
        return {"ok": True, "state": "unknown"}

    def _terminate(self, run_id: str) -> dict[str, Any]:
        worker = self.state.worker_of(run_id)
        if worker is None:
            return {"ok": True, "signalled": False}
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)
            return {"ok": True, "signalled": True}
        return {"ok": True, "signalled": False}

    # -- children ------------------------------------------------------------------------------

    def _reap(self, block: bool = False) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_exit(pid, os.waitstatus_to_exitcode(status), usage)

    def _on_exit(self, pid: int, exitcode: int, usage: Any) -> None:
        worker = self.state.workers.pop(pid, None)
        if worker is None:
            return
        done = Exited(pid, worker.run_id, exitcode, round(time.monotonic() - worker.started, 3),
                      round(usage.ru_utime + usage.ru_stime, 3), usage.ru_maxrss,
                      worker.peak_uss_kb)
        self.state.exited[worker.run_id] = done
        while len(self.state.exited) > 2000:
            self.state.exited.pop(next(iter(self.state.exited)))
        log.info("run %s: worker pid %d exited %d (%.2f s, cpu %.2f s, peak private %d KB)",
                 worker.run_id, pid, exitcode, done.seconds, done.cpu_seconds, done.peak_uss_kb)
        if exitcode == 0:
            return  # Dagster's entry point returned normally: it recorded the run's end
        # Exit 1 is usually a failed run Dagster recorded; a worker that died, or failed before
        # Dagster could record anything, left its run unfinished: look.
        try:
            self._report_dead_worker(worker, exitcode)
        except Exception:
            log.exception("could not report the dead worker of run %s", worker.run_id)

    def _report_dead_worker(self, worker: Worker, exitcode: int) -> None:
        """A worker killed before it could record the outcome: end the run now, as the code
        server does for its own workers, instead of after a run-monitoring poll."""
        from dagster._core.events import JobFailureData, RunFailureReason
        from dagster._core.storage.dagster_run import DagsterRunStatus

        run = self._instance.get_run_by_id(worker.run_id)
        if run is None or run.is_finished:
            return
        how = (f"was killed by {signal.Signals(-exitcode).name}" if exitcode < 0
               else f"exited with code {exitcode}")
        log.warning("run %s: worker pid %d %s before the run finished", worker.run_id,
                    worker.pid, how)
        message = f"Run worker (pid {worker.pid}) {how} before the run finished."
        if run.status == DagsterRunStatus.CANCELING:
            self._instance.report_run_canceled(run, message=message)
        else:
            self._instance.report_run_failed(run, message=message, job_failure_data=JobFailureData(
                error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))

    def _sample_memory(self) -> None:
        """Peak private (unshared) memory per worker: what a run really costs next to the pool."""
        for worker in self.state.workers.values():
            worker.peak_uss_kb = max(worker.peak_uss_kb, private_memory_kb(worker.pid) or 0)


def main(socket_path: str, modules: list[str]) -> int:
    listen_fd = os.environ.pop(LISTEN_FD_ENV, None)
    pool = WarmPool(socket_path, modules, int(listen_fd) if listen_fd else None,
                    int(os.environ.pop(GENERATION_ENV, "0")))
    for pid, run_id, ticks in json.loads(os.environ.pop(WORKERS_ENV, "[]")):
        # Still running, or exited and not reaped yet: either way still ours to reap.
        if start_ticks(pid) == ticks:
            pool.state.workers[pid] = Worker(pid, run_id, ticks, time.monotonic())
    pool.serve_forever()
    return 0

"""``WarmRunLauncher``: Dagster's ``run_launcher`` extension point, backed by the warm run pool.

Configured in ``dagster.yaml``::

    run_launcher:
      module: librarian.orchestration.warm_launcher
      class: WarmRunLauncher

The pool (``librarian run-pool``, see :mod:`librarian.orchestration.warm_pool`) listens on
``$DAGSTER_HOME/run-pool.sock`` unless ``socket`` is configured (or ``LIBRARIAN_RUN_POOL_SOCKET``
set). The launcher keeps everything the
default launcher does and adds what it lacks:

* launch: the pool forks a pre-imported worker (RUN_STARTING → RUN_START ≈0.3 s instead of ~3 s);
  if the pool is not there, the run is started by Dagster's ``DefaultRunLauncher`` through the code
  server instead, with an engine event saying so — a missing pool slows runs, it never loses one;
* termination: SIGTERM to the worker, which Dagster turns into an interrupt → ``RUN_CANCELED``;
* run monitoring: ``check_run_worker_health`` reports a dead worker (the default launcher cannot),
  and the pool itself ends a run whose worker was killed as soon as it reaps it;
* run retries, coordinator limits and compute logs are untouched: they live in the instance,
  the daemon and the run worker, which is Dagster's own code.

This module is imported by the webserver, the daemon and the code server: it stays light.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from dagster import Field, StringSource
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from librarian.errors import PoolError, PoolUnavailable
from librarian.orchestration.warm_protocol import (
    WorkerRef,
    is_alive,
    pool_socket_path,
    request,
)
from librarian.runs import Tag

# A pool that is replacing itself with new code takes a few seconds to import it again.
LAUNCH_WAIT_SECONDS = 60.0
REFUSED_WAIT_SECONDS = 2.0


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, socket: str | None = None, inst_data: ConfigurableClassData | None = None):
        self._socket = socket
        self._inst_data = inst_data
        self._default = DefaultRunLauncher()  # type: ignore[no-untyped-call]
        super().__init__()  # type: ignore[no-untyped-call]

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"socket": Field(StringSource, is_required=False,
                                description="Unix socket of the warm run pool; default "
                                            "$DAGSTER_HOME/run-pool.sock")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(socket=config_value.get("socket"), inst_data=inst_data)

    def register_instance(self, instance: Any) -> None:
        super().register_instance(instance)
        self._default.register_instance(instance)

    @property
    def socket_path(self) -> str:
        if self._socket:
            return self._socket
        return pool_socket_path(self._instance.root_directory)

    # -- launch ----------------------------------------------------------------------------------

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        try:
            self._launch(run.run_id, _code_version(context, run))
        except PoolUnavailable as exc:
            # Nothing reached a pool, so nothing started: the stock launcher can take the run.
            self._instance.report_engine_event(
                f"Warm run pool unavailable ({exc}); starting this run with Dagster's default "
                "launcher.", run, cls=self.__class__)
            self._instance.add_run_tags(run.run_id, {Tag.LAUNCHER: "default"})
            self._default.launch_run(context)
        # The worker tags the run with itself (Tag.WORKER) before the run starts. A PoolError
        # (request sent, no answer) propagates: the pool may have started the run, so starting
        # it a second time elsewhere could run it twice; Dagster marks the launch failed.

    def _launch(self, run_id: str, code_version: str | None) -> dict[str, Any]:
        deadline = time.monotonic() + LAUNCH_WAIT_SECONDS
        while True:
            # A pool replacing itself keeps listening (the launch waits in the backlog); a
            # refused connection means no pool: fall back quickly rather than hold the run.
            reply = request(self.socket_path, {"op": "launch", "run_id": run_id,
                                               "code_version": code_version},
                            timeout=LAUNCH_WAIT_SECONDS, connect_wait=REFUSED_WAIT_SECONDS)
            if reply.get("ok"):
                return reply
            if not reply.get("retry"):
                # The pool refused before forking (e.g. not fork-safe): nothing started.
                raise PoolUnavailable(reply.get("error") or "the pool refused the launch")
            if time.monotonic() > deadline:
                raise PoolUnavailable("the pool kept replacing itself")

    # -- termination -----------------------------------------------------------------------------

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        if run.tags.get(Tag.LAUNCHER) == "default":
            return bool(self._default.terminate(run_id))  # type: ignore[no-untyped-call]
        self._instance.report_run_canceling(run)
        try:
            # The pool finds the worker by run id, tagged or not yet.
            reply = request(self.socket_path, {"op": "terminate", "run_id": run_id})
            return bool(reply.get("signalled"))
        except (PoolUnavailable, PoolError):
            worker = WorkerRef.from_tag(run.tags.get(Tag.WORKER))
            # The worker outlives its pool: signal it directly if this process can see it.
            if worker is None or worker.run_id != run_id or not worker.visible_here() \
                    or not is_alive(worker.pid, worker.ticks):
                return False
            os.kill(worker.pid, signal.SIGTERM)
            return True

    # -- monitoring ------------------------------------------------------------------------------

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = WorkerRef.from_tag(run.tags.get(Tag.WORKER))
        if run.tags.get(Tag.LAUNCHER) == "default" or worker is None \
                or worker.run_id != run.run_id:
            # Started by the stock launcher (which offers no health check), or not started yet
            # (a retry carries its parent's tags until its own worker writes them): only run
            # monitoring's start timeout and max runtime apply, as with the default launcher.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no warm-pool worker to check")
        try:
            reply = request(self.socket_path, {"op": "status", "run_id": run.run_id})
        except (PoolUnavailable, PoolError):
            if not worker.visible_here():
                # Another container's process: a missing /proc entry proves nothing here.
                return CheckRunHealthResult(WorkerStatus.RUNNING, "run pool not reachable")
            reply = {"state": "running" if is_alive(worker.pid, worker.ticks) else "unknown"}
        if reply.get("state") == "unknown" and worker.visible_here() \
                and is_alive(worker.pid, worker.ticks):
            # Not this pool's worker (a pool restarted, or another pool on the same storage),
            # but alive on this host: not a failure.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker alive, unknown to the pool")
        match reply.get("state"):
            case "running":
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            case "exited" if reply.get("exitcode") == 0:
                return CheckRunHealthResult(WorkerStatus.SUCCESS)
            case "exited":
                return CheckRunHealthResult(
                    WorkerStatus.FAILED,
                    f"run worker pid {worker.pid} exited with {reply['exitcode']}")
            case _:
                return CheckRunHealthResult(
                    WorkerStatus.FAILED,
                    f"run worker pid {worker.pid} is gone (exit status unknown)")

    def get_run_worker_debug_info(self, run: DagsterRun,
                                  include_container_logs: bool | None = True) -> str | None:
        return f"warm run pool worker {run.tags.get(Tag.WORKER, '?')}"

    def dispose(self) -> None:
        self._default.dispose()


def _code_version(context: LaunchRunContext, run: DagsterRun) -> str | None:
    """The code server's id, which changes every time the code location is reloaded."""
    if context.workspace is None or run.remote_job_origin is None:
        return None
    try:
        name = run.remote_job_origin.repository_origin.code_location_origin.location_name
        location = context.workspace.get_code_location(name)
        server_id = getattr(location, "server_id", None)
        return str(server_id) if server_id else None
    except Exception:  # a location that cannot say is not a reason to refuse the run
        return None

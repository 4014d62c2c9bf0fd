"""The warm run pool and ``WarmRunLauncher`` on a real Dagster instance (PostgreSQL storage):
runs forked from a pool process, killed, terminated, checked, and the pool replacing itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from librarian.errors import PoolUnavailable
from librarian.orchestration.warm_launcher import WarmRunLauncher
from librarian.orchestration.warm_pool import code_fingerprint, project_files
from librarian.orchestration.warm_protocol import (
    SOCKET_NAME,
    WorkerRef,
    request,
)
from librarian.runs import Tag
from tests.support import warm_jobs

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.fixture(scope="module")
def pool(dagster_home: Path, instance: Any) -> Iterator[subprocess.Popen[bytes]]:
    sock = str(dagster_home / SOCKET_NAME)
    log = open(dagster_home / "run-pool.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "librarian", "run-pool", "--module",
                             "tests.support.warm_jobs"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + 120
    while True:
        try:
            if request(sock, {"op": "ping"}).get("ok"):
                break
        except PoolUnavailable:
            pass
        assert proc.poll() is None, (dagster_home / "run-pool.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "pool not ready"
        time.sleep(0.2)
    yield proc
    proc.terminate()
    proc.wait(30)
    log.close()


def launch(instance: Any, seconds: float = 0.0, fail: bool = False) -> str:
    from dagster import reconstructable
    from dagster._core.storage.dagster_run import DagsterRunStatus

    run = instance.create_run_for_job(
        job_def=warm_jobs.nap_job,
        run_config={"ops": {"nap": {"config": {"seconds": seconds, "fail": fail}}}},
        job_code_origin=reconstructable(warm_jobs.nap_job).get_python_origin(),
        status=DagsterRunStatus.NOT_STARTED)
    instance.launch_run(run.run_id, workspace=None)
    return str(run.run_id)


def wait_status(instance: Any, run_id: str, statuses: set[str], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status.value in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {instance.get_run_by_id(run_id).status}")


def wait_for_step(instance: Any, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
               for e in instance.all_logs(run_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never started its step")


def test_a_run_is_executed_by_a_worker_forked_from_the_pool(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    assert isinstance(instance.run_launcher, WarmRunLauncher)
    run_id = launch(instance)
    run = wait_status(instance, run_id, TERMINAL)
    assert run.status.value == "SUCCESS"
    assert run.tags[Tag.LAUNCHER] == "warm"
    worker = WorkerRef.from_tag(run.tags[Tag.WORKER])
    assert worker is not None and worker.run_id == run_id
    pid = worker.pid
    assert pid != pool.pid and worker.ticks is not None and worker.visible_here()
    started = [e for e in instance.all_logs(run_id) if e.dagster_event
               and e.dagster_event.event_type_value == "ENGINE_EVENT"
               and "Started process for run" in e.message]
    assert started and f"pid: {pid}" in started[0].message
    # RUN_SUCCESS is written just before the worker exits: give the pool a moment to reap it.
    deadline = time.monotonic() + 10
    while True:
        stats = request(instance.run_launcher.socket_path, {"op": "stats"})["exited"]
        mine = [e for e in stats if e["run_id"] == run_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine and mine[0]["exitcode"] == 0 and mine[0]["cpu_seconds"] > 0
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.name == "SUCCESS"


def test_the_worker_output_is_captured_by_the_compute_log_manager(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    run_id = launch(instance)
    assert wait_status(instance, run_id, TERMINAL).status.value == "SUCCESS"
    captured = [e.dagster_event.event_specific_data for e in instance.all_logs(run_id)
                if e.dagster_event and e.dagster_event.event_type_value == "LOGS_CAPTURED"]
    assert captured
    manager = instance.compute_log_manager
    data = manager.get_log_data(manager.build_log_key_for_run(run_id, captured[0].file_key))
    assert b"warm-pool-test stdout" in (data.stdout or b"")
    assert b"warm-pool-test stderr" in (data.stderr or b"")


def test_a_failing_op_fails_the_run_with_its_error(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    run_id = launch(instance, fail=True)
    run = wait_status(instance, run_id, TERMINAL)
    assert run.status.value == "FAILURE"
    assert any(e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
               and "asked to fail" in str(e.dagster_event.event_specific_data.error)
               for e in instance.all_logs(run_id))


def test_a_killed_worker_ends_its_run_as_failure_within_seconds(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    run_id = launch(instance, seconds=60)
    wait_for_step(instance, run_id)
    run = instance.get_run_by_id(run_id)
    assert instance.run_launcher.check_run_worker_health(run).status.name == "RUNNING"
    worker = WorkerRef.from_tag(run.tags[Tag.WORKER])
    assert worker is not None
    pid = worker.pid
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    run = wait_status(instance, run_id, TERMINAL, timeout=30)
    # The bound for the whole path to an `error` event is 5 s; the pool's part is this.
    assert time.monotonic() - killed < 5
    assert run.status.value == "FAILURE"
    failure = [e for e in instance.all_logs(run_id) if e.dagster_event
               and e.dagster_event.event_type_value == "PIPELINE_FAILURE"]
    assert "SIGKILL" in failure[-1].message
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.name == "FAILED" and "-9" in (health.msg or "")


def test_terminate_interrupts_the_worker_and_the_run_ends_canceled(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    run_id = launch(instance, seconds=60)
    wait_for_step(instance, run_id)
    assert instance.run_launcher.terminate(run_id) is True
    run = wait_status(instance, run_id, TERMINAL, timeout=30)
    assert run.status.value == "CANCELED"
    assert instance.run_launcher.terminate(run_id) is False  # finished: nothing to stop


def test_many_concurrent_runs_all_finish_and_none_is_left_started(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # One launcher call per thread, as the queued coordinator's dequeue workers do.
    with ThreadPoolExecutor(4) as threads:
        run_ids = list(threads.map(lambda _: launch(instance, seconds=0.2), range(16)))
    runs = [wait_status(instance, run_id, TERMINAL, timeout=120) for run_id in run_ids]
    assert [r.status.value for r in runs] == ["SUCCESS"] * 16
    assert len({r.tags[Tag.WORKER] for r in runs}) == 16


def test_the_pool_replaces_itself_when_the_code_location_is_reloaded(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    launcher = instance.run_launcher
    first = _created_run(instance)
    assert launcher._launch(first, "code-server-a")["ok"]  # the pool learns the server id
    before = request(launcher.socket_path, {"op": "ping"})
    second = _created_run(instance)
    # A new code server id: the code location was reloaded, so the pool must not fork old code.
    assert launcher._launch(second, "code-server-b")["ok"]
    after = request(launcher.socket_path, {"op": "ping"})
    assert after["pid"] == before["pid"] == pool.pid  # replaced in place: same pid and socket
    assert after["generation"] == before["generation"] + 1
    for run_id in (first, second):
        assert wait_status(instance, run_id, TERMINAL).status.value == "SUCCESS"


def test_the_pool_replaces_itself_when_project_code_changes_on_disk(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    launcher = instance.run_launcher
    before = request(launcher.socket_path, {"op": "ping"})
    source = Path(warm_jobs.__file__)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        run_id = launch(instance)
        assert wait_status(instance, run_id, TERMINAL).status.value == "SUCCESS"
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = request(launcher.socket_path, {"op": "ping"})
    assert after["generation"] > before["generation"]


def _created_run(instance: Any) -> str:
    from dagster import reconstructable
    from dagster._core.storage.dagster_run import DagsterRunStatus

    run = instance.create_run_for_job(
        job_def=warm_jobs.nap_job, job_code_origin=reconstructable(
            warm_jobs.nap_job).get_python_origin(), status=DagsterRunStatus.STARTING)
    return str(run.run_id)


FORK_HAZARDS_SCRIPT = """
import json, socket, threading
from librarian.orchestration.warm_pool import fork_hazards
out = {"clean": fork_hazards(set())}
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
out["thread"] = fork_hazards(set())
stop.set()
thread.join()
import os, time
for _ in range(100):  # join() returns before the kernel has removed the thread's task entry
    if len(os.listdir("/proc/self/task")) == 1:
        break
    time.sleep(0.01)
sock = socket.socket()
out["socket"] = fork_hazards(set())
out["socket_allowed"] = fork_hazards({sock.fileno()})
out["fd"] = sock.fileno()
print(json.dumps(out))
"""


def test_fork_hazards_name_threads_and_sockets() -> None:
    # In a fresh interpreter: this test process has threads of its own.
    import json

    result = subprocess.run([sys.executable, "-c", FORK_HAZARDS_SCRIPT], cwd=ROOT, check=True,
                            capture_output=True, text=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    out = json.loads(result.stdout)
    assert out["clean"] == []
    assert out["thread"] == ["2 threads"]
    assert out["socket"] == [f"socket on fd {out['fd']}"]
    assert out["socket_allowed"] == []


def test_the_code_fingerprint_follows_project_files_only() -> None:
    files = project_files(["tests.support.warm_jobs"])
    assert str(Path(warm_jobs.__file__)) in files
    assert any(f.endswith("librarian/orchestration/warm_pool.py") for f in files)
    assert not any("site-packages" in f for f in files)  # not every installed library
    before = code_fingerprint(files)
    source = Path(warm_jobs.__file__)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert code_fingerprint(files) != before
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert code_fingerprint(files) == before


def test_a_retry_carrying_its_parents_worker_tag_is_not_judged_by_that_worker(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    from dagster._core.storage.dagster_run import DagsterRunStatus

    parent = WorkerRef(pid=1, ticks=1, pidns=None, run_id="the-parent-run")
    run = instance.create_run_for_job(job_def=warm_jobs.nap_job, status=DagsterRunStatus.STARTED,
                                      tags={Tag.WORKER: parent.tag(), Tag.LAUNCHER: "warm"})
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.name == "RUNNING"


def test_a_run_whose_code_cannot_be_loaded_fails_instead_of_hanging(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    from dagster import reconstructable
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.storage.dagster_run import DagsterRunStatus

    origin = reconstructable(warm_jobs.nap_job).get_python_origin()
    repo = origin.repository_origin
    broken = origin._replace(repository_origin=repo._replace(code_pointer=ModuleCodePointer(
        "tests.support.no_such_module", "nap_job", str(ROOT))))
    run = instance.create_run_for_job(job_def=warm_jobs.nap_job, job_code_origin=broken,
                                      status=DagsterRunStatus.NOT_STARTED)
    instance.launch_run(run.run_id, workspace=None)
    ended = wait_status(instance, run.run_id, TERMINAL, timeout=30)
    assert ended.status.value == "FAILURE"
    assert any("no_such_module" in str(e.dagster_event.event_specific_data)
               for e in instance.all_logs(run.run_id)
               if e.dagster_event
               and e.dagster_event.event_type_value in ("PIPELINE_FAILURE", "ENGINE_EVENT"))


def test_a_stalled_client_does_not_stall_the_pool(pool: subprocess.Popen[bytes],
                                                  instance: Any) -> None:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(instance.run_launcher.socket_path)
        stalled.sendall(b'{"op": "pi')  # and nothing more
        started = time.monotonic()
        assert request(instance.run_launcher.socket_path, {"op": "ping"}, timeout=10)["ok"]
        assert time.monotonic() - started < 5


def test_without_a_pool_the_launcher_says_so_and_refuses_nothing_silently(
        tmp_path: Path) -> None:
    launcher = WarmRunLauncher(socket=str(tmp_path / "absent.sock"))
    with pytest.raises(PoolUnavailable):
        launcher._launch("some-run", None)


def test_a_live_worker_the_pool_does_not_know_is_not_reported_failed(
        pool: subprocess.Popen[bytes], instance: Any) -> None:
    """Another pool's worker on the same storage (or one orphaned by a restarted pool)."""
    from dagster._core.storage.dagster_run import DagsterRunStatus

    run = instance.create_run_for_job(job_def=warm_jobs.nap_job, status=DagsterRunStatus.STARTED)
    me = WorkerRef.for_current_process(run.run_id)  # alive, and not a child of the pool
    instance.add_run_tags(run.run_id, {Tag.WORKER: me.tag(), Tag.LAUNCHER: "warm"})
    run = instance.get_run_by_id(run.run_id)
    assert instance.run_launcher.check_run_worker_health(run).status.name == "RUNNING"
    gone = WorkerRef(me.pid, (me.ticks or 0) + 1, me.pidns, run.run_id)  # a reused pid
    instance.add_run_tags(run.run_id, {Tag.WORKER: gone.tag()})
    run = instance.get_run_by_id(run.run_id)
    assert instance.run_launcher.check_run_worker_health(run).status.name == "FAILED"

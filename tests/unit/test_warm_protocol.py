"""Process facts and configuration around the warm run pool, on this process and its children."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from librarian.orchestration.run_coordinator import FastQueuedRunCoordinator
from librarian.orchestration.warm_protocol import WorkerRef, is_alive, pid_namespace, start_ticks


def test_a_worker_tag_round_trips_and_a_bad_one_reads_as_none() -> None:
    ref = WorkerRef(123, 456, "pid:[1]", "run-1")
    assert WorkerRef.from_tag(ref.tag()) == ref
    assert WorkerRef.from_tag(WorkerRef(123, None, None, "r").tag()) == WorkerRef(
        123, None, None, "r")
    for bad in (None, "", "123:456", '{"pid": "x", "run": "r"}', '{"run": "r"}'):
        assert WorkerRef.from_tag(bad) is None


def test_a_worker_in_another_pid_namespace_is_not_visible_here() -> None:
    me = WorkerRef.for_current_process("run")
    assert me.pid == os.getpid() and me.pidns == pid_namespace() and me.visible_here()
    assert not WorkerRef(me.pid, me.ticks, "pid:[0]", "run").visible_here()
    assert not WorkerRef(me.pid, me.ticks, None, "run").visible_here()


def test_is_alive_tells_a_live_process_from_a_dead_one_and_from_a_reused_pid() -> None:
    ticks = start_ticks(os.getpid())
    assert ticks is not None and is_alive(os.getpid(), ticks)
    assert not is_alive(os.getpid(), ticks + 1)  # same pid, another process start
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child_ticks = start_ticks(child.pid)
    child.wait()
    assert not is_alive(child.pid, child_ticks)
    assert start_ticks(child.pid) is None


def test_is_alive_treats_a_zombie_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = start_ticks(child.pid)
    deadline = time.monotonic() + 10
    # The child exits but is not reaped yet: a zombie, which no longer runs anything.
    while is_alive(child.pid, ticks) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert start_ticks(child.pid) == ticks  # still in /proc …
    assert not is_alive(child.pid, ticks)  # … but not alive
    child.wait()


def test_the_coordinator_takes_a_dequeue_interval_in_milliseconds() -> None:
    fast = FastQueuedRunCoordinator.from_config_value(
        None, {"max_concurrent_runs": 4, "dequeue_interval_ms": 250})  # type: ignore[arg-type]
    assert fast.dequeue_interval_seconds == 0.25
    assert fast.get_run_queue_config().max_concurrent_runs == 4
    stock = FastQueuedRunCoordinator.from_config_value(
        None, {"dequeue_interval_seconds": 2})  # type: ignore[arg-type]
    assert stock.dequeue_interval_seconds == 2
    assert "dequeue_interval_ms" in FastQueuedRunCoordinator.config_type()


def test_long_replies_are_read_whole_and_oversized_requests_refused(tmp_path: Path) -> None:
    import json
    import socket
    import threading

    from librarian.orchestration.warm_protocol import read_line, request

    path = str(tmp_path / "pool.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    big = {"ok": True, "exited": [{"run_id": f"run-{i}", "seconds": 1.5} for i in range(20_000)]}

    def serve_once() -> None:
        conn, _ = server.accept()
        with conn:
            read_line(conn)
            conn.sendall(json.dumps(big).encode() + b"\n")

    thread = threading.Thread(target=serve_once)
    thread.start()
    assert len(json.dumps(big)) > 64 * 1024
    assert request(path, {"op": "stats"}) == big
    thread.join()
    server.close()

    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"x" * (70 * 1024))
        with pytest.raises(OSError, match="too large"):
            read_line(right)

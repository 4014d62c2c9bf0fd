"""Process facts and configuration around the warm run pool, on this process and its children."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from librarian.run_coordinator import FastQueuedRunCoordinator
from librarian.warm_protocol import is_alive, parse_worker_tag, start_ticks, worker_tag


def test_a_worker_tag_round_trips_and_tolerates_a_missing_start_time() -> None:
    assert parse_worker_tag(worker_tag(123, 456)) == (123, 456)
    assert parse_worker_tag(worker_tag(123, None)) == (123, None)


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

"""``librarian run`` as a person starts it: the admin token it makes on first start, what dies
comes back, and a signal stops it all.

The stack is started from a non-interactive shell as a background job, the way a script or a
CI step starts it, so it inherits SIGINT as ignored; ``librarian run`` must stop on it anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from librarian.cli.local_servers import free_port, port_open
from tests.support.processes import children as _children
from tests.support.processes import cmdline as _cmdline
from tests.support.processes import descendants as _descendants
from tests.support.processes import running as _running

pytestmark = pytest.mark.e2e


def _child_running(pid: int, words: str) -> int | None:
    return next((c for c in _children(pid) if words in _cmdline(c) and _running(c)), None)


def _health(port: int, token: str | None = None) -> dict[str, object] | None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", headers=headers,
                             timeout=3)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def started() -> Iterator[tuple[int, dict[str, int], Path]]:
    ports = {name: free_port() for name in ("api", "dagster", "code", "postgres", "redis")}
    # The private PostgreSQL runs as its own user when we are root: a folder it can reach.
    data = Path("/tmp") / f"librarian-supervision-{ports['api']}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIBRARIAN_", "DAGSTER_"))}
    librarian = str(Path(sys.executable).parent / "librarian")
    script = (f"'{librarian}' run --data-dir '{data}' --api-port {ports['api']}"
              f" --dagster-port {ports['dagster']} --code-server-port {ports['code']}"
              f" --postgres-port {ports['postgres']} --redis-port {ports['redis']}"
              f" > '{data}.log' 2>&1 & echo $!; wait")
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True,
                             env=env, start_new_session=True)
    assert shell.stdout is not None
    pid = int(shell.stdout.readline())
    try:
        deadline = time.monotonic() + 240
        while _health(ports["api"]) is None:
            assert shell.poll() is None and _running(pid), Path(f"{data}.log").read_text()
            assert time.monotonic() < deadline, "the stack did not come up"
            time.sleep(1)
        yield pid, ports, data
    finally:
        for leftover in _descendants(pid) | {pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            shell.wait(30)
        pgdata = data / "postgres" / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((pgdata / "postmaster.pid").read_text().split()[0]),
                        signal.SIGKILL)
        shutil.rmtree(data, ignore_errors=True)


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``librarian`` command as a person on this machine types it: no token given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBRARIAN_", "DAGSTER_"))}
    env["LIBRARIAN_DATA_DIR"] = str(data)
    return subprocess.run([str(Path(sys.executable).parent / "librarian"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_what_dies_is_restarted_and_sigint_from_a_script_stops_everything(
        started: tuple[int, dict[str, int], Path]) -> None:
    pid, ports, data = started
    api = f"http://127.0.0.1:{ports['api']}"

    # The first start made an admin token: printed once, kept in a file only we can read,
    # and used by the commands on this machine without being asked for.
    token_file = data / "admin.token"
    assert oct(token_file.stat().st_mode & 0o777) == oct(0o600)
    token = token_file.read_text().strip()
    assert token.startswith("lbr_")
    log = Path(f"{data}.log")
    deadline = time.monotonic() + 60
    while "Press Ctrl-C" not in log.read_text():  # the API answers before the banner is out
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    assert log.read_text().count(token) == 1
    assert httpx.get(f"{api}/api/v1/jobs", timeout=10).status_code == 401
    jobs = _cli(data, "jobs", "--api", api, "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert json.loads(jobs.stdout)["jobs"] == []
    made = _cli(data, "token", "create", "--name", "reader", "--scope", "read", "--api", api)
    assert made.returncode == 0, made.stderr
    reader = made.stdout.split()[-1]
    assert httpx.get(f"{api}/api/v1/jobs", headers={"Authorization": f"Bearer {reader}"},
                     timeout=10).status_code == 200
    elsewhere = _cli(data / "nowhere", "jobs", "--api", api)
    assert elsewhere.returncode != 0 and "401: unauthorized" in elsewhere.stderr

    # kill -9 of the event mirror and of the private Redis: both come back by themselves.
    for words, name in (("librarian mirror", "mirror"), ("redis-server", "redis")):
        victim = _child_running(pid, words)
        assert victim is not None, f"no {name} process"
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            health = _health(ports["api"], token)
            replacement = _child_running(pid, words)
            restarts = (health or {}).get("restarts") or {}
            if (replacement not in (None, victim) and isinstance(restarts, dict)
                    and restarts.get(name) == 1 and health and health["status"] == "ok"):
                break
            assert _running(pid), "librarian run stopped instead of restarting " + name
            assert time.monotonic() < deadline, f"{name} did not come back: {health}"
            time.sleep(0.5)

    # SIGINT (inherited as ignored by a background job) stops every process it started.
    everything = _descendants(pid)
    postmaster = int((data / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while _running(pid):
        assert time.monotonic() < deadline, "librarian run ignored SIGINT"
        time.sleep(0.2)
    left = [p for p in everything | {postmaster} if _running(p)]
    assert left == [], [(p, _cmdline(p)) for p in left]
    assert not any(port_open("127.0.0.1", port) for port in ports.values())

"""The warm run pool's wire protocol and process facts, shared by the pool and its launcher.

One JSON object per line over a Unix socket, one request per connection. The launcher runs in
the webserver, daemon and code server, so this module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

# Runs started by the warm pool carry ``<pid>:<start ticks>`` so a worker is never confused
# with a later process that reuses its pid.
WORKER_TAG = "librarian/worker"
LAUNCHER_TAG = "librarian/launcher"
SOCKET_NAME = "run-pool.sock"


class PoolUnavailable(Exception):
    """The pool's socket is missing or not answering: the launcher falls back to Dagster's own."""


def request(path: str, message: dict[str, Any], timeout: float = 10.0,
            connect_wait: float = 0.0) -> dict[str, Any]:
    """Send one request and read one reply.

    ``connect_wait`` keeps retrying a refused connection that long: a pool replacing itself with
    fresh code keeps its listening socket, but one that is starting has none yet.
    """
    deadline = time.monotonic() + connect_wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            break
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise PoolUnavailable(f"no warm run pool at {path}: {exc}") from exc
            time.sleep(0.1)
        except OSError as exc:
            sock.close()
            raise PoolUnavailable(f"warm run pool at {path}: {exc}") from exc
    try:
        with sock:
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = read_line(sock)
    except OSError as exc:
        raise PoolUnavailable(f"warm run pool at {path} did not answer: {exc}") from exc
    if not data:
        raise PoolUnavailable(f"warm run pool at {path} closed the connection")
    reply: dict[str, Any] = json.loads(data)
    return reply


def read_line(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise OSError("request too large")
    return data


def pool_socket_path(dagster_home: str) -> str:
    from librarian.settings import Settings

    configured = Settings().run_pool_socket
    return str(configured) if configured else os.path.join(dagster_home, SOCKET_NAME)


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])


def is_alive(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the process that was started at ``ticks`` (and not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0] != "Z" and (ticks is None or int(fields[19]) == ticks)


def worker_tag(pid: int, ticks: int | None) -> str:
    return f"{pid}:{ticks if ticks is not None else ''}"


def parse_worker_tag(value: str) -> tuple[int, int | None]:
    pid, _, ticks = value.partition(":")
    return int(pid), int(ticks) if ticks else None

"""The warm run pool's wire protocol and process facts, shared by the pool and its launcher.

One JSON object per line over a Unix socket, one request per connection. The launcher runs in
the webserver, daemon and code server, so this module imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from librarian.errors import PoolError, PoolUnavailable

SOCKET_NAME = "run-pool.sock"
REPLY_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class WorkerRef:
    """Which process runs which run: written as a run tag by the worker itself."""

    pid: int
    ticks: int | None  # process start time: a reused pid is another process
    pidns: str | None  # PID namespace: /proc of another container says nothing about it
    run_id: str

    def tag(self) -> str:
        return json.dumps({"pid": self.pid, "ticks": self.ticks, "ns": self.pidns,
                           "run": self.run_id})

    @classmethod
    def from_tag(cls, value: str | None) -> WorkerRef | None:
        try:
            data = json.loads(value or "")
            return cls(int(data["pid"]), data.get("ticks"), data.get("ns"), str(data["run"]))
        except (ValueError, TypeError, KeyError):
            return None

    @classmethod
    def for_current_process(cls, run_id: str) -> WorkerRef:
        return cls(os.getpid(), start_ticks(os.getpid()), pid_namespace(), run_id)

    def visible_here(self) -> bool:
        """Whether this process can see the worker's /proc entry (same host and namespace)."""
        return self.pidns is not None and self.pidns == pid_namespace()


def request(path: str, message: dict[str, Any], timeout: float = 10.0,
            connect_wait: float = 0.0) -> dict[str, Any]:
    """Send one request and read one reply.

    ``connect_wait`` keeps retrying a refused connection that long (a pool starting up).
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
            # Replies may be long (``stats`` lists every exited worker); requests may not.
            data = read_line(sock, limit=REPLY_LIMIT, deadline=time.monotonic() + timeout)
        reply: dict[str, Any] = json.loads(data)
    except (OSError, ValueError) as exc:
        raise PoolError(f"warm run pool at {path} did not answer: {exc}") from exc
    return reply


def read_line(sock: socket.socket, limit: int = 64 * 1024,
              deadline: float | None = None) -> bytes:
    """One newline-terminated message, within ``limit`` bytes and before ``deadline``."""
    data = b""
    while not data.endswith(b"\n"):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("message not complete in time")
            sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise OSError("message too large")
    return data


def pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def pool_socket_path(dagster_home: str) -> str:
    from librarian.settings import Settings

    configured = Settings().run_pool_socket
    return str(configured) if configured else os.path.join(dagster_home, SOCKET_NAME)


def proc_stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 on (state, ppid, …), or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    return stat[stat.rindex(")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22), zombies included."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, ticks: int | None) -> bool:
    """Whether ``pid`` is still the process that was started at ``ticks`` (and not a zombie)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z" and (ticks is None or int(fields[19]) == ticks)


def private_memory_kb(pid: int) -> int | None:
    """Memory the process does not share (with the process it was forked from, say). Costly:
    the kernel walks the page tables."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.startswith(("Private_Clean:", "Private_Dirty:")))

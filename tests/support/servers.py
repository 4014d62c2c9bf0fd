"""The API served for tests: in a thread of the test process, or as its own uvicorn process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn

from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from librarian_api.app import create_app


@contextlib.contextmanager
def api_in_thread(settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def api_process(settings: Settings) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real uvicorn process (signals, several workers), with the settings as environment."""
    from tests.support.environment import settings_env

    port = free_port()
    env = {**os.environ, **settings_env(settings), "LIBRARIAN_DAGSTER_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "librarian_api.app:create_app",
                             "--factory", "--port", str(port), "--log-level", "warning"],
                            env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/static/app.js", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "API did not start"
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.kill()
        proc.wait(15)

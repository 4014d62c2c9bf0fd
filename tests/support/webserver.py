"""A real ``dagster-webserver`` serving the ``librarian_assets`` code location, for tests.

It runs on an instance of its own: a PostgreSQL database created for it and dropped after it,
with the project's ``dagster.yaml`` (the queued run coordinator, as in every deployment). There
is no daemon, so launched runs stay QUEUED and never fetch anything, and no other test's daemon
can pick them up because no other process uses that database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import yaml

from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from tests.support.environment import settings_env

ROOT = Path(__file__).resolve().parents[2]
LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@dataclass
class Webserver:
    settings: Settings  # the test settings, pointing at this webserver
    instance: Any  # dagster.DagsterInstance on the webserver's storage
    proc: subprocess.Popen[bytes]
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Raw GraphQL over HTTP, as any client of the webserver may send it."""
        response = httpx.post(self.settings.dagster_graphql_url,
                              json={"query": query, "variables": variables or {}}, timeout=30)
        body: dict[str, Any] = response.json()
        return body


@contextlib.contextmanager
def dagster_webserver(settings: Settings, postgres_base: str, name: str,
                      home: Path) -> Iterator[Webserver]:
    """A webserver on database ``name`` (created here, dropped after) with ``home`` as its
    ``DAGSTER_HOME``, its code location loaded."""
    from dagster import DagsterInstance

    database_url = f"{postgres_base}/{name}"
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["storage"]["postgres"]["postgres_url"] = database_url
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # The code location in-process of a code server the webserver starts itself (the stack's
    # workspace.yaml points at a separately started code server instead).
    (home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "librarian_assets.definitions",
        "location_name": settings.dagster_location}}]}))
    ours = settings.model_copy(update={"dagster_port": free_port(),
                                       "dagster_database_url": database_url})
    env = {**os.environ, **settings_env(ours), "DAGSTER_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = home / "webserver.log"

    admin_sql(postgres_base, f'CREATE DATABASE "{name}"')
    # Opening the instance creates the schema, before the webserver could race to.
    instance = DagsterInstance.from_config(str(home))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-h", ours.dagster_host,
             "-p", str(ours.dagster_port), "-w", str(home / "workspace.yaml")],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Webserver(ours, instance, proc, log)
    try:
        _wait_until_loaded(server, timeout=90)
        yield server
    finally:
        # The webserver and the code server it started share its process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        instance.dispose()
        admin_sql(postgres_base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_sql(postgres_base: str, statement: str) -> None:
    conn = psycopg2.connect(postgres_base.replace("postgresql+psycopg2://", "postgresql://")
                            + "/postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _wait_until_loaded(server: Webserver, timeout: float) -> None:
    """Until the webserver answers with the code location loaded; else fail with its log."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            response = httpx.post(server.settings.dagster_graphql_url,
                                  json={"query": LOCATION_QUERY}, timeout=5)
            entries = response.json()["data"]["workspaceOrError"]["locationEntries"]
            entry = next(e for e in entries if e["name"] == server.settings.dagster_location)
            last = entry
            if entry["loadStatus"] == "LOADED":
                if entry["locationOrLoadError"]["__typename"] != "RepositoryLocation":
                    raise RuntimeError(f"the code location did not load: {entry}")
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError, StopIteration) as exc:
            last = exc
        if server.proc.poll() is not None or time.monotonic() > deadline:
            tail = server.log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"dagster-webserver not ready ({last!r}):\n{tail}")
        time.sleep(0.2)

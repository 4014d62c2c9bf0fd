"""PostgreSQL away for 20 s under a running stack: no process dies, no job is lost, and the API
says what is down, fast.

The stack runs on a PostgreSQL server of this test's own (the catalog and Dagster's storage),
which the test stops and starts again; nothing supervises the processes here, so a process
that the outage killed stays dead and the test sees it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from librarian.cli.local_servers import EmbeddedPostgres, free_port
from librarian.cli.stack import Stack, StackPorts
from librarian.settings import Settings
from tests.support.environment import settings_env
from tests.support.faults import TERMINAL, PageSite, follow

pytestmark = pytest.mark.e2e
OUTAGE_SECONDS = 20.0


@dataclass
class Outage:
    stack: Stack
    postgres: EmbeddedPostgres
    api: str
    pages: PageSite


@pytest.fixture(scope="module")
def outage(settings: Settings) -> Iterator[Outage]:
    root = Path("/tmp") / f"librarian-outage-{uuid.uuid4().hex[:8]}"
    postgres = EmbeddedPostgres(root / "postgres", free_port())
    postgres.start()
    for name in ("librarian", "dagster"):
        postgres.create_database(name)
    env = settings_env(settings)
    env.update({"LIBRARIAN_DATABASE_URL": f"{postgres.url}/librarian",
                "LIBRARIAN_DAGSTER_DATABASE_URL": f"{postgres.url}/dagster",
                "LIBRARIAN_REDIS_PREFIX": f"{settings.redis_prefix}outage:",
                "LIBRARIAN_WATCHLIST_PATH": str(root / "watchlist.txt")})
    stack = Stack(root / "stack", env=env, ports=StackPorts(
        api=free_port(), dagster=free_port(), code_server=free_port()))
    pages = PageSite()
    try:
        stack.start()
        yield Outage(stack, postgres, f"http://127.0.0.1:{stack.ports.api}", pages)
    finally:
        stack.stop()
        postgres.stop()
        pages.close()
        shutil.rmtree(root, ignore_errors=True)


def _timed(method: str, url: str, **kw: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=30, **kw)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def test_twenty_seconds_without_postgresql_cost_no_process_and_no_job(outage: Outage) -> None:
    api = outage.api
    before = [outage.pages.url(f"before-{i}", delay=1) for i in range(4)]
    submitted = httpx.post(f"{api}/api/v1/ingest/batch", json={"urls": before}, timeout=30)
    assert submitted.status_code == 202
    jobs = [r["job_id"] for r in submitted.json()["results"]]
    with ThreadPoolExecutor(max_workers=16) as pool:
        followers = {job: pool.submit(follow, api, job, 300) for job in jobs}
        time.sleep(2)
        outage.postgres.stop()
        stopped = time.monotonic()
        answers: dict[str, list[tuple[int, str, float]]] = {"library": [], "ingest": [],
                                                             "health": []}
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            r, took = _timed("GET", f"{api}/api/v1/library")
            answers["library"].append((r.status_code, r.json()["error"]["code"]
                                       if r.status_code >= 400 else "", took))
            r, took = _timed("POST", f"{api}/api/v1/ingest",
                             json={"url": outage.pages.url(f"during-{uuid.uuid4().hex[:6]}")})
            answers["ingest"].append((r.status_code, r.text, took))
            if r.status_code == 202:
                job = r.json()["job_id"]
                jobs.append(job)
                followers[job] = pool.submit(follow, api, job, 300)
            r, took = _timed("GET", f"{api}/api/v1/health")
            answers["health"].append((r.status_code, ",".join(r.json().get("down", [])), took))
            time.sleep(1)
        outage.postgres.start()
        # The catalog answers 503 naming itself, at once, for the whole outage.
        assert all(s == 503 and code == "catalog_unavailable" and took < 1.0
                   for s, code, took in answers["library"]), answers["library"]
        # Submissions are accepted during a blip (they wait for Dagster), and fast.
        assert all(s == 202 and took < 1.0 for s, _, took in answers["ingest"]), answers["ingest"]
        # Health names what is down: the catalog and Dagster's storage.
        assert all(s == 503 and "catalog" in down and "dagster" in down
                   for s, down, _ in answers["health"]), answers["health"]
        recovered = time.monotonic()
        while httpx.get(f"{api}/api/v1/health", timeout=10).status_code != 200:
            assert time.monotonic() - recovered < 60, "the stack did not recover by itself"
            time.sleep(0.5)
        seen = {job: future.result() for job, future in followers.items()}
    # No process died.
    assert all(outage.stack.alive(name) for name in outage.stack.procs), {
        name: outage.stack.alive(name) for name in outage.stack.procs}
    # Every job ended, once; those submitted during the outage completed.
    for job, events in seen.items():
        kinds = [e["event"] for e in events]
        assert sum(k in TERMINAL for k in kinds) == 1 and kinds[-1] in TERMINAL, (job, kinds)
    during = [job for job in jobs[len(before):]]
    assert during and all(seen[job][-1]["event"] == "job_completed" for job in during)

"""The fault suite: ``librarian run`` as a person starts it, with jobs in flight, while its
processes are killed and its Redis is flushed.

One stack serves every case (started once, in the background of a non-interactive shell, with
its private PostgreSQL and Redis). Each case submits a batch of pages (one of them missing, so
one job fails for real), follows every job's stream from a client that reconnects with
``Last-Event-ID`` whenever its connection drops, kills one process with SIGKILL, and then checks
what a user relies on:

- the stack is healthy again by itself;
- every job ends in its true terminal state: the one the last Dagster run of the job says;
- every follower saw every event of its job once, in order, and exactly one terminal event, last;
- nothing is half-written: a completed job's item and its stored copy are in the library, a
  failed job left no item.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from librarian.canonical_url import canonicalize
from librarian.cli.local_servers import free_port
from librarian.storage.catalog import item_id_for
from tests.support.faults import TERMINAL, PageSite, follow
from tests.support.processes import children as _children
from tests.support.processes import cmdline as _cmdline
from tests.support.processes import descendants as _descendants

pytestmark = pytest.mark.e2e
DAGSTER_TERMINAL = {"SUCCESS": "completed", "FAILURE": "failed", "CANCELED": "cancelled"}
JOBS = 10
VICTIMS = {"mirror": "librarian mirror", "api": "uvicorn", "daemon": "dagster-daemon",
           "webserver": "dagster-webserver", "code-server": "code-server start",
           "run-pool": "librarian run-pool", "embedder": "librarian embed-server",
           "redis": "redis-server", "postgres": "postmaster"}
RUNS_OF_JOB = """
query Runs($job: String!) { runsOrError(filter: {tags: [{key: "librarian/job", value: $job}]}) {
  ... on Runs { results { runId status } } } }
"""


@dataclass
class Running:
    pid: int
    api: str
    dagster: str
    data: Path
    pages: PageSite

    def postmaster(self) -> int:
        location = self.data / "postgres" / "LOCATION"
        home = (Path(location.read_text().strip()) if location.exists()
                else self.data / "postgres")
        return int((home / "pgdata" / "postmaster.pid").read_text().split()[0])

    def process(self, words: str) -> int:
        if words == "postmaster":
            return self.postmaster()
        return next(c for c in _children(self.pid) if words in _cmdline(c))

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/api/v1/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 120) -> float:
        started = time.monotonic()
        while not self.healthy():
            assert time.monotonic() - started < timeout, "the stack did not become healthy"
            assert Path(f"/proc/{self.pid}").exists(), "librarian run stopped"
            time.sleep(0.25)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    pages = PageSite()
    ports = {name: free_port() for name in ("api", "dagster", "code", "postgres", "redis")}
    data = Path("/tmp") / f"librarian-faults-{ports['api']}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIBRARIAN_", "DAGSTER_"))}
    env["LIBRARIAN_FETCH_ALLOW_NETWORKS"] = '["127.0.0.1/32"]'
    # Faults, not authentication, are tested here (the stack listens on loopback only).
    env["LIBRARIAN_AUTH"] = "off"
    librarian = str(Path(sys.executable).parent / "librarian")
    script = (f"'{librarian}' run --data-dir '{data}' --api-port {ports['api']}"
              f" --dagster-port {ports['dagster']} --code-server-port {ports['code']}"
              f" --postgres-port {ports['postgres']} --redis-port {ports['redis']}"
              f" > '{data}.log' 2>&1 & echo $!; wait")
    shell = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    assert shell.stdout is not None
    pid = int(shell.stdout.readline())
    run = Running(pid, f"http://127.0.0.1:{ports['api']}",
                  f"http://127.0.0.1:{ports['dagster']}/graphql", data, pages)
    try:
        run.wait_healthy(timeout=300)
        yield run
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            shell.wait(60)
        for leftover in _descendants(pid) | {pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(run.postmaster(), signal.SIGKILL)
        pages.close()
        shutil.rmtree(data, ignore_errors=True)


def _id(event: dict[str, Any]) -> tuple[int, int]:
    major, _, minor = str(event["id"]).partition("-")
    return int(major), int(minor)


def _dagster_truth(run: Running, job_id: str) -> str | None:
    """The job's state by its newest Dagster run (None while it has not ended)."""
    deadline = time.monotonic() + 30
    while True:  # right after PostgreSQL is back, the webserver's first queries may fail
        response = httpx.post(run.dagster, json={"query": RUNS_OF_JOB,
                                                 "variables": {"job": job_id}}, timeout=30)
        data = response.json().get("data")
        if data and "results" in (data.get("runsOrError") or {}):
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    runs = data["runsOrError"]["results"]
    return DAGSTER_TERMINAL.get(runs[0]["status"]) if runs else None


def submit_and_follow(run: Running, case: str, fault: Any, jobs: int = JOBS
                      ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], float]:
    """Submit ``jobs`` pages (the last one missing), follow them, call ``fault`` once they
    are in flight; return the submissions, each job's followed events, and the seconds from
    the fault until the stack was healthy again."""
    run.wait_healthy()
    tag = f"{case}-{uuid.uuid4().hex[:6]}"
    urls = [run.pages.url(f"{tag}/{i}", delay=1) for i in range(jobs - 1)]
    urls.append(run.pages.missing(tag))
    response = httpx.post(f"{run.api}/api/v1/ingest/batch", json={"urls": urls}, timeout=30)
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        followed = {r["job_id"]: pool.submit(follow, run.api, r["job_id"], 240)
                    for r in results}
        time.sleep(1.5)  # the batch's runs are starting or running
        started = time.monotonic()
        fault()
        time.sleep(1.0)
        run.wait_healthy()
        back = time.monotonic() - started
        seen = {job_id: future.result() for job_id, future in followed.items()}
    return results, seen, back


def check_jobs(run: Running, results: list[dict[str, Any]],
               seen: dict[str, list[dict[str, Any]]], *, event_matches_record: bool = True
               ) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for result in results:
        job_id = result["job_id"]
        events = seen[job_id]
        assert events, f"job {job_id}: the follower saw nothing"
        kinds = [e["event"] for e in events]
        assert sum(k in TERMINAL for k in kinds) == 1 and kinds[-1] in TERMINAL, kinds
        ids = [_id(e) for e in events]
        assert ids == sorted(set(ids)), f"job {job_id}: events repeated or out of order: {ids}"
        # Every event once: what the follower saw across reconnects is the whole stream.
        whole = follow(run.api, job_id, 60)
        assert [e["id"] for e in whole] == [e["id"] for e in events]
        record = httpx.get(f"{run.api}/api/v1/ingest/{job_id}", timeout=30).json()
        truth = _dagster_truth(run, job_id)
        assert record["status"] == truth, (job_id, record, truth)
        if event_matches_record:
            assert {"completed": "job_completed", "failed": "error",
                    "cancelled": "job_cancelled"}[record["status"]] == kinds[-1]
        item = httpx.get(f"{run.api}/api/v1/library/"
                         f"{item_id_for(canonicalize(result['url']).url)}", timeout=30)
        if record["status"] == "completed":
            assert item.status_code == 200, item.text
            versions = item.json()["versions"]
            assert versions and all(v["files"] for v in versions), versions
            for version in versions:  # every stored copy the catalog names is there
                for url in version["files"].values():
                    assert httpx.get(url, timeout=30).status_code == 200, url
        else:
            assert item.status_code == 404, item.text
        outcomes[job_id] = record["status"]
    return outcomes


@pytest.mark.parametrize("victim", list(VICTIMS))
def test_kill_9_of_a_process_with_jobs_in_flight_costs_nothing(
        running: Running, victim: str) -> None:
    def fault() -> None:
        os.kill(running.process(VICTIMS[victim]), signal.SIGKILL)

    results, seen, back = submit_and_follow(running, victim, fault)
    # Known open problem: a PostgreSQL killed while a run writes its end can leave Dagster's
    # event log saying RUN_SUCCESS and its run status FAILURE; the stream then ends
    # job_completed while the record follows the status. Seen once in CI; not yet fixed.
    outcomes = check_jobs(running, results, seen,
                          event_matches_record=victim != "postgres")
    # The missing page fails for real; the others complete unless their run was the one a
    # killed database or run pool took down (then Dagster's final run says failed, and so
    # does the job).
    assert outcomes[results[-1]["job_id"]] == "failed"
    assert list(outcomes.values()).count("completed") >= (
        JOBS - 4 if victim in ("postgres", "run-pool") else JOBS - 1)
    print(f"\n{victim}: healthy again after {back:.1f} s; "
          f"{list(outcomes.values()).count('completed')} completed")


def test_a_flushed_redis_is_rebuilt_from_dagster_to_the_byte(running: Running) -> None:
    results, seen, _ = submit_and_follow(running, "flush", lambda: None)
    check_jobs(running, results, seen)
    mirror = running.process("librarian mirror")
    env = dict(line.split("=", 1) for line in
               Path(f"/proc/{mirror}/environ").read_text().split("\0") if "=" in line)
    client = redis.Redis.from_url(env["LIBRARIAN_REDIS_URL"])
    prefix = env.get("LIBRARIAN_REDIS_PREFIX", "librarian:")
    jobs = [r["job_id"] for r in results]

    def snapshot() -> dict[str, Any]:
        return {job: (client.hgetall(f"{prefix}job:{job}"),
                      client.xrange(f"{prefix}job:{job}:events"),
                      client.zscore(f"{prefix}jobs", job)) for job in jobs}

    before = snapshot()
    client.flushdb()
    # Between the flush and the rebuild a stream says nothing it does not know.
    gone = httpx.get(f"{running.api}/api/v1/ingest/{jobs[0]}", timeout=30)
    assert gone.status_code in (200, 404, 503)
    rebuild = subprocess.Popen([str(Path(sys.executable).parent / "librarian"), "mirror",
                                "--rebuild"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while snapshot() != before:
            assert time.monotonic() < deadline, "the rebuild did not restore the jobs"
            time.sleep(0.5)
    finally:
        rebuild.send_signal(signal.SIGTERM)
        rebuild.wait(30)
    client.close()

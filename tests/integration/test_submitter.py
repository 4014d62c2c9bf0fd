"""The background submitter against a real ``dagster-webserver`` (no daemon) and real Redis:
accepted jobs become exactly one run each, even when an earlier attempt died after making runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from librarian.canonical_url import canonicalize
from librarian.errors import RunRefused
from librarian.jobs.events import JobStatus
from librarian.jobs.store import ApiJobStore, NewJob
from librarian.runs import Source, partition_key
from librarian.settings import Settings
from librarian_api.dagster_client import DagsterSubmitter
from librarian_api.submitter import LEASE_SECONDS, Submitter
from tests.support.webserver import Webserver, dagster_webserver

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using a DocumentNode is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Using variable_values and operation_name:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def webserver(settings: Settings, postgres_base: str, session_id: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    with dagster_webserver(settings, postgres_base, f"submitter_{session_id}",
                           tmp_path_factory.mktemp("submitter_home")) as server:
        yield server


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}submitter-{uuid.uuid4().hex[:8]}:"


def _jobs(n: int, tag: str) -> list[NewJob]:
    now = time.time()
    out = []
    for i in range(n):
        url = canonicalize(f"https://submitter.example/{tag}/{i}")
        out.append(NewJob(job_id=str(uuid.uuid4()), url=url.url, partition_key=partition_key(url),
                          source=Source.BATCH.value, created_at=now))
    return out


def _runs_of(instance: Any, job_id: str) -> list[Any]:
    from dagster import RunsFilter

    return list(instance.get_runs(filters=RunsFilter(tags={"librarian/job": job_id})))


async def _with_store(redis_url: str, prefix: str, body: Any) -> Any:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await body(ApiJobStore(client, prefix, 3600))
    finally:
        await client.aclose()


@pytest.fixture
def dagster(webserver: Webserver) -> Iterator[DagsterSubmitter]:
    yield DagsterSubmitter(webserver.settings)


def test_accepted_jobs_become_one_run_each_and_leave_the_queue(
        webserver: Webserver, dagster: DagsterSubmitter, redis_url: str, prefix: str) -> None:
    jobs = _jobs(60, "accepted")  # more than one batch

    async def body(store: ApiJobStore) -> None:
        assert await store.accept(jobs) == [j.job_id for j in jobs]
        submitter = Submitter(store, dagster, webserver.settings)
        while await submitter.submit_due():
            pass
        assert await store.queued_submissions() == 0
        for job in jobs:
            record = await store.record(job.job_id)
            assert record is not None and record.status == JobStatus.QUEUED
            runs = _runs_of(webserver.instance, job.job_id)
            assert [r.run_id for r in runs] == [record.run_id]
            assert runs[0].tags["librarian/url"] == job.url

    asyncio.run(_with_store(redis_url, prefix, body))


def test_a_submission_whose_answer_was_lost_adopts_its_run_instead_of_making_another(
        webserver: Webserver, dagster: DagsterSubmitter, redis_url: str, prefix: str) -> None:
    jobs = _jobs(5, "lost")

    async def body(store: ApiJobStore) -> None:
        await store.accept(jobs)
        # A submitter leases the jobs and makes their runs, then dies before recording them.
        leased = await store.lease_submissions(time.time(), LEASE_SECONDS, 10)
        assert {p.job_id for p in leased} == {j.job_id for j in jobs}
        made = dagster.submit_many([(p.job_id, canonicalize(p.url), Source.BATCH)
                                    for p in leased])
        # Nothing is due again until the lease runs out.
        submitter = Submitter(store, dagster, webserver.settings)
        assert await submitter.submit_due() == 0
        assert await submitter.submit_due(now=time.time() + LEASE_SECONDS + 1) == 5
        for job, run_id in zip(leased, made, strict=True):
            assert [r.run_id for r in _runs_of(webserver.instance, job.job_id)] == [run_id]
            record = await store.record(job.job_id)
            assert record is not None and record.run_id == run_id
        assert await store.queued_submissions() == 0

    asyncio.run(_with_store(redis_url, prefix, body))


def test_a_url_already_queued_is_not_accepted_twice(redis_url: str, prefix: str) -> None:
    [first] = _jobs(1, "twice")
    second = NewJob(job_id=str(uuid.uuid4()), url=first.url, partition_key=first.partition_key,
                    source=first.source, created_at=time.time())

    async def body(store: ApiJobStore) -> None:
        assert await store.accept([first, second]) == [first.job_id, first.job_id]
        assert await store.record(second.job_id) is None
        assert await store.queued_submissions() == 1

    asyncio.run(_with_store(redis_url, prefix, body))


def test_jobs_wait_while_dagster_cannot_take_them_and_fail_after_the_deadline(
        webserver: Webserver, redis_url: str, prefix: str) -> None:
    # A repository Dagster does not serve (as while a code location reloads): retried, then
    # each job ends on its own stream with the reason, and its URL is free again.
    wrong = DagsterSubmitter(webserver.settings.model_copy(
        update={"dagster_repository": "no_such_repository"}))
    jobs = _jobs(2, "waiting")

    async def body(store: ApiJobStore) -> None:
        await store.accept(jobs)
        submitter = Submitter(store, wrong, webserver.settings)
        assert await submitter.submit_due() == 2
        for job in jobs:
            record = await store.record(job.job_id)
            assert record is not None and record.status == JobStatus.QUEUED
            assert "waiting for Dagster" in (record.message or "")
        assert submitter.unreachable_since is not None
        assert submitter.refusal() is None  # within the grace: still accepting
        later = time.time() + webserver.settings.submit_deadline_seconds + LEASE_SECONDS
        assert await submitter.submit_due(now=later) == 2
        for job in jobs:
            record = await store.record(job.job_id)
            assert record is not None and record.status == JobStatus.FAILED
            assert record.error is not None and record.error.stage == "submit"
            assert record.error.code == "orchestrator_unavailable"
            assert await store.r.get(store.keys.active(job.partition_key)) is None
        assert await store.queued_submissions() == 0

    asyncio.run(_with_store(redis_url, prefix, body))


class _Refusing(DagsterSubmitter):
    """Dagster answering every run with a refusal (an invalid run config, say)."""

    def submit_many(self, jobs: list[Any]) -> list[Any]:
        return [RunRefused("Dagster refused the run: invalid config") for _ in jobs]


def test_a_run_dagster_refuses_ends_its_job_at_once_with_run_refused(
        webserver: Webserver, redis_url: str, prefix: str) -> None:
    jobs = _jobs(3, "refused")

    async def body(store: ApiJobStore) -> None:
        await store.accept(jobs)
        await Submitter(store, _Refusing(webserver.settings), webserver.settings).submit_due()
        for job in jobs:
            record = await store.record(job.job_id)
            assert record is not None and record.status == JobStatus.FAILED
            assert record.error is not None and record.error.code == "run_refused"
            events = await store.events_after(job.job_id, "0")
            assert [e.type.value for _, e in events] == ["error"]
        assert await store.queued_submissions() == 0

    asyncio.run(_with_store(redis_url, prefix, body))

"""``DagsterSubmitter`` against a real ``dagster-webserver`` (no daemon, so runs stay queued).

The webserver (:mod:`tests.support.webserver`) serves the ``librarian_assets`` code location
with the test settings, on an instance and a database of this module's own.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from librarian.canonical_url import CanonicalURL, canonicalize
from librarian.errors import OrchestratorUnavailable
from librarian.runs import Source, partition_key
from librarian.settings import Settings
from librarian_api.dagster_client import DagsterSubmitter
from tests.support.webserver import Webserver, dagster_webserver

# dagster_graphql's client calls gql in a way gql deprecates; pytest turns warnings into errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Using a DocumentNode is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Using variable_values and operation_name:DeprecationWarning"),
]

INGEST_CONFIG = "ops", "extract", "config", "url"


@pytest.fixture(scope="module")
def webserver(settings: Settings, postgres_base: str, session_id: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    with dagster_webserver(settings, postgres_base, f"dagster_client_{session_id}",
                           tmp_path_factory.mktemp("dagster_client_home")) as server:
        yield server


@pytest.fixture
def submitter(webserver: Webserver) -> DagsterSubmitter:
    return DagsterSubmitter(webserver.settings)


@pytest.fixture
def dagster_instance(webserver: Webserver) -> Any:
    return webserver.instance


def _url(request: pytest.FixtureRequest, path: str = "") -> CanonicalURL:
    """A URL (so a partition) of this test's own, spelled non-canonically on purpose."""
    return canonicalize(f"HTTPS://Dagster-Client.Example:443/{request.node.name}/{path}"
                        f"?utm_source=test#part")


def _config_url(run: Any) -> Any:
    value = run.run_config
    for key in INGEST_CONFIG:
        value = value[key]
    return value


def test_adding_a_partition_twice_is_harmless_and_the_partition_then_exists(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    key = partition_key(_url(request))
    assert not dagster_instance.has_dynamic_partition("urls", key)
    submitter.add_partition(key)
    submitter.add_partition(key)
    assert dagster_instance.has_dynamic_partition("urls", key)
    assert list(dagster_instance.get_dynamic_partitions("urls")).count(key) == 1


def test_submitting_a_url_queues_an_ingest_run_of_its_partition_tagged_with_url_and_source(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    url = _url(request)
    assert url.url == f"https://dagster-client.example/{request.node.name}/"

    run_id = submitter.submit(url, Source.WATCHLIST)

    run = dagster_instance.get_run_by_id(run_id)
    assert run is not None
    assert run.job_name == "ingest_url"
    assert run.status.value == "QUEUED"
    assert run.tags["dagster/partition"] == partition_key(url)
    assert run.tags["librarian/url"] == url.url
    assert run.tags["librarian/domain"] == "dagster-client.example"
    assert run.tags["librarian/source"] == "watchlist"
    assert _config_url(run) == url.url
    assert dagster_instance.has_dynamic_partition("urls", partition_key(url))


def test_submitting_a_url_twice_queues_two_runs_but_adds_the_partition_once(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    url = _url(request)
    first, second = submitter.submit(url, Source.API), submitter.submit(url, Source.API)
    assert first != second
    assert {dagster_instance.get_run_by_id(r).tags["dagster/partition"]
            for r in (first, second)} == {partition_key(url)}
    assert list(dagster_instance.get_dynamic_partitions("urls")).count(partition_key(url)) == 1


def test_one_submitter_serves_several_threads_at_once(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    # The API shares one submitter between the threads of its thread pool.
    urls = [_url(request, str(i)) for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        run_ids = list(pool.map(lambda u: submitter.submit(u, Source.BATCH), urls))
    assert [dagster_instance.get_run_by_id(r).tags["librarian/url"] for r in run_ids] == [
        u.url for u in urls]


def test_submitting_to_a_code_location_dagster_does_not_serve_is_refused_and_queues_nothing(
        webserver: Webserver, dagster_instance: Any, request: pytest.FixtureRequest) -> None:
    from dagster import RunsFilter

    url = _url(request)
    elsewhere = DagsterSubmitter(webserver.settings.model_copy(
        update={"dagster_location": "no_such_location"}))
    with pytest.raises(OrchestratorUnavailable, match="cannot add partition"):
        elsewhere.submit(url, Source.API)
    assert dagster_instance.get_runs(filters=RunsFilter(tags={"librarian/url": url.url})) == []


def test_job_status_is_the_dagster_status_of_the_jobs_first_run(
        submitter: DagsterSubmitter, request: pytest.FixtureRequest) -> None:
    run_id = submitter.submit(_url(request), Source.API)  # a job without an issued id
    assert submitter.job_status(run_id) == (run_id, "QUEUED")
    job_id = str(uuid.uuid4())
    tagged = submitter.submit(_url(request, "tagged"), Source.API, job_id)
    assert submitter.job_status(job_id) == (tagged, "QUEUED")
    # The run id of a job with an issued id is not a job id.
    assert submitter.job_status(tagged) is None


def test_job_status_of_an_id_dagster_does_not_know_is_none(submitter: DagsterSubmitter) -> None:
    assert submitter.job_status(str(uuid.uuid4())) is None


def test_many_runs_are_submitted_in_one_request_each_tagged_with_its_job(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    urls = [_url(request, str(i)) for i in range(30)]
    jobs = [(str(uuid.uuid4()), url, Source.BATCH) for url in urls]
    outcomes = submitter.submit_many(jobs)
    assert all(isinstance(o, str) for o in outcomes)
    for (job_id, url, _), run_id in zip(jobs, outcomes, strict=True):
        run = dagster_instance.get_run_by_id(run_id)
        assert run.tags["librarian/job"] == job_id
        assert run.tags["librarian/url"] == url.url == _config_url(run)
        assert run.tags["dagster/partition"] == partition_key(url)
        assert dagster_instance.has_dynamic_partition("urls", partition_key(url))
    # A submitter that lost the answer finds every run by its job.
    found = submitter.runs_of_jobs([j for j, _, _ in jobs] + [str(uuid.uuid4())])
    assert {job: run for job, (run, _status) in found.items()} == {
        j: r for (j, _, _), r in zip(jobs, outcomes, strict=True)}


def test_a_reexecution_keeps_the_job_tag_and_is_not_taken_for_the_jobs_first_run(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    job_id = str(uuid.uuid4())
    [run_id] = submitter.submit_many([(job_id, _url(request), Source.API)])
    assert isinstance(run_id, str)
    submitter.terminate(run_id)
    new_id = submitter.reexecute(run_id)
    assert dagster_instance.get_run_by_id(new_id).tags["librarian/job"] == job_id
    assert submitter.runs_of_jobs([job_id]) == {job_id: (run_id, "CANCELED")}


def test_terminating_a_queued_run_cancels_it(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    run_id = submitter.submit(_url(request), Source.API)
    submitter.terminate(run_id)
    assert dagster_instance.get_run_by_id(run_id).status.value == "CANCELED"
    assert submitter.job_status(run_id) == (run_id, "CANCELED")


def test_terminating_a_run_that_already_ended_is_refused_with_its_status(
        submitter: DagsterSubmitter, request: pytest.FixtureRequest) -> None:
    run_id = submitter.submit(_url(request), Source.API)
    submitter.terminate(run_id)
    with pytest.raises(OrchestratorUnavailable, match="could not cancel the run") as caught:
        submitter.terminate(run_id)
    assert "status CANCELED" in str(caught.value)


def test_terminating_a_run_dagster_does_not_know_is_refused(submitter: DagsterSubmitter) -> None:
    run_id = str(uuid.uuid4())
    with pytest.raises(OrchestratorUnavailable, match="RunNotFoundError") as caught:
        submitter.terminate(run_id)
    assert run_id in str(caught.value)


def test_reexecuting_a_run_that_has_not_ended_is_refused_and_queues_nothing(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    from dagster import RunsFilter

    run_id = submitter.submit(_url(request), Source.API)
    with pytest.raises(OrchestratorUnavailable):
        submitter.reexecute(run_id)
    assert dagster_instance.get_runs(
        filters=RunsFilter(tags={"dagster/parent_run_id": run_id})) == []
    assert dagster_instance.get_run_by_id(run_id).status.value == "QUEUED"


def test_a_refused_reexecution_says_why_dagster_refused_it(
        submitter: DagsterSubmitter, request: pytest.FixtureRequest) -> None:
    run_id = submitter.submit(_url(request), Source.API)
    with pytest.raises(OrchestratorUnavailable, match="not failed or canceled"):
        submitter.reexecute(run_id)


def test_reexecuting_a_run_cancelled_before_it_started_queues_a_child_run_of_the_same_url(
        submitter: DagsterSubmitter, dagster_instance: Any,
        request: pytest.FixtureRequest) -> None:
    url = _url(request)
    run_id = submitter.submit(url, Source.BATCH)
    submitter.terminate(run_id)

    new_id = submitter.reexecute(run_id)

    new = dagster_instance.get_run_by_id(new_id)
    assert new_id != run_id
    # A retry's run id is not a job id: the job keeps its first run's id.
    assert submitter.job_status(new_id) is None
    assert submitter.job_status(run_id) == (run_id, "CANCELED")
    assert new.job_name == "ingest_url"
    assert new.status.value == "QUEUED"
    assert new.tags["dagster/parent_run_id"] == run_id
    assert new.tags["dagster/root_run_id"] == run_id
    assert new.tags["dagster/partition"] == partition_key(url)
    assert new.tags["librarian/url"] == url.url
    assert new.tags["librarian/source"] == "batch"
    assert _config_url(new) == url.url


def test_reexecuting_a_run_dagster_does_not_know_is_refused(submitter: DagsterSubmitter) -> None:
    with pytest.raises(OrchestratorUnavailable):
        submitter.reexecute(str(uuid.uuid4()))


def test_ping_succeeds_while_the_webserver_answers(submitter: DagsterSubmitter) -> None:
    asyncio.run(submitter.ping())  # raises OrchestratorUnavailable otherwise


@pytest.fixture
def unreachable(settings: Settings) -> Iterator[DagsterSubmitter]:
    """A submitter whose port is bound but not listening: every connection is refused."""
    with socket.socket() as held:
        held.bind((settings.dagster_host, 0))
        yield DagsterSubmitter(settings.model_copy(
            update={"dagster_port": held.getsockname()[1]}))


OPERATIONS: dict[str, Callable[[DagsterSubmitter], object]] = {
    "submit": lambda s: s.submit(canonicalize("https://unreachable.example/"), Source.API),
    "add_partition": lambda s: s.add_partition("unreachable.example-0123456789abcdef"),
    "job_status": lambda s: s.job_status(str(uuid.uuid4())),
    "submit_many": lambda s: s.submit_many([
        (str(uuid.uuid4()), canonicalize(f"https://unreachable.example/{i}"), Source.BATCH)
        for i in range(2)]),
    "runs_of_jobs": lambda s: s.runs_of_jobs([str(uuid.uuid4())]),
    "terminate": lambda s: s.terminate(str(uuid.uuid4())),
    "reexecute": lambda s: s.reexecute(str(uuid.uuid4())),
    "ping": lambda s: asyncio.run(s.ping()),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_call_raises_orchestrator_unavailable_when_the_webserver_is_unreachable(
        unreachable: DagsterSubmitter, operation: str) -> None:
    with pytest.raises(OrchestratorUnavailable) as caught:
        OPERATIONS[operation](unreachable)
    assert str(caught.value)
    assert caught.value.transient  # the API answers 503: try again later

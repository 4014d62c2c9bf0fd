"""No run config can reach the fetcher's SSRF guard, its limits, the stores or their secrets.

A raw GraphQL ``launchRun`` of ``ingest_url``, as anyone who can reach the Dagster webserver (or
its launchpad) may send it, against a real ``dagster-webserver`` (:mod:`tests.support.webserver`;
no daemon, so an accepted run stays QUEUED and fetches nothing). A launch whose config sets a
field under a resource is refused by Dagster's run-config validation and creates no run; the
same launch without it is accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from librarian.canonical_url import canonicalize
from librarian.runs import JOB_NAME, PARTITIONS_NAME, Source, partition_key, run_config, run_tags
from librarian.settings import Settings
from tests.support.webserver import Webserver, dagster_webserver

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { reason message } }
    ... on PythonError { message }
  }
}
"""
TEST_TAG = "librarian-test/launch"

# Overrides a launch could try: the names the resources' fields had when they were run config
# (each accepted then), and others a person might guess.
OVERRIDES: dict[str, dict[str, Any]] = {
    "allow_networks": {"fetcher": {"allow_networks": ["0.0.0.0/0"]}},
    "fetch_allow_networks": {"fetcher": {"fetch_allow_networks": ["0.0.0.0/0", "::/0"]}},
    "fetch_max_bytes": {"fetcher": {"fetch_max_bytes": 10**12}},
    "local_path": {"objects": {"local_path": "/tmp/elsewhere"}},
    "objects_data_dir": {"objects": {"data_dir": "/tmp/elsewhere"}},
    "s3_endpoint": {"objects": {"s3_endpoint": "attacker.example:9000"}},
    "database_url": {"catalog": {"database_url": "postgresql+psycopg2://x@attacker.example/x"}},
    "qdrant_url": {"vectors": {"qdrant_url": "http://attacker.example:6333"}},
    "embedding_model_path": {"embedder": {"embedding_model_path": "/tmp/model.onnx"}},
}


@pytest.fixture(scope="module")
def webserver(settings: Settings, postgres_base: str, session_id: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    with dagster_webserver(settings, postgres_base, f"run_config_guard_{session_id}",
                           tmp_path_factory.mktemp("run_config_guard_home")) as server:
        yield server


def _launch(webserver: Webserver, resources: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Launch ``ingest_url`` of a partition of its own with ``resources`` config; the answer
    and the tag value that marks the run, if one was made."""
    token = uuid.uuid4().hex
    url = canonicalize(f"https://run-config-guard.example/{token}")
    webserver.instance.add_dynamic_partitions(PARTITIONS_NAME, [partition_key(url)])
    config: dict[str, Any] = run_config(url)
    if resources is not None:
        config["resources"] = {name: {"config": fields} for name, fields in resources.items()}
    tags = {**run_tags(url, Source.API), TEST_TAG: token}
    settings = webserver.settings
    body = webserver.graphql(LAUNCH, {"params": {
        "selector": {"repositoryLocationName": settings.dagster_location,
                     "repositoryName": settings.dagster_repository, "jobName": JOB_NAME},
        "runConfigData": config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}})
    assert not body.get("errors"), body
    return body["data"]["launchRun"], token


def _runs(webserver: Webserver, token: str) -> list[Any]:
    from dagster import RunsFilter

    return list(webserver.instance.get_runs(filters=RunsFilter(tags={TEST_TAG: token})))


def test_a_launch_without_resource_config_is_accepted(webserver: Webserver) -> None:
    answer, token = _launch(webserver, None)
    assert answer["__typename"] == "LaunchRunSuccess", answer
    assert [run.status.value for run in _runs(webserver, token)] == ["QUEUED"]


def test_an_empty_config_under_a_resource_is_accepted(webserver: Webserver) -> None:
    answer, _ = _launch(webserver, {"fetcher": {}})
    assert answer["__typename"] == "LaunchRunSuccess", answer


@pytest.mark.parametrize("override", list(OVERRIDES))
def test_a_launch_that_sets_a_resource_field_is_refused_and_creates_no_run(
        webserver: Webserver, override: str) -> None:
    answer, token = _launch(webserver, OVERRIDES[override])
    assert answer["__typename"] in ("RunConfigValidationInvalid", "PythonError"), answer
    if answer["__typename"] == "RunConfigValidationInvalid":
        field = next(iter(next(iter(OVERRIDES[override].values()))))
        assert any(field in error["message"] for error in answer["errors"]), answer
    assert _runs(webserver, token) == []

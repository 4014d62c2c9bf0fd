"""Submitting runs of ``ingest_url`` through Dagster's GraphQL API.

Runs are submitted with ``dagster_graphql.DagsterGraphQLClient``. Adding a dynamic partition has
no call in that client, so that one mutation (and the cheap ``version`` query used as a health
check) goes as raw GraphQL. The client is not thread-safe: one per thread.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from librarian.canonical_url import CanonicalURL
from librarian.errors import OrchestratorUnavailable
from librarian.runs import JOB_NAME, PARTITIONS_NAME, Source, partition_key, run_config, run_tags
from librarian.settings import Settings

ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name,
                      partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


JOB_RUN = """
query JobRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status jobName rootRunId }
    ... on PythonError { message }
  }
}
"""


REEXECUTE = """
mutation Reexecute($parent: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parent, strategy: FROM_FAILURE}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
  }
}
"""


class DagsterSubmitter:
    def __init__(self, settings: Settings) -> None:
        self.host = settings.dagster_host
        self.port = settings.dagster_port
        self.location = settings.dagster_location
        self.repository = settings.dagster_repository
        self.graphql_url = settings.dagster_graphql_url
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            # Imported here: it pulls in all of Dagster, which the API only needs to submit.
            from dagster_graphql import DagsterGraphQLClient

            client = DagsterGraphQLClient(self.host, port_number=self.port, timeout=30)
            self._local.client = client
        return client

    def _raw(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = httpx.post(self.graphql_url, json={"query": query, "variables": variables},
                                  timeout=10)
        except httpx.HTTPError as exc:
            raise OrchestratorUnavailable(f"Dagster GraphQL unreachable: {exc}") from exc
        # A refusal comes as an error status with a GraphQL body that says why: read it first.
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OrchestratorUnavailable(
                f"Dagster GraphQL answered HTTP {response.status_code} without a GraphQL body")
        if body.get("errors"):
            reasons = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                                for e in body["errors"])
            raise OrchestratorUnavailable(f"Dagster refused the request: {reasons}"[:1000])
        data = body.get("data")
        if not isinstance(data, dict):
            raise OrchestratorUnavailable(f"Dagster GraphQL answered HTTP {response.status_code}")
        # With an error status, data holds the refusal (a PythonError and its message), which
        # the caller reads by its __typename.
        return data

    def add_partition(self, key: str) -> None:
        data = self._raw(ADD_PARTITION, {
            "selector": {"repositoryLocationName": self.location,
                         "repositoryName": self.repository},
            "name": PARTITIONS_NAME, "key": key})
        kind = data["addDynamicPartition"]["__typename"]
        if kind not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise OrchestratorUnavailable(
                f"cannot add partition {key}: {kind} {data['addDynamicPartition'].get('message')}")

    def submit(self, url: CanonicalURL, source: Source) -> str:
        """Add the URL's partition and submit its run; return the run id."""
        from dagster_graphql import DagsterGraphQLClientError

        self.add_partition(partition_key(url))
        try:
            run_id: str = self._client().submit_job_execution(
                JOB_NAME,
                repository_location_name=self.location,
                repository_name=self.repository,
                # Partitioned runs launched over GraphQL do not get the job's default config.
                run_config=run_config(url),
                tags=run_tags(url, source),
            )
        except DagsterGraphQLClientError as exc:
            raise OrchestratorUnavailable(f"Dagster refused the run: {exc}") from exc
        except Exception as exc:  # requests/gql transport errors
            raise OrchestratorUnavailable(f"Dagster unreachable: {exc}") from exc
        return run_id

    def terminate(self, run_id: str) -> None:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            self._client().terminate_run(run_id)
        except DagsterGraphQLClientError as exc:
            raise OrchestratorUnavailable(f"Dagster could not cancel the run: {exc}") from exc

    def reexecute(self, run_id: str) -> str:
        """Re-execute a failed or cancelled run from its failed op; return the new run's id."""
        data = self._raw(REEXECUTE, {"parent": run_id})["launchRunReexecution"]
        if data["__typename"] != "LaunchRunSuccess":
            reason = data.get("message") or data["__typename"]
            raise OrchestratorUnavailable(f"Dagster refused the retry: {reason}"[:1000])
        return str(data["run"]["runId"])

    def job_run_status(self, run_id: str) -> str | None:
        """The Dagster status of the run that started a job, or None when ``run_id`` is no
        job: no such run, a run of another job, or a retry of a job (a job's id is its first
        run's)."""
        run = self._raw(JOB_RUN, {"runId": run_id})["runOrError"]
        if run["__typename"] == "RunNotFoundError":
            return None
        if run["__typename"] != "Run":
            raise OrchestratorUnavailable(f"Dagster could not read run {run_id}: "
                                          f"{run.get('message') or run['__typename']}")
        if run["jobName"] != JOB_NAME or run.get("rootRunId") not in (None, run_id):
            return None
        return str(run["status"])

    async def ping(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                response = await client.post(self.graphql_url, json={"query": "{ version }"})
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise OrchestratorUnavailable(str(exc)) from exc

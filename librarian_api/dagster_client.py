"""Submitting runs of ``ingest_url`` through Dagster's GraphQL API.

One run is submitted with ``dagster_graphql.DagsterGraphQLClient``. The client has no call for
what else the API needs, so these go as raw GraphQL to the same endpoint: adding and deleting
dynamic partitions, launching many runs in one request (``launchMultipleRuns``: 0.08 s per run
instead of 0.2 s one by one, measured with 80 runs), finding a job's runs by its tag,
re-execution and the cheap ``version`` query used as a health check. The client is not
thread-safe: one per thread.

Every run carries its job's id as a tag (:data:`librarian.runs.Tag.JOB`): the API issues job
ids before their runs exist, and a submission repeated after a lost answer finds the run the
first one made instead of making a second.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from librarian.canonical_url import CanonicalURL
from librarian.errors import LibrarianError, OrchestratorUnavailable, RunRefused
from librarian.runs import (
    JOB_NAME,
    PARTITIONS_NAME,
    Source,
    Tag,
    partition_key,
    run_config,
    run_tags,
)
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

# Deleting a library item removes its partition: the watchlist, which skips URLs that have a
# partition, may ingest the URL again, and the asset's partitions list it no more. Its past
# materializations stay in the event log (wiping them asks for a partitioned asset wipe, which
# Dagster's PostgreSQL event log does not support: the whole mutation would be refused).
DELETE_PARTITIONS = """
mutation DeletePartitions($selector: RepositorySelector!, $name: String!, $keys: [String!]!) {
  deleteDynamicPartitions(repositorySelector: $selector, partitionsDefName: $name,
                          partitionKeys: $keys, wipeMaterializations: false) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on UnsupportedOperationError { message }
  }
}
"""


LAUNCH_MANY = """
mutation LaunchMany($params: [ExecutionParams!]!) {
  launchMultipleRuns(executionParamsList: $params) {
    __typename
    ... on LaunchMultipleRunsResult {
      launchMultipleRunsResult {
        __typename
        ... on LaunchRunSuccess { run { runId } }
        ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } }
        ... on InvalidSubsetError { message }
        ... on RunConflict { message }
        ... on UnauthorizedError { message }
        ... on PipelineNotFoundError { message }
        ... on NoModeProvidedError { message }
        ... on PresetNotFoundError { message }
        ... on ConflictingExecutionParamsError { message }
      }
    }
    ... on PythonError { message }
  }
}
"""

# Run-level refusals that a retry cannot change. Not among them: a PythonError (the storage may
# be blinking), and a job or repository not found (the code location may be reloading).
_REFUSALS = frozenset({"RunConfigValidationInvalid", "InvalidSubsetError", "RunConflict",
                       "NoModeProvidedError", "PresetNotFoundError",
                       "ConflictingExecutionParamsError", "InvalidStepError",
                       "InvalidOutputError"})


# ``results`` is what reads the storage (the union's type name alone is answered without it).
PING = ("{ runsOrError(limit: 1) { __typename ... on Runs { results { runId } } "
        "... on PythonError { message } } }")


JOB_RUN = """
query JobRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status jobName rootRunId tags { key value } }
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

    def _raw(self, query: str, variables: dict[str, Any], timeout: float = 10.0
             ) -> dict[str, Any]:
        try:
            response = httpx.post(self.graphql_url, json={"query": query, "variables": variables},
                                  timeout=timeout)
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

    def delete_partition(self, key: str) -> None:
        """Delete the partition ``key`` (a key that does not exist is no error)."""
        data = self._raw(DELETE_PARTITIONS, {"selector": self._selector(),
                                             "name": PARTITIONS_NAME, "keys": [key]})
        result = data["deleteDynamicPartitions"]
        if result["__typename"] != "DeleteDynamicPartitionsSuccess":
            raise OrchestratorUnavailable(
                f"cannot delete partition {key}: {result['__typename']} "
                f"{result.get('message') or ''}".strip()[:1000])

    def _selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def add_partitions(self, keys: list[str]) -> None:
        """Add many partitions in one request (aliased mutations, run one after another)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return
        params = ", ".join(f"$k{i}: String!" for i in range(len(keys)))
        fields = " ".join(
            f"p{i}: addDynamicPartition(repositorySelector: $s, partitionsDefName: $n, "
            f"partitionKey: $k{i}) {{ __typename ... on PythonError {{ message }} "
            f"... on UnauthorizedError {{ message }} }}" for i in range(len(keys)))
        variables: dict[str, Any] = {"s": self._selector(), "n": PARTITIONS_NAME}
        variables.update({f"k{i}": key for i, key in enumerate(keys)})
        data = self._raw(f"mutation AddPartitions($s: RepositorySelector!, $n: String!, "
                         f"{params}) {{ {fields} }}", variables)
        for i, key in enumerate(keys):
            result = data[f"p{i}"]
            if result["__typename"] not in ("AddDynamicPartitionSuccess",
                                            "DuplicateDynamicPartitionError"):
                raise OrchestratorUnavailable(
                    f"cannot add partition {key}: {result['__typename']} "
                    f"{result.get('message') or ''}".strip())

    def submit_many(self, jobs: list[tuple[str, CanonicalURL, Source]]
                    ) -> list[str | LibrarianError]:
        """Submit one run per ``(job id, url, source)``; per job, its run id or the refusal
        that a retry would not change. Raises :class:`OrchestratorUnavailable` when Dagster
        cannot be asked (nothing or part submitted: retry, checking :meth:`runs_of_jobs`)."""
        if len(jobs) == 1:  # the common case of one URL goes through Dagster's own client
            job_id, url, source = jobs[0]
            try:
                return [self.submit(url, source, job_id)]
            except RunRefused as exc:
                return [exc]
        self.add_partitions([partition_key(url) for _, url, _ in jobs])
        params = [{"selector": {**self._selector(), "jobName": JOB_NAME},
                   "runConfigData": run_config(url),
                   "executionMetadata": {"tags": [
                       {"key": k, "value": v} for k, v in run_tags(url, source, job_id).items()]}}
                  for job_id, url, source in jobs]
        # Dagster makes the runs one after another (~0.1 s each): wait for a whole batch.
        data = self._raw(LAUNCH_MANY, {"params": params}, timeout=60.0)["launchMultipleRuns"]
        if data["__typename"] != "LaunchMultipleRunsResult":
            raise OrchestratorUnavailable(
                f"Dagster could not launch runs: {data.get('message') or data['__typename']}"
                [:1000])
        out: list[str | LibrarianError] = []
        for result in data["launchMultipleRunsResult"]:
            kind = result["__typename"]
            if kind == "LaunchRunSuccess":
                out.append(str(result["run"]["runId"]))
            elif kind in _REFUSALS:
                reason = result.get("message") or "; ".join(
                    e["message"] for e in result.get("errors") or []) or kind
                out.append(RunRefused(f"Dagster refused the run: {reason}"[:1000]))
            else:
                raise OrchestratorUnavailable(
                    f"Dagster could not launch a run: {result.get('message') or kind}"[:1000])
        return out

    def runs_of_jobs(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Job id → (id, status) of the job's first run, for the jobs that have one."""
        if not job_ids:
            return {}
        params = ", ".join(f"$j{i}: String!" for i in range(len(job_ids)))
        fields = " ".join(
            f'r{i}: runsOrError(filter: {{tags: [{{key: "{Tag.JOB.value}", value: $j{i}}}]}}) '
            f"{{ __typename ... on Runs {{ results {{ runId status rootRunId }} }} "
            f"... on PythonError {{ message }} }}" for i in range(len(job_ids)))
        data = self._raw(f"query JobRuns({params}) {{ {fields} }}",
                         {f"j{i}": job_id for i, job_id in enumerate(job_ids)})
        found: dict[str, tuple[str, str]] = {}
        for i, job_id in enumerate(job_ids):
            result = data[f"r{i}"]
            if result["__typename"] != "Runs":
                raise OrchestratorUnavailable(
                    f"Dagster could not list runs: {result.get('message') or ''}"[:1000])
            for run in result["results"]:
                if not run.get("rootRunId"):
                    found[job_id] = (str(run["runId"]), str(run["status"]))
        return found

    def submit(self, url: CanonicalURL, source: Source, job_id: str | None = None) -> str:
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
                tags=run_tags(url, source, job_id),
            )
        except DagsterGraphQLClientError as exc:
            # The client's first argument names the GraphQL result type of a refusal.
            if exc.args and exc.args[0] in _REFUSALS:
                raise RunRefused(f"Dagster refused the run: {exc}"[:1000]) from exc
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

    def job_status(self, job_id: str) -> tuple[str, str] | None:
        """(run id, Dagster status) of the run that started a job, or None when ``job_id`` is
        no job: not a job's tag (ids the API issued), and no first run of ``ingest_url`` by
        that id (jobs of sensor runs, whose id is their run's)."""
        found = self.runs_of_jobs([job_id]).get(job_id)
        if found is not None:
            return found
        run = self._raw(JOB_RUN, {"runId": job_id})["runOrError"]
        if run["__typename"] == "RunNotFoundError":
            return None
        if run["__typename"] != "Run":
            raise OrchestratorUnavailable(f"Dagster could not read run {job_id}: "
                                          f"{run.get('message') or run['__typename']}")
        if (run["jobName"] != JOB_NAME or run.get("rootRunId") not in (None, job_id)
                or (run.get("tags") and any(t["key"] == Tag.JOB.value for t in run["tags"]))):
            return None  # another job's run, a retry, or a run of a job with an issued id
        return job_id, str(run["status"])

    async def ping(self) -> None:
        """Dagster answers and can read its storage (a webserver whose database is down still
        answers ``{ version }``, but can launch nothing)."""
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                response = await client.post(self.graphql_url, json={"query": PING})
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OrchestratorUnavailable(f"Dagster GraphQL unreachable: {exc}") from exc
        runs = (body.get("data") or {}).get("runsOrError") or {}
        if runs.get("__typename") != "Runs":
            raise OrchestratorUnavailable(
                f"Dagster cannot read its storage: {runs.get('message') or body}"[:300])

"""The API fuzzed against its own OpenAPI document (schemathesis), over real HTTP.

The real app runs (uvicorn in a thread, real Redis and catalog, authentication on, an admin
token made in the test catalog), and every operation of the document it serves at
``/api/v1/openapi.json`` gets schemathesis' requests: its coverage phase (boundary values, each
parameter and body member left out, wrong types, unexpected methods) and its fuzzing phase
(random valid and invalid requests). Every response must be what the document says: no 5xx
other than the outage this test sets up, a documented status code, content type, headers and
body. A handler that answers anything else fails the test with the request that caused it.

Dagster is absent (its port has nothing listening): submissions are accepted and wait, and a
job id that Redis does not hold cannot be looked up in Dagster, which the API answers with a
documented ``503 orchestrator_unavailable``. That is the one server-side answer allowed here
(:func:`only_dagster_is_away`); Redis and the catalog are up, so any other 5xx is a failure.

Bounded and deterministic: a fixed seed (derandomized), :data:`MAX_EXAMPLES` fuzzed requests
per operation, no example database and Hypothesis' caches in the temporary folder (nothing
written to the checkout), event streams read up to their first event (a live job's is endless;
:func:`test_a_live_event_stream_is_read_bounded`).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import CheckContext
from schemathesis.core.transport import Response

from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from librarian.storage.tokens import ApiTokens, Scope
from librarian_api import openapi
from librarian_api.app import create_app
from tests.integration.test_library_api import _add
from tests.support.servers import api_in_thread

# Hypothesis keeps caches (constants, Unicode tables) in ./.hypothesis, some of them written
# while the tests are collected: under the system's temporary folder instead of the checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "librarian-test-hypothesis")

# Fuzzed requests per operation (the coverage phase's requests come on top): about 1,000
# requests for the 22 operations, 25 s of CPU.
MAX_EXAMPLES = 25
REVOKE = "/api/v1/tokens/{token_id}"
# Operations whose valid input follows a rule JSON Schema cannot state, with the rule.
POSITIVE_DATA_RULES = {
    # A cursor is valid only if this API wrote it (an opaque position).
    ("/api/v1/jobs", "GET"): "cursor",
    ("/api/v1/library", "GET"): "cursor",
    # A token's name is printable (str.isprintable: no Unicode control, format or separator).
    ("/api/v1/tokens", "POST"): "name",
    # A URL is one librarian.canonical_url accepts (http or https, a host, no credentials…):
    # each other one is that URL's error in the results, and a batch of only such is a 422.
    ("/api/v1/ingest/batch", "POST"): "urls",
}


@dataclass
class Fuzzing:
    base: str
    admin_token: str
    admin_id: int
    tokens: ApiTokens
    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    decoys: int = 0


@pytest.fixture(scope="module")
def fuzz_settings(settings: Settings) -> Settings:
    # The session's data folder: its copy of the embedding model is made once, and in the whole
    # suite, searches find what the other tests stored.
    return settings.model_copy(update={
        "auth": "on",
        # Dagster absent: nothing listens on its port.
        "dagster_port": free_port(),
        # A Redis prefix of its own: the fuzzer's submissions queue jobs here.
        "redis_prefix": f"{settings.redis_prefix}fuzz:",
        # Submissions are accepted and wait for Dagster, rather than refused after 30 s.
        "submit_grace_seconds": 3600.0,
        # A stream's first event comes soon even when the job has none yet.
        "sse_heartbeat_seconds": 1})


@pytest.fixture(scope="module")
def fuzzing(fuzz_settings: Settings) -> Iterator[Fuzzing]:
    engine = sa.create_engine(fuzz_settings.database_url)
    tokens = ApiTokens(engine)
    info, token = tokens.create("fuzzer", Scope.ADMIN)
    started = time.monotonic()
    with api_in_thread(fuzz_settings) as base:
        # The first search loads the embedding model: not a fuzzed request's time.
        httpx.get(f"{base}/api/v1/search", params={"q": "warm up"}, timeout=120,
                  headers={"Authorization": f"Bearer {token}"}).raise_for_status()
        state = Fuzzing(base=base, admin_token=token, admin_id=info.id, tokens=tokens)
        yield state
    total = sum(state.cases.values())
    print(f"\nfuzzed {len(state.cases)} operations with {total} cases in "
          f"{time.monotonic() - started:.1f} s")
    for label, count in sorted(state.cases.items()):
        answered = ", ".join(f"{status}×{n}" for status, n in
                             sorted(state.statuses.get(label, Counter()).items()))
        print(f"  {count:5d}  {label}: {answered}")
    engine.dispose()


def only_dagster_is_away(ctx: CheckContext, response: Response, case: schemathesis.Case
                         ) -> bool | None:
    """A 503 must be Dagster's absence, said as documented: Redis and the catalog are up."""
    if response.status_code != 503:
        return None
    body = response.json()
    if case.operation.path == "/api/v1/health":
        assert body.get("down") in (None, ["dagster"]), body
    else:
        assert body["error"]["code"] == "orchestrator_unavailable", body
    return None


# The document the API serves, built from its routes as the handler builds it (the test below
# checks that they are the same). Loaded when the module is, so that each operation is a test of
# its own; the lazy loader (``schemathesis.pytest.from_fixture``), which would take it from the
# running server, does not work with pytest 9.2 (it sets a node attribute pytest no longer has).
DOCUMENT = openapi.build(create_app(Settings()).routes)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": 20261202,
    # Generous: the machine may be busy (a timed-out request fails the test).
    "request-timeout": 30,
    # An event stream of a live job never ends: one event is enough to judge it.
    "max-stream-events": 1,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {
        # Dagster is absent on purpose: its 503 is checked by only_dagster_is_away.
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
    },
    # "Schema-valid request rejected" (a 4xx for a request the document allows) is left out only
    # where a rule cannot be said in JSON Schema; each such refusal is a documented 422.
    "operations": [
        {"include-path": path, "include-method": method,
         "checks": {"positive_data_acceptance": {"enabled": False}}}
        for path, method in POSITIVE_DATA_RULES],
}))


def test_the_fuzzed_document_is_the_one_the_api_serves(fuzzing: Fuzzing) -> None:
    assert httpx.get(f"{fuzzing.base}/api/v1/openapi.json").json() == DOCUMENT


@schema.parametrize()
@hypothesis.settings(deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_every_answer_is_the_one_the_openapi_document_declares(
        case: schemathesis.Case, fuzzing: Fuzzing) -> None:
    label = case.operation.label
    fuzzing.cases[label] = fuzzing.cases.get(label, 0) + 1
    if case.operation.path == REVOKE and case.path_parameters:
        # The route reads digits as the id (leading zeros too), whatever type was generated.
        sent = str(case.path_parameters.get("token_id"))
        if sent.isascii() and sent.isdigit() and int(sent) == fuzzing.admin_id:
            # Revoking the fuzzer's own token would end the run: a token made for the purpose
            # is revoked instead, the same request otherwise.
            info, _ = fuzzing.tokens.create(f"decoy {fuzzing.decoys}", Scope.READ)
            fuzzing.decoys += 1
            case.path_parameters["token_id"] = info.id
    response = case.call_and_validate(
        base_url=fuzzing.base, additional_checks=[only_dagster_is_away],
        headers={"Authorization": f"Bearer {fuzzing.admin_token}"})
    fuzzing.statuses.setdefault(label, Counter())[response.status_code] += 1


def test_a_live_event_stream_is_read_bounded(fuzzing: Fuzzing) -> None:
    """The fuzzer's job ids name no job; a real one (queued for good, Dagster being absent)
    streams heartbeats forever. Its answer is judged on its first event."""
    auth = {"Authorization": f"Bearer {fuzzing.admin_token}"}
    job = httpx.post(f"{fuzzing.base}/api/v1/ingest", json={"url": "https://example.com/live"},
                     headers=auth).json()["job_id"]
    operation = schema["/api/v1/stream/{job_id}"]["GET"]
    started = time.monotonic()
    response = operation.Case(path_parameters={"job_id": job}).call_and_validate(
        base_url=fuzzing.base, headers=auth, additional_checks=[only_dagster_is_away])
    assert response.status_code == 200 and b"event: heartbeat" in response.content
    assert time.monotonic() - started < 15
    # Entry ids are ASCII digits: other scripts' digits are refused, not sent on to Redis.
    refused = operation.Case(path_parameters={"job_id": job},
                             query={"last_event_id": "\u0661-\u0660"}).call_and_validate(
        base_url=fuzzing.base, headers=auth)
    assert refused.status_code == 400


def test_a_stored_item_and_its_jobs_are_answered_as_documented(
        fuzzing: Fuzzing, fuzz_settings: Settings) -> None:
    """The fuzzer's ids name nothing: a real item (its files, refresh, delete) and a real job
    (status, listing, cancel, retry, its finished stream), each answer judged by every check."""
    item = _add(fuzz_settings, "fuzzing")
    auth = {"Authorization": f"Bearer {fuzzing.admin_token}"}

    def call(path: str, method: str, **parts: Any) -> Response:
        return schema[path][method].Case(**parts).call_and_validate(
            base_url=fuzzing.base, headers=auth, additional_checks=[only_dagster_is_away])

    at = {"item_id": item}
    assert call("/api/v1/library/{item_id}", "GET", path_parameters=at).status_code == 200
    listed = call("/api/v1/library", "GET", query={"q": "T", "tier": "B", "limit": 1})
    assert listed.status_code == 200 and listed.json()["items"]
    for kind in ("markdown", "raw"):
        assert call("/api/v1/library/{item_id}/files/{version}/{kind}", "GET",
                    path_parameters={**at, "version": 1, "kind": kind}).status_code == 200
    job = call("/api/v1/library/{item_id}/refresh", "POST", path_parameters=at).json()
    on = {"job_id": job["job_id"]}
    assert call("/api/v1/ingest/{job_id}", "GET", path_parameters=on).json()["status"] == "queued"
    assert call("/api/v1/jobs", "GET", query={"status": "queued"}).status_code == 200
    cancelled = call("/api/v1/ingest/{job_id}/cancel", "POST", path_parameters=on)
    assert cancelled.json()["status"] == "cancelled"
    assert call("/api/v1/stream/{job_id}", "GET", path_parameters=on).status_code == 200
    assert call("/api/v1/ingest/{job_id}/retry", "POST", path_parameters=on).status_code == 202
    deleted = call("/api/v1/library/{item_id}", "DELETE", path_parameters=at)
    assert deleted.json()["deleted"] == item
    assert call("/api/v1/library/{item_id}", "GET", path_parameters=at).status_code == 404

"""The code location's resources take nothing from run config and show no secret.

Run config is what anyone who may launch a run can type: the SSRF allow-list, the fetch
limits, where things are stored and the credentials to get there must not be in it. The
resources have no config fields (Dagster refuses a run that sets one) and read the settings of
the process that runs them.
"""

from __future__ import annotations

from typing import Any

import pytest
from dagster import DagsterInvalidConfigError, build_resources, validate_run_config

from librarian.canonical_url import canonicalize
from librarian.runs import JOB_NAME, run_config
from librarian.settings import DEV_S3_SECRET, Settings
from librarian_assets.definitions import build_definitions
from librarian_assets.resources import FetcherResource, ObjectStoreResource, SettingsResource

RESOURCES = ("fetcher", "embedder", "catalog", "objects", "vectors")
# Names a launch might try besides the settings' own (each setting's name is tried too).
GUESSES = ("allow_networks", "local_path", "path", "endpoint", "bucket", "url", "api_key",
           "password", "secret_key", "access_key", "max_bytes", "timeout")


def _job() -> Any:
    return build_definitions(Settings()).get_job_def(JOB_NAME)


def _config(resource: str, field: str, value: Any) -> dict[str, Any]:
    config = run_config(canonicalize("https://example.com/"))
    config["resources"] = {resource: {"config": {field: value}}}
    return config


def test_the_resources_declare_no_config_field() -> None:
    resources = SettingsResource.__subclasses__()
    assert sorted(r.__name__ for r in resources) == [
        "CatalogResource", "EmbedderResource", "FetcherResource", "ObjectStoreResource",
        "VectorStoreResource"]
    for resource in resources:
        assert resource.model_fields == {}, resource.__name__


def test_the_job_takes_the_url_and_nothing_under_its_resources() -> None:
    job = _job()
    assert validate_run_config(job, run_config(canonicalize("https://example.com/")))
    config = run_config(canonicalize("https://example.com/"))
    config["resources"] = {name: {"config": {}} for name in RESOURCES}
    assert validate_run_config(job, config)


@pytest.mark.parametrize("resource", RESOURCES)
def test_run_config_that_sets_any_setting_under_a_resource_is_refused(resource: str) -> None:
    job = _job()
    # Each setting with a value of its own type (what the old config fields accepted).
    values = {name: value if value is not None else "x"
              for name, value in Settings.model_construct().model_dump(mode="json").items()}
    values.update({name: "x" for name in GUESSES})
    accepted = []
    for field, value in values.items():
        try:
            validate_run_config(job, _config(resource, field, value))
        except DagsterInvalidConfigError as exc:
            assert f"unexpected config entry \"{field}\"" in str(exc)
        else:
            accepted.append(field)
    assert accepted == []


def test_the_resources_read_the_settings_of_their_process(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("LIBRARIAN_FETCH_ALLOW_NETWORKS", '["192.0.2.0/24"]')
    monkeypatch.setenv("LIBRARIAN_FETCH_MAX_BYTES", "1234")
    monkeypatch.setenv("LIBRARIAN_DATA_DIR", str(tmp_path))
    with build_resources({"fetcher": FetcherResource(), "objects": ObjectStoreResource()}) as res:
        with res.fetcher.fetcher() as fetcher:
            assert fetcher.limits.allow_networks == ("192.0.2.0/24",)
            assert fetcher.limits.max_bytes == 1234
        res.objects.store().put("k", b"v", "text/plain")
    assert list((tmp_path / "objects").rglob("*"))


def test_no_secret_reaches_the_code_location_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Dagster's UI and GraphQL show of the code location (its repository snapshot)
    holds none of the passwords and keys, whether they came from the environment or not."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    from_env = {
        "LIBRARIAN_DATABASE_URL": "postgresql+psycopg2://librarian:env-db-pw-1@db:5432/librarian",
        "LIBRARIAN_DAGSTER_DATABASE_URL":
            "postgresql+psycopg2://librarian:env-dagster-pw-2@db:5432/dagster",
        "LIBRARIAN_REDIS_URL": "redis://:env-redis-pw-3@redis:6379/0",
        "LIBRARIAN_QDRANT_URL": "http://qdrant:6333",
        "LIBRARIAN_QDRANT_API_KEY": "env-qdrant-key-4",
        "LIBRARIAN_S3_ENDPOINT": "minio:9000",
        "LIBRARIAN_S3_ACCESS_KEY": "env-s3-access-5",
        "LIBRARIAN_S3_SECRET_KEY": "env-s3-secret-6",
    }
    for name, value in from_env.items():
        monkeypatch.setenv(name, value)
    # The same settings handed over in code, with other values (not the environment's).
    given = Settings(database_url="postgresql+psycopg2://librarian:given-db-pw-7@db/librarian",
                     qdrant_url="http://qdrant:6333", qdrant_api_key="given-qdrant-key-8",
                     s3_endpoint="minio:9000", s3_access_key="given-s3-access-9",
                     s3_secret_key="given-s3-secret-10")
    secrets = ["env-db-pw-1", "env-dagster-pw-2", "env-redis-pw-3", "env-qdrant-key-4",
               "env-s3-access-5", "env-s3-secret-6", "given-db-pw-7", "given-qdrant-key-8",
               "given-s3-access-9", "given-s3-secret-10", DEV_S3_SECRET]
    for settings in (Settings(), given):
        snapshot = serialize_value(RepositorySnap.from_def(
            build_definitions(settings).get_repository_def()))
        assert [s for s in secrets if s in snapshot] == []

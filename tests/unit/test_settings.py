import pytest
from pydantic import ValidationError

from librarian.settings import Settings


def test_production_refuses_the_default_object_store_secret() -> None:
    with pytest.raises(ValidationError, match="S3_SECRET_KEY"):
        Settings(environment="production", s3_endpoint="minio:9000")


def test_production_refuses_an_open_ssrf_allow_list() -> None:
    with pytest.raises(ValidationError, match="ALLOW_NETWORKS"):
        Settings(environment="production", fetch_allow_networks=["127.0.0.1/32"])


def test_allow_list_entries_must_be_networks() -> None:
    with pytest.raises(ValidationError):
        Settings(fetch_allow_networks=["not-a-network"])


def test_settings_come_from_librarian_environment_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_REDIS_PREFIX", "x:")
    monkeypatch.setenv("LIBRARIAN_FETCH_ALLOW_NETWORKS", '["127.0.0.1/32"]')
    settings = Settings()
    assert settings.redis_prefix == "x:" and settings.fetch_allow_networks == ["127.0.0.1/32"]

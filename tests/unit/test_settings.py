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


def test_auth_off_is_refused_unless_the_api_listens_on_loopback() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        assert Settings(auth="off", api_host=host).auth == "off"
    for host in ("0.0.0.0", "::", "192.168.1.20", "librarian.example"):
        with pytest.raises(ValidationError, match="LIBRARIAN_AUTH=off is refused"):
            Settings(auth="off", api_host=host)
        assert Settings(auth="on", api_host=host).auth == "on"  # tokens come later: fine


def test_auth_off_on_another_address_is_refused_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_AUTH", "off")
    monkeypatch.setenv("LIBRARIAN_API_HOST", "0.0.0.0")
    with pytest.raises(ValidationError, match=r"listens on '0\.0\.0\.0'"):
        Settings()
    monkeypatch.setenv("LIBRARIAN_AUTH", "maybe")
    with pytest.raises(ValidationError):
        Settings()


GOOD = "3f9c1a7e5b2d4c6a8e0f1b3d5c7a9e2f"


def _production(**changes: object) -> Settings:
    given: dict[str, object] = {
        "environment": "production",
        "database_url": f"postgresql+psycopg2://librarian:{GOOD}@db/librarian",
        "dagster_database_url": f"postgresql+psycopg2://librarian:{GOOD}@db/dagster",
        "redis_url": f"redis://:{GOOD}@redis:6379/0",
        "s3_endpoint": "minio:9000", "s3_access_key": "librarian", "s3_secret_key": GOOD,
        "qdrant_url": "http://qdrant:6333", "qdrant_api_key": GOOD}
    return Settings(**{**given, **changes})  # type: ignore[arg-type]


def test_production_starts_with_passwords_of_its_own() -> None:
    assert _production().environment == "production"
    # Embedded vectors and local files have no password to check.
    assert _production(qdrant_url=None, qdrant_api_key=None, s3_endpoint=None).auth == "on"


@pytest.mark.parametrize(("changes", "named"), [
    ({"database_url": "postgresql+psycopg2://librarian@db/librarian"},
     "LIBRARIAN_DATABASE_URL has no password"),
    ({"database_url": "postgresql+psycopg2://librarian:librarian@db/librarian"},
     "LIBRARIAN_DATABASE_URL uses a default password"),
    ({"dagster_database_url": "postgresql+psycopg2://librarian:@db/dagster"},
     "LIBRARIAN_DAGSTER_DATABASE_URL has no password"),
    ({"redis_url": "redis://redis:6379/0"}, "LIBRARIAN_REDIS_URL has no password"),
    ({"redis_url": "redis://:change-me@redis:6379/0"}, "LIBRARIAN_REDIS_URL uses a default"),
    ({"s3_secret_key": "minioadmin"}, "LIBRARIAN_S3_SECRET_KEY uses a default password"),
    ({"s3_secret_key": ""}, "LIBRARIAN_S3_SECRET_KEY has no password"),
    ({"s3_access_key": "minioadmin"}, "LIBRARIAN_S3_ACCESS_KEY is the default"),
    ({"qdrant_api_key": None}, "LIBRARIAN_QDRANT_API_KEY has no password"),
    ({"qdrant_api_key": ""}, "LIBRARIAN_QDRANT_API_KEY has no password"),
    ({"auth": "off"}, "LIBRARIAN_AUTH is off"),
])
def test_production_refuses_empty_and_default_passwords(changes: dict[str, object],
                                                        named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        _production(**changes)


def test_production_names_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production")
    message = str(refused.value)
    for name in ("LIBRARIAN_DATABASE_URL", "LIBRARIAN_DAGSTER_DATABASE_URL",
                 "LIBRARIAN_REDIS_URL"):
        assert f"{name} has no password" in message
    assert GOOD not in str(_production_problem(redis_url=f"redis://:{GOOD}@r/0",
                                               database_url="postgresql://u:postgres@db/x"))


def _production_problem(**changes: object) -> str:
    try:
        _production(**changes)
    except ValidationError as exc:
        return str(exc)
    raise AssertionError("accepted")

"""Authentication and authorisation over real HTTP (uvicorn on 127.0.0.1, real Redis and
catalog, Dagster absent): every route against every kind of caller, tokens through the CLI,
the web page's session cookie and its CSRF token, streams with the cookie, and the OpenAPI
document's security."""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa

from librarian.cli.admin_token import ensure_admin_token, read_admin_token, token_for
from librarian.cli.client import ApiClient, cmd_token
from librarian.cli.local_servers import free_port
from librarian.jobs.events import EventType, JobStatus
from librarian.jobs.store import MirrorJobStore
from librarian.settings import Settings
from librarian.storage.tokens import ApiTokens, Scope
from librarian_api.app import create_app
from librarian_api.auth import PUBLIC, ROUTE_SCOPES, api_routes
from tests.integration.test_jobs_api import _sse, _write
from tests.support.servers import api_in_thread

CALLERS = ("nobody", "read", "write", "admin", "revoked")


@pytest.fixture(scope="module")
def auth_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # A Redis prefix of its own: the admin calls below queue submissions (reembed).
    return settings.model_copy(update={
        "auth": "on", "data_dir": tmp_path_factory.mktemp("auth"), "dagster_port": free_port(),
        "redis_prefix": f"{settings.redis_prefix}auth:"})


@pytest.fixture(scope="module")
def store(auth_settings: Settings) -> Iterator[ApiTokens]:
    engine = sa.create_engine(auth_settings.database_url)
    yield ApiTokens(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def tokens(store: ApiTokens) -> dict[str, str]:
    made = {scope.value: store.create(f"matrix {scope.value}", scope)[1] for scope in Scope}
    info, revoked = store.create("matrix revoked", Scope.ADMIN)
    store.revoke(info.id)
    return {**made, "revoked": revoked}


@pytest.fixture(scope="module")
def api(auth_settings: Settings) -> Iterator[str]:
    with api_in_thread(auth_settings) as base:
        yield base


def _headers(tokens: dict[str, str], caller: str) -> dict[str, str]:
    return {} if caller == "nobody" else {"Authorization": f"Bearer {tokens[caller]}"}


def _code(response: httpx.Response) -> str | None:
    try:
        return response.json().get("error", {}).get("code")  # type: ignore[no-any-return]
    except (ValueError, AttributeError):
        return None


def _concrete(path: str) -> str:
    """A real URL for a route: ids that name nothing (the handler answers 404 or 503)."""
    return (path.replace("{job_id}", str(uuid.uuid4())).replace("{item_id}", str(uuid.uuid4()))
            .replace("{version}", "1").replace("{kind}", "markdown")
            .replace("{token_id}", "987654321"))


def _expected(needed: Scope | None, caller: str) -> str:
    if needed is PUBLIC:
        return "through"
    if caller in ("nobody", "revoked"):
        return "401"
    return "through" if Scope(caller).covers(needed) else "403"


def _policy(path: str, method: str) -> Scope | None:
    """The scopes as the README states them, written independently of ROUTE_SCOPES."""
    if (path, method) in {("/api/v1/health", "get"), ("/api/v1/openapi.json", "get"),
                          ("/api/v1/session", "post")}:
        return None
    if (path.startswith("/api/v1/tokens") or path == "/api/v1/library/reembed"
            or (method == "delete" and path.startswith("/api/v1/library"))):
        return Scope.ADMIN
    if method == "get" or path == "/api/v1/session":
        return Scope.READ
    return Scope.WRITE


def test_every_route_has_a_scope_and_the_scopes_follow_the_stated_rules() -> None:
    real = api_routes(create_app(Settings()).routes)
    assert len(real) >= 20
    assert sorted(set(real) - set(ROUTE_SCOPES)) == [], "routes without a scope entry"
    assert sorted(set(ROUTE_SCOPES) - set(real)) == [], "scope entries without a route"
    assert {key: ROUTE_SCOPES[key] for key in real} == {key: _policy(*key) for key in real}


def test_the_route_matrix(api: str, tokens: dict[str, str]) -> None:
    """Every route (from the app's routing table) × every kind of caller."""
    routes = api_routes(create_app(Settings()).routes)
    wrong = []
    for path, method in routes:
        needed = ROUTE_SCOPES[(path, method)]
        for caller in CALLERS:
            response = httpx.request(
                method.upper(), api + _concrete(path), headers=_headers(tokens, caller),
                json={} if method == "post" else None, timeout=30)
            got = ("401" if response.status_code == 401 and _code(response) == "unauthorized"
                   else "403" if response.status_code == 403 and _code(response) == "forbidden"
                   else "through" if response.status_code not in (401, 403)
                   else f"{response.status_code} {_code(response)}")
            if got != _expected(needed, caller):
                wrong.append((method, path, caller, response.status_code, response.text[:200]))
            if got == "401":
                assert response.headers["www-authenticate"].startswith("Bearer"), path
    assert wrong == []


def test_an_unknown_api_path_is_only_answered_to_authenticated_callers(
        api: str, tokens: dict[str, str]) -> None:
    assert httpx.get(f"{api}/api/v1/nothing-here").status_code == 401
    assert httpx.get(f"{api}/api/v1/nothing-here", headers=_headers(tokens, "read")
                     ).status_code == 404
    # The page and its files are not the API: anyone may load the sign-in form.
    assert httpx.get(f"{api}/").status_code == 200
    assert httpx.get(f"{api}/static/app.js").status_code == 200


def test_malformed_credentials_are_401_with_the_scheme_to_use(api: str) -> None:
    for value in ("Basic dXNlcjpwdw==", "Bearer", "Bearer lbr_short", "Bearer " + "x" * 47):
        response = httpx.get(f"{api}/api/v1/library", headers={"Authorization": value})
        assert response.status_code == 401 and _code(response) == "unauthorized", value
        assert response.headers["www-authenticate"] == (
            'Bearer realm="librarian", error="invalid_token"')
    response = httpx.get(f"{api}/api/v1/library")
    assert response.headers["www-authenticate"] == 'Bearer realm="librarian"'
    assert "request_id" in response.json()["error"]


def test_health_tells_anonymous_callers_the_status_alone(api: str,
                                                         tokens: dict[str, str]) -> None:
    anonymous = httpx.get(f"{api}/api/v1/health", timeout=30)
    assert set(anonymous.json()) == {"status"}
    detailed = httpx.get(f"{api}/api/v1/health", headers=_headers(tokens, "read"), timeout=30)
    assert {"checks", "down", "mirror", "embedding_service"} <= set(detailed.json())
    assert anonymous.status_code == detailed.status_code
    # A bad token on a public route is no credential: the same minimal answer, not a 401.
    bad = httpx.get(f"{api}/api/v1/health", headers=_headers(tokens, "revoked"), timeout=30)
    assert bad.status_code == anonymous.status_code and set(bad.json()) == {"status"}


def test_a_revoked_token_stops_working_within_the_cache_time(
        settings: Settings, store: ApiTokens) -> None:
    quick = settings.model_copy(update={"auth": "on", "auth_cache_seconds": 0.5,
                                        "dagster_port": free_port()})
    info, token = store.create("revoked soon", Scope.READ)
    headers = {"Authorization": f"Bearer {token}"}
    with api_in_thread(quick) as base:
        assert httpx.get(f"{base}/api/v1/library", headers=headers).status_code == 200
        store.revoke(info.id)  # as another process would: this one learns it within 0.5 s
        revoked = time.monotonic()
        while httpx.get(f"{base}/api/v1/library", headers=headers).status_code == 200:
            assert time.monotonic() - revoked < 2.0, "the revoked token kept working"
            time.sleep(0.1)


def test_last_use_is_recorded_once_not_per_request(api: str, store: ApiTokens) -> None:
    info, token = store.create("last used", Scope.READ)
    for _ in range(5):
        httpx.get(f"{api}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 5
    while (used := next(t for t in store.all() if t.id == info.id).last_used_at) is None:
        assert time.monotonic() < deadline, "the use was not recorded"
        time.sleep(0.1)
    time.sleep(0.3)
    httpx.get(f"{api}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    time.sleep(0.3)
    assert next(t for t in store.all() if t.id == info.id).last_used_at == used


# -- tokens through the CLI --------------------------------------------------------------


def _run(client: ApiClient, capsys: pytest.CaptureFixture[str], action: str,
         **args: object) -> dict[str, object]:
    namespace = argparse.Namespace(action=action, json=True, database=False, **args)
    assert cmd_token(client, namespace) == 0
    body: dict[str, object] = json.loads(capsys.readouterr().out)
    return body


def test_tokens_are_created_listed_and_revoked_with_the_cli(
        api: str, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    admin = ApiClient(api, tokens["admin"])
    made = _run(admin, capsys, "create", name="phone", scope="read")
    token = str(made["token"])
    assert token.startswith("lbr_") and made["scope"] == "read"
    phone = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api}/api/v1/library", headers=phone).status_code == 200
    assert httpx.post(f"{api}/api/v1/ingest", headers=phone, json={}).status_code == 403
    listed = _run(admin, capsys, "list")["tokens"]
    assert isinstance(listed, list)
    mine = next(t for t in listed if t["id"] == made["id"])
    assert mine["name"] == "phone" and mine["revoked_at"] is None and "token" not in mine
    assert all("token" not in t and "token_hash" not in t for t in listed)
    revoked = _run(admin, capsys, "revoke", id=made["id"])
    assert revoked["revoked_at"]
    # Revoked through this API process: at once, not after the cache time.
    assert httpx.get(f"{api}/api/v1/library", headers=phone).status_code == 401
    with pytest.raises(SystemExit, match="404: token_not_found"):
        _run(admin, capsys, "revoke", id=987654321)
    # A token that is not admin may not manage tokens.
    with pytest.raises(SystemExit, match="403: forbidden"):
        _run(ApiClient(api, tokens["write"]), capsys, "create", name="x", scope="admin")


def test_the_first_token_can_be_made_in_the_database(
        auth_settings: Settings, api: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBRARIAN_DATABASE_URL", auth_settings.database_url)
    namespace = argparse.Namespace(action="create", json=True, database=True,
                                   name="first admin", scope="admin")
    assert cmd_token(ApiClient(api), namespace) == 0
    made = json.loads(capsys.readouterr().out)
    response = httpx.get(f"{api}/api/v1/tokens",
                         headers={"Authorization": f"Bearer {made['token']}"})
    assert response.status_code == 200
    assert made["id"] in [t["id"] for t in response.json()["tokens"]]


def test_the_admin_token_file_is_made_once_with_mode_0600(
        tmp_path: Path, store: ApiTokens, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "admin.token"
    outcome, token = ensure_admin_token(path, store)
    assert outcome == "created" and token is not None and read_admin_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin.token"]  # no temporary file left
    found = store.verify(token)
    assert found is not None and found.scope == Scope.ADMIN
    assert ensure_admin_token(path, store) == ("kept", None)
    store.revoke(found.id)
    # Revoked on purpose: not replaced behind the person's back.
    assert ensure_admin_token(path, store) == ("not valid", None)
    assert read_admin_token(path) == token

    # The commands send it to an API on this machine, and only there; the variable wins.
    monkeypatch.delenv("LIBRARIAN_API_TOKEN", raising=False)
    monkeypatch.setenv("LIBRARIAN_DATA_DIR", str(tmp_path))
    assert token_for("http://127.0.0.1:8000") == token
    assert token_for("http://localhost:8000") == token
    assert token_for("https://librarian.example") is None
    monkeypatch.setenv("LIBRARIAN_API_TOKEN", "lbr_from-the-environment")
    assert token_for("https://librarian.example") == "lbr_from-the-environment"
    # A file others could read is closed again before it is used.
    os.chmod(path, 0o644)
    read_admin_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- the web page's session ----------------------------------------------------------------


def _sign_in(api: str, token: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{api}/api/v1/session", json={"token": token}, headers=headers)


def test_signing_in_sets_a_strict_http_only_cookie(api: str, tokens: dict[str, str]) -> None:
    response = _sign_in(api, tokens["write"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scope"] == "write" and len(body["csrf_token"]) >= 40
    cookie = response.headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")}
    assert cookie.startswith("librarian_session=")
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/" and "secure" not in attributes
    # Over https (as a TLS proxy forwards it), the cookie is Secure too.
    https = _sign_in(api, tokens["write"], **{"X-Forwarded-Proto": "https"})
    assert "secure" in [a.strip().lower() for a in https.headers["set-cookie"].split(";")]
    # A token that is not valid signs nobody in.
    refused = _sign_in(api, tokens["revoked"])
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_cookie_requests_that_change_something_need_the_csrf_token(
        api: str, tokens: dict[str, str]) -> None:
    signed_in = _sign_in(api, tokens["write"])
    csrf = signed_in.json()["csrf_token"]
    with httpx.Client(base_url=api, cookies=signed_in.cookies) as browser:
        # Reading needs none; the session says who is signed in, and its CSRF token again.
        assert browser.get("/api/v1/library").status_code == 200
        current = browser.get("/api/v1/session").json()
        assert current == {"name": "matrix write", "scope": "write", "via": "cookie",
                           "csrf_token": csrf}
        bad_url = {"url": "ftp://a.example/"}
        for sent in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
            response = browser.post("/api/v1/ingest", json=bad_url, headers=sent)
            assert response.status_code == 403 and _code(response) == "invalid_csrf_token"
        response = browser.post("/api/v1/ingest", json=bad_url, headers={"X-CSRF-Token": csrf})
        assert response.status_code == 422 and _code(response) == "invalid_url"
        # The scope still counts: deleting is admin's.
        response = browser.delete(f"/api/v1/library/{uuid.uuid4()}",
                                  headers={"X-CSRF-Token": csrf})
        assert response.status_code == 403 and _code(response) == "forbidden"
        # Signing out is a change too; then the session is gone in Redis, not only here.
        assert browser.delete("/api/v1/session").status_code == 403
        out = browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert 'librarian_session=""' in out.headers["set-cookie"] or \
            "max-age=0" in out.headers["set-cookie"].lower()
    again = httpx.get(f"{api}/api/v1/library", cookies=signed_in.cookies)
    assert again.status_code == 401 and _code(again) == "unauthorized"


def test_bearer_requests_need_no_csrf_token(api: str, tokens: dict[str, str]) -> None:
    response = httpx.post(f"{api}/api/v1/ingest", json={"url": "ftp://a.example/"},
                          headers=_headers(tokens, "write"))
    assert response.status_code == 422 and _code(response) == "invalid_url"


def test_revoking_a_token_ends_its_sessions(api: str, store: ApiTokens,
                                            tokens: dict[str, str]) -> None:
    info, token = store.create("session to revoke", Scope.READ)
    cookies = _sign_in(api, token).cookies
    assert httpx.get(f"{api}/api/v1/library", cookies=cookies).status_code == 200
    response = httpx.delete(f"{api}/api/v1/tokens/{info.id}", headers=_headers(tokens, "admin"))
    assert response.status_code == 200
    assert httpx.get(f"{api}/api/v1/library", cookies=cookies).status_code == 401


def test_a_stream_is_followed_with_the_session_cookie_as_eventsource_does(
        api: str, auth_settings: Settings, tokens: dict[str, str],
        sync_redis: redis.Redis) -> None:
    store = MirrorJobStore(sync_redis, auth_settings.redis_prefix, auth_settings.job_ttl_seconds)
    job = str(uuid.uuid4())
    _write(store, job, 10, EventType.JOB_STARTED, mode="enqueued", status=JobStatus.RUNNING)
    _write(store, job, 11, EventType.JOB_COMPLETED, mode="terminal", status=JobStatus.COMPLETED)
    cookies = _sign_in(api, tokens["read"]).cookies
    # What EventSource sends: a GET with the cookie, no Authorization and no CSRF header.
    response = httpx.get(f"{api}/api/v1/stream/{job}", cookies=cookies,
                         headers={"Accept": "text/event-stream"}, timeout=30)
    assert response.status_code == 200
    assert [e.get("event") for e in _sse(response.text)] == ["job_started", "job_completed"]
    assert httpx.get(f"{api}/api/v1/stream/{job}").status_code == 401


# -- the OpenAPI document ------------------------------------------------------------------


def test_the_openapi_document_declares_who_may_call_each_route(api: str) -> None:
    document = httpx.get(f"{api}/api/v1/openapi.json").json()  # public
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["cookie"] == {**schemes["cookie"], "type": "apiKey", "in": "cookie",
                                 "name": "librarian_session"}
    real = api_routes(create_app(Settings()).routes)
    listed = {(path, method) for path, methods in document["paths"].items()
              for method in methods}
    assert listed == set(real)
    for path, method in real:
        op = document["paths"][path][method]
        needed = ROUTE_SCOPES[(path, method)]
        if needed is PUBLIC:
            assert {} in op["security"], (path, method)
            # Only the sign-in itself refuses (a token in its body that is not valid).
            assert ("401" in op["responses"]) == (path == "/api/v1/session"), path
        else:
            assert op["security"] == [{"bearer": [needed.value]}, {"cookie": [needed.value]}]
            assert {"401", "403"} <= set(op["responses"]), (path, method)
    # One 403 for several reasons lists them all.
    delete = document["paths"]["/api/v1/library/{item_id}"]["delete"]["responses"]["403"]
    assert all(word in delete["description"]
               for word in ("forbidden_origin", "(forbidden)", "invalid_csrf_token"))

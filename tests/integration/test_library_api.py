"""Library endpoints over real HTTP on the real catalog and object store: filters, item detail
with file links, file download, delete, refresh. Deleting an item's Dagster partition is tested
against a real ``dagster-webserver``."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from librarian.cli.local_servers import free_port
from librarian.jobs.store import JobKeys
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, NewVersion
from librarian.storage.objects import LocalObjectStore, version_prefix
from librarian_api.dagster_client import DagsterSubmitter
from tests.integration.test_catalog import _version
from tests.support.servers import api_in_thread
from tests.support.webserver import Webserver, dagster_webserver


@pytest.fixture(scope="module")
def lib_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("library-api"),
                                       "dagster_port": free_port()})


@pytest.fixture(scope="module")
def api(lib_settings: Settings) -> Iterator[str]:
    with api_in_thread(lib_settings) as base:
        yield base


def _add(settings: Settings, tag: str, **changes: object) -> str:
    url = f"https://{changes.get('domain', 'lib.example')}/{tag}/{uuid.uuid4()}"
    version = dataclasses.replace(_version(url), **changes)  # type: ignore[arg-type]
    catalog = Catalog(settings.database_url)
    recorded = catalog.record_version(dataclasses.replace(version, object_keys={
        "markdown": version_prefix(recorded_id(url), "h1") + "content.md",
        "raw": version_prefix(recorded_id(url), "h1") + "raw"}))
    catalog.close()
    store = LocalObjectStore(settings.objects_path)
    store.put(version_prefix(recorded.item_id, "h1") + "content.md", b"# Stored", "text/markdown")
    store.put(version_prefix(recorded.item_id, "h1") + "raw", b"<html>raw</html>", "text/html")
    return recorded.item_id


def recorded_id(url: str) -> str:
    from librarian.storage.catalog import item_id_for

    return item_id_for(url)


def test_filters_narrow_the_library(api: str, lib_settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    a = _add(lib_settings, tag, tier="A", language="de", domain=f"{tag}.example",
             title=f"Brotbacken {tag}", page_type="article")
    b = _add(lib_settings, tag, tier="C", language="en", domain=f"{tag}.example",
             title=f"Shop listing {tag}", page_type="listing")

    def ids(**params: str) -> list[str]:
        body = httpx.get(f"{api}/api/v1/library", params={"domain": f"{tag}.example", **params})
        assert body.status_code == 200, body.text
        return [i["id"] for i in body.json()["items"]]

    assert ids() == [b, a]
    assert ids(tier="a") == [a]
    assert ids(tier="A,C") == [b, a]
    assert ids(language="en") == [b]
    assert ids(page_type="listing") == [b]
    assert ids(q="brotbacken") == [a]
    assert ids(since="2000-01-01", until="2000-01-02") == []
    assert httpx.get(f"{api}/api/v1/library", params={"since": "yesterday"}).status_code == 422


def test_item_detail_links_its_files_and_serves_them(api: str, lib_settings: Settings) -> None:
    item_id = _add(lib_settings, "files")
    item = httpx.get(f"{api}/api/v1/library/{item_id}").json()
    files = item["versions"][0]["files"]
    assert set(files) == {"markdown", "raw"}
    markdown = httpx.get(files["markdown"])
    assert markdown.status_code == 200 and markdown.text == "# Stored"
    assert markdown.headers["content-type"] == "text/plain; charset=utf-8"
    assert httpx.get(f"{api}/api/v1/library/{item_id}/files/9/markdown").status_code == 404
    assert item["links"]["original"].startswith("https://lib.example/files/")


def test_delete_removes_rows_files_and_answers_404_after(api: str, lib_settings: Settings
                                                         ) -> None:
    item_id = _add(lib_settings, "delete")
    response = httpx.delete(f"{api}/api/v1/library/{item_id}")
    assert response.status_code == 200 and response.json()["files_deleted"] == 2
    assert httpx.get(f"{api}/api/v1/library/{item_id}").status_code == 404
    assert not (Path(lib_settings.objects_path) / "items" / item_id).exists()
    assert httpx.delete(f"{api}/api/v1/library/{item_id}").status_code == 404


def test_a_refresh_while_dagster_is_away_is_accepted_and_waits_saying_why(
        api: str, lib_settings: Settings) -> None:
    item_id = _add(lib_settings, "refresh")
    response = httpx.post(f"{api}/api/v1/library/{item_id}/refresh", timeout=30)
    assert response.status_code == 202, response.text
    job = response.json()
    deadline = time.monotonic() + 15
    while "waiting for Dagster" not in (httpx.get(job["status_url"]).json().get("message")
                                        or ""):
        assert time.monotonic() < deadline, "the job never said what it waits for"
        time.sleep(0.2)
    assert httpx.post(f"{api}/api/v1/library/{uuid.uuid4()}/refresh").status_code == 404


@pytest.fixture(scope="module")
def webserver(settings: Settings, postgres_base: str, session_id: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    with dagster_webserver(settings, postgres_base, f"library_{session_id}",
                           tmp_path_factory.mktemp("library_home")) as server:
        yield server


@pytest.fixture(scope="module")
def dagster_api(webserver: Webserver, lib_settings: Settings) -> Iterator[str]:
    """The API with the library's files, submitting to the real webserver."""
    with api_in_thread(webserver.settings.model_copy(
            update={"data_dir": lib_settings.data_dir})) as base:
        yield base


@pytest.mark.filterwarnings("ignore:Using a DocumentNode is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")
def test_delete_removes_the_items_partition_but_not_while_a_job_of_its_url_is_unfinished(
        dagster_api: str, webserver: Webserver, lib_settings: Settings,
        sync_redis: redis.Redis) -> None:
    item_id = _add(lib_settings, "partition")
    key = httpx.get(f"{dagster_api}/api/v1/library/{item_id}").json()["partition_key"]
    DagsterSubmitter(webserver.settings).add_partition(key)
    assert webserver.instance.has_dynamic_partition("urls", key)

    # A queued job of the item's URL: its run needs the partition and would write the item
    # back, so the delete is refused and nothing is removed.
    keys = JobKeys(lib_settings.redis_prefix)
    job = str(uuid.uuid4())
    sync_redis.hset(keys.record(job), mapping={"job_id": job, "status": "queued",
                                               "url": "https://lib.example/partition"})
    sync_redis.set(keys.active(key), job)
    refused = httpx.delete(f"{dagster_api}/api/v1/library/{item_id}", timeout=30)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "job_in_progress"
    assert job in refused.json()["error"]["message"]
    assert httpx.get(f"{dagster_api}/api/v1/library/{item_id}").status_code == 200
    assert webserver.instance.has_dynamic_partition("urls", key)

    # Once it has ended, the item goes, its partition with it.
    sync_redis.hset(keys.record(job), "status", "completed")
    response = httpx.delete(f"{dagster_api}/api/v1/library/{item_id}", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["partition_deleted"] is True
    assert not [p for p in body["problems"] if "partition" in p]
    assert not webserver.instance.has_dynamic_partition("urls", key)
    assert httpx.get(f"{dagster_api}/api/v1/library/{item_id}").status_code == 404


def test_a_new_version_keeps_the_item_and_lists_both_versions(lib_settings: Settings) -> None:
    catalog = Catalog(lib_settings.database_url)
    url = f"https://lib.example/versions/{uuid.uuid4()}"
    catalog.record_version(_version(url))
    catalog.record_version(dataclasses.replace(_version(url, content_hash="h2"), tier="A"))
    item = catalog.get_item(recorded_id(url))
    catalog.close()
    assert item is not None and [v["version"] for v in item["versions"]] == [2, 1]
    assert isinstance(NewVersion, type)

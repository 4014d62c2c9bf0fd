"""A hostile page ingested for real (fetched from 127.0.0.1, extracted, written to the object
store and the catalog by an ``ingest_url`` run) and served back by the API over real HTTP: its
stored copies are downloads or plain text, sandboxed, and opening them in headless Chromium runs
none of its scripts."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from librarian.canonical_url import canonicalize
from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from librarian.storage.catalog import Catalog, item_id_for
from librarian.storage.objects import version_prefix
from librarian.storage.stores import objects_for
from tests.integration.test_catalog import _version
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.ingest import ingest_in_process
from tests.support.pages import PageServer, hostile_page
from tests.support.servers import api_in_thread


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with api_in_thread(settings.model_copy(update={"dagster_port": free_port()})) as base:
        yield base


@pytest.fixture(scope="module")
def files(instance: Any, settings: Settings, page_server: PageServer, api: str
          ) -> dict[str, str]:
    """The stored copies of the hostile page: kind → the API's URL for it."""
    page_server.pages["/hostile.html"] = (200, "text/html; charset=utf-8",
                                          hostile_page(page_server.url("/beacon")))
    url = page_server.url("/hostile.html")
    assert ingest_in_process(instance, settings, url).success
    item = httpx.get(f"{api}/api/v1/library/{item_id_for(canonicalize(url).url)}").json()
    links: dict[str, str] = item["versions"][0]["files"]
    assert set(links) == {"raw", "markdown", "metadata"}
    return links


def test_the_raw_copy_is_a_sandboxed_download(files: dict[str, str]) -> None:
    response = httpx.get(files["raw"])
    assert response.status_code == 200 and b"window.pwned" in response.content
    assert response.headers["content-disposition"] == (
        'attachment; filename="127.0.0.1-hostile-v1.html"')
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox;") and "default-src 'none'" in csp


def test_the_markdown_and_metadata_are_shown_as_text_in_a_sandbox(files: dict[str, str]
                                                                   ) -> None:
    markdown = httpx.get(files["markdown"])
    assert markdown.status_code == 200 and "onerror=" in markdown.text  # the tag, as text
    assert markdown.headers["content-type"] == "text/plain; charset=utf-8"
    assert markdown.headers["content-disposition"].startswith("inline;")
    metadata = httpx.get(files["metadata"])
    assert metadata.headers["content-type"] == "application/json"
    for response in (markdown, metadata):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"].startswith("sandbox;")


@pytest.fixture
def browser_page(page_server: PageServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    page_server.hits.pop("/beacon", None)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _ran(page: Any, page_server: PageServer) -> tuple[object, int]:
    """What the page's scripts did: the flag they set, and the beacons they sent."""
    page.wait_for_timeout(1000)  # time for an image error and a beacon to arrive
    return page.evaluate("window.pwned"), page_server.hits.get("/beacon", 0)


def test_opening_the_stored_copies_in_a_browser_runs_none_of_their_scripts(
        files: dict[str, str], browser_page: Any, page_server: PageServer) -> None:
    from playwright.sync_api import Error as PlaywrightError

    page = browser_page
    # A download aborts the navigation (an error for goto).
    with page.expect_download(timeout=10_000) as download, \
            contextlib.suppress(PlaywrightError):
        page.goto(files["raw"])
    assert download.value.suggested_filename == "127.0.0.1-hostile-v1.html"
    assert _ran(page, page_server) == (None, 0)

    page.goto(files["markdown"])
    assert "onerror=" in page.locator("body").inner_text()
    assert _ran(page, page_server) == (None, 0)


def test_a_raw_copy_rendered_inline_anyway_is_kept_from_running_by_its_sandbox(
        files: dict[str, str], browser_page: Any, page_server: PageServer) -> None:
    """Should a browser ignore the download, the sandbox still holds: the raw copy served
    without its Content-Disposition renders as the page it is, and none of its script runs.
    (The flag is the witness here: Chromium keeps a response fulfilled by the test from
    reaching 127.0.0.1, so no beacon could arrive either way.)"""
    page = browser_page

    def inline(route: Any) -> None:
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items() if k != "content-disposition"}
        route.fulfill(response=response, headers=headers)

    page.route(files["raw"], inline)
    page.goto(files["raw"])
    assert page.title() == "Pruning Apple Trees in Winter"  # rendered, not downloaded
    assert _ran(page, page_server)[0] is None


def test_links_straight_to_an_s3_stores_files_are_downloads(settings: Settings,
                                                             s3_endpoint: str) -> None:
    """An S3 server cannot send a sandbox: the signed links the item lists make it answer with
    a download of a type no browser renders, whatever type the file was stored with."""
    s3 = settings.model_copy(update={"s3_endpoint": s3_endpoint, "dagster_port": free_port(),
                                     "s3_bucket": f"copies-{uuid.uuid4().hex[:8]}"})
    url = f"https://s3.example/hostile/{uuid.uuid4()}"
    key = version_prefix(item_id_for(url), "h1") + "raw"
    objects_for(s3).put(key, hostile_page("http://127.0.0.1:1/beacon"), "text/html")
    catalog = Catalog(s3.database_url)
    catalog.record_version(_version(url, object_keys={"raw": key}))
    catalog.close()
    with api_in_thread(s3) as base:
        link = httpx.get(f"{base}/api/v1/library/{item_id_for(url)}").json()[
            "versions"][0]["files"]["raw"]
    assert link.startswith(f"http://{s3_endpoint}/")  # straight to the S3 server
    response = httpx.get(link)
    assert response.status_code == 200 and b"window.pwned" in response.content
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith('attachment; filename="s3.example-')

"""Search over pages ingested by the real pipeline, through the real API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from librarian.canonical_url import canonicalize
from librarian.cli.local_servers import free_port
from librarian.settings import Settings
from librarian.storage.catalog import item_id_for
from tests.support.ingest import ingest_in_process
from tests.support.pages import PageServer
from tests.support.servers import api_in_thread

PAGES = {
    "/search/cactus.txt": ("Repotting a cactus\n\nA cactus outgrows its terracotta pot every "
                           "few years. Wear thick gloves, loosen the root ball, and set the "
                           "cactus in gritty succulent soil; wait a week before watering."),
    "/search/bikes.txt": ("Repairing a bicycle chain\n\nA broken bicycle chain is fixed with a "
                          "chain tool: push out the pin, remove the damaged link, and join the "
                          "chain again with a quick link. Oil the chain afterwards."),
}


@pytest.fixture(scope="module")
def indexed(instance: Any, settings: Settings, page_server: PageServer) -> dict[str, str]:
    ids = {}
    for path, text in PAGES.items():
        url = page_server.add_text(path, text)
        assert ingest_in_process(instance, settings, url).success
        ids[path] = item_id_for(canonicalize(url).url)
    return ids


@pytest.fixture(scope="module")
def api(settings: Settings, indexed: dict[str, str]) -> Iterator[str]:
    with api_in_thread(settings.model_copy(update={"dagster_port": free_port()})) as base:
        yield base


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_each_mode_finds_the_page_that_answers(api: str, indexed: dict[str, str],
                                               mode: str) -> None:
    body = httpx.get(f"{api}/api/v1/search", params={"q": "fix a broken bike chain",
                                                     "mode": mode}, timeout=30).json()
    assert body["results"][0]["item_id"] == indexed["/search/bikes.txt"], body
    top = body["results"][0]
    assert top["url"].endswith("/search/bikes.txt") and top["tier"] in {"A", "B", "C"}
    assert top["passages"] and top["passages"][0]["highlight"]


def test_results_are_grouped_by_item_with_marked_passages(api: str, indexed: dict[str, str]
                                                          ) -> None:
    body = httpx.get(f"{api}/api/v1/search", params={"q": "repot a cactus in succulent soil",
                                                     "limit": 5}).json()
    ids = [r["item_id"] for r in body["results"]]
    assert len(ids) == len(set(ids))
    assert ids[0] == indexed["/search/cactus.txt"]
    assert "<mark>cactus</mark>" in body["results"][0]["passages"][0]["highlight"].lower()


def test_filters_apply_to_search(api: str, indexed: dict[str, str]) -> None:
    none = httpx.get(f"{api}/api/v1/search", params={"q": "bicycle chain",
                                                     "domain": "elsewhere.example"}).json()
    assert none["results"] == []
    some = httpx.get(f"{api}/api/v1/search", params={"q": "bicycle chain",
                                                     "domain": "127.0.0.1"}).json()
    assert indexed["/search/bikes.txt"] in [r["item_id"] for r in some["results"]]


@pytest.mark.parametrize("params", [{"q": ""}, {"q": "x", "mode": "fuzzy"},
                                    {"q": "x" * 1001}, {"q": "x", "limit": "0"}])
def test_bad_search_requests_are_422(api: str, params: dict[str, str]) -> None:
    assert httpx.get(f"{api}/api/v1/search", params=params).status_code == 422


def test_deleting_an_item_removes_it_from_search(api: str, indexed: dict[str, str]) -> None:
    item = indexed["/search/cactus.txt"]
    assert httpx.delete(f"{api}/api/v1/library/{item}", timeout=30).status_code == 200
    body = httpx.get(f"{api}/api/v1/search", params={"q": "repotting a cactus"}).json()
    assert item not in [r["item_id"] for r in body["results"]]

"""The catalog on a real PostgreSQL database: versions, dedup by constraint, pagination."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import pytest

from librarian.storage.catalog import Catalog, NewVersion, item_id_for


def _version(url: str, content_hash: str = "h1", **changes: object) -> NewVersion:
    base = NewVersion(
        canonical_url=url, url=url, domain="example.com", partition_key=f"k-{uuid.uuid4().hex}",
        title="T", author=None, published=None, language="en", summary="S", keywords=["k"],
        tier="B", quality_score=0.5, word_count=100, content_hash=content_hash,
        final_url=url, status_code=200, content_type="text/html", etag=None,
        last_modified=None, object_keys={"markdown": "m"}, chunk_count=1, embedding_model="m",
        run_id=None)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def catalog(settings) -> Catalog:  # type: ignore[no-untyped-def]
    c = Catalog(settings.database_url)
    yield c
    c.close()


def test_unchanged_content_adds_no_version_and_changed_content_adds_one(catalog: Catalog) -> None:
    url = f"https://example.com/{uuid.uuid4()}"
    first = catalog.record_version(_version(url))
    same = catalog.record_version(_version(url, title="T2"))
    changed = catalog.record_version(_version(url, content_hash="h2", tier="A"))
    assert (first.version, first.changed) == (1, True)
    assert (same.version, same.changed) == (1, False)
    assert (changed.version, changed.changed) == (2, True)
    item = catalog.get_item(first.item_id)
    assert item is not None and item["current_version"] == 2 and item["tier"] == "A"
    assert [v["version"] for v in item["versions"]] == [2, 1]


def test_concurrent_loads_of_one_url_make_one_item_and_one_version(catalog: Catalog) -> None:
    url = f"https://example.com/{uuid.uuid4()}"
    errors: list[BaseException] = []

    def load() -> None:
        try:
            catalog.record_version(_version(url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(catalog.get_item(item_id_for(url))["versions"]) == 1


def test_library_pages_newest_first_with_a_cursor(catalog: Catalog) -> None:
    urls = [f"https://pages.example/{uuid.uuid4()}" for _ in range(5)]
    for url in urls:
        catalog.record_version(_version(url))
    seen: list[str] = []
    cursor = None
    while True:
        items, cursor = catalog.list_items(limit=2, cursor=cursor)
        seen.extend(i["url"] for i in items)
        assert len(items) <= 2
        if cursor is None:
            break
    mine = [u for u in seen if u in urls]
    assert mine == list(reversed(urls))
    assert len(seen) == len(set(seen))


def test_a_forged_cursor_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        catalog.list_items(cursor="not-a-cursor")


def test_an_item_carries_no_internal_search_column(catalog: Catalog) -> None:
    url = f"https://example.com/{uuid.uuid4()}"
    catalog.record_version(_version(url))
    item = catalog.get_item(item_id_for(url))
    assert item is not None and "search_tsv" not in item and item["canonical_url"] == url

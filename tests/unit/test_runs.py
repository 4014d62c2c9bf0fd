"""The run contract: one partition per canonical URL, the URL in config and tags, progress and
results as event metadata that the translator reads back."""

from __future__ import annotations

import re

from librarian.canonical_url import canonicalize
from librarian.jobs.events import JobResult
from librarian.runs import (
    Source,
    Tag,
    is_bulk,
    partition_key,
    progress_metadata,
    read_progress,
    result_from_metadata,
    result_metadata,
    run_config,
    run_tags,
    url_from_run_config,
)


def test_partition_key_is_short_ui_safe_and_stable() -> None:
    long_url = "https://docs.example.org/" + "x" * 1500 + "?q=a,b|c[1]"
    key = partition_key(canonicalize(long_url))
    assert len(key) < 100
    assert re.fullmatch(r"[a-z0-9.-]+", key)
    assert key.startswith("docs.example.org-")
    assert key == partition_key(canonicalize(long_url.upper().replace("HTTPS", "https", 1).lower()))


def test_different_urls_get_different_keys_and_same_url_same_key() -> None:
    a = partition_key(canonicalize("https://example.com/a?utm_medium=x"))
    assert a == partition_key(canonicalize("https://EXAMPLE.com/a"))
    assert a != partition_key(canonicalize("https://example.com/b"))


def test_the_url_travels_in_the_config_and_the_tags() -> None:
    url = canonicalize("https://Example.com/a?utm_source=x")
    assert url_from_run_config(run_config(url)) == "https://example.com/a"
    tags = run_tags(url, Source.WATCHLIST)
    assert tags == {Tag.PARTITION: partition_key(url), Tag.URL: "https://example.com/a",
                    Tag.DOMAIN: "example.com", Tag.SOURCE: "watchlist"}
    assert is_bulk(tags) and not is_bulk(run_tags(url, Source.API))


def test_a_config_without_a_url_reads_as_none() -> None:
    assert url_from_run_config({}) is None
    assert url_from_run_config({"ops": {"extract": {"config": {"url": 5}}}}) is None
    assert url_from_run_config(None) is None


def test_progress_is_clamped_and_read_back() -> None:
    assert read_progress(progress_metadata(140)) == 100
    assert read_progress(progress_metadata(-3)) == 0
    assert read_progress(progress_metadata(42)) == 42
    assert read_progress({}) is None
    assert read_progress({"librarian/progress": True}) is None


def test_a_result_survives_the_trip_through_materialization_metadata() -> None:
    result = JobResult(item_id="i", url="https://example.com/", title="T", tier="A",
                       quality_score=0.8, word_count=120, object_key="k", version=2,
                       changed=False)
    meta = {**result_metadata(result), "chunks": 3}
    assert result_from_metadata(meta, "https://other.example/") == result


def test_a_result_with_odd_metadata_keeps_what_it_can() -> None:
    got = result_from_metadata({"item_id": "i", "word_count": "many", "tier": "B"},
                               "https://example.com/")
    assert got.item_id == "i" and got.tier == "B" and got.word_count is None
    assert got.url == "https://example.com/"

"""The watchlist sensor, evaluated against the real Dagster instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dagster import SensorResult, SkipReason, build_sensor_context

from librarian.canonical_url import canonicalize
from librarian.runs import partition_key
from librarian_assets.sensors import build_watchlist_sensor


def _tick(sensor: Any, instance: Any, cursor: str | None) -> Any:
    return sensor(build_sensor_context(instance=instance, cursor=cursor))


def test_new_urls_become_partitions_and_runs_capped_per_tick(instance: Any,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "watchlist.txt"
    urls = [f"https://watch.example/{tmp_path.name}/{i}" for i in range(5)]
    path.write_text("# my list\n" + "\n".join(urls[:3]) + "\nnot a url\n\n" + urls[0] + "\n")
    sensor = build_watchlist_sensor(path, interval_seconds=10, max_runs_per_tick=2)

    first = _tick(sensor, instance, None)
    assert isinstance(first, SensorResult)
    assert [r.partition_key for r in first.run_requests] == [
        partition_key(canonicalize(u)) for u in urls[:2]]
    request = first.run_requests[0]
    assert request.run_config["ops"]["extract"]["config"]["url"] == canonicalize(urls[0]).url
    assert request.tags["librarian/url"] == canonicalize(urls[0]).url
    assert first.dynamic_partitions_requests[0].partition_keys == [
        partition_key(canonicalize(u)) for u in urls[:2]]
    assert len(first.cursor) < 100  # a high-water mark, not the list
    instance.add_dynamic_partitions("urls", first.dynamic_partitions_requests[0].partition_keys)

    second = _tick(sensor, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [partition_key(canonicalize(urls[2]))]
    instance.add_dynamic_partitions("urls", second.dynamic_partitions_requests[0].partition_keys)

    # The invalid line and the repeated URL produce nothing.
    third = _tick(sensor, instance, second.cursor)
    assert not third.run_requests

    with path.open("a") as fh:
        fh.write(urls[3] + "\n")
    fourth = _tick(sensor, instance, third.cursor)
    assert [r.partition_key for r in fourth.run_requests] == [partition_key(canonicalize(urls[3]))]


def test_a_rewritten_watchlist_is_rescanned_but_known_urls_are_skipped(
        instance: Any, tmp_path: Path) -> None:
    path = tmp_path / "watchlist.txt"
    known = f"https://rewrite.example/{tmp_path.name}/known"
    instance.add_dynamic_partitions("urls", [partition_key(canonicalize(known))])
    path.write_text(known + "\n")
    sensor = build_watchlist_sensor(path, interval_seconds=10, max_runs_per_tick=20)
    first = _tick(sensor, instance, None)
    assert not first.run_requests
    fresh = f"https://rewrite.example/{tmp_path.name}/fresh"
    path.write_text(fresh + "\n" + known + "\n")  # rewritten, not appended
    second = _tick(sensor, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [partition_key(canonicalize(fresh))]
    assert json.loads(second.cursor)["n"] == 2


def test_missing_watchlist_skips(instance: Any, tmp_path: Path) -> None:
    result = _tick(build_watchlist_sensor(tmp_path / "none.txt", interval_seconds=10,
                                  max_runs_per_tick=20), instance, None)
    assert isinstance(result, SkipReason)

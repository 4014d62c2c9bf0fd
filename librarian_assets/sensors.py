"""The watchlist sensor: one run per new URL in a text file (one URL per line, ``#`` comments).

The cursor stays small: the number of lines already consumed and a hash of that prefix. Appended
lines are picked up in order, at most ``max_runs_per_tick`` per tick so a long list cannot flood
the run queue; a rewritten file (prefix hash changed) is rescanned from the top, and URLs whose
partition already exists are skipped, so nothing is ingested twice by the sensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from librarian.canonical_url import canonicalize
from librarian.errors import InvalidURL
from librarian.runs import PARTITIONS_NAME, Source, partition_key, run_config, run_tags
from librarian_assets.job import ingest_url
from librarian_assets.partitions import urls_partitions


def _prefix_hash(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def build_watchlist_sensor(path: Path, *, interval_seconds: int,
                           max_runs_per_tick: int) -> SensorDefinition:
    @sensor(name="watchlist_sensor", job=ingest_url, minimum_interval_seconds=interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Ingests new URLs appended to {path}.")
    def watchlist_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return SkipReason(f"no watchlist at {path}")
        state: dict[str, Any] = (json.loads(context.cursor) if context.cursor
                                 else {"n": 0, "h": _prefix_hash([])})
        consumed = int(state["n"])
        if consumed > len(lines) or _prefix_hash(lines[:consumed]) != state["h"]:
            context.log.info("watchlist was rewritten; rescanning it from the top")
            consumed = 0
        requests: list[RunRequest] = []
        new_keys: list[str] = []
        position = consumed
        for position in range(consumed, len(lines) + 1):
            if position == len(lines) or len(requests) >= max_runs_per_tick:
                break
            line = lines[position].strip()
            if not line or line.startswith("#"):
                continue
            try:
                canonical = canonicalize(line)
            except InvalidURL as exc:
                context.log.warning(f"watchlist line {position + 1}: {exc.message}")
                continue
            key = partition_key(canonical)
            if key in new_keys or context.instance.has_dynamic_partition(PARTITIONS_NAME, key):
                continue
            new_keys.append(key)
            requests.append(RunRequest(
                run_key=f"watchlist:{key}:{position}", partition_key=key,
                run_config=run_config(canonical), tags=run_tags(canonical, Source.WATCHLIST)))
        cursor = json.dumps({"n": position, "h": _prefix_hash(lines[:position])})
        if not requests:
            return SensorResult(skip_reason=SkipReason("no new URLs"), cursor=cursor)
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[urls_partitions.build_add_request(new_keys)],
            cursor=cursor,
        )

    return watchlist_sensor

"""The run contract: how a URL becomes a run of ``ingest_url``, and how a run is read back.

Everyone who starts, tags or reads a run uses these names and functions, so none of them spells
the contract itself: the API's submitter (Dagster GraphQL), the sensors, the ops, the event
mirror and its translator. Nothing here imports Dagster.

- One run per canonical URL partition (:func:`partition_key`: the host plus a hash, because
  Dagster's UI forbids some characters in keys and PostgreSQL's btree indexes on run tags fail
  past ~2.6 KB of tag value).
- The URL travels in the first op's config (:func:`run_config`) and in a tag.
- Ops report progress as metadata on a Dagster event (:func:`progress_metadata`), and the
  ``load`` op's materialization carries the job's result (:func:`result_metadata`).
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from librarian.canonical_url import CanonicalURL
from librarian.jobs.events import JobResult

JOB_NAME = "ingest_url"
PARTITIONS_NAME = "urls"
ASSET_NAME = "library_item"
URL_OP = "extract"  # the op whose config holds the URL


class Tag(StrEnum):
    URL = "librarian/url"
    DOMAIN = "librarian/domain"
    SOURCE = "librarian/source"
    # The job a run belongs to, when Librarian issued the job id before submitting the run (the
    # API does: it answers with the id at once and submits in the background). Re-executions
    # inherit it; runs without it (sensor runs) are their own job, under their root run's id.
    JOB = "librarian/job"
    # Set by the warm run pool on the runs it executes.
    WORKER = "librarian/worker"
    LAUNCHER = "librarian/launcher"
    # Dagster's own.
    PARTITION = "dagster/partition"
    ROOT_RUN = "dagster/root_run_id"
    RETRY_NUMBER = "dagster/retry_number"
    WILL_RETRY = "dagster/will_retry"


class Source(StrEnum):
    """Who asked for a run (a tag, so the Dagster UI can filter by it)."""

    API = "api"
    BATCH = "batch"
    WATCHLIST = "watchlist"
    REFRESH = "refresh"
    REEMBED = "reembed"


# Runs submitted in bulk share the cores with other runs: one embedding thread each spends the
# least CPU per chunk. A single URL someone is waiting for gets every core.
BULK_SOURCES = frozenset({Source.BATCH, Source.WATCHLIST})

_KEY_UNSAFE = re.compile(r"[^a-z0-9.-]")


def partition_key(url: CanonicalURL) -> str:
    digest = hashlib.sha256(url.url.encode()).hexdigest()[:16]
    readable = _KEY_UNSAFE.sub("-", url.host.lower())[:60].strip(".-") or "host"
    return f"{readable}-{digest}"


def run_config(url: CanonicalURL) -> dict[str, Any]:
    return {"ops": {URL_OP: {"config": {"url": url.url}}}}


def url_from_run_config(config: Any) -> str | None:
    try:
        url = config["ops"][URL_OP]["config"]["url"]
    except (KeyError, TypeError):
        return None
    return url if isinstance(url, str) else None


def run_tags(url: CanonicalURL, source: Source, job_id: str | None = None) -> dict[str, str]:
    tags: dict[str, str] = {Tag.PARTITION: partition_key(url), Tag.URL: url.url,
                            Tag.DOMAIN: url.host, Tag.SOURCE: source.value}
    if job_id is not None:
        tags[Tag.JOB] = job_id
    return tags


def job_id_of_run(run_id: str, tags: dict[str, str]) -> str:
    """The job a run belongs to: the id Librarian issued, else the root run's id."""
    return tags.get(Tag.JOB) or tags.get(Tag.ROOT_RUN) or run_id


def is_bulk(tags: dict[str, str]) -> bool:
    return tags.get(Tag.SOURCE) in BULK_SOURCES


# -- what ops report, read back by the translator ------------------------------------------------

_PROGRESS = "librarian/progress"


def progress_metadata(percent: int) -> dict[str, int]:
    """Metadata of a progress event: the stage's percent (the stage is the event's step)."""
    return {_PROGRESS: max(0, min(100, int(percent)))}


def read_progress(metadata: dict[str, Any]) -> int | None:
    value = metadata.get(_PROGRESS)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def result_metadata(result: JobResult) -> dict[str, Any]:
    """The job's result as materialization metadata (the Dagster UI shows it too)."""
    return result.model_dump(exclude_none=True)


def result_from_metadata(meta: dict[str, Any], url: str) -> JobResult:
    """The job's result from materialization metadata; a field of the wrong type is left out
    rather than losing the whole result."""
    fields = {name: meta[name] for name in JobResult.model_fields if meta.get(name) is not None}
    fields["url"] = str(fields.get("url") or url)
    fields["item_id"] = str(fields.get("item_id") or "")
    while True:
        try:
            return JobResult.model_validate(fields, strict=True)
        except ValidationError as exc:
            bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            if not bad - {"url", "item_id"}:
                raise
            for name in bad:
                fields.pop(name, None)

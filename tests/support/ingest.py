"""One ``ingest_url`` run in process, on a real instance, as the daemon would launch it."""

from __future__ import annotations

from typing import Any

from librarian.canonical_url import canonicalize
from librarian.runs import JOB_NAME, PARTITIONS_NAME, Source, partition_key, run_config, run_tags
from librarian.settings import Settings
from librarian_assets.definitions import build_definitions
from tests.support.environment import settings_environment


def ingest_in_process(instance: Any, settings: Settings, url: str) -> Any:
    """Run the job for ``url`` as submitted (the config keeps the spelling given), with
    ``settings`` as the environment its resources read, as a run worker's read theirs."""
    canonical = canonicalize(url)
    instance.add_dynamic_partitions(PARTITIONS_NAME, [partition_key(canonical)])
    job = build_definitions(settings).get_job_def(JOB_NAME)
    config = run_config(canonical)
    config["ops"]["extract"]["config"]["url"] = url
    with settings_environment(settings):
        return job.execute_in_process(
            instance=instance, partition_key=partition_key(canonical), raise_on_error=False,
            run_config=config, tags=run_tags(canonical, Source.API))

"""``ingest_url``: one run per URL partition, all ops in one process."""

from dagster import in_process_executor, job

from librarian.runs import JOB_NAME
from librarian_assets.ops import extract, load, transform
from librarian_assets.partitions import urls_partitions


# The multiprocess executor would spawn a process per op (+9–14 s per run measured here).
@job(name=JOB_NAME, partitions_def=urls_partitions, executor_def=in_process_executor,
     description="Fetch, enrich and store one URL.")
def ingest_url() -> None:
    load(transform(extract()))

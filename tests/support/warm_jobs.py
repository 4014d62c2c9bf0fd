"""A small code location for the warm run pool's tests: jobs that finish, sleep or fail."""


import sys
import time

from dagster import Config, OpExecutionContext, in_process_executor, job, op


class SleepConfig(Config):
    seconds: float = 0.0
    fail: bool = False


@op
def nap(context: OpExecutionContext, config: SleepConfig) -> int:
    # Printed, not logged: the compute-log manager must capture the worker's own stdout.
    print(f"warm-pool-test stdout pid={__import__('os').getpid()}", flush=True)
    print("warm-pool-test stderr", file=sys.stderr, flush=True)
    context.log.info("napping")
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    if config.fail:
        raise RuntimeError("asked to fail")
    return 1


@job(executor_def=in_process_executor)
def nap_job() -> None:
    nap()

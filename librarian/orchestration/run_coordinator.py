"""Dagster's ``QueuedRunCoordinator`` with a dequeue interval below one second.

A queued run waits on average half the daemon's dequeue interval before it is launched. Dagster
takes the interval in whole seconds (1 s → ~0.5 s of a single run's wait); the daemon itself
accepts any number but sleeps in 0.5 s steps, so this subclass adds ``dequeue_interval_ms`` and
500 is the useful minimum. Each dequeue pass is a few indexed queries. Everything else —
concurrency limits, tag limits, threads — is Dagster's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, IntSource
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._serdes import ConfigurableClassData


class FastQueuedRunCoordinator(QueuedRunCoordinator):
    def __init__(self, dequeue_interval_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._interval_ms = dequeue_interval_ms

    @property
    def dequeue_interval_seconds(self) -> int:
        if self._interval_ms is None:
            return super().dequeue_interval_seconds
        # The daemon takes any number; the annotation is Dagster's.
        return self._interval_ms / 1000  # type: ignore[return-value]

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        stock = super().config_type()
        assert isinstance(stock, dict)  # Dagster declares it as a dict of fields
        return {**stock, "dequeue_interval_ms": Field(
            IntSource, is_required=False,
            description="Dequeue interval in milliseconds (overrides dequeue_interval_seconds).")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData,
                          config_value: Mapping[str, Any]) -> FastQueuedRunCoordinator:
        parent = super().from_config_value(inst_data, {
            k: v for k, v in config_value.items() if k != "dequeue_interval_ms"})
        parent._interval_ms = config_value.get("dequeue_interval_ms")
        return parent  # type: ignore[return-value]

"""Progress from inside an op: an engine event whose metadata carries the stage's percent.

Why an engine event: events given to ``context.log_event`` are held until the op returns or
yields, so a fetch would report its progress only once it is over; a log line is written at
once but carries text only. An engine event is written to the event log at once, reads well in
the Dagster UI's run log (its message, with the percent as metadata), and the mirror takes the
percent from its metadata (:func:`librarian.runs.read_progress`) instead of parsing text.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dagster._core.events import EngineEventData

from librarian.runs import progress_metadata

if TYPE_CHECKING:
    from dagster import OpExecutionContext

log = logging.getLogger(__name__)


def report_progress(context: OpExecutionContext, stage: str, percent: int, message: str) -> None:
    """Record that ``stage`` (the op's step) is ``percent`` done, with a line for people.

    Progress is for watching: a failed write (the event log's database blinking) is logged
    and the work goes on, as Dagster does for its own log lines."""
    try:
        context.instance.report_engine_event(
            message, dagster_run=context.run, step_key=stage,
            engine_event_data=EngineEventData(metadata=progress_metadata(percent)))
    except Exception as exc:
        log.warning("progress of %s not recorded (%s: %s)", stage, type(exc).__name__, exc)

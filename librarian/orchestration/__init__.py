"""Dagster infrastructure: the event mirror and its translation, the warm run pool and launcher,
the run coordinator, the progress events ops write. The only room that may import Dagster's
internals (``dagster._…``); it is imported by Dagster processes, never by the API."""

"""The mirror's read loop: strict id order, waiting out gaps, never losing a batch."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from librarian.jobs.store import MirrorWrite
from librarian.orchestration.mirror import EventMirror


class Log:
    """An event log whose entries become visible when a test says so (like commits)."""

    def __init__(self) -> None:
        self.visible: dict[int, Any] = _Entries()

    def get_logs_for_all_runs_by_log_id(self, after_cursor: int, limit: int) -> dict[int, Any]:
        ids = sorted(i for i in self.visible if i > after_cursor)[:limit]
        return {i: self.visible[i] for i in ids}


class _Entries(dict[int, Any]):
    """Entries stand for event records: all the mirror reads of them here is a timestamp."""

    def __setitem__(self, key: int, value: Any) -> None:
        super().__setitem__(key, SimpleNamespace(name=value, timestamp=1000.0 + key))

    def update(self, other: Any = (), **kwargs: Any) -> None:
        for key, value in dict(other, **kwargs).items():
            self[key] = value


class Store:
    def __init__(self) -> None:
        self.cursor_value = 0
        self.applied: list[int] = []
        self.fail_next = False

    def cursor(self) -> int:
        return self.cursor_value

    def apply(self, writes: list[MirrorWrite], cursor: int,
              stats: dict[str, float] | None = None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")
        self.applied.extend(w.storage_id for w in writes)
        self.cursor_value = cursor


def _mirror(log: Log, store: Store, gap_wait: float = 10.0) -> EventMirror:
    instance = SimpleNamespace(event_log_storage=log)
    mirror = EventMirror(instance, store, gap_wait=gap_wait)  # type: ignore[arg-type]
    # Translation is tested elsewhere: here every entry becomes one write.
    mirror._translate = lambda sid, entry: MirrorWrite(  # type: ignore[method-assign]
        job_id="j", storage_id=sid, partition_key=None, fields={}, events=[])
    return mirror


def test_events_behind_a_gap_wait_for_it_and_apply_in_order() -> None:
    log, store = Log(), Store()
    mirror = _mirror(log, store)
    log.visible.update({1: "a", 2: "b", 4: "d"})  # 3 not committed yet
    mirror.drain()
    assert store.applied == [1, 2] and store.cursor_value == 2
    log.visible[3] = "c"
    mirror.drain()
    assert store.applied == [1, 2, 3, 4] and store.cursor_value == 4


def test_a_gap_that_never_fills_is_skipped_after_the_wait() -> None:
    log, store = Log(), Store()
    mirror = _mirror(log, store, gap_wait=0.0)
    log.visible.update({1: "a", 3: "c"})
    mirror.drain()
    assert store.applied == [1, 3] and store.cursor_value == 3


def test_a_failed_write_loses_nothing() -> None:
    log, store = Log(), Store()
    mirror = _mirror(log, store)
    log.visible.update({1: "a", 2: "b"})
    store.fail_next = True
    with pytest.raises(ConnectionError):
        mirror.drain()
    assert mirror.cursor == 0
    mirror.drain()
    assert store.applied == [1, 2] and mirror.cursor == 2


def test_a_restarted_mirror_resumes_from_the_stored_cursor() -> None:
    log, store = Log(), Store()
    log.visible.update({i: str(i) for i in range(1, 6)})
    _mirror(log, store).drain()
    log.visible.update({6: "6", 7: "7"})
    restarted = _mirror(log, store)
    assert restarted.cursor == 5
    restarted.drain()
    assert store.applied == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("restored", [0, 2])
def test_a_redis_that_lost_writes_is_replayed_from_its_own_cursor(restored: int) -> None:
    # Redis killed and started from an older snapshot (or empty): what it holds is consistent
    # up to the cursor it holds, so the mirror replays from there instead of going on.
    log, store = Log(), Store()
    mirror = _mirror(log, store)
    log.visible.update({1: "a", 2: "b", 3: "c", 4: "d"})
    mirror.drain()
    assert store.cursor_value == 4
    store.cursor_value = restored
    store.applied.clear()
    mirror.drain()
    assert store.applied == list(range(restored + 1, 5)) and store.cursor_value == 4

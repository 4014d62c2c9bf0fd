"""The supervisor's restart policy: at once, then backoff, then give up loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from librarian.cli.supervisor import GaveUp, Supervisor, read_restarts


def test_a_dead_service_is_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    restarts: list[float] = []
    sup = Supervisor(tmp_path, budget=3, window=60, max_backoff=30)
    sup.watch("mirror", alive=lambda: False, restart=lambda: restarts.append(1))
    assert sup.check(now=100.0) == ["mirror"]  # at once
    assert sup.check(now=100.5) == []  # backing off 1 s
    assert sup.check(now=101.0) == ["mirror"]
    assert sup.check(now=102.5) == []  # backing off 2 s
    assert sup.check(now=103.0) == ["mirror"]
    assert read_restarts(tmp_path) == {"mirror": 3}
    with pytest.raises(GaveUp) as gave_up:
        sup.check(now=110.0)
    assert gave_up.value.name == "mirror" and "3 times" in gave_up.value.message
    assert len(restarts) == 3


def test_deaths_outside_the_window_do_not_count_and_live_services_are_left_alone(
        tmp_path: Path) -> None:
    alive = {"api": False}
    sup = Supervisor(tmp_path, budget=2, window=10, max_backoff=1)

    def fail() -> None:
        raise OSError("port taken")

    sup.watch("api", alive=lambda: alive["api"], restart=fail)
    sup.watch("daemon", alive=lambda: True, restart=fail)
    assert sup.check(now=0.0) == ["api"]  # a failed restart counts like a death
    assert sup.check(now=5.0) == ["api"]
    assert sup.check(now=20.0) == ["api"]  # the first two left the 10 s window
    alive["api"] = True
    assert sup.check(now=40.0) == []
    assert sup.restarts() == {"api": 3, "daemon": 0}

"""Stream slots: per-caller and per-process caps, and a slot given back however a stream ends."""

from __future__ import annotations

import contextlib

import pytest

from librarian_api.errors import ApiError, retry_headers
from librarian_api.stream_slots import StreamSlots


def test_a_caller_at_its_cap_is_refused_and_others_are_not() -> None:
    slots = StreamSlots(per_caller=2, total=10)
    with slots.hold("a"), slots.hold("a"), slots.hold("b"):
        with pytest.raises(ApiError) as refused, slots.hold("a"):
            pass
        assert refused.value.code == "too_many_streams" and refused.value.status == 429
        assert slots.open == 3 and slots.open_for("a") == 2
    assert slots.open == 0


def test_the_process_cap_counts_every_caller() -> None:
    slots = StreamSlots(per_caller=0, total=2)
    with slots.hold("a"), slots.hold("b"):
        with pytest.raises(ApiError) as refused, slots.hold("c"):
            pass
        assert refused.value.code == "streams_full" and refused.value.status == 503


def test_a_stream_that_fails_or_is_cancelled_gives_its_slot_back() -> None:
    slots = StreamSlots(per_caller=1, total=1)
    for error in (RuntimeError("client went away"), KeyboardInterrupt()):
        with contextlib.suppress(RuntimeError, KeyboardInterrupt), slots.hold("a"):
            raise error
        assert slots.open == 0
    with slots.hold("a"):  # free again
        pass


def test_refusals_say_when_to_come_back_in_whole_seconds() -> None:
    assert retry_headers(429, 0.2) == {"Retry-After": "1"}
    assert retry_headers(429, 12.01) == {"Retry-After": "13"}
    assert retry_headers(503) == {"Retry-After": "5"}
    assert retry_headers(404) == {}

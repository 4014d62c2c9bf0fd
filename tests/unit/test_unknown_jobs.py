"""Looking up job ids Redis does not hold: bounded and remembered, never a flood on Dagster."""

from __future__ import annotations

import asyncio

from librarian_api.state import UnknownJobs


def test_an_unknown_id_is_asked_once_then_remembered() -> None:
    calls: list[str] = []

    async def fetch() -> str | None:
        calls.append("x")
        return None

    async def run() -> None:
        lookups = UnknownJobs(ttl=60)
        assert await lookups.lookup("a", fetch) is None
        assert await lookups.lookup("a", fetch) is None
        assert calls == ["x"]

    asyncio.run(run())


def test_a_known_run_is_asked_every_time_and_forgets_an_old_miss() -> None:
    answers = iter([None, "SUCCESS", "SUCCESS"])

    async def fetch() -> str | None:
        return next(answers)

    async def run() -> None:
        lookups = UnknownJobs(ttl=0)  # misses expire at once
        assert await lookups.lookup("a", fetch) is None
        assert await lookups.lookup("a", fetch) == "SUCCESS"
        assert await lookups.lookup("a", fetch) == "SUCCESS"

    asyncio.run(run())


def test_lookups_run_at_most_slots_at_a_time_and_misses_are_bounded() -> None:
    running = 0
    peak = 0

    async def fetch() -> str | None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return None

    async def run() -> UnknownJobs:
        lookups = UnknownJobs(slots=2, size=50)
        await asyncio.gather(*(lookups.lookup(str(i), fetch) for i in range(200)))
        return lookups

    lookups = asyncio.run(run())
    assert peak == 2
    assert len(lookups._misses) == 50

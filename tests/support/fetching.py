"""Fetch limits for tests: Librarian's defaults (from ``Settings``), with a test's changes."""

from __future__ import annotations

import dataclasses
from typing import Any

from librarian.content.fetch import FetchLimits
from librarian.settings import Settings


def fetch_limits(**changes: Any) -> FetchLimits:
    # model_construct: the declared defaults, whatever LIBRARIAN_* variables the test run has.
    return dataclasses.replace(FetchLimits.from_settings(Settings.model_construct()), **changes)

"""Keeps the embedded stack up: whatever dies is started again, with backoff and a budget.

Each watched service says whether it is alive and how to start it again. A service that dies is
restarted at once the first time, then after 1, 2, 4… seconds (at most ``max_backoff``); one
that dies ``budget`` times within ``window`` seconds is given up on, loudly, and the caller
stops everything (a crash loop helps no one). Restarts are counted in a small JSON file that
the API's health endpoint reports, so an operator sees what restarted and how often.

Why not supervisord or circus: the processes are already started, readied and stopped as
process groups by :mod:`librarian.cli.stack` (which the tests drive too), the private
PostgreSQL is managed by ``pg_ctl`` rather than as a child, and ``make run`` must stay one
command with no daemon configuration to write; what was missing is this loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from librarian.errors import LocalServerError

log = logging.getLogger("librarian.supervisor")
STATE_FILE = "restarts.json"


class GaveUp(LocalServerError):
    """A service kept dying: the stack stops instead of looping."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass
class _Watched:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    recent: deque[float] = field(default_factory=deque)
    total: int = 0
    next_try: float = 0.0
    last_error: str | None = None


class Supervisor:
    def __init__(self, state_dir: Path, *, budget: int = 5, window: float = 60.0,
                 max_backoff: float = 30.0) -> None:
        self.state_path = state_dir / STATE_FILE
        self.budget = budget
        self.window = window
        self.max_backoff = max_backoff
        self._watched: dict[str, _Watched] = {}

    def watch(self, name: str, alive: Callable[[], bool], restart: Callable[[], None]) -> None:
        self._watched[name] = _Watched(name, alive, restart)
        self._save()

    def check(self, now: float | None = None) -> list[str]:
        """Restart what is dead and due; return the names restarted. Raises :class:`GaveUp`
        when a service used up its budget."""
        now = time.monotonic() if now is None else now
        restarted = []
        for w in self._watched.values():
            if now < w.next_try or w.alive():
                continue
            while w.recent and now - w.recent[0] > self.window:
                w.recent.popleft()
            if len(w.recent) >= self.budget:
                raise GaveUp(w.name, f"{w.name} died {len(w.recent)} times in {self.window:.0f} s"
                             f" (last error: {w.last_error or 'it exited'}); giving up")
            w.recent.append(now)
            w.total += 1
            w.next_try = now + min(self.max_backoff, 2.0 ** (len(w.recent) - 1))
            try:
                w.restart()
                w.last_error = None
                log.warning("%s died; restarted it (restart %s)", w.name, w.total)
            except Exception as exc:  # counted against the budget like a death
                w.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("%s died; restarting it failed: %s", w.name, w.last_error)
            restarted.append(w.name)
        if restarted:
            self._save()
        return restarted

    def restarts(self) -> dict[str, int]:
        return {name: w.total for name, w in self._watched.items()}

    def _save(self) -> None:
        body = {"restarts": self.restarts(), "written_at": time.time()}
        tmp = self.state_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(body))
            os.replace(tmp, self.state_path)


def read_restarts(state_dir: Path) -> dict[str, int] | None:
    """Restarts per process as the supervisor last wrote them; None without a supervisor."""
    try:
        body = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    restarts = body.get("restarts") if isinstance(body, dict) else None
    return {str(k): int(v) for k, v in restarts.items()} if isinstance(restarts, dict) else None

"""The whole stack as processes, started once for all end-to-end tests, with authentication on
as ``make run`` has it: the tests call the API with an admin token of the stack's catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from librarian.cli.local_servers import free_port
from librarian.cli.stack import Stack, StackPorts
from librarian.settings import Settings
from librarian.storage.tokens import ApiTokens, Scope
from tests.support.environment import settings_env


@pytest.fixture(scope="session")
def api_token(settings: Settings, databases: dict[str, str]) -> str:
    """An admin token in the stack's catalog (migrated by ``settings``), made as
    ``librarian token create --database`` makes one."""
    engine = sa.create_engine(databases["e2e_catalog"])
    try:
        _info, token = ApiTokens(engine).create("end-to-end tests", Scope.ADMIN)
    finally:
        engine.dispose()
    return token


def stack_prefix(settings: Settings) -> str:
    return f"{settings.redis_prefix}e2e:"


@pytest.fixture(scope="session")
def stack(settings: Settings, session_dir: Path, databases: dict[str, str]) -> Iterator[Stack]:
    data_dir = session_dir / "stack"
    env = settings_env(settings)
    env["LIBRARIAN_AUTH"] = "on"  # the test settings turn it off for in-process APIs
    env["LIBRARIAN_DATABASE_URL"] = databases["e2e_catalog"]
    # Keys of its own: the stack's API submits every job queued under its prefix, so it must
    # not take those that in-process test APIs accept (they stay without a Dagster on purpose).
    env["LIBRARIAN_REDIS_PREFIX"] = stack_prefix(settings)
    env["LIBRARIAN_WATCHLIST_PATH"] = str(data_dir / "watchlist.txt")
    s = Stack(data_dir, env=env, ports=StackPorts(api=free_port(), dagster=free_port(),
                                                  code_server=free_port()))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def api(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.ports.api}"



"""Settings as the ``LIBRARIAN_*`` environment a process reads, for children and in-process runs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

from librarian.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the ``LIBRARIAN_*`` environment a child process reads."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        env[f"LIBRARIAN_{name.upper()}"] = (json.dumps(value) if isinstance(value, (list, dict))
                                            else str(value))
    env["LIBRARIAN_S3_SECRET_KEY"] = settings.s3_secret_key.get_secret_value()
    if settings.qdrant_api_key is not None:
        env["LIBRARIAN_QDRANT_API_KEY"] = settings.qdrant_api_key.get_secret_value()
    return env


@contextlib.contextmanager
def settings_environment(settings: Settings) -> Iterator[None]:
    """This process's ``LIBRARIAN_*`` environment is ``settings`` until the block ends (the
    code location's resources read theirs there, as a run worker's do)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LIBRARIAN_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(settings_env(settings))
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("LIBRARIAN_")]:
            del os.environ[key]
        os.environ.update(saved)

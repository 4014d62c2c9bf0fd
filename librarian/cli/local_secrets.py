"""The generated passwords of the private PostgreSQL and Redis, in one file of mode 0600.

The private servers of ``librarian run`` listen on 127.0.0.1, where every local user can reach
them; their passwords keep them to Librarian's own processes. They are made on first start and
read again on every later one (the server keeps its own copy: PostgreSQL a SCRAM verifier, Redis
its ``requirepass``). Only the process that runs ``librarian run`` reads this file, as the user
who owns the data folder (root included: the PostgreSQL server user never needs it); the
processes it starts get their database URLs and Redis URL in their environment, which other
users cannot read.

The file is never readable by anyone else, not even for a moment: it is written to a new file
created with mode 0600 (``O_CREAT | O_EXCL``) and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path

from librarian.errors import LocalServerError

SECRETS_FILE = "secrets.json"
POSTGRES_ADMIN = "postgres_admin"  # the set-up superuser's
POSTGRES_APP = "postgres_app"  # the application role's, in every database URL
REDIS = "redis"  # Redis's requirepass, in the Redis URL


class LocalSecrets:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    def get(self, name: str) -> str:
        """The password called ``name``, made (and stored) the first time it is asked for."""
        values = self.read()
        if name not in values:
            # URL-safe characters only: the password goes into URLs and a config line as is.
            values[name] = secrets.token_urlsafe(32)
            self._write(values)
        return values[name]

    def read(self) -> dict[str, str]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise LocalServerError(f"cannot read {self.path}: {exc}") from exc
        with os.fdopen(fd, encoding="utf-8") as fh:
            # A file someone opened up is closed again; what it holds is still what the
            # servers know, so it stays.
            if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077:
                os.fchmod(fh.fileno(), 0o600)
            try:
                values = json.load(fh)
            except ValueError as exc:
                raise LocalServerError(f"{self.path} is not the JSON Librarian wrote") from exc
        if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise LocalServerError(f"{self.path} is not the JSON Librarian wrote")
        return values

    def _write(self, values: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a process of ours that died mid-write
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(values, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

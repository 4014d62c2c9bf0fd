"""The admin token of ``librarian run``, in ``<data dir>/admin.token`` (mode 0600), and which
token the ``librarian`` commands send.

On its first start with authentication on, ``librarian run`` makes an admin token, prints it
once and keeps it in this file, so ``make run`` stays one command and the CLI on the same
machine works without a step of its own. The file is never readable by anyone else, not even
for a moment: the token is written to a new file created with mode 0600 (``O_CREAT |
O_EXCL``), which is then linked into place, so a file that is there always holds a whole token,
and an existing one is never replaced (a token revoked on purpose does not come back by
itself: remove the file to get a new one on the next start).

The commands send ``LIBRARIAN_API_TOKEN`` if it is set, else this file's token, but the file's
only to an API on this machine (loopback): a ``--api`` elsewhere never gets the local admin
token by accident.
"""

from __future__ import annotations

import contextlib
import os
import stat
import urllib.parse
from pathlib import Path

from librarian.settings import Settings, is_loopback
from librarian.storage.tokens import ApiTokens, Scope, looks_like_token

ADMIN_TOKEN_FILE = "admin.token"
ADMIN_TOKEN_NAME = "admin (librarian run)"


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_TOKEN_FILE


def ensure_admin_token(path: Path, tokens: ApiTokens) -> tuple[str, str | None]:
    """``("created", token)`` on the first start (the token, to print once), ``("kept",
    None)`` when the file holds a valid token, ``("not valid", None)`` when it holds one the
    catalog does not accept (revoked, or a catalog made afresh)."""
    existing = read_admin_token(path)
    if existing is not None:
        return ("kept" if tokens.verify(existing) else "not valid"), None
    if path.exists():  # empty or not a token: not something to trust or keep
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a process of ours that died mid-write
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        info, token = tokens.create(ADMIN_TOKEN_NAME, Scope.ADMIN)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)  # fails if another start got there first: theirs stays
        except BaseException:
            tokens.revoke(info.id)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return "created", token


def read_admin_token(path: Path) -> str | None:
    """The token in the file, if it holds one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as fh:
        # A file someone opened up is closed again before its token is used.
        if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077:
            with contextlib.suppress(OSError):
                os.fchmod(fh.fileno(), 0o600)
        token = fh.read(200).strip()
    return token if looks_like_token(token) else None


def token_for(api_url: str) -> str | None:
    """The token the commands send to ``api_url``: ``LIBRARIAN_API_TOKEN``, else, for an API
    on loopback, the admin token of ``librarian run`` in the data folder."""
    token = os.environ.get("LIBRARIAN_API_TOKEN", "").strip()
    if token:
        return token
    try:
        host = urllib.parse.urlsplit(api_url).hostname or ""
    except ValueError:
        return None
    if not is_loopback(host):
        return None
    # Not Settings(): an unrelated bad variable must not break every command.
    data_dir = Path(os.environ.get("LIBRARIAN_DATA_DIR")
                    or Settings.model_fields["data_dir"].default)
    return read_admin_token(admin_token_path(data_dir))

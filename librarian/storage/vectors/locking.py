"""The exclusive file lock that lets one process at a time into an embedded store.

Both embedded engines (Qdrant Edge per collection, qdrant-client's local mode for the whole
folder) can be open in only one process, and run workers and the API are separate processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from librarian.errors import StorageError


@contextlib.contextmanager
def exclusive(lock_path: Path, timeout: float) -> Iterator[None]:
    """An exclusive flock on ``lock_path``, or StorageError after ``timeout`` seconds.

    Waiting is a blocking flock, not polling: a searcher that locks again right after
    unlocking would otherwise starve a polling writer. The blocking call runs in a helper
    thread so it can time out (flock belongs to the open file, not to the thread)."""
    handle = open(lock_path, "ab")  # noqa: SIM115 - closed below or by the helper
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if not _wait_for_flock(handle, timeout):
            raise StorageError(f"vector store busy: {lock_path} stayed locked for"
                               f" {timeout:.0f} s") from None
    except BaseException:
        handle.close()
        raise
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _wait_for_flock(handle: IO[bytes], timeout: float) -> bool:
    """Block in a helper thread until ``handle`` holds LOCK_EX; False after ``timeout`` (the
    helper then unlocks and closes the file whenever its flock returns)."""
    acquired = threading.Event()
    state: dict[str, Any] = {"abandoned": False, "error": None}
    guard = threading.Lock()

    def wait() -> None:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:
            state["error"] = exc
        with guard:
            if state["abandoned"]:
                handle.close()  # closing the file also drops a lock it got
                return
            acquired.set()

    threading.Thread(target=wait, name="vector-store-lock", daemon=True).start()
    acquired.wait(timeout)
    with guard:
        if not acquired.is_set():
            state["abandoned"] = True
            return False
    if state["error"] is not None:
        handle.close()
        raise StorageError(f"vector store lock failed: {state['error']}")
    return True

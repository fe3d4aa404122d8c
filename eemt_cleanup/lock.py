"""One run at a time: an exclusive ``flock`` on a file beside the database.

The kernel drops the lock when the holder dies, so it can never be left stale; the file's
content only says who holds it, for the message a second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from eemt_cleanup.errors import LockedError


def lock_path_for(database: Path) -> Path:
    """The lock file of a database: ``<database>.cleanup.lock`` in the same directory."""
    return database.with_name(database.name + ".cleanup.lock")


class RunLock:
    """Context manager holding the exclusive lock; raises LockedError when another run has it."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise LockedError(f"cannot open the lock file {self.path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(
                f"another eemt-cleanup run holds the lock {self.path}{holder}; not starting"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(self.holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict) or not data:
        return ""
    parts = [
        f"pid {data.get('pid')}",
        f"on {data.get('host')}",
        f"user {data.get('user')}",
        f"since {data.get('started_at')}",
        f"run {data.get('run_id')}",
    ]
    return " (" + ", ".join(parts) + ")"

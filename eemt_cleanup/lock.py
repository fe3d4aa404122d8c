"""One run at a time: an exclusive ``flock`` on the database file itself.

Keyed by the file's identity, not by a name: every path to the database (a hard link, a
bind mount, a symlink, the same file seen from a container) reaches the same inode and so
the same lock. No file of ours is created beside the database, which may sit in a
world-writable directory such as ``/tmp``: there is nothing there to plant a symlink at.
The kernel drops the lock when the holder dies, so it is never stale.

Who holds it is found without touching the lock (``/proc/locks`` names the holder's pid;
the run-log row the holder wrote at its start says the rest), so asking never races with
a run that is starting.

SQLite locks with POSIX record locks, which the kernel keeps apart from ``flock``; but
closing *any* descriptor of the database releases this process's POSIX locks, so the lock's
descriptor is closed only after every SQLite connection of the run (see the engine).
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from eemt_cleanup.errors import LockedError, LockPathError
from eemt_cleanup.fs.safe_open import UnsafeFileError, open_regular

PROC_LOCKS = Path("/proc/locks")

# The databases this process holds the run lock on, by (st_dev, st_ino). A second run in the
# same process (the daemon, the HTTP API) must be refused *before* it opens the file: closing
# any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included,
# so a refused attempt that opened and closed jobs.db would unlock the running run's
# transaction. Descriptors opened in the instant the file was swapped are parked until the
# holder lets go, never closed while it runs.
_HELD: dict[tuple[int, int], list[int]] = {}
_HELD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """The run holding the lock, as far as it can be told (every field may be unknown)."""

    pid: int | None
    run_id: str | None = None
    host: str | None = None
    user: str | None = None
    trigger: str | None = None
    started_at: str | None = None

    def describe(self) -> str:
        parts = [
            f"pid {self.pid}" if self.pid else None,
            f"on {self.host}" if self.host else None,
            f"user {self.user}" if self.user else None,
            f"trigger {self.trigger}" if self.trigger else None,
            f"since {self.started_at}" if self.started_at else None,
            f"run {self.run_id}" if self.run_id else None,
        ]
        known = [part for part in parts if part]
        return ", ".join(known) if known else "holder unknown"


class RunLock:
    """Context manager holding the exclusive lock on ``database``.

    Raises LockedError (exit 75) when another live run holds it, and LockPathError (exit 2,
    naming the path) when the database cannot be opened to lock it — missing, a directory,
    a FIFO, a symlink planted after the path was resolved, permission denied.
    """

    def __init__(self, database: Path) -> None:
        self.path = database
        self._fd: int | None = None
        self._identity = (0, 0)

    def __enter__(self) -> RunLock:
        with _HELD_LOCK:
            try:
                before = os.stat(self.path)
            except OSError:
                before = None
            if before is not None and (before.st_dev, before.st_ino) in _HELD:
                raise self._locked()
            try:
                fd = open_regular(self.path, os.O_RDONLY, single_link=False)
            except UnsafeFileError as error:
                raise LockPathError(f"cannot lock the database {error}") from None
            except OSError as error:
                raise LockPathError(
                    f"cannot open the database {self.path} to lock it: {error.strerror}"
                ) from None
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            if identity in _HELD:
                _HELD[identity].append(fd)  # parked: closing it would unlock the holder
                raise self._locked()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked() from None
            except OSError as error:
                os.close(fd)
                raise LockPathError(
                    f"cannot lock the database {self.path}: {error.strerror}"
                ) from None
            _HELD[identity] = []
            self._fd = fd
            self._identity = identity
        return self

    def _locked(self) -> LockedError:
        holder = find_holder(self.path)
        described = holder.describe() if holder else "holder unknown"
        return LockedError(
            f"another eemt-cleanup run holds the lock on {self.path} ({described}); not starting"
        )

    @property
    def identity(self) -> tuple[int, int]:
        """(st_dev, st_ino) of the locked database."""
        assert self._fd is not None
        info = os.fstat(self._fd)
        return info.st_dev, info.st_ino

    def replaced(self) -> bool:
        """Whether the path no longer names the file we locked (it was renamed over,
        deleted or swapped): our writes would then go to a file nobody reads."""
        try:
            info = os.stat(self.path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self.identity

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            with _HELD_LOCK:
                parked = _HELD.pop(self._identity, [])
                for fd in parked:
                    os.close(fd)
                os.close(self._fd)  # also releases the flock
                self._fd = None


def _locking_pids(device: int, inode: int, locks: Path = PROC_LOCKS) -> list[int]:
    """Pids holding a FLOCK on the inode, from ``/proc/locks`` (waiters are skipped)."""
    try:
        lines = locks.read_text().splitlines()
    except OSError:
        return []
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    pids = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        if fields[5] == wanted:
            try:
                pids.append(int(fields[4]))
            except ValueError:
                continue
    return pids


def find_holder(database: Path) -> Holder | None:
    """The run holding the lock on ``database``, or None when nobody holds it.

    Never takes the lock: a status query must not make a starting run fail with 75.
    """
    try:
        info = os.stat(database)
    except OSError:
        return None
    pids = _locking_pids(info.st_dev, info.st_ino)
    if not pids:
        return None
    pid = pids[0] or None
    return _from_run_log(database, pid) or Holder(pid)


def _from_run_log(database: Path, pid: int | None) -> Holder | None:
    """The holder's own run-log row (written when it started; best effort)."""
    from eemt_cleanup.store.audit import unfinished_runs
    from eemt_cleanup.store.db import connect

    try:
        conn = connect(database, readonly=True)
    except Exception:  # noqa: BLE001 - a description is best effort
        return None
    try:
        rows = unfinished_runs(conn)
    except Exception:  # noqa: BLE001
        return None
    finally:
        conn.close()
    host = socket.gethostname()
    for row in rows:
        if pid is None or (row.get("pid") == pid and row.get("host") == host):
            return Holder(
                pid=row.get("pid"),
                run_id=row.get("run_id"),
                host=row.get("host"),
                user=row.get("user"),
                trigger=row.get("trigger"),
                started_at=row.get("started_at"),
            )
    return None

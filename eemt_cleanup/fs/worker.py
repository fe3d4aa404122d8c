"""What a deletion worker process runs, and how it talks to the engine.

Deleting is syscall-bound, and CPython threads hand the GIL over at every ``unlinkat``, which
makes several threads *slower* than one; separate processes delete in parallel for real.
Workers are forked by :mod:`eemt_cleanup.fs.pool` before the engine starts any thread, so
they start in a millisecond and inherit the root descriptors the run resolved and opened.

Messages are length-prefixed JSON on pipes: a task is ``{"root": key, "path": [component,
...], "display": ..., "keep": [...]}`` and its answer the :class:`Tally` as a dict. Path
components are text as the database holds names (UTF-8, see :mod:`eemt_cleanup.fs.walk`).
A task path with several components is walked one ``O_NOFOLLOW`` level at a time from the
root under the walk's one rule (:func:`~eemt_cleanup.fs.walk.enter`: device, mount id,
mount list, protected inodes, still inside the root); the last component is removed by the
:class:`Remover`, which applies every rule of :mod:`eemt_cleanup.fs.remove`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import threading
from dataclasses import asdict
from typing import IO, Any

from eemt_cleanup.fs.remove import Remover, Tally
from eemt_cleanup.fs.walk import Level, NotEntered, enter, local_name

HEADER = struct.Struct("!I")
PR_SET_PDEATHSIG = 1


def write_message(stream: IO[bytes], payload: Any) -> None:
    """Send one length-prefixed JSON message (lone surrogates of odd file names survive)."""
    data = json.dumps(payload, ensure_ascii=True).encode("ascii")
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    """Read one message; None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    return json.loads(data)


class FlockLock:
    """A lock shared by processes: ``flock`` on this process's own description of a file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._threads = threading.Lock()

    def __enter__(self) -> FlockLock:
        self._threads.acquire()
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._threads.release()


def own_lock(shared_fd: int) -> FlockLock:
    """A new description of the shared lock file, so flock excludes the other processes."""
    return FlockLock(os.open(f"/proc/self/fd/{shared_fd}", os.O_RDWR | os.O_CLOEXEC))


def die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (a killed run leaves no
    worker deleting behind a rerun's back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class TaskRunner:
    """Runs tasks on the roots' descriptors with one Remover."""

    def __init__(self, remover: Remover, root_fds: dict[str, int]) -> None:
        self.remover = remover
        self.root_fds = root_fds

    def run(self, task: dict[str, Any]) -> Tally:
        display = task["display"]
        path: list[str] = task["path"]
        parent = Level.root(self.root_fds[task["root"]])
        opened: list[int] = []
        tally = Tally(display)
        try:
            for component in path[:-1]:
                level = self._descend(parent, component, display, tally)
                if level is None:
                    return tally
                opened.append(level.fd)
                parent = level
            remove = self.remover.remove_files if task.get("split") else self.remover.remove
            return remove(parent, path[-1], display, frozenset(task["keep"]))
        finally:
            for fd in opened:
                os.close(fd)

    def _descend(self, parent: Level, name: str, display: str, tally: Tally) -> Level | None:
        """Enter one intermediate level under the walk's one rule; None = stop."""
        try:
            return enter(
                parent, local_name(name), self.remover.mount_points, self.remover.protected
            )
        except NotEntered as refusal:
            if refusal.moved:
                tally.errors.append(f"{display}: {refusal.reason}")
                tally.stopped = True
            else:
                tally.errors.append(f"{display}: {name} is a mount point or protected: not entered")
        except OSError as error:
            if error.errno == errno.ENOENT:
                tally.existed = False
            else:
                tally.errors.append(f"{display}: cannot enter {name}: {error.strerror}")
        return None


def serve(tasks: IO[bytes], answers: IO[bytes], runner: TaskRunner) -> None:
    """Answer tasks until the parent closes the pipe; never dies with a task half-told."""
    while (task := read_message(tasks)) is not None:
        try:
            tally = runner.run(task)
        except Exception as error:  # noqa: BLE001 - report the task, keep serving
            tally = Tally(task.get("display", "?"), errors=[f"worker error: {error!r}"])
        write_message(answers, asdict(tally))

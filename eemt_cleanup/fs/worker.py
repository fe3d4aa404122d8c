"""What a deletion worker process runs, and how it talks to the engine.

Deleting is syscall-bound, and CPython threads hand the GIL over at every ``unlinkat``, which
makes several threads *slower* than one; separate processes delete in parallel for real.
Workers are spawned by :mod:`eemt_cleanup.fs.pool` (a fresh interpreter, which is safe from a
process that has threads, where a fork is not) and handed the root descriptors the run
resolved and opened; they import only this package's ``fs`` modules and the standard library.

Messages are length-prefixed JSON on pipes. The first is the worker's setup (root
descriptors, the links lock, dry run, protected inodes and mount points); then a task is
``{"root": key, "path": [component, ...], "display": ..., "keep": [...]}`` and its
answer the :class:`Tally` as a dict. Path
components are text as the database holds names (UTF-8, see :mod:`eemt_cleanup.fs.walk`).
A task path with several components is walked one ``O_NOFOLLOW`` level at a time from the
root under the walk's one rule (:func:`~eemt_cleanup.fs.walk.enter`: device, mount id,
mount list, protected inodes, still inside the root); the last component is removed by the
:class:`Remover`, which applies every rule of :mod:`eemt_cleanup.fs.remove`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
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


def main(task_fd: int, answer_fd: int) -> None:
    """A spawned worker: read the setup, then serve tasks until the engine closes the pipe.

    Signals are the engine's to handle (it finishes the jobs in hand, then closes the pipe);
    the worker dies with the engine, and holds no descriptor but those it was handed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with os.fdopen(task_fd, "rb") as tasks, os.fdopen(answer_fd, "wb") as answers:
        setup = read_message(tasks)
        if setup is None:
            return
        die_with_parent(int(setup["parent"]))
        raise_fd_limit()
        remover = Remover(
            dry_run=bool(setup["dry_run"]),
            protected={(int(dev), int(ino)) for dev, ino in setup["protected"]},
            mount_points={(int(dev), int(ino)) for dev, ino in setup["mount_points"]},
            links_lock=own_lock(int(setup["lock_fd"])),
        )
        remover.defer_links = True
        runner = TaskRunner(remover, {str(k): int(fd) for k, fd in setup["roots"].items()})
        serve(tasks, answers, runner)


def raise_fd_limit() -> None:
    """One descriptor is held per directory level being walked: deep trees need many. Raised
    in the worker processes (and by the CLI for its own), never in a host's process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))

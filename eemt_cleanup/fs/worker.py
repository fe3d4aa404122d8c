"""A deletion worker process: ``python -P -m eemt_cleanup.fs.worker``.

Deleting is syscall-bound, and CPython threads hand the GIL over at every ``unlinkat``, which
makes several threads *slower* than one; separate processes delete in parallel for real.
The parent (:mod:`eemt_cleanup.fs.pool`) sends length-prefixed JSON messages on stdin:

- first an init message: the roots (path and the (st_dev, st_ino) the parent opened), dry
  run, protected inodes, mount points, and the descriptor of a shared lock file;
- then tasks ``{"root": key, "path": [component, ...], "display": ..., "keep": [...]}``;
  each answered with the :class:`~eemt_cleanup.fs.remove.Tally` as JSON on stdout.

The worker applies every rule of :mod:`eemt_cleanup.fs.remove` itself, on its own
descriptors: it opens each root again and refuses to work if it is not the very directory
the parent resolved, and walks a multi-component task path one ``O_NOFOLLOW`` level at a
time, never entering a symlink, another device or a mount point. It ignores SIGINT and
SIGTERM (the parent decides when to stop), and dies with its parent.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import signal
import struct
import sys
import threading
from dataclasses import asdict
from typing import IO, Any

from eemt_cleanup.fs.remove import DIRECTORY_FLAGS, Remover, Tally, mount_id

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


def open_shared_lock(fd: int) -> FlockLock:
    """Open a new description of the inherited lock file, so flock excludes other workers."""
    return FlockLock(os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC))


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


class Worker:
    """Holds the roots and the Remover of one worker process."""

    def __init__(self, init: dict[str, Any]) -> None:
        self.root_fds: dict[str, int] = {}
        self.root_error: str | None = None
        for key, (path, device, inode) in init["roots"].items():
            self._open_root(key, path, (device, inode))
        self.remover = Remover(
            dry_run=init["dry_run"],
            protected={(device, inode) for device, inode in init["protected"]},
            mount_points={(device, inode) for device, inode in init["mount_points"]},
            links_lock=open_shared_lock(init["lock_fd"]),
        )

    def _open_root(self, key: str, path: str, identity: tuple[int, int]) -> None:
        try:
            fd = os.open(path, DIRECTORY_FLAGS)
        except OSError as error:
            self.root_error = f"cannot open root {path}: {error.strerror}"
            return
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != identity:
            os.close(fd)
            self.root_error = f"root {path} changed since the run started; refusing to work"
            return
        self.root_fds[key] = fd

    def run_task(self, task: dict[str, Any]) -> Tally:
        display = task["display"]
        if self.root_error is not None:
            return Tally(display, errors=[f"{display}: {self.root_error}"])
        path: list[str] = task["path"]
        parent_fd = self.root_fds[task["root"]]
        opened: list[int] = []
        tally = Tally(display)
        try:
            for component in path[:-1]:
                fd = self._descend(parent_fd, component, display, tally)
                if fd is None:
                    return tally
                opened.append(fd)
                parent_fd = fd
            return self.remover.remove(parent_fd, path[-1], display, frozenset(task["keep"]))
        finally:
            for fd in opened:
                os.close(fd)

    def _descend(self, parent_fd: int, name: str, display: str, tally: Tally) -> int | None:
        """Open one intermediate level, with every check a walk would make; None = stop."""
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
        except OSError as error:
            if error.errno == errno.ENOENT:
                tally.existed = False
            else:
                tally.errors.append(f"{display}: cannot enter {name}: {error.strerror}")
            return None
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        mount, parent_mount = mount_id(fd), mount_id(parent_fd)
        if (
            info.st_dev != os.fstat(parent_fd).st_dev
            or key in self.remover.mount_points
            or key in self.remover.protected
            or (mount is not None and parent_mount is not None and mount != parent_mount)
        ):
            os.close(fd)
            tally.errors.append(f"{display}: {name} is a mount point or protected: not entered")
            return None
        return fd


def main() -> int:
    """Serve tasks until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    init = read_message(stdin)
    if init is None:
        return 0
    worker = Worker(init)
    while (task := read_message(stdin)) is not None:
        try:
            tally = worker.run_task(task)
        except Exception as error:  # noqa: BLE001 - report, never die with a task half-told
            tally = Tally(task.get("display", "?"), errors=[f"worker error: {error!r}"])
        write_message(stdout, asdict(tally))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Spread deletion over worker processes, down to per-directory tasks.

:class:`LocalDeleter` removes in the calling thread (one worker, or files).
:class:`ProcessDeleter` sends directory trees to ``workers`` processes
(:mod:`eemt_cleanup.fs.worker`); a large job is split into one task per subdirectory
(descending through lone subdirectories such as ``outputs/``), so one huge job keeps every
worker busy too, and the job's own directory is finished by a last task once they are done.
Both answer with :class:`~eemt_cleanup.fs.remove.Tally` and follow the same safety rules.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from eemt_cleanup.fs.remove import DIRECTORY_FLAGS, Inode, Remover, Tally
from eemt_cleanup.fs.worker import FlockLock, read_message, write_message

SPLIT_DEPTH = 3
# A flat directory with at most this many entries is removed in the calling thread.
SMALL_TREE = 64
_STOP = None


class Deleter(Protocol):
    def remove(self, root: str, name: str, display: str, keep: frozenset[str]) -> Tally: ...

    def close(self) -> None: ...


class LocalDeleter:
    """Removal in the calling thread, on the engine's root descriptors."""

    def __init__(self, root_fds: dict[str, int], remover: Remover) -> None:
        self.root_fds = root_fds
        self.remover = remover

    def remove(self, root: str, name: str, display: str, keep: frozenset[str]) -> Tally:
        return self.remover.remove(self.root_fds[root], name, display, keep)

    def close(self) -> None:
        return None


class _WorkerProcess:
    """One worker subprocess and the thread that feeds it tasks from the shared queue."""

    def __init__(self, init: dict[str, Any], lock_fd: int, tasks: queue.Queue[Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "eemt_cleanup.fs.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(lock_fd,),
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        write_message(self.stdin, init)
        self.tasks = tasks
        self.thread = threading.Thread(target=self._serve, name="eemt-delete-feed", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (item := self.tasks.get()) is not _STOP:
            task, future = item
            try:
                write_message(self.stdin, task)
                answer = read_message(self.stdout)
            except (OSError, ValueError) as error:
                answer, reason = None, str(error)
            else:
                reason = "the deletion worker stopped"
            if answer is None:
                future.set_result(Tally(task["display"], errors=[f"{task['display']}: {reason}"]))
                self._drain_after_death()
                return
            future.set_result(Tally(**answer))

    def _drain_after_death(self) -> None:
        # This worker is gone: answer the tasks it would have taken, so no job waits forever.
        while (item := self.tasks.get()) is not _STOP:
            task, future = item
            future.set_result(
                Tally(task["display"], errors=[f"{task['display']}: the deletion worker stopped"])
            )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        self.thread.join()
        self.process.wait()


class ProcessDeleter:
    """Directory removal in worker processes; files in the calling thread."""

    def __init__(
        self,
        roots: dict[str, Path],
        root_fds: dict[str, int],
        remover: Remover,
        workers: int,
    ) -> None:
        self.root_fds = root_fds
        self.remover = remover
        self.workers = workers
        # A lock file without a name: each process flocks its own description of it, which
        # makes "unlink a hard link, then count links left" atomic across processes.
        self.lock_fd = os.memfd_create("eemt-cleanup-links", os.MFD_CLOEXEC)
        remover.links_lock = FlockLock(os.open(f"/proc/self/fd/{self.lock_fd}", os.O_RDWR))
        identities = {key: os.fstat(fd) for key, fd in root_fds.items()}
        self.init = {
            "roots": {
                key: [str(roots[key]), info.st_dev, info.st_ino] for key, info in identities.items()
            },
            "dry_run": remover.dry_run,
            "protected": sorted(remover.protected),
            "mount_points": sorted(remover.mount_points),
            "lock_fd": self.lock_fd,
        }
        self.tasks: queue.Queue[Any] = queue.Queue()
        self._processes: list[_WorkerProcess] = []
        self._start_lock = threading.Lock()

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._processes:
                self._processes = [
                    _WorkerProcess(self.init, self.lock_fd, self.tasks) for _ in range(self.workers)
                ]

    def _submit(
        self, root: str, path: list[str], display: str, keep: frozenset[str]
    ) -> Future[Tally]:
        self._ensure_started()
        future: Future[Tally] = Future()
        task = {"root": root, "path": path, "display": display, "keep": sorted(keep)}
        self.tasks.put((task, future))
        return future

    def remove(self, root: str, name: str, display: str, keep: frozenset[str]) -> Tally:
        """Remove ``name`` in ``root``: a directory in the workers, anything else here."""
        try:
            info = os.stat(name, dir_fd=self.root_fds[root], follow_symlinks=False)
        except OSError:
            return self.remover.remove(self.root_fds[root], name, display, keep)
        if not stat.S_ISDIR(info.st_mode):
            return self.remover.remove(self.root_fds[root], name, display, keep)
        subtasks = self._split(root, name)
        if subtasks is None:
            return self.remover.remove(self.root_fds[root], name, display, keep)
        parts = [
            self._submit(root, [name, *path], display + "/".join(path) + "/", frozenset())
            for path in subtasks
        ]
        tally = Tally(display, existed=False)
        for part in parts:
            _merge(tally, part.result())
        _merge(tally, self._submit(root, [name], display, keep).result())
        return tally

    def _split(self, root: str, name: str) -> list[list[str]] | None:
        """Subdirectory paths worth a task each; [] to send the tree whole; None when the
        tree is so small (no subdirectory, few entries) that a round trip to a worker would
        cost more than removing it here.

        Listing only reads names and d_type; every check that matters is made again by the
        process that opens the path, one level at a time.
        """
        path: list[str] = []
        for level in range(SPLIT_DEPTH):
            subdirs, entries = self._subdirectories(root, [name, *path])
            if level == 0 and not subdirs and entries <= SMALL_TREE:
                return None
            if len(subdirs) >= 2:
                return [[*path, sub] for sub in subdirs]
            if len(subdirs) != 1:
                return []
            path.append(subdirs[0])
        return []

    def _subdirectories(self, root: str, path: list[str]) -> tuple[list[str], int]:
        """(subdirectory names, number of entries) of a directory inside ``root``."""
        opened: list[int] = []
        try:
            parent = self.root_fds[root]
            for component in path:
                parent = os.open(component, DIRECTORY_FLAGS, dir_fd=parent)
                opened.append(parent)
            subdirs, count = [], 0
            with os.scandir(parent) as entries:
                for entry in entries:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
            return subdirs, count
        except OSError:
            return [], 0
        finally:
            for fd in opened:
                os.close(fd)

    def close(self) -> None:
        for _process in self._processes:
            self.tasks.put(_STOP)
        for process in self._processes:
            process.close()
        self._processes = []
        os.close(self.lock_fd)


def _merge(into: Tally, part: Tally) -> None:
    into.existed = into.existed or part.existed
    into.bytes_freed += part.bytes_freed
    into.files_deleted += part.files_deleted
    into.dirs_removed += part.dirs_removed
    into.kept.extend(part.kept)
    into.errors.extend(error for error in part.errors if error not in into.errors)


def make_deleter(
    roots: dict[str, Path],
    root_fds: dict[str, int],
    remover: Remover,
    workers: int,
) -> Deleter:
    """A process pool when there is more than one worker, else removal in-process."""
    if workers <= 1:
        return LocalDeleter(root_fds, remover)
    return ProcessDeleter(roots, root_fds, remover, workers)


__all__ = ["Deleter", "Inode", "LocalDeleter", "ProcessDeleter", "make_deleter"]

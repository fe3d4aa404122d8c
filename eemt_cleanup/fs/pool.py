"""Spread deletion over worker processes, down to per-directory tasks.

:class:`LocalDeleter` removes in the calling thread (one worker, or files).
:class:`ProcessDeleter` sends directory trees to ``workers`` forked processes
(:mod:`eemt_cleanup.fs.worker`); a large job is split into one task per subdirectory
(descending through lone subdirectories such as ``outputs/``), so one huge job keeps every
worker busy too, and the job's own directory is finished by a last task once they are done.
Both answer with :class:`~eemt_cleanup.fs.remove.Tally` and follow the same safety rules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
from concurrent.futures import Future
from typing import IO, Any, Protocol

from eemt_cleanup.fs.remove import DIRECTORY_FLAGS, Inode, Remover, Tally
from eemt_cleanup.fs.worker import (
    FlockLock,
    TaskRunner,
    die_with_parent,
    own_lock,
    read_message,
    serve,
    write_message,
)

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


class _ForkedWorker:
    """One forked worker process and the thread that feeds it tasks from the shared queue."""

    def __init__(
        self, runner: TaskRunner, lock_fd: int, tasks: queue.Queue[Any], siblings: list[int]
    ) -> None:
        task_read, task_write = os.pipe()
        answer_read, answer_write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            try:
                for fd in (task_write, answer_read, *siblings):
                    os.close(fd)
                _child(parent, runner, lock_fd, task_read, answer_write)
            finally:
                os._exit(0)
        os.close(task_read)
        os.close(answer_write)
        siblings.extend((task_write, answer_read))
        self.pid = pid
        self.to_worker: IO[bytes] = os.fdopen(task_write, "wb")
        self.from_worker: IO[bytes] = os.fdopen(answer_read, "rb")
        self.tasks = tasks
        self.thread = threading.Thread(target=self._serve, name="eemt-delete-feed", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (item := self.tasks.get()) is not _STOP:
            task, future = item
            try:
                write_message(self.to_worker, task)
                answer = read_message(self.from_worker)
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
            self.to_worker.close()
        self.thread.join()
        self.from_worker.close()
        os.waitpid(self.pid, 0)


def _child(parent: int, runner: TaskRunner, lock_fd: int, task_fd: int, answer_fd: int) -> None:
    """The worker process: the parent decides when to stop, and the worker dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent)
    # Keep only what a worker needs. Above all the run lock must not stay open here: the
    # flock would outlive a killed run for as long as a worker does.
    _close_all_but({0, 1, 2, task_fd, answer_fd, lock_fd, *runner.root_fds.values()})
    runner.remover.links_lock = own_lock(lock_fd)
    with os.fdopen(task_fd, "rb") as tasks, os.fdopen(answer_fd, "wb") as answers:
        serve(tasks, answers, runner)


def _close_all_but(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


class ProcessDeleter:
    """Directory removal in worker processes; files in the calling thread.

    The workers are forked at construction, which the engine does before it starts any
    thread of its own; they inherit the open roots, so they act on exactly the directories
    the run resolved.
    """

    def __init__(self, root_fds: dict[str, int], remover: Remover, workers: int) -> None:
        self.root_fds = root_fds
        self.remover = remover
        # A lock file without a name: each process flocks its own description of it, which
        # makes "unlink a hard link, then count links left" atomic across processes.
        self.lock_fd = os.memfd_create("eemt-cleanup-links", os.MFD_CLOEXEC)
        self.tasks: queue.Queue[Any] = queue.Queue()
        runner = TaskRunner(remover, root_fds)
        parent_ends: list[int] = []
        self._processes = [
            _ForkedWorker(runner, self.lock_fd, self.tasks, parent_ends) for _ in range(workers)
        ]
        remover.links_lock = own_lock(self.lock_fd)

    def _submit(
        self,
        root: str,
        path: list[str],
        display: str,
        keep: frozenset[str],
        split: bool = False,
    ) -> Future[Tally]:
        future: Future[Tally] = Future()
        task = {
            "root": root,
            "path": path,
            "display": display,
            "keep": sorted(keep),
            "split": split,
        }
        self.tasks.put((task, future))
        return future

    def remove(self, root: str, name: str, display: str, keep: frozenset[str]) -> Tally:
        """Remove ``name`` in ``root``: a directory in the workers, anything else here."""
        if self._small(root, name):
            return self.remover.remove(self.root_fds[root], name, display, keep)
        if self.remover.dry_run:
            # Measuring leaves every file in place, so a split pass would count the top
            # level twice: a dry run measures each tree in one worker.
            return self._submit(root, [name], display, keep).result()
        tally = Tally(display, existed=False)
        self._remove_split(root, [name], display, keep, tally, depth=0)
        return tally

    def _remove_split(
        self,
        root: str,
        path: list[str],
        display: str,
        keep: frozenset[str],
        tally: Tally,
        depth: int,
    ) -> None:
        """One pass over the directory at ``path`` in a worker: its files go, and it is
        removed whole unless it has subdirectories, which then become tasks of their own
        (a lone subdirectory such as ``outputs/`` is split in turn), spreading one big job
        over every worker. A last task removes what is left of the directory itself."""
        first = self._submit(root, path, display, keep, split=True).result()
        subdirs = first.subdirs
        first.subdirs = []
        _merge(tally, first)
        if not subdirs:
            return
        if len(subdirs) == 1 and depth + 1 < SPLIT_DEPTH:
            sub = subdirs[0]
            self._remove_split(
                root, [*path, sub], f"{display}{sub}/", frozenset(), tally, depth + 1
            )
        else:
            parts = [
                self._submit(root, [*path, sub], f"{display}{sub}/", frozenset()) for sub in subdirs
            ]
            for part in parts:
                _merge(tally, part.result())
        _merge(tally, self._submit(root, path, display, keep).result())

    def _small(self, root: str, name: str) -> bool:
        """Whether ``name`` is not a directory, or one so small (at most SMALL_TREE entries,
        no subdirectory) that a round trip to a worker costs more than removing it here.
        Reads at most SMALL_TREE + 1 names: a big directory is never listed twice."""
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=self.root_fds[root])
        except OSError:
            return True  # not a directory (or gone, or refused): the Remover says what it is
        try:
            with os.scandir(fd) as entries:
                for count, entry in enumerate(entries):
                    if count >= SMALL_TREE or entry.is_dir(follow_symlinks=False):
                        return False
            return True
        except OSError:
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        for _process in self._processes:
            self.tasks.put(_STOP)
        for process in self._processes:
            process.close()
        self._processes = []
        os.close(self.lock_fd)


def _merge(into: Tally, part: Tally) -> None:
    """Add a task's tally to the job's (an error met by two tasks is listed once)."""
    into.existed = into.existed or part.existed
    into.bytes_freed += part.bytes_freed
    into.files_deleted += part.files_deleted
    into.dirs_removed += part.dirs_removed
    into.kept.extend(part.kept)
    into.errors.extend(error for error in part.errors if error not in into.errors)


def make_deleter(root_fds: dict[str, int], remover: Remover, workers: int) -> Deleter:
    """Forked workers when there is more than one, else removal in-process. Call it before
    starting any thread."""
    if workers <= 1:
        return LocalDeleter(root_fds, remover)
    try:
        return ProcessDeleter(root_fds, remover, workers)
    except OSError as error:  # e.g. EAGAIN: no process can be forked now
        logging.getLogger("eemt_cleanup").warning(
            "Cannot start %d deletion workers (%s); deleting in this process", workers, error
        )
        return LocalDeleter(root_fds, remover)


__all__ = ["Deleter", "FlockLock", "Inode", "LocalDeleter", "ProcessDeleter", "make_deleter"]

"""Spread deletion over worker processes, down to per-directory tasks.

:class:`LocalDeleter` removes in the calling thread (one worker, or files).
:class:`ProcessDeleter` sends directory trees to ``workers`` spawned processes
(:mod:`eemt_cleanup.fs.worker`); a large job is split into one task per subdirectory
(descending through lone subdirectories such as ``outputs/``), so one huge job keeps every
worker busy too, and the job's own directory is finished by a last task once they are done.
Both answer with :class:`~eemt_cleanup.fs.remove.Tally` and follow the same safety rules.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import stat
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import IO, Any, Protocol

from eemt_cleanup.fs.remove import Remover, Tally
from eemt_cleanup.fs.walk import Inode, os_name
from eemt_cleanup.fs.worker import FlockLock, TaskRunner, own_lock, read_message, write_message

# What a spawned worker runs. ``-P``: the working directory is not put on sys.path (a run
# from a directory the web service can write, such as the base directory, must not import
# a planted module as root); the package's directory is added at the end, if it is not
# there already, so it never shadows the standard library.
_BOOT = (
    "import sys\n"
    "if sys.argv[1] not in sys.path: sys.path.append(sys.argv[1])\n"
    "from eemt_cleanup.fs.worker import main; main(int(sys.argv[2]), int(sys.argv[3]))"
)


def _package_parent() -> str:
    import eemt_cleanup

    return os.path.dirname(os.path.dirname(os.path.abspath(eemt_cleanup.__file__)))


SPLIT_DEPTH = 3
# Tasks sent ahead to each worker (see _SpawnedWorker).
PIPELINE = 2
# A directory with no subdirectory whose size is at most this is removed in the calling
# thread: a round trip to a worker costs more. The size of a directory is what its entries
# take (20 bytes an entry on tmpfs, one 4 KiB block for about a hundred names on ext4).
SMALL_DIRECTORY_BYTES = 4096
_STOP = None


class Deleter(Protocol):
    def remove(
        self, root: str, name: str, display: str, keep: frozenset[str], *, file_only: bool = False
    ) -> Tally: ...

    def is_small(self, root: str, name: str) -> bool: ...

    def close(self) -> None: ...


class LocalDeleter:
    """Removal in the calling thread, on the engine's root descriptors."""

    def __init__(self, root_fds: dict[str, int], remover: Remover) -> None:
        self.root_fds = root_fds
        self.remover = remover

    def remove(
        self, root: str, name: str, display: str, keep: frozenset[str], *, file_only: bool = False
    ) -> Tally:
        return self.remover.remove(self.root_fds[root], name, display, keep, file_only=file_only)

    def is_small(self, root: str, name: str) -> bool:
        return True  # everything is removed here anyway

    def close(self) -> None:
        return None


class _SpawnedWorker:
    """One worker process, a thread that feeds it tasks from the shared queue and a
    thread that reads its answers.

    Up to PIPELINE tasks are sent ahead, so the worker finds its next task in its pipe the
    moment it finishes one, instead of idling until a thread of this process gets the GIL.
    Answers come back in the order the tasks were sent.
    """

    def __init__(
        self, setup: dict[str, Any], pass_fds: tuple[int, ...], tasks: queue.Queue[Any]
    ) -> None:
        task_read, task_write = os.pipe2(os.O_CLOEXEC)
        answer_read, answer_write = os.pipe2(os.O_CLOEXEC)
        try:
            # Spawned, not forked: exec'ing a fresh interpreter is safe in a process that has
            # threads (a forked child inherits their locks mid-use). The child gets exactly
            # the run's root descriptors, the links lock and its two pipes.
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-c",
                    _BOOT,
                    _package_parent(),
                    str(task_read),
                    str(answer_write),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(*pass_fds, task_read, answer_write),
                close_fds=True,
            )
        except BaseException:
            for fd in (task_read, task_write, answer_read, answer_write):
                os.close(fd)
            raise
        os.close(task_read)
        os.close(answer_write)
        self.pid = self.process.pid
        self.to_worker: IO[bytes] = os.fdopen(task_write, "wb")
        self.from_worker: IO[bytes] = os.fdopen(answer_read, "rb")
        self.tasks = tasks
        # The first message: what the worker's Remover needs (sent before any task).
        try:
            write_message(self.to_worker, {**setup, "parent": os.getpid()})
        except (OSError, ValueError):
            self.to_worker.close()
            self.from_worker.close()
            self.process.kill()
            self.process.wait()
            raise
        self._slots = threading.Semaphore(PIPELINE)
        self._state = threading.Lock()
        self._sent: collections.deque[tuple[dict[str, Any], Future[Tally]]] = collections.deque()
        self._dead = False
        self._threads = [
            threading.Thread(target=self._feed, name="eemt-delete-feed", daemon=True),
            threading.Thread(target=self._read, name="eemt-delete-read", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _feed(self) -> None:
        while True:
            self._slots.acquire()
            item = self.tasks.get()
            if item is _STOP:
                # End of work: the worker answers what it has, then sees end of input.
                with contextlib.suppress(OSError):
                    self.to_worker.close()
                return
            task, future = item
            with self._state:
                dead = self._dead
                if not dead:
                    self._sent.append((task, future))
            if dead:
                _fail(task, future, "the deletion worker stopped")
                self._drain_after_death()
                return
            try:
                write_message(self.to_worker, task)
            except (OSError, ValueError):
                # The worker is gone; the reader answers every task sent to it, this one too.
                self._drain_after_death()
                return

    def _read(self) -> None:
        while True:
            try:
                answer = read_message(self.from_worker)
                reason = "the deletion worker stopped"
            except (OSError, ValueError) as error:
                answer, reason = None, str(error)
            with self._state:
                if answer is None:
                    self._dead = True
                    lost = list(self._sent)
                    self._sent.clear()
                else:
                    _task, future = self._sent.popleft()
            if answer is None:
                for task, lost_future in lost:
                    _fail(task, lost_future, reason)
                    self._slots.release()
                self._slots.release()  # wake the feeder if it waits for a slot
                return
            future.set_result(Tally(**answer))
            self._slots.release()

    def _drain_after_death(self) -> None:
        # This worker is gone: answer the tasks it would have taken, so no job waits forever.
        while (item := self.tasks.get()) is not _STOP:
            task, future = item
            _fail(task, future, "the deletion worker stopped")

    def close(self) -> None:
        for thread in self._threads:
            thread.join()
        with contextlib.suppress(OSError):
            self.to_worker.close()
        self.from_worker.close()
        self.process.wait()


def _fail(task: dict[str, Any], future: Future[Tally], reason: str) -> None:
    future.set_result(Tally(task["display"], errors=[f"{task['display']}: {reason}"]))


class ProcessDeleter:
    """Directory removal in worker processes; files in the calling thread.

    The workers are spawned at construction (a fresh interpreter each, see
    :func:`eemt_cleanup.fs.worker.main`), which is safe from any thread; they are handed the
    open roots, so they act on exactly the directories the run resolved.
    """

    def __init__(self, root_fds: dict[str, int], remover: Remover, workers: int) -> None:
        self.root_fds = root_fds
        self.remover = remover
        # A lock file without a name: each process flocks its own description of it, which
        # makes "unlink a hard link, then count links left" atomic across processes.
        self.lock_fd = os.memfd_create("eemt-cleanup-links", os.MFD_CLOEXEC)
        self.tasks: queue.Queue[Any] = queue.Queue()
        setup = {
            "roots": root_fds,
            "lock_fd": self.lock_fd,
            "dry_run": remover.dry_run,
            "protected": sorted(remover.protected),
            "mount_points": sorted(remover.mount_points),
        }
        self._setup = setup
        self._pass_fds = (self.lock_fd, *root_fds.values())
        self._workers = workers
        self._processes: list[_SpawnedWorker] = []
        # Started on the first task: a run with no directory to hand over (nothing due,
        # only small jobs) spawns nothing.
        self._start_lock = threading.Lock()
        self._started = False
        self._closing = threading.Event()
        self._spawner: threading.Thread | None = None
        self._local: TaskRunner | None = None
        self._links_lock = own_lock(self.lock_fd)
        remover.links_lock = self._links_lock

    def _start(self) -> None:
        # Under the lock until the outcome is known: a thread that submits meanwhile waits
        # here, then finds either the workers or the in-process fallback (``_started`` is
        # set last, and ``_submit`` only skips this once it is).
        with self._start_lock:
            if self._started:
                return
            ready = threading.Event()
            failures: list[BaseException] = []

            def spawn() -> None:
                try:
                    for _ in range(self._workers):
                        worker = _SpawnedWorker(self._setup, self._pass_fds, self.tasks)
                        self._processes.append(worker)
                except (OSError, subprocess.SubprocessError) as error:  # e.g. EAGAIN
                    failures.append(error)
                finally:
                    ready.set()
                # A worker dies with the thread that started it (PR_SET_PDEATHSIG is per
                # thread): this one lives until the pool is closed, whichever thread of the
                # caller's (a short-lived pool thread, say) asked first.
                self._closing.wait()

            self._spawner = threading.Thread(target=spawn, name="eemt-delete-spawn", daemon=True)
            self._spawner.start()
            ready.wait()
            if failures:
                logging.getLogger("eemt_cleanup").warning(
                    "Cannot start %d deletion workers (%s); deleting in this process",
                    self._workers,
                    failures[0],
                )
                self._stop_processes()
                self._local = TaskRunner(self.remover, self.root_fds)
            self._started = True

    def _submit(
        self,
        root: str,
        path: list[str],
        display: str,
        keep: frozenset[str],
        split: bool = False,
    ) -> Future[Tally]:
        if not self._started:
            self._start()
        future: Future[Tally] = Future()
        task = {
            "root": root,
            "path": path,
            "display": display,
            "keep": sorted(keep),
            "split": split,
        }
        if self._local is not None:
            future.set_result(self._local.run(task))
            return future
        self.tasks.put((task, future))
        return future

    def remove(
        self, root: str, name: str, display: str, keep: frozenset[str], *, file_only: bool = False
    ) -> Tally:
        """Remove ``name`` in ``root``: a directory in the workers, anything else here (and
        a ``file_only`` target always here: the Remover refuses it unless it is a file)."""
        if file_only or self.is_small(root, name):
            return self.remover.remove(
                self.root_fds[root], name, display, keep, file_only=file_only
            )
        if self.remover.dry_run:
            # Measuring leaves every file in place, so a split pass would count the top
            # level twice: a dry run measures each tree in one worker. Hard links it met are
            # counted here, where every worker's links meet.
            tally = self._submit(root, [name], display, keep).result()
            self.remover.settle_links(tally)
            return tally
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
        over every worker. A last task removes what is left of the directory itself. A task
        that found a directory moved out of its root stops the job: no further task of it
        is sent (the ones already sent go on, each from the root by name)."""
        first = self._submit(root, path, display, keep, split=True).result()
        subdirs = first.subdirs
        first.subdirs = []
        _merge(tally, first)
        if not subdirs or tally.stopped:
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
        if tally.stopped:
            return
        _merge(tally, self._submit(root, path, display, keep).result())

    def is_small(self, root: str, name: str) -> bool:
        """Whether ``name`` is not a directory, or one so small (no subdirectory, at most
        SMALL_DIRECTORY_BYTES) that a round trip to a worker costs more than removing it
        here. One ``lstat``, no listing: a directory's link count is 2 when it has no
        subdirectory (filesystems that do not count them, such as btrfs, report 1 and are
        sent to a worker). Only where the work happens depends on it, never what is done."""
        try:
            info = os.stat(os_name(name), dir_fd=self.root_fds[root], follow_symlinks=False)
        except OSError:
            return True  # gone or unreadable: the Remover says what it is
        if not stat.S_ISDIR(info.st_mode):
            return True
        return info.st_nlink == 2 and info.st_size <= SMALL_DIRECTORY_BYTES

    def _stop_processes(self) -> None:
        for _process in self._processes:
            self.tasks.put(_STOP)
        for process in self._processes:
            process.close()
        self._processes = []

    def close(self) -> None:
        with self._start_lock:
            self._started = True  # no start after close
            self._stop_processes()
            self._closing.set()
            if self._spawner is not None:
                self._spawner.join()
        os.close(self._links_lock.fd)
        os.close(self.lock_fd)


def _merge(into: Tally, part: Tally) -> None:
    """Add a task's tally to the job's (an error met by two tasks is listed once)."""
    into.existed = into.existed or part.existed
    into.stopped = into.stopped or part.stopped
    into.bytes_freed += part.bytes_freed
    into.files_deleted += part.files_deleted
    into.dirs_removed += part.dirs_removed
    into.kept.extend(part.kept)
    into.errors.extend(error for error in part.errors if error not in into.errors)


def make_deleter(root_fds: dict[str, int], remover: Remover, workers: int) -> Deleter:
    """Worker processes when there is more than one, else removal in-process (from any
    thread)."""
    if workers <= 1:
        return LocalDeleter(root_fds, remover)
    try:
        return ProcessDeleter(root_fds, remover, workers)
    except (OSError, subprocess.SubprocessError) as error:  # e.g. EAGAIN: no process now
        logging.getLogger("eemt_cleanup").warning(
            "Cannot start %d deletion workers (%s); deleting in this process", workers, error
        )
        return LocalDeleter(root_fds, remover)


__all__ = ["Deleter", "FlockLock", "Inode", "LocalDeleter", "ProcessDeleter", "make_deleter"]

"""Integration tests of the deletion workers (``eemt_cleanup.fs.pool``) on real trees.

Where the work happens (in the calling thread or in a worker) is a routing choice: these
tests check that the choice is right for small and big directories, that tasks sent ahead
to a worker are all answered in order, and that a worker killed mid-run leaves no task
unanswered and no caller waiting.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from eemt_cleanup.fs.pool import SMALL_DIRECTORY_BYTES, ProcessDeleter
from eemt_cleanup.fs.remove import Remover


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    return root


@pytest.fixture
def deleter(results: Path) -> Iterator[ProcessDeleter]:
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    pool = ProcessDeleter({"results": fd}, Remover(dry_run=False), workers=2)
    try:
        yield pool
    finally:
        pool.close()
        os.close(fd)


def job(root: Path, name: str, files: int, subdirs: int = 0) -> Path:
    top = root / name
    top.mkdir()
    for number in range(files):
        (top / f"f{number:04d}").write_bytes(b"x" * 100)
    for number in range(subdirs):
        sub = top / f"d{number}"
        sub.mkdir()
        (sub / "inner").write_bytes(b"y")
    return top


def test_routing_keeps_small_flat_directories_and_files_here(
    results: Path, deleter: ProcessDeleter
) -> None:
    job(results, "flat", 3)
    (results / "a_results.zip").write_bytes(b"zip")
    assert deleter.is_small("results", "flat")
    assert deleter.is_small("results", "a_results.zip")
    assert deleter.is_small("results", "missing")  # the Remover reports it as absent


def test_routing_sends_directories_with_subdirectories_or_many_entries_to_workers(
    results: Path, deleter: ProcessDeleter
) -> None:
    job(results, "nested", 1, subdirs=1)
    big = job(results, "big", 2000)
    assert os.lstat(big).st_size > SMALL_DIRECTORY_BYTES
    assert not deleter.is_small("results", "nested")
    assert not deleter.is_small("results", "big")


def test_every_task_sent_ahead_is_answered_with_its_own_tally(
    results: Path, deleter: ProcessDeleter
) -> None:
    sizes = {f"job{n:02d}": 100 + 37 * n for n in range(24)}
    for name, files in sizes.items():
        job(results, name, files, subdirs=1)
    futures = {
        name: deleter._submit("results", [name], f"results/{name}/", frozenset()) for name in sizes
    }
    for name, files in sizes.items():
        tally = futures[name].result(timeout=60)
        assert tally.display == f"results/{name}/"
        assert tally.errors == []
        assert tally.files_deleted == files + 1  # + the file in its subdirectory
    assert os.listdir(results) == []


def test_a_killed_worker_leaves_no_task_unanswered_and_close_returns(
    results: Path, deleter: ProcessDeleter
) -> None:
    for n in range(40):
        job(results, f"job{n:02d}", 300, subdirs=1)
    deleter._start()  # the workers start with the first task; this test needs them now
    victim = deleter._processes[0].pid
    os.kill(victim, signal.SIGKILL)
    futures = [
        deleter._submit("results", [f"job{n:02d}"], f"results/job{n:02d}/", frozenset())
        for n in range(40)
    ]
    tallies = [future.result(timeout=60) for future in futures]
    failed = [t for t in tallies if t.errors]
    done = [t for t in tallies if not t.errors]
    # The dead worker's tasks are reported, never silently dropped or counted as freed.
    assert failed, "no task was routed to the killed worker"
    for tally in failed:
        assert tally.bytes_freed == 0
        assert any("worker" in error for error in tally.errors)
    for tally in done:
        assert tally.files_deleted == 301
    remaining = set(os.listdir(results))
    assert remaining == {t.display.split("/")[1] for t in failed}


def allocated_once(top: Path) -> int:
    """Allocated bytes below ``top`` (``top`` included), each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in [top, *top.rglob("*")]:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def linked_jobs(results: Path, count: int) -> None:
    """``count`` big jobs (each a worker task), each holding one link of a file shared by all
    of them and one link of a file shared with the next job: every link is in some job, so
    a real run would free each shared file exactly once."""
    shared = results.parent / "shared.bin"
    shared.write_bytes(b"s" * 50_000)
    pairs = [results.parent / f"pair{n}.bin" for n in range(count)]
    for pair in pairs:
        pair.write_bytes(b"p" * 9000)
    for n in range(count):
        top = job(results, f"job{n}", 300)  # big: a worker task, not done in-thread
        os.link(shared, top / "shared.bin")
        os.link(pairs[n], top / "pair-mine.bin")
        os.link(pairs[(n + 1) % count], top / "pair-next.bin")
    shared.unlink()
    for pair in pairs:
        pair.unlink()


def test_dry_run_counts_a_file_linked_from_jobs_in_different_workers_once(
    results: Path,
) -> None:
    linked_jobs(results, 8)
    expected = {name: allocated_once(results / name) for name in os.listdir(results)}
    total = allocated_once(results) - os.lstat(results).st_blocks * 512
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    pool = ProcessDeleter({"results": fd}, Remover(dry_run=True), workers=2)
    try:
        assert not pool.is_small("results", "job0")
        # From eight threads at once, as the engine's pool does, so the jobs spread over
        # both workers.
        with ThreadPoolExecutor(8) as threads:
            tallies = list(
                threads.map(
                    lambda name: pool.remove("results", name, f"results/{name}/", frozenset()),
                    sorted(expected),
                )
            )
    finally:
        pool.close()
        os.close(fd)
    assert all(not t.errors and t.links == [] for t in tallies)
    # Every link of every shared file is in one of the jobs: each is counted exactly once.
    assert sum(t.bytes_freed for t in tallies) == total
    assert sorted(os.listdir(results)) == sorted(expected)  # a dry run removes nothing


def test_links_reported_by_workers_settle_in_one_registry(results: Path) -> None:
    linked_jobs(results, 2)
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # Two "workers" (their own registries, deferring links) measure one job each; the
        # engine's remover settles both tallies.
        parts = []
        for name in ("job0", "job1"):
            worker = Remover(dry_run=True)
            worker.defer_links = True
            parts.append(worker.remove(fd, name, f"results/{name}/"))
        assert all(len(part.links) == 3 for part in parts)
        engine = Remover(dry_run=True)
        for part in parts:
            engine.settle_links(part)
    finally:
        os.close(fd)
    total = allocated_once(results) - os.lstat(results).st_blocks * 512
    assert sum(part.bytes_freed for part in parts) == total
    assert all(part.links == [] for part in parts)


def test_workers_outlive_the_thread_that_started_them(
    results: Path, deleter: ProcessDeleter
) -> None:
    # The first task starts the workers; here it comes from a thread that then ends (as a
    # pool thread of a host may). A worker dies with the thread that spawned it, so the
    # pool must spawn them from a thread of its own.
    for n in range(2):
        job(results, f"job{n}", 20, subdirs=1)
    first: list[Any] = []
    thread = threading.Thread(
        target=lambda: first.append(deleter.remove("results", "job0", "results/job0/", frozenset()))
    )
    thread.start()
    thread.join(60)
    assert first and first[0].complete, first
    pids = [worker.pid for worker in deleter._processes]

    second = deleter.remove("results", "job1", "results/job1/", frozenset())

    assert second.complete, second.errors
    assert [worker.process.poll() for worker in deleter._processes] == [None] * len(pids)
    assert not (results / "job0").exists() and not (results / "job1").exists()


def test_a_module_planted_in_the_working_directory_is_not_imported_by_the_workers(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run started from a directory the web service can write (the base directory, a
    # container's workingDir) must not import a planted module there, as root.
    planted = tmp_path / "writable"
    planted.mkdir()
    marker = tmp_path / "imported"
    for name in ("dataclasses", "json", "ctypes", "eemt_cleanup"):
        (planted / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('{name}')\n")
    monkeypatch.chdir(planted)
    job(results, "job0", 5, subdirs=1)
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    pool = ProcessDeleter({"results": fd}, Remover(dry_run=False), workers=2)
    try:
        assert pool.remove("results", "job0", "results/job0/", frozenset()).complete
    finally:
        pool.close()
        os.close(fd)
    assert not marker.exists(), marker.read_text()


def test_workers_that_cannot_start_leave_no_task_waiting(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two threads submit while the workers are being started, and starting them fails:
    # both tasks are done in this process, none waits forever on a worker that never came.
    import eemt_cleanup.fs.pool as pool_module

    started = threading.Event()

    class Failing:
        def __init__(self, *_args: Any) -> None:
            started.set()
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(pool_module, "_SpawnedWorker", Failing)
    for n in range(2):
        job(results, f"job{n}", 10, subdirs=1)
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    pool = ProcessDeleter({"results": fd}, Remover(dry_run=False), workers=2)
    tallies: dict[int, Any] = {}

    def remove(n: int) -> None:
        tallies[n] = pool.remove("results", f"job{n}", f"results/job{n}/", frozenset())

    threads = [threading.Thread(target=remove, args=(n,), daemon=True) for n in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a task waits forever"
    finally:
        pool.close()
        os.close(fd)
    assert started.is_set()
    assert [tallies[n].complete for n in range(2)] == [True, True]
    assert os.listdir(results) == []


def test_a_pool_leaves_no_descriptor_open_behind_it(results: Path) -> None:
    fd = os.open(results, os.O_RDONLY | os.O_DIRECTORY)
    try:
        before = set(os.listdir("/proc/self/fd"))
        for n in range(5):
            job(results, f"job{n}", 3, subdirs=1)
            pool = ProcessDeleter({"results": fd}, Remover(dry_run=False), workers=2)
            assert pool.remove("results", f"job{n}", f"results/job{n}/", frozenset()).complete
            pool.close()
        after = set(os.listdir("/proc/self/fd"))
    finally:
        os.close(fd)
    assert after == before

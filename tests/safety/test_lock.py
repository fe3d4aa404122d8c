"""Item 6: one run at a time, keyed by the database file itself; nothing of ours beside a
database that sits in a world-writable directory; exit 75 only for contention.

The lock is an ``flock`` on the database file: every path to it (a hard link, a symlink, a
bind mount) reaches the same inode, and no lock file is created beside it, so there is
nothing to plant a symlink at. A database that cannot be opened to lock it is a setup
problem (exit 2 naming the path), not contention.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import cli_executable, guarded_env

from eemt_cleanup.cli.exit_codes import error_exit_code
from eemt_cleanup.errors import LockPathError
from eemt_cleanup.lock import RunLock, find_holder

from .conftest import NOBODY, Harness, mounted
from .state_helpers import start_slow_web_write

# Appended to the harness's config file, whose last section is ``performance:``.
BUSY_TIMEOUT = "  busy_timeout_seconds: 0.5\n"


@contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """This process holds the run lock, as a live run would, through ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def run_with_paths(
    harness: Harness, database: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            cli_executable(),
            "run",
            "--json",
            "--config",
            str(harness.config_file),
            "--db-path",
            str(database),
            *args,
        ],
        env=guarded_env(harness.tmp),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_locked_out(harness: Harness, completed: subprocess.CompletedProcess[str]) -> None:
    assert completed.returncode == 75, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line.startswith("eemt-cleanup: error: another eemt-cleanup run holds the lock on ")
    assert f"pid {os.getpid()}" in line
    assert line.endswith("; not starting")
    harness.assert_untouched()


@pytest.mark.parametrize("how", ["hard-link", "symlink", "bind-mount"])
def test_two_paths_to_one_database_share_one_lock(harness: Harness, how: str) -> None:
    other = harness.tmp / "elsewhere"
    if how == "bind-mount":
        other.mkdir()
        with mounted(["--bind", str(harness.base)], other):
            harness.arm()
            with holding_lock(harness.db):
                completed = run_with_paths(harness, other / "jobs.db")
            assert_locked_out(harness, completed)
        return
    other.mkdir()
    alias = other / "jobs.db"
    if how == "hard-link":
        os.link(harness.db, alias)
    else:
        alias.symlink_to(harness.db)
    harness.arm()

    with holding_lock(alias):  # held through the other path...
        completed = run_with_paths(harness, harness.db)  # ...refuses this one

    assert_locked_out(harness, completed)


def test_a_run_holding_the_lock_is_found_without_taking_it(harness: Harness) -> None:
    assert find_holder(harness.db) is None
    with holding_lock(harness.db):
        holder = find_holder(harness.db)
        # Asking did not take the lock: a run can still see it as held by us only.
        fd = os.open(harness.db, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert holder is not None and holder.pid == os.getpid()
    assert find_holder(harness.db) is None


def world_writable_base(harness: Harness) -> Path:
    """The database in a sticky world-writable directory (the upstream default is
    /tmp/jobs.db), the roots and logs configured elsewhere or beside it."""
    world = harness.tmp / "world"
    world.mkdir()
    os.chmod(world, 0o1777)
    shutil.move(harness.db, world / "jobs.db")
    return world


def test_nothing_of_ours_is_created_through_symlinks_planted_beside_the_database(
    harness: Harness,
) -> None:
    world = world_writable_base(harness)
    outside = harness.tmp / "attacker"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("precious\n")
    # What a local user could plant in /tmp, owned by them: the old lock file's name, a
    # logs directory (the default logs/ beside the database), the journal's name.
    plants = {
        "jobs.db.cleanup.lock": victim,
        "logs": outside,
        "cleanup-journal.jsonl": victim,
        "jobs.db.lock": outside / "dangling",
    }
    for name, target in plants.items():
        (world / name).symlink_to(target)
        os.lchown(world / name, NOBODY, NOBODY)
    config = harness.config_file
    config.write_text(config.read_text().replace("  logs: ./logs\n", ""))  # logs beside the db

    completed = run_with_paths(harness, world / "jobs.db")

    assert completed.returncode == 0, completed.stderr
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"], "written through a plant"
    assert not (outside / "dangling").exists()
    assert sorted(p.name for p in world.iterdir()) == sorted(["jobs.db", *plants])
    warnings = [line for line in completed.stderr.splitlines() if "symbolic link" in line]
    assert warnings and all("not followed" in line for line in warnings), completed.stderr
    for job in harness.legit:
        assert not job.results(harness.base).exists()


def test_a_planted_sqlite_journal_symlink_is_never_written_through(harness: Harness) -> None:
    world = world_writable_base(harness)
    victim = harness.tmp / "victim"
    victim.write_text("precious\n")
    (world / "jobs.db-journal").symlink_to(victim)
    os.lchown(world / "jobs.db-journal", NOBODY, NOBODY)

    completed = run_with_paths(harness, world / "jobs.db")

    assert completed.returncode == 2, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert line == (
        f"eemt-cleanup: error: {world / 'jobs.db'}: not a usable SQLite database (unable to "
        f"open database file); {world / 'jobs.db-journal'} is a symbolic link, which SQLite "
        "refuses to use: remove it"
    )
    assert victim.read_text() == "precious\n"
    for job in harness.legit:
        assert job.results(harness.base).exists(), "deleted though nothing could be recorded"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_database_path_that_cannot_be_locked_is_exit_2_naming_the_path(
    harness: Harness, kind: str
) -> None:
    harness.arm()
    target = harness.tmp / "not-a-db"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    reason = "database path is not a file"  # checked before the lock is even tried

    completed = run_with_paths(harness, target)

    assert completed.returncode == 2
    (line,) = completed.stderr.splitlines()
    assert str(target) in line and reason in line, line
    assert not any(Path(harness.tmp).glob("not-a-db.*"))


def test_a_symlink_swapped_in_after_the_path_was_resolved_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "jobs.db"
    sqlite3.connect(real).close()
    swapped = tmp_path / "swapped.db"
    swapped.symlink_to(real)

    with pytest.raises(LockPathError) as raised, RunLock(swapped):
        pass

    assert str(raised.value) == (
        f"cannot lock the database {swapped}: is a symbolic link: refused (never written through)"
    )
    assert error_exit_code(raised.value) == 2


def test_permission_denied_on_the_database_is_exit_2_not_75(tmp_path: Path) -> None:
    # As nobody (in a forked child), the database under root's 0700 directories cannot
    # even be reached: that is a setup problem, not another run holding the lock.
    database = tmp_path / "private" / "jobs.db"
    database.parent.mkdir(mode=0o700)
    sqlite3.connect(database).close()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, try the lock, report, never return
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            try:
                with RunLock(database):
                    message = "locked"
            except LockPathError as error:
                message = f"{error_exit_code(error)} {error}"
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        message = answer.read().decode()
    os.waitpid(pid, 0)

    assert message == f"2 cannot open the database {database} to lock it: Permission denied"


def test_a_read_only_filesystem_is_exit_2_before_anything_is_deleted(harness: Harness) -> None:
    readonly = harness.tmp / "readonly"
    readonly.mkdir()
    harness.arm()
    with mounted(["--bind", str(harness.base)], readonly):
        made = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(readonly)], capture_output=True, check=False
        )
        if made.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {made.stderr!r}")
        completed = run_with_paths(harness, readonly / "jobs.db")

    assert completed.returncode == 2, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert "readonly" in line or "read-only" in line, line
    harness.assert_untouched()


@pytest.mark.parametrize("migrated", [False, True], ids=["during-migrations", "at-the-start"])
def test_a_writer_holding_the_database_past_the_busy_timeout_is_75_and_nothing_deleted(
    harness: Harness, migrated: bool
) -> None:
    harness.config_file.write_text(harness.config_file.read_text() + BUSY_TIMEOUT)
    if migrated:
        done = harness.run_cli("--job", harness.retained.job_id)  # migrates, cleans nothing
        assert done.code == 0, done.stderr
    harness.arm()
    writer = start_slow_web_write(harness.db, harness.tmp / "writer", seconds=30)
    try:
        completed = run_with_paths(harness, harness.db)
    finally:
        writer.process.kill()
        writer.process.wait()

    assert completed.returncode == 75, completed.stderr
    (line,) = completed.stderr.splitlines()
    assert "the database stayed locked by another writer past the busy timeout" in line
    assert line.endswith("try again later")
    for job in harness.legit:
        assert job.results(harness.base).exists()
    assert stat.S_ISREG(os.stat(harness.db).st_mode)


def test_a_second_run_in_the_same_process_is_refused_without_unlocking_the_first(
    tmp_path: Path,
) -> None:
    # The daemon or the API may start a run while one is going in the same process. The
    # refusal must not open and close jobs.db: closing any descriptor of it would drop every
    # POSIX lock this process holds on it, the running run's SQLite write lock included.
    from eemt_cleanup.errors import LockedError

    db = tmp_path / "jobs.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    alias = tmp_path / "alias.db"
    os.link(db, alias)
    with RunLock(db):
        conn = sqlite3.connect(db, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (1)")
            for path in (db, alias):  # also by another path to the same file
                with pytest.raises(LockedError), RunLock(path):
                    pass
            # Another process still cannot write: our write lock is still held.
            other = subprocess.run(
                [
                    "python3",
                    "-c",
                    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0, "
                    "isolation_level=None)\n"
                    "try:\n c.execute('BEGIN IMMEDIATE'); print('got the lock')\n"
                    "except sqlite3.OperationalError as e: print('locked:', e)",
                    str(db),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert other.stdout.startswith("locked:"), other.stdout
            conn.execute("COMMIT")
        finally:
            conn.close()
    with RunLock(alias):  # released: the next run takes it
        pass

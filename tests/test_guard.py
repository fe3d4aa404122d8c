"""The deletion guard itself: it must refuse outside tmp_path and allow inside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deletion_guard import GuardRefused


def test_guard_refuses_unlink_outside_tmp_path(tmp_path: Path) -> None:
    outside = Path("/etc/hostname")
    with pytest.raises(GuardRefused):
        os.unlink(outside)
    assert outside.exists()


def test_guard_refuses_dir_fd_relative_rmdir_outside(tmp_path: Path) -> None:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(GuardRefused):
            os.rmdir("etc", dir_fd=fd)
    finally:
        os.close(fd)


def test_guard_allows_inside_tmp_path(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.unlink("victim", dir_fd=fd)
    finally:
        os.close(fd)
    assert not victim.exists()


def test_guard_is_inherited_by_deletion_worker_processes(tmp_path: Path) -> None:
    """The engine's worker processes refuse deletions outside tmp_path too."""
    from eemt_cleanup.fs.pool import ProcessDeleter
    from eemt_cleanup.fs.remove import Remover

    root = tmp_path / "root"
    (root / "job" / "a").mkdir(parents=True)
    (root / "job" / "b").mkdir(parents=True)
    (root / "job" / "a" / "file").write_text("x")
    fds = {"results": os.open(root, os.O_RDONLY | os.O_DIRECTORY)}
    deleter = ProcessDeleter(fds, Remover(dry_run=False), workers=2)
    try:
        assert deleter.remove("results", "job", "results/job/", frozenset()).complete
    finally:
        deleter.close()
        os.close(fds["results"])
    assert not (root / "job").exists()

    # Any child started from a test inherits the guard (the workers are such children):
    completed = subprocess.run(
        [sys.executable, "-c", "import os; os.unlink('/etc/eemt-guard-probe')"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "test guard refused" in completed.stderr

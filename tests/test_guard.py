"""The deletion guard itself: it must refuse outside tmp_path and allow inside."""

from __future__ import annotations

import os
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

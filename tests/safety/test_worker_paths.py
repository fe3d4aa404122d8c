"""Multi-component task paths (a big job split over workers) are walked one level at a
time: an intermediate level swapped for a symlink, or a mount point, is never entered."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import snapshot

from eemt_cleanup.fs.remove import Remover
from eemt_cleanup.fs.worker import TaskRunner


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[tuple[Path, Path, TaskRunner]]:
    root = tmp_path / "results"
    canary = tmp_path / "canary"
    (root / "job" / "outputs" / "tile").mkdir(parents=True)
    (root / "job" / "outputs" / "tile" / "a.tif").write_bytes(b"x" * 100)
    (canary / "tile").mkdir(parents=True)
    (canary / "tile" / "keep.txt").write_text("must survive")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield root, canary, TaskRunner(Remover(dry_run=False), {"results": fd})
    finally:
        os.close(fd)


def task(path: list[str]) -> dict[str, object]:
    return {"root": "results", "path": path, "display": "results/job/", "keep": []}


def test_intermediate_level_swapped_for_a_symlink_is_not_entered(
    layout: tuple[Path, Path, TaskRunner],
) -> None:
    root, canary, runner = layout
    before = snapshot(canary)
    outputs = root / "job" / "outputs"
    os.rename(outputs, root / "job" / "moved")
    outputs.symlink_to(canary)  # swapped after the split pass listed "outputs"

    tally = runner.run(task(["job", "outputs", "tile"]))

    assert tally.errors == ["results/job/: cannot enter outputs: Not a directory"]
    assert snapshot(canary) == before
    assert outputs.is_symlink()


def test_intermediate_level_that_is_a_mount_point_is_not_entered(
    layout: tuple[Path, Path, TaskRunner],
) -> None:
    root, _canary, runner = layout
    outputs = root / "job" / "outputs"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "none", str(outputs)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (outputs / "tile").mkdir()
        (outputs / "tile" / "inside-the-mount.txt").write_text("must survive")

        tally = runner.run(task(["job", "outputs", "tile"]))

        assert tally.errors == ["results/job/: outputs is a mount point or protected: not entered"]
        assert (outputs / "tile" / "inside-the-mount.txt").read_text() == "must survive"
    finally:
        subprocess.run(["umount", str(outputs)], check=False)

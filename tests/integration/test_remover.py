"""Integration tests of the fd-based deleter on real trees under ``tmp_path`` (SPEC §7).

Each test opens the parent directory of a target and calls ``Remover.remove`` on it, as the
engine does with the roots. Trees outside the target ("canaries") are compared byte for byte
with ``snapshot`` before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import deletion_guard
import pytest
from conftest import guarded_env, snapshot

import eemt_cleanup
from eemt_cleanup.fs.remove import Remover, Tally, mount_points_under

BLOCK = 512
NOBODY = 65534
DEEP_LEVELS = 1100
FIFO_DEADLINE_SECONDS = 10.0


# -- helpers -------------------------------------------------------------------------------


def allocated(top: Path) -> int:
    """Allocated bytes (st_blocks * 512) of ``top`` and everything below it, measured with
    lstat (links never followed), each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def add(path: Path) -> None:
        nonlocal total
        info = os.lstat(path)
        key = (info.st_dev, info.st_ino)
        if key not in seen:
            seen.add(key)
            total += info.st_blocks * BLOCK

    add(top)
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                add(Path(dirpath) / name)
    return total


def blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * BLOCK


@contextlib.contextmanager
def opened(directory: Path) -> Iterator[int]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def remove(
    parent: Path,
    name: str,
    *,
    dry_run: bool = False,
    keep: frozenset[str] = frozenset(),
    remover: Remover | None = None,
) -> Tally:
    remover = remover or Remover(dry_run=dry_run)
    with opened(parent) as fd:
        return remover.remove(fd, name, f"{name}/", keep)


def write(path: Path, size: int, fill: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fill * size)
    return path


def make_tree(top: Path) -> tuple[int, int]:
    """A job-like tree; returns (files, directories) including ``top``."""
    write(top / "workflow.log", 700)
    write(top / "empty.txt", 0)
    write(top / "outputs" / "tile_000.tif", 150_000)
    write(top / "outputs" / "tile_001.tif", 4_097)
    write(top / "outputs" / "monthly" / "month_01.tif", 70_000)
    write(top / "outputs" / "monthly" / "deeper" / "note.txt", 12)
    (top / "empty_dir").mkdir()
    return 6, 5


def make_canary(directory: Path) -> Path:
    write(directory / "precious.dat", 9_000, b"p")
    write(directory / "nested" / "keep.txt", 33, b"k")
    return directory


@contextlib.contextmanager
def mounted(arguments: list[str], target: Path) -> Iterator[None]:
    """Mount (as root) for the duration; skip the test when mounting is not possible here."""
    result = subprocess.run(
        ["mount", *arguments, str(target)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount {' '.join(arguments)} here: {result.stderr.strip()}")
    try:
        yield
    finally:
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def run_with_deadline(
    function: Callable[[], Tally], seconds: float, unblock: Callable[[], None]
) -> Tally:
    """Run ``function`` in a thread; fail (after unblocking it) when it does not finish."""
    results: list[Tally] = []
    failures: list[BaseException] = []

    def target() -> None:
        try:
            results.append(function())
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"removal still running after {seconds} s: it blocked")
    if failures:
        raise failures[0]
    return results[0]


# -- plain trees and dry runs --------------------------------------------------------------


def test_plain_tree_is_removed_and_freed_bytes_equal_allocated_blocks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    files, directories = make_tree(root / "job")
    expected = allocated(root / "job")

    tally = remove(root, "job")

    assert tally.errors == []
    assert tally.existed is True
    assert tally.bytes_freed == expected
    assert tally.files_deleted == files
    assert tally.dirs_removed == directories
    assert tally.kept == []
    assert os.listdir(root) == []


def test_dry_run_removes_nothing_and_reports_the_same_bytes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    files, directories = make_tree(root / "job")
    expected = allocated(root / "job")
    before = snapshot(tmp_path)

    tally = remove(root, "job", dry_run=True)

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == files
    assert tally.dirs_removed == directories
    assert snapshot(tmp_path) == before


def test_missing_name_reports_not_existed_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()

    tally = remove(root, "nope")

    assert tally == Tally("nope/", existed=False)


# -- symbolic links ------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_top_level_symlink_to_outside_directory_removes_only_the_link(
    tmp_path: Path, dry_run: bool
) -> None:
    canary = make_canary(tmp_path / "canary")
    root = tmp_path / "root"
    root.mkdir()
    (root / "job").symlink_to(canary, target_is_directory=True)
    link_bytes = blocks(root / "job")
    before = snapshot(canary)

    tally = remove(root, "job", dry_run=dry_run)

    assert tally.errors == []
    assert tally.bytes_freed == link_bytes
    assert tally.files_deleted == 1
    assert tally.dirs_removed == 0
    assert snapshot(canary) == before
    assert os.listdir(root) == ([] if not dry_run else ["job"])


def test_symlinks_inside_tree_are_unlinked_and_never_followed(tmp_path: Path) -> None:
    canary = make_canary(tmp_path / "canary")
    root = tmp_path / "root"
    top = root / "job"
    write(top / "data.bin", 5_000)
    (top / "to_outside_dir").symlink_to(canary, target_is_directory=True)
    (top / "to_outside_file").symlink_to(canary / "precious.dat")
    (top / "sub").mkdir()
    (top / "sub" / "to_outside_nested").symlink_to(canary / "nested")
    (top / "dangling").symlink_to(tmp_path / "does-not-exist")
    (top / "loop_a").symlink_to(top / "loop_b")
    (top / "loop_b").symlink_to(top / "loop_a")
    (top / "to_parent").symlink_to("..")
    expected = allocated(top)
    before = snapshot(canary)

    tally = remove(root, "job")

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 8
    assert tally.dirs_removed == 2
    assert os.listdir(root) == []
    assert snapshot(canary) == before


# -- hard links ----------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_file_with_a_second_link_outside_frees_nothing_and_outside_link_keeps_content(
    tmp_path: Path, dry_run: bool
) -> None:
    outside = write(tmp_path / "outside" / "shared.tif", 200_000, b"s")
    root = tmp_path / "root"
    top = root / "job"
    write(top / "own.tif", 30_000)
    os.link(outside, top / "shared_link.tif")
    expected = allocated(top) - blocks(outside)
    assert blocks(outside) > 0

    tally = remove(root, "job", dry_run=dry_run)

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 2
    assert outside.read_bytes() == b"s" * 200_000
    assert os.lstat(outside).st_nlink == (1 if not dry_run else 2)


@pytest.mark.parametrize("dry_run", [False, True])
def test_two_links_inside_the_tree_count_their_blocks_once(tmp_path: Path, dry_run: bool) -> None:
    root = tmp_path / "root"
    top = root / "job"
    first = write(top / "a" / "data.tif", 120_000)
    (top / "b").mkdir()
    os.link(first, top / "b" / "data_link.tif")
    os.link(first, top / "data_link_top.tif")
    expected = blocks(top) + blocks(top / "a") + blocks(top / "b") + blocks(first)
    assert allocated(top) == expected

    tally = remove(root, "job", dry_run=dry_run)

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 3
    assert os.listdir(root) == ([] if not dry_run else ["job"])


def test_sparse_file_counts_only_its_allocated_blocks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    top = root / "job"
    top.mkdir(parents=True)
    sparse = top / "sparse.tif"
    with open(sparse, "wb") as handle:
        handle.truncate(1 << 30)
        handle.write(b"head")
        handle.seek(512 << 20)
        handle.write(b"middle")
    info = os.lstat(sparse)
    assert info.st_size == 1 << 30
    assert info.st_blocks * BLOCK < 1 << 20
    expected = blocks(top) + info.st_blocks * BLOCK

    tally = remove(root, "job")

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 1
    assert os.listdir(root) == []


# -- kept names and special files ----------------------------------------------------------


def test_keep_names_at_top_level_stay_and_are_reported_everything_else_goes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    top = root / "job"
    write(top / "workflow.log", 800, b"w")
    write(top / "sys.err", 300, b"e")
    write(top / "outputs" / "tile.tif", 90_000)
    write(top / "outputs" / "workflow.log", 500)
    write(top / "other.txt", 20)
    expected = allocated(top / "outputs") + blocks(top / "other.txt")
    keep = frozenset({"workflow.log", "sys.err", "container.log"})

    tally = remove(root, "job", keep=keep)

    assert tally.errors == []
    assert sorted(tally.kept) == ["job/sys.err", "job/workflow.log"]
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 3
    assert tally.dirs_removed == 1
    assert sorted(os.listdir(top)) == ["sys.err", "workflow.log"]
    assert (top / "workflow.log").read_bytes() == b"w" * 800
    assert (top / "sys.err").read_bytes() == b"e" * 300


def test_fifo_inside_tree_is_unlinked_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "root"
    top = root / "job"
    write(top / "data.bin", 1_000)
    fifo = top / "pipe"
    os.mkfifo(fifo)
    (top / "sub").mkdir()
    os.mkfifo(top / "sub" / "pipe2")
    expected = allocated(top)

    def unblock() -> None:
        for path in (fifo, top / "sub" / "pipe2"):
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(path, flags))

    tally = run_with_deadline(lambda: remove(root, "job"), FIFO_DEADLINE_SECONDS, unblock)

    assert tally.errors == []
    assert tally.bytes_freed == expected
    assert tally.files_deleted == 3
    assert os.listdir(root) == []


def test_unix_socket_inside_tree_is_unlinked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    top = root / "j"
    top.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(top / "s"))
        server.listen(1)
        tally = run_with_deadline(lambda: remove(root, "j"), FIFO_DEADLINE_SECONDS, lambda: None)
    finally:
        server.close()
    assert tally.errors == []
    assert tally.files_deleted == 1
    assert tally.dirs_removed == 1
    assert os.listdir(root) == []


def test_tree_deeper_than_the_recursion_limit_is_fully_removed(tmp_path: Path) -> None:
    # Created with relative descriptors, as a path this deep is unwieldy; the deletion guard
    # resolves every unlink through /proc/self/fd, which caps the depth below PATH_MAX.
    assert sys.getrecursionlimit() < DEEP_LEVELS
    root = tmp_path / "root"
    root.mkdir()
    expected = 0
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _level in range(DEEP_LEVELS):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom" * 1000)
        os.fsync(leaf)
        expected += os.fstat(leaf).st_blocks * BLOCK
        os.close(leaf)
    finally:
        os.close(fd)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _level in range(DEEP_LEVELS):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            expected += os.fstat(fd).st_blocks * BLOCK
    finally:
        os.close(fd)

    tally = remove(root, "d")

    assert tally.errors == []
    assert tally.dirs_removed == DEEP_LEVELS
    assert tally.files_deleted == 1
    assert tally.bytes_freed == expected
    assert os.listdir(root) == []


# -- mount points --------------------------------------------------------------------------


def test_tmpfs_mount_point_inside_tree_is_not_entered_and_the_rest_goes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    top = root / "job"
    write(top / "a.txt", 2_000)
    write(top / "sub" / "b.txt", 3_000)
    write(top / "outputs" / "c.tif", 40_000)
    mount_point = top / "outputs" / "mnt"
    mount_point.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=1m", "none"], mount_point):
        assert os.stat(mount_point).st_dev != os.stat(top).st_dev
        (mount_point / "inside.txt").write_bytes(b"on tmpfs")
        expected = sum(
            blocks(path) for path in (top / "a.txt", top / "sub", top / "sub" / "b.txt")
        ) + blocks(top / "outputs" / "c.tif")

        tally = remove(root, "job")

        assert tally.errors == ["job/outputs/mnt/: a mount point: not crossed"]
        assert (mount_point / "inside.txt").read_bytes() == b"on tmpfs"
        assert sorted(os.listdir(top)) == ["outputs"]
        assert os.listdir(top / "outputs") == ["mnt"]
        assert tally.bytes_freed == expected
        assert tally.files_deleted == 3
        assert tally.dirs_removed == 1


def test_bind_mount_of_same_filesystem_inside_tree_is_not_entered(tmp_path: Path) -> None:
    canary = make_canary(tmp_path / "canary")
    root = tmp_path / "root"
    top = root / "job"
    write(top / "a.txt", 2_000)
    write(top / "sub" / "b.txt", 3_000)
    mount_point = top / "mnt"
    mount_point.mkdir()
    before = snapshot(canary)
    with mounted(["--bind", str(canary)], mount_point):
        assert os.stat(mount_point).st_dev == os.stat(top).st_dev
        remover = Remover(dry_run=False, mount_points=mount_points_under([root.resolve()]))

        tally = remove(root, "job", remover=remover)

        assert tally.errors == ["job/mnt/: a mount point: not crossed"]
        assert sorted(os.listdir(top)) == ["mnt"]
        assert snapshot(mount_point) == before
        assert tally.files_deleted == 2
        assert tally.dirs_removed == 1
    assert snapshot(canary) == before


# -- refusals and failures -----------------------------------------------------------------


def test_protected_inode_linked_into_the_tree_is_refused_and_kept(tmp_path: Path) -> None:
    database = write(tmp_path / "base" / "jobs.db", 8_192, b"d")
    info = os.lstat(database)
    root = tmp_path / "root"
    top = root / "job"
    write(top / "other.txt", 100)
    write(top / "sub" / "x.bin", 10_000)
    os.link(database, top / "sub" / "jobs.db")
    remover = Remover(dry_run=False, protected={(info.st_dev, info.st_ino)})

    tally = remove(root, "job", remover=remover)

    assert tally.errors == [
        "job/sub/jobs.db: refused: a protected path (database, config, log directory or a root)"
        " is linked here"
    ]
    assert sorted(os.listdir(top)) == ["sub"]
    assert os.listdir(top / "sub") == ["jobs.db"]
    assert database.read_bytes() == b"d" * 8_192
    assert os.lstat(database).st_nlink == 2


def test_protected_file_with_a_single_link_inside_the_tree_is_refused_and_kept(
    tmp_path: Path,
) -> None:
    # Not a hard link (st_nlink 1): the per-file fast path must still check the inode.
    root = tmp_path / "root"
    top = root / "job"
    write(top / "other.txt", 100)
    config = write(top / "cleanup_config.yaml", 300, b"c")
    info = os.lstat(config)
    assert info.st_nlink == 1
    remover = Remover(dry_run=False, protected={(info.st_dev, info.st_ino)})

    tally = remove(root, "job", remover=remover)

    assert tally.errors == [
        "job/cleanup_config.yaml: refused: a protected path (database, config, log directory "
        "or a root) is linked here"
    ]
    assert os.listdir(top) == ["cleanup_config.yaml"]
    assert config.read_bytes() == b"c" * 300


def test_protected_directory_as_the_target_is_refused_untouched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_tree(root / "job")
    info = os.lstat(root / "job")
    before = snapshot(root)
    remover = Remover(dry_run=False, protected={(info.st_dev, info.st_ino)})

    tally = remove(root, "job", remover=remover)

    assert tally.errors == [
        "job/: refused: a protected path (database, config, log directory or a root) is linked here"
    ]
    assert tally.bytes_freed == 0
    assert snapshot(root) == before


UNPRIVILEGED_REMOVAL = """
import json, os, sys
from eemt_cleanup.fs.remove import Remover
tally = Remover(dry_run=False).remove(int(sys.argv[1]), sys.argv[2], sys.argv[2] + "/")
print(json.dumps({"uid": os.getuid(), "guarded": hasattr(os.unlink, "__wrapped__"),
                  "files_deleted": tally.files_deleted, "dirs_removed": tally.dirs_removed,
                  "bytes_freed": tally.bytes_freed, "errors": sorted(tally.errors)}))
"""


def importable_copy(tmp_path: Path) -> Path:
    """The package and the deletion guard (as the child's ``sitecustomize``), copied where
    the privilege-dropped child can read them. The checkout may sit where nobody cannot
    go (a clone under a 0700 directory), and so may ``tmp_path``: the child reaches the
    copy through an open descriptor, as it reaches the root it deletes in."""
    copy = tmp_path / "importable"
    package = Path(eemt_cleanup.__file__).parent
    shutil.copytree(package, copy / "eemt_cleanup", ignore=shutil.ignore_patterns("__pycache__"))
    guard = Path(deletion_guard.__file__).parent
    for name in ("deletion_guard.py", "sitecustomize.py"):
        shutil.copyfile(guard / name, copy / name)
    for directory, _subdirectories, files in os.walk(copy):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    return copy


def test_permission_errors_are_reported_and_nothing_else_is_touched(tmp_path: Path) -> None:
    canary = make_canary(tmp_path / "canary")
    root = tmp_path / "root"
    top = root / "job"
    write(top / "a.txt", 100)
    write(top / "b.txt", 100)
    write(top / "sub" / "c.txt", 100)
    write(top / "secret" / "d.txt", 100)
    os.chmod(top / "secret", 0o700)
    mine = write(top / "mine" / "e.txt", 5_000)
    os.chown(top / "mine", NOBODY, NOBODY)
    for path in (root, top, top / "sub"):
        os.chmod(path, 0o755)
    freed = blocks(mine)
    before_tree = snapshot(root)
    before_canary = snapshot(canary)
    copy = importable_copy(tmp_path)

    # The child gets the open root directory and the open copy of the package (neither
    # tmp_path nor the checkout need be traversable by nobody), and drops to nobody before
    # Python even starts. It runs the interpreter itself, not a virtual environment's link
    # to it, which may sit inside the checkout.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    code = os.open(copy, os.O_RDONLY | os.O_DIRECTORY)
    env = guarded_env(tmp_path, PYTHONPATH=f"/proc/self/fd/{code}", PYTHONDONTWRITEBYTECODE="1")
    try:
        completed = subprocess.run(
            [
                "setpriv",
                f"--reuid={NOBODY}",
                f"--regid={NOBODY}",
                "--clear-groups",
                os.path.realpath(sys.executable),
                "-c",
                UNPRIVILEGED_REMOVAL,
                str(fd),
                "job",
            ],
            pass_fds=(fd, code),
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(fd)
        os.close(code)
    if completed.returncode != 0 and completed.stderr.startswith("setpriv"):
        pytest.skip(f"cannot drop privileges with setpriv: {completed.stderr.strip()}")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)

    assert result == {
        "uid": NOBODY,
        "guarded": True,
        "files_deleted": 1,
        "dirs_removed": 0,
        "bytes_freed": freed,
        "errors": [
            "job/a.txt: Permission denied",
            "job/b.txt: Permission denied",
            "job/mine/: Permission denied",
            "job/secret/: Permission denied",
            "job/sub/c.txt: Permission denied",
        ],
    }
    del before_tree["job/mine/e.txt"]
    assert snapshot(root) == before_tree
    assert snapshot(canary) == before_canary


def test_immutable_file_is_reported_and_the_other_files_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    top = root / "job"
    immutable = write(top / "immutable.txt", 1_000, b"i")
    write(top / "other.txt", 2_000)
    write(top / "sub" / "x.bin", 30_000)
    expected = blocks(top / "other.txt") + allocated(top / "sub")
    made = subprocess.run(["chattr", "+i", str(immutable)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")
    try:
        tally = remove(root, "job")

        assert tally.errors == ["job/immutable.txt: Operation not permitted"]
        assert os.listdir(top) == ["immutable.txt"]
        assert immutable.read_bytes() == b"i" * 1_000
        assert tally.bytes_freed == expected
        assert tally.files_deleted == 2
        assert tally.dirs_removed == 1
    finally:
        subprocess.run(["chattr", "-i", str(immutable)], check=False)
    assert stat.S_ISREG(os.lstat(immutable).st_mode)

"""Hostile filesystems (SPEC §7): symlinks, roots that are links, mount points, special
files, trees too deep or too long for paths, files appearing mid-deletion, permission
errors, and a directory swapped for a symlink between listing and opening.

Every attack is made on an extra "victim" job, so the harness's legit due jobs show that the
run went on and cleaned them, and ``assert_safe`` shows that nothing else changed.

Links that could lead a regression anywhere point at the test's own directory (everything
the snapshots see), never at ``/``: the guard would refuse the unlinks, but a walk of the
whole machine is not a risk worth taking. (Roots resolving to ``/`` are refused before any
job is looked at, and would only ever name children called like job ids.)

Runs use the config file's two workers (directory trees go to deletion worker processes)
unless a test needs to reach the removal itself: the ``before_open`` hook and the spies only
see removal in this process, so those runs use one worker.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult, cli_executable, guarded_env, snapshot

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.engine import JobResult, RunReport
from eemt_cleanup.errors import ConfigError

from .conftest import (
    NOBODY,
    RETAINED_ID,
    FsSpy,
    Harness,
    Job,
    attribute,
    chown_tree,
    has_attribute,
    make_special,
    mounted,
    unblock_fifos,
    unmount,
    unprivileged_command,
    write,
)

DEEP_LEVELS = 1100
LONG_NAME = "n" * 240
LONG_LEVELS = 20
PATH_MAX = 4096
HOOK_CAP = 200
SPECIAL_DEADLINE_SECONDS = 15.0
DEEP_DEADLINE_SECONDS = 120.0


def path_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def victim_of(harness: Harness) -> Job:
    """The job a test attacks (its row and data), besides the legit due jobs."""
    return harness.add_job("victim")


def result_of(report: RunReport, job_id: str) -> JobResult:
    return next(job for job in report.jobs if job.job_id == job_id)


# -- a job entry that is a symlink ---------------------------------------------------------


def _replace_with_link(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    path.symlink_to(target)


LINK_ATTACKS: dict[str, Callable[[Harness, Job], Path]] = {
    "results-dir-to-outside-canary": lambda h, v: h.canary,
    "results-dir-to-retained-job": lambda h, v: h.results / RETAINED_ID,
    "results-dir-to-the-whole-test-directory": lambda h, v: h.tmp,
    "results-dir-dangling": lambda h, v: h.tmp / "does-not-exist",
    "results-dir-loop-to-itself": lambda h, v: Path(v.job_id),
}


@pytest.mark.parametrize("attack", list(LINK_ATTACKS))
def test_job_results_dir_that_is_a_symlink_is_removed_as_a_link_and_its_target_never_entered(
    harness: Harness, attack: str
) -> None:
    victim = victim_of(harness)
    link = victim.results(harness.base)
    _replace_with_link(link, LINK_ATTACKS[attack](harness, victim))

    report = harness.run()

    assert not os.path.lexists(link)
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


def test_job_results_dir_in_a_two_link_loop_is_removed_and_the_other_link_stays(
    harness: Harness,
) -> None:
    victim = victim_of(harness)
    other = harness.results / "loop-partner"
    _replace_with_link(victim.results(harness.base), other.name)
    other.symlink_to(victim.job_id)

    report = harness.run()

    assert os.readlink(other) == victim.job_id
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


@pytest.mark.parametrize(
    "artifact",
    ["temp-dir-to-another-root", "upload-to-the-database", "archive-to-a-canary-file"],
)
def test_other_job_artifact_that_is_a_symlink_is_unlinked_and_its_target_survives(
    harness: Harness, artifact: str
) -> None:
    victim = victim_of(harness)
    base = harness.base
    link, target = {
        "temp-dir-to-another-root": (base / "temp" / victim.job_id, harness.results),
        "upload-to-the-database": (base / "uploads" / str(victim.upload), harness.db),
        "archive-to-a-canary-file": (
            base / "results" / f"{victim.job_id}_results.zip",
            harness.canary / "precious.dat",
        ),
    }[artifact]
    _replace_with_link(link, target)

    report = harness.run()

    assert not os.path.lexists(link)
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


def _plant_links(harness: Harness, top: Path) -> list[Path]:
    """Links of every kind inside a job tree; returns them."""
    canary = harness.canary
    links = {
        top / "to_canary_dir": canary,
        top / "to_canary_file": canary / "precious.dat",
        top / "outputs" / "to_relative_canary": Path("../../../canary"),
        top / "to_the_whole_test_directory": harness.tmp,
        top / "to_parent": Path(".."),
        top / "to_database": harness.db,
        top / "to_config": harness.config_file,
        top / "to_another_root": harness.uploads,
        top / "to_retained_job": harness.results / RETAINED_ID,
        top / "outputs" / "monthly" / "dangling": harness.tmp / "nowhere",
        top / "loop_a": Path("loop_b"),
        top / "loop_b": Path("loop_a"),
    }
    for link, target in links.items():
        link.symlink_to(target)
    return list(links)


@pytest.mark.parametrize("workers", [1, 2])
def test_symlinks_inside_a_job_tree_are_unlinked_never_followed(
    harness: Harness, workers: int
) -> None:
    victim = victim_of(harness)
    links = _plant_links(harness, victim.results(harness.base))

    report = harness.run(workers=workers)

    assert not any(os.path.lexists(link) for link in links)
    assert exit_code(report) == 0
    job = result_of(report, victim.job_id)
    assert job.errors == []
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


@pytest.mark.e2e
def test_cli_job_with_symlinks_everywhere_exits_0_and_only_the_links_go(harness: Harness) -> None:
    victim = victim_of(harness)
    _plant_links(harness, victim.results(harness.base))
    _replace_with_link(harness.temp / victim.job_id, harness.canary)

    result = harness.run_cli()

    assert result.code == 0, result.stderr
    details = {detail["job_id"]: detail for detail in result.json()["details"]}
    assert details[victim.job_id]["errors"] == []
    assert victim.job_id in harness.marked()
    harness.assert_safe(result, gone=[victim])


# -- protected inodes linked into a job ----------------------------------------------------


@pytest.mark.parametrize("protected", ["database-as-the-upload", "config-inside-results"])
def test_hard_link_of_a_protected_file_in_a_job_is_refused_and_the_job_is_not_marked(
    harness: Harness, protected: str
) -> None:
    victim = victim_of(harness)
    if protected == "database-as-the-upload":
        link = harness.uploads / str(victim.upload)
        link.unlink()
        os.link(harness.db, link)
        display = f"uploads/{victim.upload}"
        original = harness.db
    else:
        link = victim.results(harness.base) / "outputs" / "settings.yaml"
        os.link(harness.config_file, link)
        display = f"results/{victim.job_id}/outputs/settings.yaml"
        original = harness.config_file

    report = harness.run()

    assert exit_code(report) == 1
    job = result_of(report, victim.job_id)
    assert job.errors == [
        f"{display}: refused: a protected path (database, config, log directory or a root) "
        "is linked here"
    ]
    assert os.path.samefile(link, original)
    assert os.lstat(original).st_nlink == 2
    assert victim.job_id not in harness.marked()
    harness.assert_safe(report, changing=[victim])


# -- roots that are symlinks ---------------------------------------------------------------


@pytest.mark.e2e
def test_cli_root_given_as_a_symlink_is_resolved_and_cleaned_through(harness: Harness) -> None:
    link = harness.base / "results-link"
    link.symlink_to("results", target_is_directory=True)

    result = harness.run_cli("--results-dir", str(link))

    assert result.code == 0, result.stderr
    assert os.readlink(link) == "results"
    harness.assert_safe(result)


def test_root_symlink_retargeted_after_start_deletes_only_in_the_root_resolved_at_start(
    harness: Harness,
) -> None:
    link = harness.base / "results-link"
    link.symlink_to(harness.results, target_is_directory=True)
    loaded = harness.config(results=link)
    assert loaded.roots.results == harness.results
    link.unlink()
    link.symlink_to(harness.canary, target_is_directory=True)
    harness.arm()

    report = harness.run(config=loaded)

    assert exit_code(report) == 0
    harness.assert_safe(report)


def test_root_replaced_by_a_symlink_after_start_is_refused_and_nothing_is_deleted(
    harness: Harness,
) -> None:
    loaded = harness.config()
    moved = harness.base / "results-moved-away"
    harness.results.rename(moved)
    harness.results.symlink_to(harness.canary, target_is_directory=True)
    harness.arm()

    with pytest.raises(ConfigError) as raised:
        harness.run(config=loaded)

    assert str(raised.value).startswith(f"paths.results: cannot open the root {harness.results}")
    # The roots are opened before anything is written: not even the run log has a row.
    harness.assert_untouched()


REFUSED_ROOTS: dict[str, tuple[Callable[[Harness], Path], str]] = {
    "slash": (
        lambda h: Path("/"),
        "paths.results: refusing a system directory as a deletion root: /",
    ),
    "usr": (
        lambda h: Path("/usr"),
        "paths.results: refusing a system directory as a deletion root: /usr",
    ),
    "tmp": (
        lambda h: Path("/tmp"),
        "paths.results: refusing a system directory as a deletion root: /tmp",
    ),
    "chain-of-links-to-slash": (
        lambda h: _chain(h.base / "second-link", Path("/")),
        "paths.results: refusing a system directory as a deletion root: /",
    ),
    "another-root": (lambda h: h.uploads, "paths.uploads and paths.results overlap"),
    "inside-another-root": (
        lambda h: _made(h.uploads / "nested"),
        "paths.uploads and paths.results overlap",
    ),
    "parent-of-the-database-and-the-other-roots": (lambda h: h.base, "and paths.results overlap"),
    "grandparent-of-the-database": (lambda h: h.tmp, "and paths.results overlap"),
    "the-database-itself": (
        lambda h: h.db,
        "paths.database: {db} must not be inside the deletion root paths.results",
    ),
}


def _chain(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _made(directory: Path) -> Path:
    directory.mkdir()
    return directory


@pytest.mark.e2e
@pytest.mark.parametrize("target", list(REFUSED_ROOTS))
def test_cli_root_symlink_resolving_to_a_forbidden_place_exits_2_and_changes_nothing(
    harness: Harness, target: str
) -> None:
    make_target, message = REFUSED_ROOTS[target]
    link = harness.base / "results-link"
    link.symlink_to(make_target(harness))
    harness.arm()

    result = harness.run_cli("--results-dir", str(link))

    assert result.code == 2, result.stdout + result.stderr
    assert message.format(db=harness.db) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.json()["success"] is False
    harness.assert_untouched()


@pytest.mark.e2e
def test_cli_root_symlink_resolving_to_the_databases_directory_exits_2_and_changes_nothing(
    harness: Harness,
) -> None:
    # The other roots elsewhere, so the database rule is the one that must refuse it.
    elsewhere = [_made(harness.tmp / name) for name in ("other-uploads", "other-temp")]
    link = harness.base / "results-link"
    link.symlink_to(harness.base, target_is_directory=True)
    harness.arm()

    result = harness.run_cli(
        "--results-dir",
        str(link),
        "--uploads-dir",
        str(elsewhere[0]),
        "--temp-dir",
        str(elsewhere[1]),
    )

    assert result.code == 2, result.stdout + result.stderr
    assert (
        f"paths.database: {harness.db} must not be inside the deletion root paths.results "
        f"({harness.base})"
    ) in result.stderr
    harness.assert_untouched()


# -- mount points --------------------------------------------------------------------------


MOUNTS = {
    "tmpfs-inside-the-tree": ("results", "outputs/mnt", ["-t", "tmpfs", "-o", "size=1m", "none"]),
    "bind-of-the-canary-inside-the-tree": ("results", "outputs/mnt", ["--bind", "{canary}"]),
    "bind-of-another-root-inside-the-tree": ("results", "outputs/mnt", ["--bind", "{uploads}"]),
    "tmpfs-as-the-job-temp-dir": ("temp", "", ["-t", "tmpfs", "-o", "size=1m", "none"]),
    "bind-of-the-canary-as-the-job-temp-dir": ("temp", "", ["--bind", "{canary}"]),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", list(MOUNTS))
def test_mount_point_in_a_job_is_not_entered_and_the_job_is_partly_cleaned_not_marked(
    harness: Harness, kind: str, workers: int
) -> None:
    root, below, arguments = MOUNTS[kind]
    victim = victim_of(harness)
    top = (harness.results if root == "results" else harness.temp) / victim.job_id
    point = top / below if below else top
    point.mkdir(parents=True, exist_ok=True)
    arguments = [
        argument.format(canary=harness.canary, uploads=harness.uploads) for argument in arguments
    ]
    display = f"{root}/{victim.job_id}/{below + '/' if below else ''}"
    with mounted(arguments, point):
        if "tmpfs" in arguments:
            write(point / "on_other_fs.dat", 1_000, b"o")
        inside = snapshot(point)
        harness.arm()

        report = harness.run(workers=workers)

        if kind != "bind-of-another-root-inside-the-tree":
            # (That one mirrors the uploads root, where the legit uploads rightly went.)
            assert snapshot(point) == inside, "the mounted tree was entered"
        assert exit_code(report) == 1
        job = result_of(report, victim.job_id)
        assert job.errors
        assert f"{display}: a mount point: not crossed" in job.errors
        # (A bind mount of a root is also refused as that protected root; no other error.)
        assert all(
            error.startswith(f"{display}: ")
            and error.endswith(
                (
                    "not crossed",
                    "protected path (database, config, log directory or a root) is linked here",
                )
            )
            for error in job.errors
        ), job.errors
        assert victim.job_id not in harness.marked()
        # The rest of the job went: it was partly cleaned.
        assert not (victim.results(harness.base) / "workflow.log").exists()
        assert not (harness.results / f"{victim.job_id}_results.zip").exists()
        harness.assert_safe(report, changing=[victim])


def test_bind_mount_made_while_the_tree_is_walked_is_not_entered(harness: Harness) -> None:
    victim = victim_of(harness)
    parent = victim.results(harness.base)
    point = parent / "sub"
    write(point / "own.txt", 100)
    mounts: list[str] = []
    failed: list[str] = []

    def mount_before_open(parent_fd: int, name: str) -> None:
        if name == "sub" and path_of(parent_fd) == str(parent) and not mounts + failed:
            made = subprocess.run(
                ["mount", "--bind", str(harness.canary), str(point)],
                capture_output=True,
                text=True,
                check=False,
            )
            (mounts if made.returncode == 0 else failed).append(made.stderr.strip() or "mounted")

    try:
        report = harness.run(before_open=mount_before_open)
        if failed:
            pytest.skip(f"cannot bind-mount here: {failed[0]}")
        assert len(mounts) == 1
        assert victim.job_id not in harness.marked()
        harness.assert_safe(report, changing=[victim])
    finally:
        if mounts:
            unmount(point)


# -- FIFOs, sockets, devices ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "socket", "char-device", "block-device"])
def test_special_file_in_a_job_tree_is_unlinked_without_being_opened(
    harness: Harness, fs_spy: FsSpy, kind: str
) -> None:
    victim = victim_of(harness)
    node = victim.results(harness.base) / "outputs" / "special-node"
    make_special(kind, node)

    report = harness.run(spy=fs_spy, deadline=SPECIAL_DEADLINE_SECONDS, unblock=unblock_fifos(node))

    assert not os.path.lexists(node)
    opened = [
        call for call in fs_spy.calls if call.function == "open" and "special-node" in call.path
    ]
    assert opened == []
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


def test_fifo_in_place_of_the_archive_is_refused_and_the_run_does_not_hang(
    harness: Harness,
) -> None:
    # An archive name must name a file (issue #8 item 4): a FIFO there is refused, left for
    # the operator, never opened (tests/safety/test_wrong_file_type.py has every kind).
    victim = victim_of(harness)
    archive = harness.results / f"{victim.job_id}_results.zip"
    archive.unlink()
    os.mkfifo(archive)

    report = harness.run(deadline=SPECIAL_DEADLINE_SECONDS, unblock=unblock_fifos(archive))

    assert stat.S_ISFIFO(os.lstat(archive).st_mode)
    assert exit_code(report) == 1
    assert victim.job_id not in harness.marked()


@pytest.mark.e2e
def test_cli_run_over_fifos_and_a_device_everywhere_finishes_in_time_and_exits_0(
    harness: Harness,
) -> None:
    # The CLI's two workers: directory trees go to deletion worker processes.
    victim = victim_of(harness)
    os.mkfifo(victim.results(harness.base) / "outputs" / "pipe")
    os.mkfifo(harness.temp / victim.job_id / "pipe")
    make_special("char-device", victim.results(harness.base) / "outputs" / "monthly" / "null")

    try:
        result = harness.run_cli(timeout=SPECIAL_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the CLI run was still going after {SPECIAL_DEADLINE_SECONDS} s: it hung")

    assert result.code == 0, result.stderr
    assert victim.job_id in harness.marked()
    harness.assert_safe(result, gone=[victim])


# -- trees too deep for recursion, too long for a path -------------------------------------


def _descend(top: Path, name: str, levels: int, leaf: bytes) -> None:
    """``levels`` nested directories ``name`` below ``top``, built with relative descriptors,
    and a file at the bottom."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _level in range(levels):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("leaf.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, leaf)
        os.close(out)
    finally:
        os.close(fd)


def test_job_tree_deeper_than_the_recursion_limit_is_removed_and_marked(harness: Harness) -> None:
    # The CLI's two workers (the deletion worker processes); the deadline only catches a hang.
    assert sys.getrecursionlimit() < DEEP_LEVELS
    victim = victim_of(harness)
    harness.arm()  # before building: the snapshot walk itself recurses
    _descend(victim.results(harness.base), "d", DEEP_LEVELS, b"bottom")

    report = harness.run(deadline=DEEP_DEADLINE_SECONDS)

    assert not victim.results(harness.base).exists()
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


@pytest.mark.usefixtures("guard_beyond_path_max")
@pytest.mark.parametrize("workers", [1, 2])
def test_job_tree_longer_than_path_max_is_removed_and_marked(
    harness: Harness, workers: int
) -> None:
    victim = victim_of(harness)
    top = victim.results(harness.base)
    assert len(str(top)) + LONG_LEVELS * (len(LONG_NAME) + 1) > PATH_MAX
    harness.arm()
    _descend(top, LONG_NAME, LONG_LEVELS, b"far away")

    report = harness.run(workers=workers)

    assert not top.exists()
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


# -- files appearing while a directory is emptied ------------------------------------------


def test_file_appearing_once_while_emptying_is_removed_on_rescan_and_the_job_is_marked(
    harness: Harness,
) -> None:
    victim = victim_of(harness)
    parent = str(victim.results(harness.base))
    made: list[str] = []

    def add_file(parent_fd: int, name: str) -> None:
        if path_of(parent_fd) == parent and not made:
            made.append("late.log")
            fd = os.open("late.log", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=parent_fd)
            os.close(fd)

    report = harness.run(before_open=add_file)

    assert made == ["late.log"]
    assert not victim.results(harness.base).exists()
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


def test_entries_that_keep_appearing_give_up_after_bounded_retries_and_the_job_is_not_marked(
    harness: Harness,
) -> None:
    victim = victim_of(harness)
    parent = str(victim.results(harness.base))
    made: list[str] = []

    def add_subdirectory(parent_fd: int, name: str) -> None:
        if path_of(parent_fd) == parent and len(made) < HOOK_CAP:
            made.append(f"appeared-{len(made)}")
            os.mkdir(made[-1], dir_fd=parent_fd)

    report = harness.run(before_open=add_subdirectory)

    assert 0 < len(made) < HOOK_CAP, "retries were not bounded"
    job = result_of(report, victim.job_id)
    errors = job.errors
    assert f"results/{victim.job_id}/: entries kept appearing; not empty after retries" in errors
    assert exit_code(report) == 1
    assert victim.job_id not in harness.marked()
    harness.assert_safe(report, changing=[victim])


def test_writer_thread_filling_a_job_during_deletion_cannot_hang_the_run_or_fake_a_mark(
    harness: Harness,
) -> None:
    victim = victim_of(harness)
    top = victim.results(harness.base)
    for number in range(1_500):
        write(top / "many" / f"f{number:05d}", 10)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        while not stop.is_set() and len(written) < 20_000:
            try:
                fd = os.open(top / f"w{len(written)}", os.O_WRONLY | os.O_CREAT, 0o644)
            except OSError as error:
                if error.errno == errno.ENOENT:
                    return  # the job directory is gone
                raise
            os.close(fd)
            written.append(1)

    thread = threading.Thread(target=writer, daemon=True)
    harness.arm()
    thread.start()
    try:
        report = harness.run()
    finally:
        stop.set()
        thread.join(10)

    assert written, "the writer never wrote"
    job = result_of(report, victim.job_id)
    if victim.job_id in harness.marked():
        assert not top.exists()
        assert job.errors == []
    else:
        assert job.errors
        assert exit_code(report) == 1
    harness.assert_safe(report, changing=[victim])


# -- permission errors ---------------------------------------------------------------------


IMMUTABLE = {
    "immutable-file": ("i", lambda h, v: v.results(h.base) / "outputs" / "tile_000.tif"),
    "immutable-job-dir": ("i", lambda h, v: v.results(h.base)),
    "append-only-subdir": ("a", lambda h, v: v.results(h.base) / "outputs" / "monthly"),
    "immutable-upload": ("i", lambda h, v: h.uploads / str(v.upload)),
}


@pytest.mark.parametrize("kind", list(IMMUTABLE))
def test_eperm_from_chattr_fails_the_job_unmarked_the_run_goes_on_and_no_mode_changes(
    harness: Harness, kind: str
) -> None:
    flag, pick = IMMUTABLE[kind]
    victim = victim_of(harness)
    target = pick(harness, victim)
    with attribute(flag, target):
        modes = harness.modes(victim.results(harness.base)) | harness.modes(target)
        harness.arm()

        report = harness.run()

        assert has_attribute(target, flag), "the attribute was removed"
        job = result_of(report, victim.job_id)
        errors = job.errors
        assert errors
        assert all(error.endswith("Operation not permitted") for error in errors), errors
        assert exit_code(report) == 1
        assert victim.job_id not in harness.marked()
        for key, mode in modes.items():
            path = harness.tmp / key
            if os.path.lexists(path):
                info = os.lstat(path)
                assert (info.st_mode, info.st_uid, info.st_gid) == mode, key
        harness.assert_safe(report, changing=[victim])


def _locked_subdir(harness: Harness, victim: Job, kind: str) -> Path:
    """Make part of the victim's tree undeletable for nobody; returns that part."""
    locked = victim.results(harness.base) / "outputs" / "locked"
    write(locked / "inside.dat", 2_000, b"L")
    if kind == "root-owned-0755-subdir":
        chown_tree(locked, 0, 0)
        os.chmod(locked, 0o755)
    elif kind == "own-read-only-0555-subdir":
        os.chmod(locked, 0o555)
    else:  # a root-owned sticky directory: nobody may add, not remove root's files
        chown_tree(locked, 0, 0)
        os.chmod(locked, 0o1777)
    return locked


@pytest.mark.e2e
@pytest.mark.parametrize(
    "kind", ["root-owned-0755-subdir", "own-read-only-0555-subdir", "sticky-root-owned-dir"]
)
def test_cli_as_nobody_permission_errors_fail_the_job_unmarked_and_change_no_permission(
    harness: Harness, kind: str
) -> None:
    victim = victim_of(harness)
    chown_tree(harness.base, NOBODY, NOBODY)
    locked = _locked_subdir(harness, victim, kind)
    modes = harness.modes(victim.results(harness.base))
    harness.arm()

    # The config by environment: click's --config check uses access(2), which ignores the
    # capability nobody keeps to reach tmp_path.
    completed = subprocess.run(
        unprivileged_command(cli_executable(), "run", "--json"),
        env=guarded_env(harness.tmp, EEMT_CLEANUP_CONFIG=str(harness.config_file)),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if completed.returncode != 0 and completed.stderr.startswith("setpriv"):
        pytest.skip(f"cannot drop privileges with setpriv here: {completed.stderr.strip()}")
    result = CliResult(completed.returncode, completed.stdout, completed.stderr)

    assert result.code == 1, result.stdout + result.stderr
    log_file = harness.base / "logs" / "cleanup.log"
    assert os.lstat(log_file).st_uid == NOBODY, "not run as nobody"
    details = {detail["job_id"]: detail for detail in result.json()["details"]}
    errors = details[victim.job_id]["errors"]
    assert errors
    assert all(
        error.endswith(("Permission denied", "Operation not permitted")) for error in errors
    ), errors
    assert (locked / "inside.dat").read_bytes() == b"L" * 2_000
    for key, mode in modes.items():
        path = harness.tmp / key
        if os.path.lexists(path):
            info = os.lstat(path)
            assert (info.st_mode, info.st_uid, info.st_gid) == mode, key
    assert victim.job_id not in harness.marked()
    harness.assert_safe(result, changing=[victim])


# -- a directory swapped for a symlink between listing and opening -------------------------


SWAPS: dict[str, tuple[str, Callable[[Harness], Path]]] = {
    "subdir-for-link-to-the-canary": ("outputs", lambda h: h.canary),
    "subdir-for-link-to-another-root": ("outputs", lambda h: h.uploads),
    "subdir-for-link-to-the-whole-test-directory": ("outputs", lambda h: h.tmp),
    "job-dir-for-link-to-the-canary": ("", lambda h: h.canary),
}


@pytest.mark.parametrize("swap", list(SWAPS))
def test_directory_swapped_for_a_symlink_before_opening_changes_nothing_outside_the_root(
    harness: Harness, swap: str
) -> None:
    name, target = SWAPS[swap]
    victim = victim_of(harness)
    job_dir = victim.results(harness.base)
    parent, entry = (job_dir, name) if name else (harness.results, victim.job_id)
    moved = harness.tmp / "moved-away"
    swapped: list[str] = []

    def swap_for_link(parent_fd: int, opening: str) -> None:
        if opening == entry and path_of(parent_fd) == str(parent) and not swapped:
            os.rename(opening, moved, src_dir_fd=parent_fd)
            os.symlink(target(harness), opening, dir_fd=parent_fd)
            swapped.append(opening)

    original = snapshot(parent / entry)
    harness.arm()

    report = harness.run(before_open=swap_for_link)

    assert swapped == [entry]
    assert not os.path.lexists(parent / entry), "the link was not removed"
    assert snapshot(moved) == original, "the tree moved out of the root was touched"
    assert exit_code(report) == 0
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim], changing=[moved])


@pytest.mark.e2e
def test_cli_json_of_a_job_with_a_mount_point_names_it_and_exits_1(harness: Harness) -> None:
    victim = victim_of(harness)
    point = victim.results(harness.base) / "mnt"
    point.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=1m", "none"], point):
        result = harness.run_cli()
        data = json.loads(result.stdout)
        assert result.code == 1
        details = {detail["job_id"]: detail for detail in data["details"]}
        assert details[victim.job_id]["errors"] == [
            f"results/{victim.job_id}/mnt/: a mount point: not crossed"
        ]
        assert (
            f"job {victim.job_id}: results/{victim.job_id}/mnt/: a mount point: not crossed"
            in (data["errors"])
        )
        harness.assert_safe(result, changing=[victim])

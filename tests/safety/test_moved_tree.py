"""A job tree moved out of its root while it is being deleted (issue #8 item 5, SPEC §7).

The web application can rename a job directory, or any directory below it, to a place
outside the root on the same filesystem while a deletion walk is inside it. Descriptors
keep working across a rename, so a walk that did not look would go on deleting outside the
root. The rule: every directory the walk enters, and every directory right before it is
removed, is still inside its root; one that is not stops the whole job's walk. At most the
directory being emptied at that instant is affected, the job is reported and not marked.

The rename is made deterministically at the moment the walk opens (or unlinks in) a given
directory: by the Remover's ``before_open`` hook in this process (one worker), by a wrapper
of ``os.open``/``os.unlink`` in this process plus a ``sitecustomize`` move hook loaded by the
spawned deletion workers (two workers), and by the same hook in the CLI process and its
workers (end to end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import guarded_env

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.engine import JobResult, RunReport

from .conftest import Harness, Job, write

MOVED = "moved out of its root while being deleted: stopped"
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY
LONG_LEVELS = 20
MOVE_AT_LEVEL = 18
PATH_MAX = 4096
Listing = dict[tuple[str, ...], tuple[str, bytes]]


def path_of(fd: int) -> str | None:
    """An open directory's current path (None beyond PATH_MAX)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def result_of(report: RunReport, job_id: str) -> JobResult:
    return next(job for job in report.jobs if job.job_id == job_id)


def listing(top: Path) -> Listing:
    """Every entry below ``top`` by its chain of names: ("dir", b"") or ("file", content).
    Walked on descriptors, so trees longer than PATH_MAX are listed too."""
    found: Listing = {}
    stack = [((), os.open(top, DIRECTORY_FLAGS))]
    while stack:
        names, fd = stack.pop()
        try:
            for entry in os.scandir(fd):
                key = (*names, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    found[key] = ("dir", b"")
                    stack.append((key, os.open(entry.name, DIRECTORY_FLAGS, dir_fd=fd)))
                else:
                    child = os.open(entry.name, os.O_RDONLY, dir_fd=fd)
                    with os.fdopen(child, "rb") as handle:
                        found[key] = ("file", handle.read())
        finally:
            os.close(fd)
    return found


@contextlib.contextmanager
def replaced(
    name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """``os.<name>`` wrapped in this process for the duration (not in spawned workers)."""
    real = getattr(os, name)
    setattr(os, name, wrapper(real))
    try:
        yield
    finally:
        setattr(os, name, real)


class Mover:
    """Renames ``source`` to ``destination`` once, when the walk opens the directory
    ``when_opening`` in the directory ``inside`` (a path, or None to match by name only)."""

    def __init__(self, source: Path, destination: Path, when_opening: str, inside: Path | None):
        self.source = source
        self.destination = destination
        self.when_opening = when_opening
        self.inside = None if inside is None else str(inside)

    def maybe_move(self, parent_fd: int, name: str) -> None:
        if name != self.when_opening or os.path.lexists(self.destination):
            return  # (the destination exists once moved: at most once, in any process)
        if self.inside is not None and path_of(parent_fd) != self.inside:
            return
        os.rename(self.source, self.destination)

    def before_open(self, parent_fd: int, name: str) -> None:
        self.maybe_move(parent_fd, name)

    def wrap_open(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def opening(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> Any:
            if dir_fd is not None and flags & os.O_DIRECTORY and isinstance(path, str):
                self.maybe_move(dir_fd, path)
            return real(path, flags, mode, dir_fd=dir_fd)

        return opening


def run_moving(harness: Harness, mover: Mover, workers: int) -> RunReport:
    """Run with the mover armed: the Remover's hook (one worker), or ``os.open`` wrapped in
    this process and, through the move hook, in the spawned deletion workers (two)."""
    if workers == 1:
        return harness.run(workers=1, before_open=mover.before_open)
    env = install_move_hook(
        # Beside the test's directory, not in it: that one is compared with its snapshot.
        harness.tmp.parent / f"{harness.tmp.name}-move-hook",
        mover.source,
        mover.destination,
        mover.when_opening,
        None if mover.inside is None else Path(mover.inside),
    )
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with replaced("open", mover.wrap_open):
            return harness.run(workers=workers)


def job_tree(harness: Harness, victim: Job) -> Path:
    """results/<id>/{workflow.log, a/{a.txt, b/{b1.txt, c/c1.txt}}}: returns ``a``."""
    top = victim.results(harness.base)
    shutil.rmtree(top / "outputs")
    a = top / "a"
    write(a / "a.txt", 5_000, b"a")
    write(a / "b" / "b1.txt", 7_000, b"b")
    write(a / "b" / "c" / "c1.txt", 9_000, b"c")
    return a


def assert_reported_not_marked(
    harness: Harness, report: RunReport, victim: Job, error: str
) -> None:
    assert exit_code(report) == 1
    job = result_of(report, victim.job_id)
    assert job.errors == [error]
    assert not job.cleaned
    assert victim.job_id not in harness.marked()
    display = f"results/{victim.job_id}/"
    assert (victim.job_id, "error", display, error) in harness.audit("error")


def other_artifacts(harness: Harness, victim: Job) -> list[Path]:
    """The victim's archive, temp dir and upload: cleaned as usual."""
    return [path for path in victim.artifacts(harness.base) if path != victim.results(harness.base)]


# -- the walk enters a directory that is no longer inside the root ------------------------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("moved", ["subdirectory", "job-directory"])
def test_tree_moved_out_of_the_root_before_entering_a_directory_stops_the_walk_there(
    harness: Harness, moved: str, workers: int
) -> None:
    victim = harness.add_job("victim")
    a = job_tree(harness, victim)
    top = victim.results(harness.base)
    outside = harness.tmp / "moved-out"
    outside.mkdir()
    source = a if moved == "subdirectory" else top
    destination = outside / source.name
    moved_a = destination if moved == "subdirectory" else destination / "a"
    # What the moved tree holds at the instant of the rename: ``a`` was emptied of its
    # files before the walk went on to open ``b``; ``b`` was never entered.
    expected = {key: value for key, value in listing(a).items() if key != ("a.txt",)}
    harness.arm()

    report = run_moving(harness, Mover(source, destination, "b", inside=a), workers)

    assert moved_a.is_dir(), "the tree was never moved"
    assert listing(moved_a) == expected, "the walk went on outside the root"
    assert_reported_not_marked(harness, report, victim, f"results/{victim.job_id}/a/b/: {MOVED}")
    if moved == "subdirectory":
        assert listing(top) == {}, "the job directory was removed after the walk stopped"
    else:
        assert not os.path.lexists(top)
    harness.assert_safe(report, gone=other_artifacts(harness, victim), changing=[top, outside])


# -- a directory moved out while it is being emptied is not removed there -----------------


def test_directory_moved_out_while_being_emptied_is_emptied_but_not_removed_outside(
    harness: Harness,
) -> None:
    # One worker: the rename happens at the first unlink in ``b``, after ``b`` was entered;
    # the rest of ``b`` is the directory being emptied at that instant. Its parent ``a`` is
    # outside the root by then: removing ``b`` by name in it would be removing outside.
    victim = harness.add_job("victim")
    top = victim.results(harness.base)
    b = top / "a" / "b"
    for number in range(10):
        write(b / f"f{number}", 1_000)
    outside = harness.tmp / "moved-out"
    outside.mkdir()
    harness.arm()

    def wrap_unlink(real: Callable[..., Any]) -> Callable[..., Any]:
        def unlinking(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> Any:
            if dir_fd is not None and path_of(dir_fd) == str(b) and not (outside / "a").exists():
                os.rename(top / "a", outside / "a")
            if dir_fd is None:
                return real(path, *args, **kwargs)
            return real(path, *args, dir_fd=dir_fd, **kwargs)

        return unlinking

    with replaced("unlink", wrap_unlink):
        report = harness.run(workers=1)

    assert (outside / "a").is_dir(), "the tree was never moved"
    assert listing(outside / "a") == {("b",): ("dir", b"")}
    assert_reported_not_marked(harness, report, victim, f"results/{victim.job_id}/a/b/: {MOVED}")
    harness.assert_safe(report, gone=other_artifacts(harness, victim), changing=[top, outside])


# -- beyond PATH_MAX: the chain of names up to the root -----------------------------------


def long_name(level: int) -> str:
    return f"{level:02d}" + "n" * 238


@pytest.mark.usefixtures("guard_beyond_path_max")
@pytest.mark.parametrize("workers", [1, 2])
def test_tree_longer_than_path_max_moved_out_is_caught_by_the_chain_of_names(
    harness: Harness, workers: int
) -> None:
    victim = harness.add_job("victim")
    top = victim.results(harness.base)
    a = job_tree(harness, victim)
    shutil.rmtree(a / "b")  # one chain of levels: one order of work in any worker
    depth = len(str(a)) + MOVE_AT_LEVEL * (len(long_name(0)) + 1)
    assert depth > PATH_MAX, "the directory opened at the move must be beyond PATH_MAX"
    outside = harness.tmp / "moved-out"
    outside.mkdir()
    harness.arm()  # before building: the snapshot walks paths, which stop at PATH_MAX
    fd = os.open(a, DIRECTORY_FLAGS)
    try:
        for level in range(LONG_LEVELS):
            os.mkdir(long_name(level), dir_fd=fd)
            child = os.open(long_name(level), DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            out = os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(out, b"level %d" % level)
            os.close(out)
    finally:
        os.close(fd)
    before = listing(a)
    # At the move, every level above the one being opened was emptied of its files (the
    # file of level n has n + 1 directories above it, from ``a``).
    expected = {
        key: value
        for key, value in before.items()
        if key != ("a.txt",) and not (key[-1] == "file" and len(key) - 2 < MOVE_AT_LEVEL)
    }

    mover = Mover(a, outside / "a", long_name(MOVE_AT_LEVEL), inside=None)
    report = run_moving(harness, mover, workers)

    assert (outside / "a").is_dir(), "the tree was never moved"
    assert listing(outside / "a") == expected, "the walk went on outside the root"
    job = result_of(report, victim.job_id)
    assert len(job.errors) == 1, job.errors
    assert job.errors[0].startswith(f"results/{victim.job_id}/a/")
    assert job.errors[0].endswith(f"/{long_name(MOVE_AT_LEVEL)}/: {MOVED}")
    assert victim.job_id not in harness.marked()
    assert exit_code(report) == 1
    shutil.rmtree(outside / "a")  # (on descriptors: the snapshot cannot walk it)
    harness.assert_safe(report, gone=other_artifacts(harness, victim), changing=[top, outside])


# -- end to end: the CLI and its deletion workers -----------------------------------------


MOVE_HOOK = '''"""Rename a directory away when a walk opens a given one (written by tests/safety).

Loaded at start-up (as the ``sitecustomize`` of the process) in the CLI process and in the
deletion worker processes, which are spawned: a wrapper installed in the test's process
does not reach them. The ``sitecustomize`` it shadows (the deletion guard's) runs first.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _entry in sys.path:
    _candidate = os.path.join(_entry or ".", "sitecustomize.py")
    if os.path.abspath(_entry or ".") != _HERE and os.path.exists(_candidate):
        with open(_candidate) as _file:
            exec(compile(_file.read(), _candidate, "exec"), {"__name__": "_shadowed"})
        break

_SOURCE = os.environ["MOVE_TREE_SOURCE"]
_DESTINATION = os.environ["MOVE_TREE_DESTINATION"]
_WHEN_OPENING = os.environ["MOVE_TREE_WHEN_OPENING"]
_INSIDE = os.environ.get("MOVE_TREE_WHEN_INSIDE") or None
_real_open = os.open


def _opening(path, flags, mode=0o777, *, dir_fd=None):
    if dir_fd is not None and path == _WHEN_OPENING and not os.path.lexists(_DESTINATION):
        try:
            inside = os.readlink(f"/proc/self/fd/{dir_fd}")
        except OSError:
            inside = None
        if _INSIDE is None or inside == _INSIDE:
            os.rename(_SOURCE, _DESTINATION)
    return _real_open(path, flags, mode, dir_fd=dir_fd)


os.open = _opening
'''


def install_move_hook(
    directory: Path, source: Path, destination: Path, when_opening: str, inside: Path | None
) -> dict[str, str]:
    """Write the hook into ``directory``; the environment that loads it in processes."""
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(MOVE_HOOK)
    return {
        "PYTHONPATH": os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MOVE_TREE_SOURCE": str(source),
        "MOVE_TREE_DESTINATION": str(destination),
        "MOVE_TREE_WHEN_OPENING": when_opening,
        "MOVE_TREE_WHEN_INSIDE": "" if inside is None else str(inside),
    }


@pytest.mark.e2e
def test_cli_job_moved_out_of_the_root_mid_walk_is_reported_in_json_and_exits_1(
    harness: Harness,
) -> None:
    # The config file's two workers: the job tree goes to the deletion worker processes.
    victim = harness.add_job("victim")
    a = job_tree(harness, victim)
    top = victim.results(harness.base)
    outside = harness.tmp / "moved-out"
    outside.mkdir()
    env = guarded_env(harness.tmp)
    env.update(install_move_hook(harness.tmp / "move-hook", top, outside / victim.job_id, "b", a))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(harness.tmp / "move-hook"), guarded_env(harness.tmp)["PYTHONPATH"]]
    )
    expected = {key: value for key, value in listing(a).items() if key != ("a.txt",)}
    harness.arm()

    result = harness.run_cli(env=env)

    assert (outside / victim.job_id).is_dir(), "the tree was never moved"
    assert listing(outside / victim.job_id / "a") == expected
    assert result.code == 1, result.stderr
    details = {detail["job_id"]: detail for detail in result.json()["details"]}
    error = f"results/{victim.job_id}/a/b/: {MOVED}"
    assert details[victim.job_id]["errors"] == [error]
    assert (victim.job_id, "error", f"results/{victim.job_id}/", error) in harness.audit("error")
    assert victim.job_id not in harness.marked()
    harness.assert_safe(result, gone=other_artifacts(harness, victim), changing=[top, outside])

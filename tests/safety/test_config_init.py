"""``config init`` never writes through what is at PATH (issue 8, item 7).

The file is written beside PATH and linked in (or, with ``--force``, renamed over it):
a symlink at PATH, dangling or not, is never followed, a directory is refused, and the
other name of a hard-linked file keeps its content. Without ``--force`` anything at PATH is
refused. The tool runs as root in directories others may write, so each of these would
otherwise let someone choose which file root overwrites or creates.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CliResult, call, error_line, guarded_env, snapshot

from eemt_cleanup.config.template import render_default_config

pytestmark = pytest.mark.e2e

OUTSIDE_CONTENT = b"# the operator's precious file, not ours\nkeep: me\n"
FIFO_DEADLINE_SECONDS = 30


def init(tmp_path: Path, *args: str, cwd: Path | str = "/") -> CliResult:
    return call(["config", "init", *args], guarded_env(tmp_path), cwd)


def assert_documented_file(path: Path) -> None:
    """``path`` is a regular file of its own holding exactly the documented default."""
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode)
    assert info.st_nlink == 1
    assert stat.S_IMODE(info.st_mode) == 0o644
    assert path.read_text(encoding="utf-8") == render_default_config()


def assert_no_temporary_left(directory: Path) -> None:
    assert [name for name in os.listdir(directory) if name.endswith(".tmp")] == []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the directory config init writes in, which must never change."""
    target = tmp_path / "outside" / "precious.conf"
    target.parent.mkdir()
    target.write_bytes(OUTSIDE_CONTENT)
    return target


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    return directory


# --------------------------------------------------------------------------- the normal case


def test_config_init_writes_the_documented_file_creating_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "new" / "etc" / "cleanup_config.yaml"
    result = init(tmp_path, str(target))
    assert result.code == 0, result.stderr
    assert result.stdout == f"wrote {target}\n"
    assert result.stderr == ""
    assert_documented_file(target)
    assert_no_temporary_left(target.parent)


def test_config_init_without_a_path_writes_in_the_working_directory(tmp_path: Path) -> None:
    result = init(tmp_path, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout == "wrote cleanup_config.yaml\n"
    assert_documented_file(tmp_path / "cleanup_config.yaml")


def test_config_init_with_force_replaces_an_existing_file(tmp_path: Path, etc: Path) -> None:
    target = etc / "cleanup_config.yaml"
    target.write_text("# edited\n")
    result = init(tmp_path, str(target), "--force")
    assert result.code == 0, result.stderr
    assert_documented_file(target)
    assert_no_temporary_left(etc)


def test_config_init_with_an_empty_path_exits_2(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    result = init(tmp_path, "", cwd=tmp_path)
    assert result.code == 2
    assert error_line(result) == "PATH: must not be empty"
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize("force", [False, True], ids=["refused", "force"])
def test_config_init_never_writes_through_a_symlink_to_an_existing_file(
    tmp_path: Path, etc: Path, outside: Path, force: bool
) -> None:
    link = etc / "cleanup_config.yaml"
    link.symlink_to(outside)
    result = init(tmp_path, str(link), *(["--force"] if force else []))
    assert outside.read_bytes() == OUTSIDE_CONTENT
    assert os.listdir(outside.parent) == [outside.name]
    if force:
        assert result.code == 0, result.stderr
        assert_documented_file(link)  # the link itself was replaced by our file
    else:
        assert result.code == 2
        assert error_line(result) == f"{link} exists; not overwriting it without --force"
        assert os.readlink(link) == str(outside)
    assert_no_temporary_left(etc)


@pytest.mark.parametrize("force", [False, True], ids=["refused", "force"])
def test_config_init_never_creates_the_target_of_a_dangling_symlink(
    tmp_path: Path, etc: Path, force: bool
) -> None:
    planted = tmp_path / "outside" / "cron.d" / "planted"
    planted.parent.mkdir(parents=True)
    link = etc / "cleanup_config.yaml"
    link.symlink_to(planted)
    result = init(tmp_path, str(link), *(["--force"] if force else []))
    assert not os.path.lexists(planted)
    assert os.listdir(planted.parent) == []
    if force:
        assert result.code == 0, result.stderr
        assert_documented_file(link)
    else:
        assert result.code == 2
        assert error_line(result) == f"{link} exists; not overwriting it without --force"
        assert os.readlink(link) == str(planted)
    assert_no_temporary_left(etc)


# --------------------------------------------------------------------------- other file types


@pytest.mark.parametrize("force", [False, True], ids=["refused", "force"])
def test_config_init_refuses_a_directory_at_the_path(
    tmp_path: Path, etc: Path, force: bool
) -> None:
    directory = etc / "cleanup_config.yaml"
    (directory / "inside").mkdir(parents=True)
    (directory / "inside" / "data.txt").write_text("data")
    before = snapshot(etc)
    result = init(tmp_path, str(directory), *(["--force"] if force else []))
    assert result.code == 2
    assert error_line(result) == f"{directory} is a directory: not writing there"
    assert snapshot(etc) == before


@pytest.mark.parametrize("force", [False, True], ids=["refused", "force"])
def test_config_init_leaves_the_other_name_of_a_hard_link_unchanged(
    tmp_path: Path, etc: Path, outside: Path, force: bool
) -> None:
    hard = etc / "cleanup_config.yaml"
    os.link(outside, hard)
    result = init(tmp_path, str(hard), *(["--force"] if force else []))
    assert outside.read_bytes() == OUTSIDE_CONTENT
    if force:
        assert result.code == 0, result.stderr
        assert_documented_file(hard)
        assert os.stat(outside).st_nlink == 1
    else:
        assert result.code == 2
        assert error_line(result) == f"{hard} exists; not overwriting it without --force"
        assert os.stat(outside).st_nlink == 2


@pytest.mark.parametrize("force", [False, True], ids=["refused", "force"])
def test_config_init_never_opens_a_fifo_at_the_path(
    tmp_path: Path, etc: Path, run_cli: Callable[..., CliResult], force: bool
) -> None:
    # Opening a FIFO for writing blocks until a reader comes: a bounded subprocess shows it.
    fifo = etc / "cleanup_config.yaml"
    os.mkfifo(fifo)
    result = run_cli(
        "config",
        "init",
        str(fifo),
        *(["--force"] if force else []),
        timeout=FIFO_DEADLINE_SECONDS,
    )
    if force:
        assert result.code == 0, result.stderr
        assert_documented_file(fifo)
    else:
        assert result.code == 2
        assert error_line(result) == f"{fifo} exists; not overwriting it without --force"
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

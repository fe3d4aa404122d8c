"""Item 1: the log file is never opened through a symlink, never anything but a regular
file with one link, and its modes do not depend on the umask.

``logs/`` is writable by the web application, and the tool runs as root: a symlink, FIFO,
device or hard link planted at ``logs/cleanup.log`` must not turn a log line into a write
somewhere else, nor hang the run. On refusal: one warning on stderr, the run goes on.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import cli_executable, guarded_env

from eemt_cleanup.report.logs import FileFormatter, LogFileHandler

from .conftest import Harness

WARNING_PREFIX = "eemt-cleanup: warning: cannot write the log file "


def log_path(harness: Harness) -> Path:
    return harness.base / "logs" / "cleanup.log"


def outside_file(harness: Harness, content: bytes = b"root:x:0:0::/root:/bin/sh\n") -> Path:
    target = harness.tmp / "outside" / "passwd"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(content)
    return target


def assert_one_warning(stderr: str, reason: str) -> None:
    """Exactly one warning on stderr (where --json sends the log lines too): the refused
    log file and why."""
    lines = [line for line in stderr.splitlines() if "warning" in line.lower()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(WARNING_PREFIX), lines[0]
    assert reason in lines[0], lines[0]
    assert lines[0].endswith("the run goes on without it"), lines[0]


def test_a_real_run_creates_the_log_file_and_appends_to_an_existing_one(harness: Harness) -> None:
    first = harness.run_cli()
    assert first.code == 0, first.stderr
    lines = log_path(harness).read_text().splitlines()
    assert any("Cleaning job" in line for line in lines)
    second = harness.run_cli()
    assert second.code == 0
    again = log_path(harness).read_text().splitlines()
    assert again[: len(lines)] == lines, "the second run appends"
    assert len(again) > len(lines)


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_symlink_at_the_log_path_is_refused_and_its_target_is_never_written(
    harness: Harness, dangling: bool
) -> None:
    target = harness.tmp / "outside" / "cron-job"
    if not dangling:
        target = outside_file(harness)
    before = target.read_bytes() if not dangling else None
    log_path(harness).parent.mkdir()
    log_path(harness).symlink_to(target)

    result = harness.run_cli()

    assert result.code == 0
    assert_one_warning(result.stderr, "is a symbolic link: refused (never written through)")
    if dangling:
        assert not os.path.lexists(target), "the symlink's target was created"
    else:
        assert target.read_bytes() == before
    assert os.path.islink(log_path(harness)), "the planted link is left for the operator"
    harness.assert_safe(result)


def test_fifo_at_the_log_path_is_refused_without_blocking_the_run(harness: Harness) -> None:
    log_path(harness).parent.mkdir()
    os.mkfifo(log_path(harness))

    result = harness.run_cli(timeout=60)  # opening a FIFO for writing would block forever

    assert result.code == 0
    assert_one_warning(result.stderr, "FIFO")
    assert stat.S_ISFIFO(os.lstat(log_path(harness)).st_mode)
    harness.assert_safe(result)


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_directory_or_device_at_the_log_path_is_refused(harness: Harness, kind: str) -> None:
    log_path(harness).parent.mkdir()
    if kind == "directory":
        log_path(harness).mkdir()
        (log_path(harness) / "keep.txt").write_text("keep")
        reason = "is a directory, not a regular file"
    else:
        os.mknod(log_path(harness), stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
        reason = "is a character device, not a regular file"

    result = harness.run_cli()

    assert result.code == 0
    assert_one_warning(result.stderr, reason)
    if kind == "directory":
        assert (log_path(harness) / "keep.txt").read_text() == "keep"
    harness.assert_safe(result)


def test_hard_link_to_a_file_outside_is_refused_and_that_file_is_unchanged(
    harness: Harness,
) -> None:
    target = outside_file(harness)
    before = target.read_bytes()
    log_path(harness).parent.mkdir()
    os.link(target, log_path(harness))

    result = harness.run_cli()

    assert result.code == 0
    assert_one_warning(result.stderr, "has 2 hard links: refused")
    assert target.read_bytes() == before
    harness.assert_safe(result)


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o022])
def test_logs_directory_is_0750_and_the_file_0640_whatever_the_umask(
    harness: Harness, umask: int
) -> None:
    harness.arm()
    completed = subprocess.run(
        [cli_executable(), "run", "--quiet", "--config", str(harness.config_file)],
        env=guarded_env(harness.tmp),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert stat.S_IMODE(os.stat(log_path(harness).parent).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(log_path(harness)).st_mode) == 0o640
    harness.assert_safe(None)


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("eemt_cleanup", logging.INFO, __file__, 1, message, None, None)


def test_a_symlink_planted_after_logrotate_moved_the_file_is_never_written_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every reopen goes through the same checks as the first open: after logrotate renames
    # cleanup.log, the web application plants a symlink under the old name.
    logs = tmp_path / "logs"
    target = tmp_path / "outside" / "authorized_keys"
    target.parent.mkdir()
    target.write_text("ssh-ed25519 AAAA operator\n")
    handler = LogFileHandler(logs / "cleanup.log")
    handler.setFormatter(FileFormatter())
    try:
        handler.emit(record("first line"))
        os.rename(logs / "cleanup.log", logs / "cleanup.log.1")
        (logs / "cleanup.log").symlink_to(target)
        handler.emit(record("second line, must not reach the target"))
        handler.emit(record("third line"))
    finally:
        handler.close()

    assert target.read_text() == "ssh-ed25519 AAAA operator\n"
    assert "first line" in (logs / "cleanup.log.1").read_text()
    assert "second line" not in (logs / "cleanup.log.1").read_text()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1, warnings
    assert "is a symbolic link: refused" in warnings[0]


def test_after_a_plain_logrotate_move_lines_go_to_a_new_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    handler = LogFileHandler(logs / "cleanup.log")
    handler.setFormatter(FileFormatter())
    try:
        handler.emit(record("before rotation"))
        os.rename(logs / "cleanup.log", logs / "cleanup.log.1")
        handler.emit(record("after rotation"))
    finally:
        handler.close()

    assert "before rotation" in (logs / "cleanup.log.1").read_text()
    assert "after rotation" in (logs / "cleanup.log").read_text()
    assert "after rotation" not in (logs / "cleanup.log.1").read_text()
    assert stat.S_IMODE(os.stat(logs / "cleanup.log").st_mode) == 0o640

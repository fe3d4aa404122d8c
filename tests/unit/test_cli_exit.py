"""The console-script entry point: it guards the standard streams first, maps a bad
command line to one line and exit 2, and ends the process with ``os._exit`` after the
command: the exit status must be what ``sys.exit`` would give (whatever became of the
output), and nothing buffered may be lost."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import typer.main

from eemt_cleanup.cli import app, command_path, exit_status, invoke
from eemt_cleanup.cli.streams import QuietFileIO, guard_standard_streams, guarded_stream


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (1, 1), (2, 2), (75, 75)])
def test_exit_status_of_numbers_and_none(code: object, status: int) -> None:
    assert exit_status(code) == status


def test_exit_status_of_a_message_is_1_and_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status("boom") == 1
    assert capsys.readouterr().err == "boom\n"


def test_exit_now_flushes_stdout_stderr_and_log_handlers_before_ending() -> None:
    code = (
        "import logging, sys\n"
        "from eemt_cleanup.cli import exit_now\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "sys.stdout.write('out without newline')\n"
        "sys.stderr.write('err line\\n')\n"
        "logging.getLogger('x').warning('logged')\n"
        "exit_now(3)\n"
        "print('never')\n"
    )
    # Pipes, so the streams are block-buffered as they are under cron.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin"}
    )
    assert done.returncode == 3
    assert done.stdout == "out without newline"
    assert done.stderr == "err line\nlogged\n"


def test_exit_now_keeps_the_status_when_stdout_cannot_be_flushed() -> None:
    """Output nobody can read is not the run's outcome: the status is the command's."""
    code = (
        "import sys\n"
        "from eemt_cleanup.cli import exit_now\n"
        "sys.stdout.write('buffered, and the reader is gone')\n"
        "exit_now(0)\n"
    )
    pipe = dead_pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=pipe, stderr=subprocess.PIPE, env=CRON_ENV
        )
    finally:
        os.close(pipe)
    assert (done.returncode, done.stderr) == (0, b"")


# --------------------------------------------------------------------------- the stream guard

CRON_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # block-buffered stdout, as cron's


def dead_pipe() -> int:
    """The write end of a pipe whose reader has gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def is_dev_null(fd: int) -> bool:
    return os.path.samestat(os.fstat(fd), os.stat(os.devnull))


def test_guarded_stream_after_epipe_is_silent_and_points_its_fd_at_dev_null() -> None:
    fd = dead_pipe()
    try:
        stream = guarded_stream(fd, "utf-8")
        stream.write("the first line\n" * 1000)
        stream.flush()  # EPIPE: swallowed
        assert is_dev_null(fd)
        stream.write("and everything after\n")
        stream.flush()
        raw = stream.buffer.raw  # type: ignore[attr-defined]
        assert isinstance(raw, QuietFileIO) and raw.silenced
    finally:
        os.close(fd)


def test_guarded_stream_on_an_fd_that_cannot_be_written_is_silent() -> None:
    """EBADF: the fd is open, but for reading only (``>&0`` from a read-only stdin)."""
    read_end, write_end = os.pipe()
    try:
        stream = guarded_stream(read_end, "utf-8", write_through=True, buffered=False)
        stream.write("lost, quietly\n")
        stream.flush()
        assert is_dev_null(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        ("ascii", b"M\\xe4tterhorn \\u65e5\\u672c \\U0001f30b\n"),
        ("latin-1", b"M\xe4tterhorn \\u65e5\\u672c \\U0001f30b\n"),
        ("utf-8", "Mätterhorn 日本 🌋\n".encode()),
    ],
)
def test_guarded_stream_writes_what_its_encoding_lacks_as_backslash_escapes(
    encoding: str, expected: bytes
) -> None:
    read_end, write_end = os.pipe()
    try:
        stream = guarded_stream(write_end, encoding)
        stream.write("Mätterhorn 日本 🌋\n")
        stream.flush()
        assert os.read(read_end, 1000) == expected
    finally:
        os.close(read_end)
        os.close(write_end)


def test_guarded_stream_tells_a_terminal_from_a_pipe() -> None:
    master, slave = pty.openpty()
    read_end, write_end = os.pipe()
    try:
        assert guarded_stream(slave, "utf-8").isatty() is True
        assert guarded_stream(write_end, "utf-8").isatty() is False
    finally:
        for fd in (master, slave, read_end, write_end):
            os.close(fd)


def test_guarded_stream_waits_on_a_non_blocking_fd_and_loses_nothing() -> None:
    """A parent that left O_NONBLOCK on the pipe: writes wait for the reader, as blocking
    writes do, instead of failing with EAGAIN."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    payload = b"x" * 300_000  # several times what the pipe holds
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 4096):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        stream = guarded_stream(write_end, "ascii")
        stream.write(payload.decode())
        stream.flush()
    finally:
        os.close(write_end)
        reader.join(timeout=60)
        os.close(read_end)
    assert bytes(received) == payload


GUARD_PROBE = """\
import json, os, sys
from eemt_cleanup.cli.streams import guard_standard_streams
guard_standard_streams()
null = os.stat(os.devnull)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
state = {
    "null": [os.path.samestat(os.fstat(n), null) for n in (0, 1, 2)],
    "next_fd": os.open(os.devnull, os.O_RDONLY),
    "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering],
    "stderr": [sys.stderr.encoding, sys.stderr.errors, sys.stderr.line_buffering],
    "stdin": sys.stdin.read(),
}
print("written to nowhere, without an error")
os.write(fd, json.dumps(state).encode())
"""


def probe_guard(tmp_path: Path, close: str, **env: str) -> dict[str, Any]:
    report = tmp_path / "state.json"
    done = subprocess.run(
        ["sh", "-c", f'exec "$0" "$@" {close}', sys.executable, "-c", GUARD_PROBE, str(report)],
        env={**CRON_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if "2>&-" not in close else None,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())  # type: ignore[no-any-return]


def test_guard_occupies_closed_standard_fds_with_dev_null(tmp_path: Path) -> None:
    """With fds 0, 1 and 2 closed, the next file opened (the report) would be fd 0; after the
    guard it is not, and the streams work on /dev/null."""
    state = probe_guard(tmp_path, "<&- >&- 2>&-")
    assert state["null"] == [True, True, True]
    assert state["next_fd"] > 3  # 3 is the report
    assert state["stdout"] == ["utf-8", "backslashreplace", False]
    assert state["stderr"] == ["utf-8", "backslashreplace", True]
    assert state["stdin"] == ""


def test_guard_keeps_the_encoding_python_chose_and_replaces_its_errors(tmp_path: Path) -> None:
    state = probe_guard(tmp_path, "", PYTHONIOENCODING="latin-1:strict")
    assert state["stdout"] == ["iso8859-1", "backslashreplace", False]
    assert state["stderr"] == ["iso8859-1", "backslashreplace", True]


def test_guard_keeps_an_unbuffered_stdout_unbuffered() -> None:
    """PYTHONUNBUFFERED (common in containers): each write reaches the fd at once."""
    code = (
        "import os, sys\n"
        "from eemt_cleanup.cli.streams import guard_standard_streams\n"
        "guard_standard_streams()\n"
        "sys.stdout.write('no newline, no flush')\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env={**CRON_ENV, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, b"no newline, no flush")


def test_guard_leaves_a_stream_replaced_in_process_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    guard_standard_streams()
    assert (sys.stdout, sys.stderr) == (out, err)


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "path"),
    [
        (["run", "--workers"], "eemt-cleanup run"),
        (["config", "show", "--bogus"], "eemt-cleanup config show"),
        (["--version", "config", "nope", "show"], "eemt-cleanup config"),
        (["run", "--", "status"], "eemt-cleanup run"),
        (["bogus"], "eemt-cleanup"),
    ],
)
def test_command_path_names_the_subcommand_the_arguments_reach(args: list[str], path: str) -> None:
    assert command_path(typer.main.get_command(app), args) == path


def test_usage_error_is_one_escaped_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(["run", "--bogus\x1b[2J\nforged"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "\x1b" not in captured.err
    assert captured.err.startswith("eemt-cleanup: error: No such option: --bogus\\")
    assert captured.err.endswith(" (see 'eemt-cleanup run --help')\n")


def test_usage_error_with_json_is_also_one_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert invoke(["status", "--json", "--limit", "x"]) == 2
    captured = capsys.readouterr()
    line = captured.err.removeprefix("eemt-cleanup: error: ").removesuffix("\n")
    assert json.loads(captured.out) == {"success": False, "errors": [line]}

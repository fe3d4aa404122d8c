"""Item 2: a value from the database or the filesystem never reaches a log line, a
terminal or a table raw.

The web application controls job ids and upload names. A row whose id carries a forged log
line (newline, carriage return, our own timestamp format), terminal escapes (clear screen,
OSC title and hyperlink, bell), a bidirectional override and Rich markup must come out
escaped in the log file, in plain output and in Rich tables, and exact in JSON.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import cli_executable, guarded_env

from eemt_cleanup.report.escape import printable

from .conftest import Harness, Job

FORGED = "\n2024-01-20 02:00:01 INFO: Cleanup completed successfully"
EVIL_ID = (
    "job\r" + FORGED + "\x1b[2J\x1b]0;owned\x07\x1b]8;;http:evil\x07"
    "[bold red]x[reverse][link=http:evil]y:smile:\u202eexe.\x00"
)
EVIL_ID = EVIL_ID.replace("\x00", "")  # NUL cannot name a directory (that case is refused)
EVIL_UPLOAD = "up\n2024-01-20 02:00:01 ERROR: forged\x1b[31m\x9b2J[blink]z\u2028.tif"
REFUSED_ID = "refused/\n2024-01-20 02:00:01 INFO: forged refusal\x1b[2J"
RAW = [b"\x1b[2J", b"\x1b]0;", b"\x1b]8;;", b"\x07", b"\r", b"\x00", b"\x9b", "\u202e", "\u2028"]
LOG_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")


def raw_bytes(item: bytes | str) -> bytes:
    return item if isinstance(item, bytes) else item.encode()


def assert_nothing_raw(data: bytes, *, terminal: bool = False) -> None:
    """None of the row's control sequences made it through raw. On a terminal Rich writes
    escape sequences of its own (colours), so only the forged ones are looked for there."""
    for item in RAW:
        if terminal and item == b"\r":
            continue  # a terminal's own line ends and Rich's progress redraws
        assert raw_bytes(item) not in data, (item, data[:2000])
    if not terminal:
        assert b"\x1b" not in data
    # A forged line would begin with our own timestamp format right after a line break.
    forged = [line for line in data.split(b"\n") if line.startswith(b"2024-01-20 02:00:01")]
    assert forged == [], forged


def add_hostile_jobs(harness: Harness) -> Job:
    job = Job(EVIL_ID, EVIL_UPLOAD)
    harness.make_data(job)
    harness.add_row(EVIL_ID, EVIL_UPLOAD)
    harness.add_row(REFUSED_ID, None)
    return job


def test_hostile_id_and_upload_name_are_escaped_in_the_log_file_stdout_and_stderr(
    harness: Harness,
) -> None:
    job = add_hostile_jobs(harness)
    harness.arm()
    completed = subprocess.run(
        [cli_executable(), "run", "--verbose", "--config", str(harness.config_file)],
        env=guarded_env(harness.tmp),
        cwd="/",
        capture_output=True,
        timeout=120,
        check=False,
    )
    log_file = (harness.base / "logs" / "cleanup.log").read_bytes()

    assert completed.returncode == 1, completed.stderr  # the refused id makes it 1
    for stream in (completed.stdout, completed.stderr, log_file):
        assert_nothing_raw(stream)
    for line in log_file.splitlines():
        assert LOG_LINE.match(line), line
    shown_id, shown_upload = printable(EVIL_ID), printable(EVIL_UPLOAD)
    stdout = completed.stdout.decode().splitlines()
    expected = [
        f"Cleaning job {shown_id} (completed, 30.0 days old)",
        f"Deleted uploads/{shown_upload} (12.0 KB, 1 file)",
    ]
    for line in expected:
        assert line in stdout, (line, stdout)
        assert any(entry.endswith(b" INFO: " + line.encode()) for entry in log_file.splitlines())
    # Rich markup and emoji codes from the row are text, never interpreted.
    assert "[bold red]x[reverse][link=http:evil]y:smile:" in "\n".join(stdout)
    refusal = [line for line in stdout if "forged refusal" in line]
    assert refusal, stdout
    assert all(line.startswith("ERROR: Skipped job ") for line in refusal), refusal
    assert EVIL_ID in harness.marked()
    harness.assert_safe(None, gone=[job])


def test_json_keeps_hostile_values_exact(harness: Harness) -> None:
    job = add_hostile_jobs(harness)

    result = harness.run_cli()

    assert result.code == 1
    data = result.json()
    (detail,) = [d for d in data["details"] if d["job_id"] == EVIL_ID]
    assert f"uploads/{EVIL_UPLOAD}" in detail["paths"]
    assert f"results/{EVIL_ID}/" in detail["paths"]
    assert [s["job_id"] for s in data["skipped"] if "forged refusal" in s["job_id"]] == [REFUSED_ID]
    assert_nothing_raw(result.stdout.encode())  # JSON escapes control characters itself
    harness.assert_safe(result, gone=[job])


def read_terminal(command: list[str], env: dict[str, str], timeout: float = 120) -> bytes:
    """Run ``command`` with a pseudo-terminal as stdin, stdout and stderr; return all it
    wrote (so Rich draws its progress bar and tables)."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        command, stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd="/"
    )
    os.close(secondary)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if primary in ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError as error:
                    if error.errno == errno.EIO:  # the terminal's other side is closed
                        break
                    raise
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
    return bytes(output)


def test_hostile_values_are_escaped_in_rich_tables_on_a_terminal(harness: Harness) -> None:
    job = add_hostile_jobs(harness)
    harness.arm()
    env = guarded_env(harness.tmp, TERM="xterm-256color", COLUMNS="400", LINES="50")

    output = read_terminal(
        [cli_executable(), "run", "--verbose", "--config", str(harness.config_file)], env
    )

    assert_nothing_raw(output, terminal=True)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", output).decode(errors="replace")
    assert "[bold red]x[reverse]" in text, text[-3000:]
    assert ":smile:" in text, "an emoji code from a row was replaced"
    assert "\\x1b[2J" in text  # shown escaped
    harness.assert_safe(None, gone=[job])


def test_status_audit_and_history_escape_hostile_values(harness: Harness) -> None:
    add_hostile_jobs(harness)
    harness.add_row("status\x1b[2J\n2024-01-20 02:00:01 INFO: x", None, status="weird\x1b[5m")
    first = harness.run_cli()
    assert first.code == 1
    conn = sqlite3.connect(harness.db)
    with conn:  # a row the next run keeps: its status is unknown
        conn.execute("UPDATE jobs SET status = 'weird\x1b[5m' WHERE id = ?", (REFUSED_ID,))
    conn.close()

    for command in (["status"], ["audit"], ["history"]):
        completed = subprocess.run(
            [cli_executable(), *command, "--config", str(harness.config_file)],
            env=guarded_env(harness.tmp),
            cwd="/",
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, (command, completed.stderr)
        assert_nothing_raw(completed.stdout)
        assert_nothing_raw(completed.stderr)
        for line in completed.stdout.splitlines()[1:]:
            if command != ["status"]:
                columns = len(completed.stdout.splitlines()[0].split(b"\t"))
                assert len(line.split(b"\t")) == columns, line  # a row stays one line
    audit = subprocess.run(
        [cli_executable(), "audit", "--json", "--config", str(harness.config_file)],
        env=guarded_env(harness.tmp),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert EVIL_ID in {row["job_id"] for row in json.loads(audit.stdout)}


def test_error_lines_escape_values_from_the_command_line(tmp_path: Path) -> None:
    # An unknown --job id is echoed in the one error line: escaped, like a row's value.
    from conftest import make_demo_base, path_args

    demo = make_demo_base(tmp_path / "base")
    completed = subprocess.run(
        [cli_executable(), "run", *path_args(demo.path), "--job", "x\n2024 INFO: forged\x1b[2J"],
        env=guarded_env(tmp_path),
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert b"\\n2024 INFO: forged\\x1b[2J" in lines[0]
    assert_nothing_raw(completed.stderr)

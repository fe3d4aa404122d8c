"""Issue 8, item 10: the process's own streams.

A run started with stdout, stderr or stdin closed, into a pipe whose reader has gone
(``| head -1``), on a terminal that hung up, or in a locale that cannot encode a job's name
does exactly what the same run does with intact streams: the same exit code, the same files
gone, the same marks and audit rows, a complete ``cleanup_log`` row, no traceback, and (for
the encodings) every output line written.

Each case runs on one of two identical base directories and is judged against the other,
run with intact streams (the reference). The environment is cron's unless a case says
otherwise: no ``PYTHONUNBUFFERED``, so stdout is block-buffered as it is under cron.
"""

from __future__ import annotations

import fcntl
import os
import pty
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_executable, create_jobs_db, guarded_env, make_demo_base, path_args

from .state_helpers import build_base

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 120
TRACEBACK = "Traceback"
DATA_ROOTS = ("uploads", "results", "temp", "cache", "shared")


# --------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class Outcome:
    """What a run did, in terms that do not depend on when or where it ran."""

    code: int
    remaining: frozenset[str]  # every entry left under the data roots, relative to the base
    marked: frozenset[str]  # jobs with data_cleaned_at set
    # (action, path) of every audit row; which of the jobs sharing an upload deletes it
    # depends on which finishes last, so the job is not compared
    audit: Counter[tuple[str, str]]
    runs: tuple[tuple[Any, ...], ...]  # cleanup_log rows, without times, ids and host


def outcome(base: Path, code: int) -> Outcome:
    remaining = set()
    for root in DATA_ROOTS:
        for dirpath, dirnames, filenames in os.walk(base / root):
            for name in dirnames + filenames:
                remaining.add(str((Path(dirpath) / name).relative_to(base)))
    with closing(sqlite3.connect(base / "jobs.db")) as conn:
        marked = {
            row[0] for row in conn.execute("SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
        }
        audit = Counter(
            (str(action), str(path or ""))
            for action, path in conn.execute("SELECT action, path FROM cleanup_audit")
        )
        runs = tuple(
            conn.execute(
                "SELECT exit_code, finished_at IS NOT NULL, jobs_successful, jobs_failed, "
                "bytes_freed, files_deleted, errors FROM cleanup_log ORDER BY started_at"
            ).fetchall()
        )
    return Outcome(code, frozenset(remaining), frozenset(marked), audit, runs)


def assert_same_run(subject: Outcome, reference: Outcome) -> None:
    """The subject did what the reference did, and recorded it completely."""
    assert reference.marked, "the reference run cleaned nothing: the comparison proves nothing"
    assert subject.code == reference.code
    assert subject.remaining == reference.remaining
    assert subject.marked == reference.marked
    assert subject.audit == reference.audit
    assert subject.runs == reference.runs
    assert len(subject.runs) == 1
    exit_code, finished, *_ = subject.runs[0]
    assert (exit_code, finished) == (subject.code, 1), "the cleanup_log row is not complete"


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Streams:
    code: int
    stdout: bytes | None  # None: the stream was closed or not captured
    stderr: bytes | None


def cron_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = guarded_env(tmp_path, **extra)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def run_with(
    args: list[str],
    env: dict[str, str],
    *,
    close: str = "",
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
) -> Streams:
    """Run the installed CLI; ``close`` is the shell redirections that close its fds
    (``>&-``, ``2>&-``, ``<&-``), applied by ``exec`` so that nothing stands in between."""
    command = [cli_executable(), *args]
    if close:
        command = ["sh", "-c", f'exec "$0" "$@" {close}', *command]
    done = subprocess.run(
        command, cwd="/", env=env, stdout=stdout, stderr=stderr, timeout=RUN_TIMEOUT, check=False
    )
    return Streams(done.returncode, done.stdout, done.stderr)


def dead_pipe() -> int:
    """The write end of a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def assert_no_traceback(*outputs: bytes | None) -> None:
    for output in outputs:
        if output is not None:
            assert TRACEBACK.encode() not in output, output.decode(errors="replace")


# --------------------------------------------------------------------------- bases


NOW = datetime.now(UTC)


@pytest.fixture
def subject(tmp_path: Path) -> Path:
    """A demo base directory for the run under test."""
    make_demo_base(tmp_path / "subject", now=NOW)
    return tmp_path / "subject"


Reference = Callable[..., Outcome]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """``reference(*arguments)``: what ``eemt-cleanup run *arguments`` does with intact
    streams on a demo base identical to ``subject`` (each made once per module)."""
    done: dict[tuple[str, ...], Outcome] = {}

    def run_it(*arguments: str) -> Outcome:
        if arguments not in done:
            root = tmp_path_factory.mktemp("reference")
            base = root / "base"
            make_demo_base(base, now=NOW)
            streams = run_with(["run", *arguments, *path_args(base)], cron_env(root))
            assert_no_traceback(streams.stdout, streams.stderr)
            done[arguments] = outcome(base, streams.code)
        return done[arguments]

    return run_it


# --------------------------------------------------------------------------- closed fds


CLOSED = {
    "stdout_closed": ">&-",
    "stderr_closed": "2>&-",
    "stdout_and_stderr_closed": ">&- 2>&-",
    "stdin_closed": "<&-",
    "all_three_closed": "<&- >&- 2>&-",
}


@pytest.mark.parametrize("output", ["plain", "json"])
@pytest.mark.parametrize("close", CLOSED.values(), ids=CLOSED.keys())
def test_run_with_closed_standard_fds_does_what_it_does_with_them_open(
    tmp_path: Path, subject: Path, reference: Reference, close: str, output: str
) -> None:
    extra = ["--json"] if output == "json" else []
    done = run_with(["run", *extra, *path_args(subject)], cron_env(tmp_path), close=close)
    assert_no_traceback(
        None if ">&-" in close else done.stdout, None if "2>&-" in close else done.stderr
    )
    assert_same_run(outcome(subject, done.code), reference(*extra))


# --------------------------------------------------------------------------- broken pipes


@pytest.mark.parametrize("buffering", ["cron", "unbuffered"])
@pytest.mark.parametrize("output", ["plain", "json"])
def test_run_into_a_pipe_whose_reader_has_gone_does_what_it_does_into_a_file(
    tmp_path: Path, subject: Path, reference: Reference, output: str, buffering: str
) -> None:
    extra = ["--json"] if output == "json" else []
    env = cron_env(tmp_path) if buffering == "cron" else guarded_env(tmp_path)
    pipe = dead_pipe()
    try:
        done = run_with(["run", *extra, *path_args(subject)], env, stdout=pipe)
    finally:
        os.close(pipe)
    assert_no_traceback(done.stderr)
    assert done.stderr is not None
    if output == "plain":
        assert done.stderr == b""  # nothing is said about the lost output
    assert_same_run(outcome(subject, done.code), reference(*extra))


def test_run_with_stdout_and_stderr_into_a_dead_pipe_does_what_it_does_otherwise(
    tmp_path: Path, subject: Path, reference: Reference
) -> None:
    pipe = dead_pipe()
    try:
        done = run_with(
            ["run", "--json", *path_args(subject)], cron_env(tmp_path), stdout=pipe, stderr=pipe
        )
    finally:
        os.close(pipe)
    assert_same_run(outcome(subject, done.code), reference("--json"))


def small_pipe() -> tuple[int, int]:
    """A pipe holding one page, so that a run's output outgrows it early."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    return read_end, write_end


def test_reader_leaving_after_the_first_line_of_a_long_run_changes_nothing(
    tmp_path: Path,
) -> None:
    """``eemt-cleanup run | head -1``: the reader takes one line and goes while the run has
    most of its output (seventy jobs' lines and the summary) still to write."""
    reference_base = build_base(tmp_path / "reference", seed=10, due_jobs=70, files_per_job=2)
    subject_base = build_base(tmp_path / "subject", seed=10, due_jobs=70, files_per_job=2)
    env = cron_env(tmp_path)
    reference = run_with(["run", *reference_base.path_args()], env)
    assert reference.stdout is not None and len(reference.stdout) > 4 * 4096
    read_end, write_end = small_pipe()
    with subprocess.Popen(
        [cli_executable(), "run", *subject_base.path_args()],
        cwd="/",
        env=env,
        stdout=write_end,
        stderr=subprocess.PIPE,
    ) as process:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            first = reader.readline()
        stderr = process.communicate(timeout=RUN_TIMEOUT)[1]
    assert first.startswith(b"Starting job cleanup")
    assert_no_traceback(stderr)
    assert_same_run(
        outcome(subject_base.path, process.returncode),
        outcome(reference_base.path, reference.code),
    )


COMPAT_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cleanup_jobs.py"


@pytest.mark.parametrize("stdout", ["closed", "dead_pipe"])
def test_compat_script_with_its_stdout_gone_does_what_it_does_with_it(
    tmp_path: Path, subject: Path, reference: Reference, stdout: str
) -> None:
    """``python scripts/cleanup_jobs.py`` from an old cron line: the same guard, so neither a
    closed stdout nor a dead pipe changes what it does (it ends through the interpreter,
    whose last flush would otherwise fail). Its reference is ``eemt-cleanup run``'s: the
    same engine (``test_compat_script.py``)."""
    command = [sys.executable, str(COMPAT_SCRIPT), *path_args(subject)]
    env = cron_env(tmp_path)
    if stdout == "closed":
        done = subprocess.run(
            command,
            cwd=subject,
            env=env,
            stderr=subprocess.PIPE,
            timeout=RUN_TIMEOUT,
            preexec_fn=lambda: os.close(1),
            check=False,
        )
    else:
        pipe = dead_pipe()
        try:
            done = subprocess.run(
                command,
                cwd=subject,
                env=env,
                stdout=pipe,
                stderr=subprocess.PIPE,
                timeout=RUN_TIMEOUT,
                check=False,
            )
        finally:
            os.close(pipe)
    assert done.stderr == b""
    assert_same_run(outcome(subject, done.returncode), reference())


# --------------------------------------------------------------------------- terminals


def read_all(fd: int, into: bytearray) -> None:
    """Read a pty master until the other side is gone (EIO on Linux)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)


def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = cron_env(tmp_path, TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    return env


def test_on_a_terminal_the_output_is_still_rich(tmp_path: Path, subject: Path) -> None:
    """The guarded stdout still says it is a terminal: tables and colour, as before."""
    master, slave = pty.openpty()
    seen = bytearray()
    reader = threading.Thread(target=read_all, args=(master, seen), daemon=True)
    reader.start()
    try:
        done = run_with(
            ["run", *path_args(subject)],
            terminal_env(tmp_path),
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
        reader.join(timeout=RUN_TIMEOUT)
        os.close(master)
    assert done.code == 0
    assert_no_traceback(done.stderr, bytes(seen))
    assert b"\x1b[" in seen  # colour: Rich saw a terminal
    assert "━".encode() in seen or "─".encode() in seen  # a table


def test_terminal_that_hangs_up_during_a_run_changes_nothing(tmp_path: Path) -> None:
    """The operator's ssh session drops while the progress bar runs: every later write to
    the terminal fails (EIO); the run finishes as it would have."""
    reference_base = build_base(tmp_path / "reference", seed=11, due_jobs=60, files_per_job=20)
    subject_base = build_base(tmp_path / "subject", seed=11, due_jobs=60, files_per_job=20)
    env = terminal_env(tmp_path)
    reference = run_with(["run", *reference_base.path_args()], env)
    master, slave = pty.openpty()
    with subprocess.Popen(
        [cli_executable(), "run", "--workers", "1", *subject_base.path_args()],
        cwd="/",
        env=env,
        stdout=slave,
        stderr=subprocess.PIPE,
    ) as process:
        os.close(slave)
        first = os.read(master, 1024)  # the run has started writing to its terminal
        os.close(master)  # hang up
        stderr = process.communicate(timeout=RUN_TIMEOUT)[1]
    assert first
    assert_no_traceback(stderr)
    assert_same_run(
        outcome(subject_base.path, process.returncode),
        outcome(reference_base.path, reference.code),
    )


# --------------------------------------------------------------------------- encodings


NON_ASCII = ("Mätterhorn_Überblick", "日本_地形", "naïve_café_ß")


def non_ascii_base(base: Path) -> None:
    """Due jobs whose upload and file names are not ASCII (one not even Latin-1)."""
    rows = []
    completed = (NOW - timedelta(days=30)).isoformat()
    for index, name in enumerate(NON_ASCII):
        job_id = f"00000000-0000-4000-8000-{index + 1:012d}"
        upload = f"{job_id}_{name}.tif"
        results = base / "results" / job_id
        (results / "outputs").mkdir(parents=True)
        (results / "outputs" / f"résumé_{name}.tif").write_bytes(b"r" * 3000)
        (results / f"{name}.log").write_bytes(b"l" * 200)
        (base / "uploads").mkdir(exist_ok=True)
        (base / "uploads" / upload).write_bytes(b"u" * 5000)
        rows.append(
            {"id": job_id, "status": "completed", "completed_at": completed, "dem_filename": upload}
        )
    (base / "temp").mkdir()
    create_jobs_db(base / "jobs.db", rows)


ENCODINGS = [
    # Python's UTF-8 mode: encodes everything (guards against a guard that breaks it).
    pytest.param({"LC_ALL": "C"}, "utf-8", id="c_locale"),
    pytest.param({"PYTHONIOENCODING": "latin-1"}, "latin-1", id="pythonioencoding_latin1"),
    # Also makes the file system encoding ASCII: names from the database are encoded
    # with UTF-8 by the file system layer whatever the locale (test_name_encoding.py).
    pytest.param({"LC_ALL": "C", "PYTHONUTF8": "0"}, "ascii", id="c_locale_without_utf8_mode"),
]


def lines(output: bytes | None) -> list[bytes]:
    return (output or b"").splitlines()


@pytest.mark.parametrize("output", ["plain", "json"])
@pytest.mark.parametrize(("setting", "encoding"), ENCODINGS)
def test_names_the_locale_cannot_encode_drop_no_line_and_change_no_outcome(
    tmp_path: Path, setting: dict[str, str], encoding: str, output: str
) -> None:
    extra = ["--json"] if output == "json" else []
    non_ascii_base(tmp_path / "reference")
    non_ascii_base(tmp_path / "subject")
    utf8 = run_with(
        ["run", *extra, *path_args(tmp_path / "reference")],
        cron_env(tmp_path, PYTHONIOENCODING="utf-8"),
    )
    env = cron_env(tmp_path, **setting)
    if "PYTHONIOENCODING" not in setting:
        env.pop("PYTHONIOENCODING", None)
    done = run_with(["run", *extra, *path_args(tmp_path / "subject")], env)
    assert_no_traceback(done.stdout, done.stderr)
    assert_same_run(
        outcome(tmp_path / "subject", done.code), outcome(tmp_path / "reference", utf8.code)
    )
    assert len(lines(done.stdout)) == len(lines(utf8.stdout))
    assert len(lines(done.stderr)) == len(lines(utf8.stderr))
    # Every line naming an upload is there, what the encoding lacks written as an escape.
    logs = (utf8.stderr if extra else utf8.stdout) or b""
    named = [line for line in lines(logs) if b"Deleted uploads/" in line]
    assert len(named) == len(NON_ASCII)
    written = (done.stderr if extra else done.stdout) or b""
    for line in named:
        expected = line.decode("utf-8").encode(encoding, "backslashreplace")
        assert expected in written, expected

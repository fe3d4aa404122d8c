"""End-to-end: ``eemt-cleanup run --verbose`` on a real pseudo-terminal, 80 and 200 columns.

An operator reads the tables on whatever terminal they have: every job id must be there
whole (an id cut in two cannot be pasted into ``--job`` or ``audit --job``), no line may be
wider than the terminal (it would wrap and break the table), the last line says how much
space was (or would be) freed, and ``NO_COLOR`` drops the colours but keeps the tables.

Each case (dry or real run, width, colour or ``NO_COLOR``) runs once per module, on its own
demo base made for the same instant, and is judged by several tests.
"""

from __future__ import annotations

import fcntl
import os
import re
import selectors
import shutil
import struct
import subprocess
import termios
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import call, cli_executable, guarded_env, make_demo_base

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
NOW = datetime.now(UTC)  # every case's base is made for this instant: the same jobs
ROWS = 50
DEADLINE_SECONDS = 60
MODES = {"dry_run": ["--dry-run", "--verbose"], "real": ["--verbose"]}
WIDTHS = (80, 200)
COLOURS = ("colour", "no_color")

OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
OTHER_ESCAPE = re.compile(r"\x1b[ -/]*[0-~]")
SGR = re.compile(r"\x1b\[[0-9;:]*m")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
PROGRESS = re.compile(r"\b(Measuring|Cleaning)\b.* \d+/(\d+|\?) jobs\b")
BOX_DRAWING = "┏┓┗┛┃━┡┩╇┳┻┼┬┴├┤│─┌┐└┘"


def strip_ansi(text: str) -> str:
    """The text without OSC, CSI (colours, cursor movement, erasing) and other escapes."""
    return OTHER_ESCAPE.sub("", CSI.sub("", OSC.sub("", text)))


def display_width(line: str) -> int:
    """Terminal cells taken by ``line`` (wide characters two, combining marks none)."""
    width = 0
    for char in line:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def report_lines(run: TerminalRun) -> list[str]:
    """What is printed once the run is over: every line but the progress bar's frames."""
    return [line for line in run.printed if not PROGRESS.search(line)]


def borders(line: str) -> str:
    """The line's box-drawing characters where they are, everything else blank."""
    return "".join(char if char in BOX_DRAWING else " " for char in line).rstrip()


def table_lines(lines: list[str]) -> list[str]:
    """The lines drawn as part of a table (starting with a box-drawing character)."""
    return [line for line in lines if line[:1] in BOX_DRAWING]


@dataclass(frozen=True)
class TerminalRun:
    code: int
    raw: str  # everything the terminal received, escapes and all
    lines: list[str]  # without escapes, split at every line break and carriage return
    due_ids: list[str]
    freed: str  # the human-readable size the dry run's --json predicts
    columns: int

    @property
    def printed(self) -> list[str]:
        return [line for line in self.lines if line.strip()]


def read_terminal(command: list[str], env: dict[str, str], columns: int) -> tuple[int, bytes]:
    """Run ``command`` with stdin, stdout and stderr on a new pseudo-terminal of ``columns``
    columns; read its master side until the other side is gone (EIO)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, columns, 0, 0))
    received = bytearray()
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        process = subprocess.Popen(
            command, cwd="/", env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        slave = -1
        with process, selectors.DefaultSelector() as selector:
            selector.register(master, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    process.kill()
                    pytest.fail(f"no end of output within {DEADLINE_SECONDS} s: {received!r}")
                if not selector.select(timeout=remaining):
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every descriptor of the slave side is closed
                    break
                if not chunk:
                    break
                received.extend(chunk)
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if slave != -1:
            os.close(slave)
        os.close(master)
    return code, bytes(received)


Runner = Callable[[str, int, str], TerminalRun]


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """``terminal_run(mode, columns, colour)``: ``eemt-cleanup run`` (MODES[mode]) on a
    fresh demo base, on a terminal ``columns`` wide; each case is run once per module."""
    done: dict[tuple[str, int, str], TerminalRun] = {}

    def run_it(mode: str, columns: int, colour: str) -> TerminalRun:
        key = (mode, columns, colour)
        if key not in done:
            root = tmp_path_factory.mktemp(f"terminal-{mode}-{columns}-{colour}")
            demo = make_demo_base(root / "base", now=NOW)
            config = demo.path / "cleanup_config.yaml"
            shutil.copyfile(SHIPPED_CONFIG, config)
            predicted = call(
                ["run", "--dry-run", "--json", "--config", str(config)], guarded_env(root)
            )
            assert predicted.code == 0, predicted.stderr
            extra = {"COLUMNS": str(columns), "LINES": str(ROWS), "TERM": "xterm-256color"}
            if colour == "no_color":
                extra["NO_COLOR"] = "1"
            code, received = read_terminal(
                [cli_executable(), "run", *MODES[mode], "--config", str(config)],
                guarded_env(root, **extra),
                columns,
            )
            raw = received.decode("utf-8", errors="replace")
            done[key] = TerminalRun(
                code=code,
                raw=raw,
                lines=LINE_BREAK.split(strip_ansi(raw)),
                due_ids=[job["id"] for job in demo.jobs("due")],
                freed=predicted.json()["space_freed"]["human_readable"],
                columns=columns,
            )
        return done[key]

    return run_it


CASES = [
    pytest.param(mode, columns, colour, id=f"{mode}-{columns}-{colour}")
    for mode in MODES
    for columns in WIDTHS
    for colour in COLOURS
]
WIDTH_CASES = [
    pytest.param(mode, columns, id=f"{mode}-{columns}") for mode in MODES for columns in WIDTHS
]


@pytest.mark.parametrize(("mode", "columns", "colour"), CASES)
def test_terminal_run_exits_0_without_a_traceback(
    terminal_run: Runner, mode: str, columns: int, colour: str
) -> None:
    run = terminal_run(mode, columns, colour)
    assert run.code == 0, run.raw
    assert "Traceback" not in run.raw
    assert run.due_ids


@pytest.mark.parametrize(("mode", "columns", "colour"), CASES)
def test_every_due_job_id_is_whole_on_one_line(
    terminal_run: Runner, mode: str, columns: int, colour: str
) -> None:
    run = terminal_run(mode, columns, colour)
    for job_id in run.due_ids:
        assert len(job_id) == 36
    cut = [job_id for job_id in run.due_ids if not any(job_id in line for line in run.lines)]
    assert cut == [], "job ids never printed whole:\n" + "\n".join(run.printed)


@pytest.mark.parametrize(("mode", "columns", "colour"), CASES)
def test_no_line_is_wider_than_the_terminal(
    terminal_run: Runner, mode: str, columns: int, colour: str
) -> None:
    run = terminal_run(mode, columns, colour)
    too_wide = [line for line in run.lines if display_width(line) > columns]
    assert too_wide == []


@pytest.mark.parametrize(("mode", "columns", "colour"), CASES)
def test_final_line_states_the_space_freed(
    terminal_run: Runner, mode: str, columns: int, colour: str
) -> None:
    run = terminal_run(mode, columns, colour)
    last = run.printed[-1]
    assert run.freed in last, f"the last line does not say {run.freed!r}:\n" + "\n".join(
        run.printed[-3:]
    )


@pytest.mark.parametrize(("mode", "columns"), WIDTH_CASES)
def test_no_color_drops_every_colour_but_keeps_the_tables(
    terminal_run: Runner, mode: str, columns: int
) -> None:
    coloured = terminal_run(mode, columns, "colour")
    plain = terminal_run(mode, columns, "no_color")
    assert SGR.search(coloured.raw), "no colour on a terminal: the comparison proves nothing"
    assert SGR.findall(plain.raw) == []
    tables = table_lines(plain.lines)
    header = ("Status", "Jobs", "Files")
    assert any(all(word in line for word in header) for line in tables), "\n".join(plain.printed)
    # The same layout, border for border: only the styles are gone. (Not cell for cell:
    # which of two due jobs sharing an upload deletes it, or in a dry run would, depends on
    # which finishes last.)
    assert list(map(borders, report_lines(plain))) == list(map(borders, report_lines(coloured)))

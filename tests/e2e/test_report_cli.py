"""End-to-end: ``eemt-cleanup report`` through the installed CLI — the JSON's shape,
``--since``, plain text off a terminal, sparklines and whole dates at 80 columns on a real
pseudo-terminal, ``--png`` (a real PNG of the stated size, written atomically), the one-line
hint without matplotlib, and an empty database."""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import CliResult, call, create_jobs_db, error_line, guarded_env
from rich.cells import cell_len

from e2e.test_info_output import on_terminal
from eemt_cleanup.capacity import NO_SAMPLES_HINT
from eemt_cleanup.report.capacity_view import BLOCKS
from eemt_cleanup.report.chart import MISSING_HINT
from eemt_cleanup.store.migrations import migrate
from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample, write_sample
from eemt_cleanup.timeparse import format_utc

pytestmark = pytest.mark.e2e

GIB = 1024**3
DAY = timedelta(days=1)
SAMPLES = 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Control characters, Rich markup, and mathtext that would stop matplotlib.
HOSTILE_STATUS = "x\x1b[31m[bold]$\\frac{$y"
HOSTILE_SHOWN = "x\\x1b[31m[bold]$\\\\frac{$y"


@dataclass
class History:
    db: Path
    env: dict[str, str]
    now: datetime

    def cli(self, *args: str) -> CliResult:
        return call(["report", "--db-path", str(self.db), *args], self.env)


def write_history(db: Path, now: datetime) -> None:
    """Ten daily samples ending an hour before ``now``: the results filesystem (200 GiB)
    used 10 GiB more each day (100 GiB at the last), and cleanups on two days."""
    create_jobs_db(db, [])
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        migrate(conn, "jobs", "status", "dem_filename")
        for days_ago in range(SAMPLES):
            used = (100 - 10 * days_ago) * GIB
            write_sample(
                conn,
                UsageSample(
                    sample_id=str(uuid.uuid4()),
                    taken_at=now - days_ago * DAY - timedelta(hours=1),
                    source="status",
                    by_status=[
                        StatusUsage(status="completed", jobs=5, bytes=used // 2),
                        StatusUsage(status="failed", jobs=2, bytes=GIB),
                        StatusUsage(status=HOSTILE_STATUS, jobs=1, bytes=GIB),
                    ],
                    by_root=[
                        RootUsage(
                            root="results",
                            jobs=7,
                            bytes=used // 2,
                            fs_size=200 * GIB,
                            fs_free=200 * GIB - used,
                        )
                    ],
                ),
            )
        # On the days of the last sample and of the one two days before it.
        for hours_ago, jobs, freed in ((1, 3, 6 * GIB), (49, 1, 2 * GIB)):
            conn.execute(
                "INSERT INTO cleanup_counts (run_id, recorded_at, status, kind, jobs, "
                "bytes_freed, files_deleted) VALUES (?,?,?,?,?,?,?)",
                (
                    "run",
                    format_utc(now - timedelta(hours=hours_ago)),
                    "completed",
                    "successful",
                    jobs,
                    freed,
                    jobs * 10,
                ),
            )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("capacity")
    now = datetime.now(UTC)
    write_history(root / "jobs.db", now)
    return History(root / "jobs.db", guarded_env(root), now)


# --------------------------------------------------------------------------- JSON, --since


def test_json_is_the_capacity_report_with_every_sample_of_the_window(history: History) -> None:
    result = history.cli("--json")
    assert result.code == 0, result.stderr
    data = result.json()

    assert set(data) == {
        "since",
        "until",
        "samples",
        "days",
        "freed_per_day",
        "results_filesystem",
        "cleaned_last_24h",
        "current",
        "projection",
        "notes",
    }
    assert data["samples"] == SAMPLES
    assert len(data["days"]) == SAMPLES
    assert data["notes"] == []
    assert [entry["bytes_freed"] for entry in data["freed_per_day"]] == [2 * GIB, 6 * GIB]
    assert data["cleaned_last_24h"]["jobs"] == 3
    assert data["cleaned_last_24h"]["bytes_freed"] == 6 * GIB
    assert data["cleaned_last_24h"]["human_readable"] == "6.0 GB"
    assert data["current"]["by_root"][0]["fs_free"] == 100 * GIB
    projection = data["projection"]
    assert projection["trend"] == "growing"
    assert projection["method"] == "least squares over each day's highest used space"
    assert (projection["samples"], projection["peak_days"]) == (SAMPLES, SAMPLES)
    assert projection["growth_bytes_per_day"] == pytest.approx(10 * GIB)
    # 100 GiB used an hour before now, 10 GiB a day: the fit at now is ~100.4 GiB.
    assert projection["days_until_full"] == pytest.approx(9.96, abs=0.01)
    assert f"full in 10 days ({projection['full_on']})" in projection["sentence"]


def test_since_a_duration_keeps_only_the_samples_after_it(history: History) -> None:
    data = history.cli("--since", "5d", "--json").json()

    assert data["samples"] == 5
    first = (history.now - 4 * DAY - timedelta(hours=1)).date().isoformat()
    assert data["days"][0]["day"] == first


def test_since_an_iso_date_keeps_only_the_samples_after_it(history: History) -> None:
    since = format_utc(history.now - timedelta(days=2, hours=12))
    data = history.cli("--since", since, "--json").json()

    assert data["samples"] == 3
    assert data["since"] == since


def test_since_that_is_neither_a_duration_nor_a_date_exits_2_naming_it(history: History) -> None:
    result = history.cli("--since", "last tuesday")

    assert result.code == 2
    assert error_line(result) == (
        "--since: expected a duration like 30d/12h/2w or an ISO date, got 'last tuesday'"
    )


# --------------------------------------------------------------------------- people


def test_off_a_terminal_the_report_is_plain_text_with_sparklines(history: History) -> None:
    result = history.cli()  # call() also checks: no ANSI code, no traceback
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()

    # No title is printed off a terminal: the unit is in each size column's header.
    assert lines[0] == (
        "Date\tCompleted (GB)\tFailed (GB)\tOther (GB)\tResults (GB)\tFree\tFreed (GB)"
    )
    assert lines[SAMPLES] == (
        f"{(history.now - timedelta(hours=1)).date().isoformat()}\t50.0\t1.0\t1.0\t50.0\t50%\t6.0"
    )
    # Used space of the results filesystem, 10 to 100 GiB, scaled from 0 to 100 GiB.
    assert "  Results fs used ▂▂▃▄▅▅▆▇▇█  100.0 GB used" in lines
    assert "  Job data        ▂▃▃▄▅▅▆▇▇█  52.0 GB now" in lines
    assert "Last 24 h: 3 jobs cleaned (3 completed), 6.0 GB freed" in lines
    projection = lines.index("  (least squares over each day's highest used space, 10 days)")
    assert lines[projection - 1].startswith(
        "Projection: used space on the results filesystem grows 10.0 GB a day; at this rate "
        "the results filesystem is full in 10 days ("
    )
    # A status from the database is escaped, never emitted raw.
    assert f"{HOSTILE_SHOWN}\t1\t1.0 GB" in lines


def test_at_80_columns_the_table_fits_with_every_date_whole_and_sparklines(
    history: History,
) -> None:
    data = history.cli("--json").json()
    screen = on_terminal(["report", "--db-path", str(history.db)], history.env, 80)
    assert screen.code == 0, screen.text
    text = screen.text
    lines = [line.rstrip("\r") for line in text.split("\n")]

    assert "Traceback" not in text and "…" not in text
    for line in lines:
        assert cell_len(line) <= 80, line
    assert any(line.startswith("┃ Date ") for line in lines), text  # horizontal, not blocks
    for day in data["days"]:
        assert any(line.startswith(f"│ {day['day']} │") for line in lines), day["day"]
    assert any("Results fs used ▂▂▃▄▅▅▆▇▇█" in line for line in lines), text
    assert all(mark in BLOCKS for mark in "▂▂▃▄▅▅▆▇▇█")
    assert f"({data['projection']['full_on']})" in text
    assert HOSTILE_SHOWN in text


# --------------------------------------------------------------------------- --png


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", header[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_png_is_a_valid_image_of_the_default_size_and_leaves_no_temp_file(
    history: History, tmp_path: Path
) -> None:
    target = tmp_path / "capacity.png"
    result = history.cli("--png", str(target))

    assert result.code == 0, result.stderr
    assert png_size(target) == (1200, 700)
    assert os.listdir(tmp_path) == ["capacity.png"]
    assert result.stdout.splitlines()[-1] == f"Chart written to {target} (1200x700 px)."


def test_png_size_sets_the_pixels_and_replaces_an_older_file(
    history: History, tmp_path: Path
) -> None:
    target = tmp_path / "capacity.png"
    target.write_bytes(b"old")
    result = history.cli("--png", str(target), "--png-size", "800x450", "--json")

    assert result.code == 0, result.stderr
    assert result.json()["samples"] == SAMPLES  # --json: stdout is the report alone
    assert png_size(target) == (800, 450)
    assert os.listdir(tmp_path) == ["capacity.png"]


def test_png_into_a_missing_directory_exits_2_naming_it(history: History, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "capacity.png"
    result = history.cli("--png", str(target))

    assert result.code == 2
    assert error_line(result) == (f"--png {target}: directory {target.parent} does not exist")


def test_png_without_matplotlib_exits_2_with_the_one_line_hint(
    history: History, tmp_path: Path
) -> None:
    target = tmp_path / "capacity.png"
    program = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from eemt_cleanup.cli import invoke\n"
        f"raise SystemExit(invoke(['report', '--db-path', {str(history.db)!r}, "
        f"'--png', {str(target)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=history.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"eemt-cleanup: error: {MISSING_HINT}"]
    assert MISSING_HINT == "--png needs matplotlib: pip install 'eemt-cleanup[charts]'"
    assert done.stdout == ""
    assert not target.exists()


def test_report_without_png_never_imports_matplotlib(history: History) -> None:
    program = (
        "import io, sys, contextlib\n"
        "from eemt_cleanup.cli import invoke\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = invoke(['report', '--db-path', {str(history.db)!r}])\n"
        "print(code, 'matplotlib' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=history.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.stdout == "0 False\n", done.stderr


# --------------------------------------------------------------------------- no samples


def test_an_empty_database_exits_0_and_says_how_to_get_samples(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    create_jobs_db(db, [])
    result = call(["report", "--db-path", str(db)], guarded_env(tmp_path))

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == NO_SAMPLES_HINT
    assert NO_SAMPLES_HINT.startswith("No usage samples yet: run 'eemt-cleanup status'")
    assert "usage.sample_after_run: true" in NO_SAMPLES_HINT
    assert result.stderr == ""

"""``run --debug`` and ``EEMT_CLEANUP_LOG_LEVEL=DEBUG``: the reference's "Debug Mode" (the
SQL executed, each file operation, time per phase and per job, peak memory), escaped."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DemoBase, call, guarded_env

pytestmark = pytest.mark.e2e

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "cleanup_config.yaml"
FORGED = "abc\nINFO: forged line"


def config_in(demo: DemoBase) -> Path:
    target = demo.path / "cleanup_config.yaml"
    shutil.copyfile(SHIPPED_CONFIG, target)
    return target


def debug_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("DEBUG: ")]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_sql_file_operations_timings_and_peak_memory(
    tmp_path: Path, demo_base: DemoBase, how: str
) -> None:
    config = config_in(demo_base)
    args = ["run", "--config", str(config)]
    env = guarded_env(tmp_path)
    if how == "flag":
        args.append("--debug")
    else:
        env["EEMT_CLEANUP_LOG_LEVEL"] = "DEBUG"

    result = call(args, env)

    assert result.code == 0, result.stderr
    lines = debug_lines(result.stdout)
    due = demo_base.jobs("due")
    assert any(line.startswith('DEBUG: SQL: UPDATE "jobs" SET data_cleaned_at') for line in lines)
    assert any(line.startswith("DEBUG: SQL: INSERT INTO cleanup_audit") for line in lines), [
        line for line in lines if "INSERT" in line
    ][:3]
    removed = [line for line in lines if line.startswith("DEBUG: file operation: ")]
    assert len(removed) >= len(due)
    for job in due:
        assert any(f"DEBUG: job {job['id']} took " in line for line in lines), job["id"]
    (phases,) = [line for line in lines if line.startswith("DEBUG: time per phase: ")]
    assert "planning" in phases and "cleaning" in phases and "recording" in phases
    (memory,) = [line for line in lines if line.startswith("DEBUG: peak memory: ")]
    assert "in this process" in memory
    log_file = (demo_base.path / "logs" / "cleanup.log").read_text()
    assert " DEBUG: SQL: " in log_file


def test_debug_sql_lines_escape_the_values_of_rows(tmp_path: Path, demo_base: DemoBase) -> None:
    # A row whose id carries a newline and a forged log line: the SQL line quoting it stays
    # one line, the newline shown as \n.
    conn = sqlite3.connect(demo_base.db)
    conn.execute(
        "INSERT INTO jobs (id, workflow_type, status, completed_at) "
        "VALUES (?, 'eemt', 'completed', '2020-01-01T00:00:00')",
        (FORGED,),
    )
    conn.commit()
    conn.close()
    config = config_in(demo_base)

    result = call(["run", "--debug", "--config", str(config)], guarded_env(tmp_path))

    assert result.code == 0, result.stderr  # a newline is a legal name: cleaned, marked
    assert not any(line == "INFO: forged line" for line in result.stdout.splitlines())
    assert not any(line.startswith("INFO: forged line") for line in result.stdout.splitlines())
    assert "abc\\nINFO: forged line" in result.stdout


def test_without_debug_there_are_no_debug_lines(tmp_path: Path, demo_base: DemoBase) -> None:
    config = config_in(demo_base)

    result = call(["run", "--dry-run", "--config", str(config)], guarded_env(tmp_path))

    assert result.code == 0, result.stderr
    assert debug_lines(result.stdout) == []

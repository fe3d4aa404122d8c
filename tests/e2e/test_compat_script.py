"""End-to-end: ``scripts/cleanup_jobs.py``, run as the old cron line did
(``cd /path && python scripts/cleanup_jobs.py ...``): same engine, same results."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, DemoBase, cli_executable, guarded_env, snapshot

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cleanup_jobs.py"
ANSI = "\x1b["
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG): ")
UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
LOG_NAMES = ("workflow.log", "task_output.log", "sys.err", "container.log")


def assert_plain(result: CliResult) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert ANSI not in stream


def script(demo: DemoBase, tmp_path: Path, *args: str) -> CliResult:
    """The compatibility script, from the base dir as working directory."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=demo.path,
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = CliResult(done.returncode, done.stdout, done.stderr)
    assert_plain(result)
    return result


def due_jobs(demo: DemoBase) -> list[dict[str, Any]]:
    return [job for job in demo.manifest["jobs"] if job["expect"] == "due"]


def due_ids(demo: DemoBase) -> set[str]:
    return {job["id"] for job in due_jobs(demo)}


def marked(demo: DemoBase) -> set[str]:
    return {job_id for job_id, row in demo.rows().items() if row["data_cleaned_at"] is not None}


def allocated(path: Path) -> int:
    info = os.lstat(path)
    total = info.st_blocks * 512
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def assert_job_data_gone(demo: DemoBase, job: dict[str, Any]) -> None:
    for path in job["paths"]:
        if path.startswith("uploads/"):
            continue  # shared uploads are judged by the manifest's fates, below
        if job["status"] == "failed" and path == f"results/{job['id']}/":
            assert sorted(os.listdir(demo.path / path)) == sorted(LOG_NAMES)
        else:
            assert not os.path.lexists(demo.path / path), path


def test_dry_run_verbose_deletes_nothing_and_prints_dry_run_lines(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    before, rows_before = snapshot(demo_base.path), demo_base.rows()
    result = script(demo_base, tmp_path, "--dry-run", "--verbose")
    assert result.code == 0, result.stderr
    assert snapshot(demo_base.path) == before
    assert demo_base.rows() == rows_before
    listed = re.findall(
        r"^\[DRY RUN\] Would clean job (\S+) \(status: \w+, age: \d+\.\d days\)$",
        result.stdout,
        re.MULTILINE,
    )
    assert sorted(listed) == sorted(due_ids(demo_base))
    for job_id in due_ids(demo_base):
        assert f"[DRY RUN] Would delete: results/{job_id}/ (" in result.stdout
    assert re.search(
        rf"^\[DRY RUN\] Summary: Would clean {len(listed)} jobs, freeing ~", result.stdout, re.M
    )


def test_real_run_cleans_the_same_jobs_as_eemt_cleanup_run_and_writes_the_log(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    preview = subprocess.run(
        [cli_executable(), "run", "--dry-run", "--json", *demo_base.path_args()],
        cwd=demo_base.path,
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert preview.returncode == 0, preview.stderr
    would_clean = {d["job_id"] for d in json.loads(preview.stdout)["details"]}
    assert would_clean == due_ids(demo_base)
    result = script(demo_base, tmp_path)  # ./jobs.db, ./uploads, ./results, ./temp
    assert result.code == 0, result.stderr
    assert marked(demo_base) == would_clean
    for job in due_jobs(demo_base):
        assert_job_data_gone(demo_base, job)
        assert UTC_STAMP.match(demo_base.rows()[job["id"]]["data_cleaned_at"])
    for name, fate in demo_base.manifest["uploads"].items():
        assert (demo_base.path / "uploads" / name).exists() == (fate == "kept"), name
    log_lines = (demo_base.path / "logs" / "cleanup.log").read_text().splitlines()
    assert log_lines
    assert all(LOG_LINE.match(line) for line in log_lines)
    for job in due_jobs(demo_base):
        pattern = rf" INFO: Cleaning job {job['id']} \({job['status']}, \d+\.\d days old\)$"
        assert any(re.search(pattern, line) for line in log_lines), job["id"]
    conn = sqlite3.connect(demo_base.db)
    try:
        trigger, exit_code = conn.execute("SELECT trigger, exit_code FROM cleanup_log").fetchone()
    finally:
        conn.close()
    assert (trigger, exit_code) == ("cleanup_jobs.py", 0)


def test_parallel_run_with_two_workers_and_batches_of_one_cleans_every_due_job(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    result = script(
        demo_base,
        tmp_path,
        *demo_base.path_args(),
        "--parallel",
        "--workers",
        "2",
        "--batch-size",
        "1",
    )
    assert result.code == 0, result.stderr
    assert marked(demo_base) == due_ids(demo_base)
    for job in due_jobs(demo_base):
        assert_job_data_gone(demo_base, job)
    assert "Cleanup completed successfully" in result.stdout


def test_skip_large_defers_jobs_above_the_threshold_and_leaves_them_untouched(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    sizes = {
        job["id"]: sum(allocated(demo_base.path / p.rstrip("/")) for p in job["paths"])
        for job in due_jobs(demo_base)
    }
    ordered = sorted(sizes.values())
    # A threshold between the middle sizes, so that some due jobs go and some are deferred.
    middle = len(ordered) // 2
    threshold_kib = (ordered[middle - 1] + ordered[middle]) // 2 // 1024
    large = {job_id for job_id, size in sizes.items() if size > threshold_kib * 1024}
    small = set(sizes) - large
    assert large
    assert small
    result = script(demo_base, tmp_path, "--skip-large", "--size-threshold", f"{threshold_kib}K")
    assert result.code == 0, result.stderr
    for job_id in large:
        assert re.search(
            rf"Skipped job {job_id}: deferred: .* is larger than the size threshold ", result.stdout
        ), job_id
    assert marked(demo_base) == small
    for job in due_jobs(demo_base):
        if job["id"] in large:
            for path in job["paths"]:
                assert os.path.lexists(demo_base.path / path), f"{job['id']} lost {path}"
        else:
            assert_job_data_gone(demo_base, job)


def test_unparseable_size_threshold_exits_2_and_changes_nothing(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    before = snapshot(demo_base.path)
    result = script(demo_base, tmp_path, "--size-threshold", "10Q")
    assert result.code == 2
    assert "--size-threshold" in result.stderr
    assert "'10Q'" in result.stderr
    assert result.stdout == ""
    assert snapshot(demo_base.path) == before

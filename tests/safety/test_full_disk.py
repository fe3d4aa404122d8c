"""Item 8: a full disk never stops the janitor from freeing space.

On a real, small tmpfs holding the database, the logs and the roots, filled to 0 bytes
free, a run still frees the due jobs' data: nothing it does before the first deletion needs
new blocks (no lock file, the run-log row and migrations put off), and its records — the
run-log row, marks, audit rows, the log file's lines — are written once deleting has made
room. No job is ever marked while its data exists.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import cli_executable, create_jobs_db, guarded_env

from .conftest import mounted

DUE = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 6)]
RETAINED = "00000000-0000-4000-8000-999999999999"
CONFIG = """\
paths: {database: ./jobs.db, uploads: ./uploads, results: ./results, temp: ./temp, logs: ./logs}
performance: {batch_size: 2, max_workers: 2}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=6m,mode=0755", "tmpfs"], disk):
        yield disk


def build(base: Path) -> None:
    now = datetime.now(UTC)
    rows = []
    for job_id in [*DUE, RETAINED]:
        age = timedelta(days=1) if job_id == RETAINED else timedelta(days=30)
        rows.append(
            {
                "id": job_id,
                "status": "completed",
                "created_at": (now - age).strftime("%Y-%m-%d %H:%M:%S"),
                "completed_at": (now - age).isoformat(),
                "dem_filename": f"{job_id}_dem.tif",
            }
        )
        results = base / "results" / job_id / "outputs"
        results.mkdir(parents=True)
        for index in range(4):
            (results / f"tile_{index}.tif").write_bytes(os.urandom(48 * 1024))
        (base / "results" / f"{job_id}_results.zip").write_bytes(b"z" * 20_000)
        (base / "temp" / job_id).mkdir(parents=True)
        (base / "temp" / job_id / "work.tmp").write_bytes(b"t" * 8_000)
        (base / "uploads").mkdir(exist_ok=True)
        (base / "uploads" / f"{job_id}_dem.tif").write_bytes(b"u" * 30_000)
    create_jobs_db(base / "jobs.db", rows)
    (base / "cleanup_config.yaml").write_text(CONFIG)


def cli(base: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [cli_executable(), "run", "--config", str(base / "cleanup_config.yaml"), *args],
        env=guarded_env(tmp_path),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fill(disk: Path) -> None:
    """Use every last block of the filesystem."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        for size in (1 << 20, 64 << 10, 4096, 512, 1):
            while True:
                try:
                    filler.write(b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    assert os.statvfs(disk).f_bavail == 0


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def marked(db: Path) -> set[object]:
    return {job_id for (job_id,) in rows(db, "SELECT id FROM jobs WHERE data_cleaned_at NOT NULL")}


@pytest.mark.parametrize("history", ["first-run", "after-earlier-runs"])
def test_on_a_full_disk_the_run_frees_the_due_data_and_then_writes_its_records(
    small_disk: Path, tmp_path: Path, history: str
) -> None:
    base = small_disk / "base"
    build(base)
    log_file = base / "logs" / "cleanup.log"
    if history == "after-earlier-runs":  # migrated, and the log file exists
        earlier = cli(base, tmp_path, "--job", RETAINED)
        assert earlier.returncode == 0, earlier.stderr
        # End the file on a page boundary, so its next line needs a new block too.
        size = log_file.stat().st_size
        with log_file.open("a") as log:
            log.write("#" * (-(size + 1) % 4096) + "\n")
        assert log_file.stat().st_size % 4096 == 0
    fill(small_disk)

    completed = cli(base, tmp_path, "--json")

    assert completed.returncode == 0, completed.stderr
    if history == "first-run":
        assert "Put off adding our columns and tables until deleting has made room" in (
            completed.stderr
        )
    report = json.loads(completed.stdout)
    assert report["success"] is True
    assert report["cleaned_jobs"] == {"successful": len(DUE), "failed": 0}
    for job_id in DUE:
        for path in (
            base / "results" / job_id,
            base / "results" / f"{job_id}_results.zip",
            base / "temp" / job_id,
            base / "uploads" / f"{job_id}_dem.tif",
        ):
            assert not os.path.lexists(path), path
    assert (base / "results" / RETAINED).is_dir()
    db = base / "jobs.db"
    marked = {
        job_id for (job_id,) in rows(db, "SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
    }
    assert marked == set(DUE)
    (log,) = rows(
        db,
        "SELECT jobs_successful, jobs_failed, bytes_freed, exit_code FROM cleanup_log "
        f"WHERE run_id = '{report['run_id']}'",
    )
    assert log == (len(DUE), 0, report["space_freed"]["bytes"], 0)
    audited = {job_id for (job_id,) in rows(db, "SELECT DISTINCT job_id FROM cleanup_audit")}
    assert audited >= set(DUE)
    # Every line, those logged before the first deletion made room included.
    lines = log_file.read_text().splitlines()
    assert any(f"Starting job cleanup (run {report['run_id']}" in line for line in lines)
    for job_id in DUE:
        assert any(f"Cleaning job {job_id}" in line for line in lines), job_id
    if history == "first-run":
        assert any("Put off adding our columns and tables" in line for line in lines)
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_on_a_full_disk_no_job_is_marked_while_its_data_exists(
    small_disk: Path, tmp_path: Path
) -> None:
    # A job whose data cannot all go (an immutable file) is never marked, full disk or not.
    base = small_disk / "base"
    build(base)
    stuck = base / "results" / DUE[0] / "outputs" / "tile_0.tif"
    made = subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr!r}")
    try:
        fill(small_disk)
        completed = cli(base, tmp_path, "--json")
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], capture_output=True, check=False)

    assert completed.returncode == 1, completed.stderr
    db = base / "jobs.db"
    marked = {
        job_id for (job_id,) in rows(db, "SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
    }
    assert marked == set(DUE[1:])
    assert stuck.exists()

"""Integration tests of one cleanup run (``run_cleanup``) on real bases under ``tmp_path``.

The demo base (``demo_base``: its ``demo_manifest.json`` says which jobs are due and which
uploads go) and small hand-made bases, judged by the files, the rows and the report.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import DemoBase, add_run_log_row, create_jobs_db, snapshot

from eemt_cleanup.cli.exit_codes import error_exit_code, exit_code
from eemt_cleanup.config.loader import LoadedConfig, load_config
from eemt_cleanup.engine import RunOptions, RunReport, Skip, StopFlag, run_cleanup
from eemt_cleanup.errors import DatabaseError, LockedError
from eemt_cleanup.models import SkipReason

BLOCK = 512
MEBIBYTE = 1024 * 1024
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LOG_FILES = ("workflow.log", "task_output.log", "sys.err", "container.log")
WEB_COLUMNS = (
    "id, workflow_type, status, created_at, started_at, completed_at, parameters, "
    "dem_filename, error_message, progress"
)
DATA_DIRS = ("uploads", "results", "temp", "cache", "shared")


# -- helpers -------------------------------------------------------------------------------


def config_for(base: Path, settings: dict[str, Any] | None = None) -> LoadedConfig:
    overrides: dict[str, tuple[Any, str]] = {
        "paths.database": (str(base / "jobs.db"), "--db-path"),
        "paths.uploads": (str(base / "uploads"), "--uploads-dir"),
        "paths.results": (str(base / "results"), "--results-dir"),
        "paths.temp": (str(base / "temp"), "--temp-dir"),
        "paths.logs": (str(base / "logs"), "test"),
    }
    for key, value in (settings or {}).items():
        overrides[key] = (value, "test")
    return load_config(environ={}, overrides=overrides, cwd=base)


def run(
    base: Path,
    options: RunOptions | None = None,
    *,
    settings: dict[str, Any] | None = None,
    events: Any = None,
    stop: StopFlag | None = None,
    now: datetime | None = None,
) -> RunReport:
    return run_cleanup(config_for(base, settings), options or RunOptions(), events, stop, now=now)


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def dict_rows(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def assert_database_free(db: Path) -> None:
    """No connection holds any lock: no transaction was left open."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        assert not conn.in_transaction
    finally:
        conn.close()


def blocks(path: Path) -> int:
    return os.lstat(path).st_blocks * BLOCK


def allocated(top: Path) -> int:
    """Allocated bytes of ``top`` and everything below it (lstat, no links followed)."""
    total = blocks(top)
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            total += sum(blocks(Path(dirpath) / name) for name in dirnames + filenames)
    return total


def data_snapshot(base: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry of the data directories (everything but the database and its lock)."""
    return {
        f"{name}/{key}": value
        for name in DATA_DIRS
        if (base / name).exists()
        for key, value in snapshot(base / name).items()
    }


def without(entries: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """``entries`` minus the given manifest paths (``dir/`` means the directory and below)."""
    prefixes = tuple(path for path in paths if path.endswith("/"))
    names = {path.rstrip("/") for path in paths}
    return {
        key: value
        for key, value in entries.items()
        if key not in names and not key.startswith(prefixes)
    }


def write(path: Path, size: int, fill: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fill * size)


def make_base(base: Path, jobs: list[dict[str, Any]]) -> Path:
    """A small base: each job has results/<id>/, an archive, temp/<id>/ and maybe an upload.

    ``jobs``: ``id``, ``days`` (completed that many days before NOW), optional ``status``
    (default completed) and ``upload`` (a name, shared when repeated).
    """
    for name in ("uploads", "results", "temp"):
        (base / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for job in jobs:
        job_id = job["id"]
        write(base / "results" / job_id / "workflow.log", 600, b"l")
        write(base / "results" / job_id / "outputs" / "tile_000.tif", 50_000)
        write(base / "results" / f"{job_id}_results.zip", 20_000)
        write(base / "temp" / job_id / "work.tmp", 8_000)
        upload = job.get("upload")
        if upload is not None and not (base / "uploads" / upload).exists():
            write(base / "uploads" / upload, 30_000, b"u")
        completed = NOW - timedelta(days=job["days"])
        rows.append(
            {
                "id": job_id,
                "status": job.get("status", "completed"),
                "created_at": (completed - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
                "started_at": (completed - timedelta(minutes=50)).isoformat(),
                "completed_at": completed.isoformat(),
                "dem_filename": upload,
                "progress": 100,
            }
        )
    create_jobs_db(base / "jobs.db", rows)
    return base


def job_paths(job_id: str, upload: str | None = None) -> list[str]:
    paths = [f"results/{job_id}/", f"results/{job_id}_results.zip", f"temp/{job_id}/"]
    return [*paths, f"uploads/{upload}"] if upload else paths


def cleaned_ids(db: Path) -> set[str]:
    return {
        job_id for (job_id,) in query(db, "SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
    }


@contextmanager
def mounted(arguments: list[str], target: Path) -> Iterator[None]:
    result = subprocess.run(
        ["mount", *arguments, str(target)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount {' '.join(arguments)} here: {result.stderr.strip()}")
    try:
        yield
    finally:
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


# -- the demo base: what a default run must do ---------------------------------------------


def due_jobs(demo: DemoBase) -> list[dict[str, Any]]:
    return demo.jobs("due")


def expected_audit(demo: DemoBase) -> dict[tuple[str, str], tuple[set[str], int, str | None]]:
    """(action, path) -> (job ids allowed to own the row, bytes_freed, error) for a default run,
    measured on disk before the run."""
    manifest = demo.manifest
    by_upload: dict[str, list[dict[str, Any]]] = {}
    for job in manifest["jobs"]:
        if job["upload"]:
            by_upload.setdefault(job["upload"], []).append(job)
    expected: dict[tuple[str, str], tuple[set[str], int, str | None]] = {}
    for job in due_jobs(demo):
        job_id = job["id"]
        for path in job["paths"]:
            full = demo.path / path
            if path == f"results/{job_id}/":
                size = allocated(full)
                if job["status"] == "failed":
                    size -= blocks(full) + sum(blocks(full / name) for name in LOG_FILES)
                    # One row per log kept, named by its path (no list in the error column).
                    for name in LOG_FILES:
                        expected[("kept_logs", f"{path}{name}")] = ({job_id}, 0, None)
                expected[("deleted_results", path)] = ({job_id}, size, None)
            elif path == f"results/{job_id}_results.zip":
                expected[("deleted_archive", path)] = ({job_id}, blocks(full), None)
            elif path == f"temp/{job_id}/":
                expected[("deleted_temp", path)] = ({job_id}, allocated(full), None)
            elif manifest["uploads"][job["upload"]] == "deleted":
                owners = {other["id"] for other in by_upload[job["upload"]]}
                expected[("deleted_upload", path)] = (owners, blocks(full), None)
            else:
                (other,) = [o for o in by_upload[job["upload"]] if o["id"] != job_id]
                expected[("kept_upload", path)] = ({job_id}, 0, kept_reason(demo, other["id"]))
    return expected


def kept_reason(demo: DemoBase, other_id: str) -> str:
    completed = demo.rows()[other_id]["completed_at"]
    due = datetime.fromisoformat(completed).astimezone(UTC) + timedelta(hours=168)
    return (
        f"upload still referenced by job {other_id} (completed, due "
        f"{due.isoformat(timespec='minutes')})"
    )


def expected_total(expected: dict[tuple[str, str], tuple[set[str], int, str | None]]) -> int:
    return sum(size for _owners, size, _error in expected.values())


def web_rows(db: Path) -> dict[str, tuple[Any, ...]]:
    return {row[0]: row for row in query(db, f"SELECT {WEB_COLUMNS} FROM jobs")}


def test_demo_run_removes_exactly_the_due_jobs_data_and_nothing_else(
    demo_base: DemoBase,
) -> None:
    manifest = demo_base.manifest
    before = data_snapshot(demo_base.path)
    logs_before = {
        job["id"]: {
            name: (demo_base.path / "results" / job["id"] / name).read_bytes() for name in LOG_FILES
        }
        for job in due_jobs(demo_base)
        if job["status"] == "failed"
    }

    report = run(demo_base.path)

    assert exit_code(report) == 0
    assert report.errors == []
    gone = [
        path
        for job in due_jobs(demo_base)
        for path in job["paths"]
        if not path.startswith("uploads/")
    ]
    gone += [f"uploads/{name}" for name, fate in manifest["uploads"].items() if fate == "deleted"]
    after = data_snapshot(demo_base.path)
    failed_results = {f"results/{job_id}" for job_id in logs_before}
    assert without(after, sorted(f"{path}/" for path in failed_results)) == without(before, gone)
    for job_id, logs in logs_before.items():
        results = demo_base.path / "results" / job_id
        assert sorted(os.listdir(results)) == sorted(LOG_FILES)
        assert {name: (results / name).read_bytes() for name in LOG_FILES} == logs
    for path in gone:
        if path.rstrip("/") not in failed_results:
            assert not (demo_base.path / path.rstrip("/")).exists(), path
    for path in manifest["untouched"]:
        assert after[path] == before[path]
    assert {key: value for key, value in after.items() if key.startswith(("cache", "shared"))} == {
        key: value for key, value in before.items() if key.startswith(("cache", "shared"))
    }
    assert_database_free(demo_base.db)


def test_demo_run_keeps_every_row_and_marks_exactly_the_due_jobs(demo_base: DemoBase) -> None:
    rows_before = web_rows(demo_base.db)
    due = {job["id"] for job in due_jobs(demo_base)}

    report = run(demo_base.path)

    assert web_rows(demo_base.db) == rows_before
    assert cleaned_ids(demo_base.db) == due
    assert {job.job_id for job in report.jobs if job.cleaned} == due
    freed: dict[str, int] = {}
    for job_id, size in query(demo_base.db, "SELECT job_id, bytes_freed FROM cleanup_audit"):
        freed[job_id] = freed.get(job_id, 0) + size
    started = report.started_at.replace(microsecond=0)
    assert report.finished_at is not None
    for job_id, cleaned_at, size_mb in query(
        demo_base.db,
        "SELECT id, data_cleaned_at, data_size_mb FROM jobs WHERE id IN "
        f"({', '.join('?' * len(due))})",
        tuple(sorted(due)),
    ):
        stamp = datetime.fromisoformat(cleaned_at)
        assert stamp.utcoffset() == timedelta(0), cleaned_at
        assert started <= stamp <= report.finished_at
        assert size_mb == round(freed[job_id] / MEBIBYTE, 3)
    assert query(
        demo_base.db,
        "SELECT count(*) FROM jobs WHERE data_cleaned_at IS NULL AND data_size_mb IS NOT NULL",
    ) == [(0,)]
    assert_database_free(demo_base.db)


def test_demo_run_writes_one_audit_row_per_path_with_its_freed_bytes(demo_base: DemoBase) -> None:
    expected = expected_audit(demo_base)
    report = run(demo_base.path)

    rows = dict_rows(demo_base.db, "SELECT * FROM cleanup_audit ORDER BY id")
    assert sorted((row["action"], row["path"]) for row in rows) == sorted(expected)
    for row in rows:
        owners, size, error = expected[(row["action"], row["path"])]
        assert row["job_id"] in owners, row
        assert row["bytes_freed"] == size, row
        assert row["space_freed_mb"] == round(size / MEBIBYTE, 3), row
        assert row["run_id"] == report.run_id
        assert row["user"] == "root"
        assert row["error"] == error, row
    assert sum(row["bytes_freed"] for row in rows) == report.bytes_freed
    assert report.bytes_freed == expected_total(expected)


def test_demo_run_writes_one_run_log_row_with_exit_code_0(demo_base: DemoBase) -> None:
    successful = sum(1 for job in due_jobs(demo_base) if job["status"] == "completed")
    failed = sum(1 for job in due_jobs(demo_base) if job["status"] == "failed")
    assert (successful, failed) == (9, 2)

    report = run(demo_base.path)

    (log,) = dict_rows(demo_base.db, "SELECT * FROM cleanup_log")
    audit_files = query(demo_base.db, "SELECT sum(files_deleted) FROM cleanup_audit")[0][0]
    assert report.finished_at is not None
    assert {key: value for key, value in log.items() if key not in ("id",)} == {
        "run_id": report.run_id,
        "started_at": report.started_at.isoformat(timespec="seconds"),
        "finished_at": report.finished_at.isoformat(timespec="seconds"),
        "trigger": "cli",
        "user": "root",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "dry_run": 0,
        "jobs_successful": successful,
        "jobs_failed": failed,
        "bytes_freed": report.bytes_freed,
        "files_deleted": audit_files,
        "errors": 0,
        "exit_code": 0,
        "dry_run_forced_by": None,
    }
    assert_database_free(demo_base.db)


def test_second_run_cleans_nothing_and_changes_no_file(demo_base: DemoBase) -> None:
    run(demo_base.path)
    files = data_snapshot(demo_base.path)
    audit_before = query(demo_base.db, "SELECT * FROM cleanup_audit ORDER BY id")
    marks = query(demo_base.db, "SELECT id, data_cleaned_at, data_size_mb FROM jobs ORDER BY id")

    report = run(demo_base.path)

    assert report.jobs == []
    assert exit_code(report) == 0
    assert data_snapshot(demo_base.path) == files
    assert query(demo_base.db, "SELECT * FROM cleanup_audit ORDER BY id") == audit_before
    assert (
        query(demo_base.db, "SELECT id, data_cleaned_at, data_size_mb FROM jobs ORDER BY id")
        == marks
    )
    logs = query(
        demo_base.db,
        "SELECT run_id, jobs_successful, jobs_failed, bytes_freed, files_deleted, errors, "
        "exit_code FROM cleanup_log ORDER BY id",
    )
    assert len(logs) == 2
    assert logs[1] == (report.run_id, 0, 0, 0, 0, 0, 0)
    assert_database_free(demo_base.db)


def test_dry_run_changes_no_byte_and_reports_exactly_the_due_jobs(demo_base: DemoBase) -> None:
    expected = expected_audit(demo_base)
    database = demo_base.db.read_bytes()
    everything = snapshot(demo_base.path)

    report = run(demo_base.path, RunOptions(dry_run=True))

    assert demo_base.db.read_bytes() == database
    assert snapshot(demo_base.path) == everything
    assert report.dry_run is True
    assert exit_code(report) == 0
    assert sorted(job.job_id for job in report.jobs) == sorted(
        job["id"] for job in due_jobs(demo_base)
    )
    assert report.bytes_freed == expected_total(expected)
    assert_database_free(demo_base.db)


# -- choosing jobs -------------------------------------------------------------------------


def scenario(demo: DemoBase, number: int, expect: str) -> dict[str, Any]:
    (job,) = [
        job
        for job in demo.manifest["jobs"]
        if job["scenario"] == number and job["expect"] == expect
    ]
    return job


def test_job_option_cleans_only_that_due_job_and_skips_a_retained_one_with_reason(
    demo_base: DemoBase,
) -> None:
    due = scenario(demo_base, 1, "due")
    retained = scenario(demo_base, 2, "retained")
    before = data_snapshot(demo_base.path)

    report = run(demo_base.path, RunOptions(job_ids=(due["id"], retained["id"])))

    assert [job.job_id for job in report.jobs] == [due["id"]]
    assert report.jobs[0].cleaned is True
    assert report.skipped == [
        Skip(
            job_id=retained["id"],
            reason="within retention",
            code=SkipReason.NOT_DUE,
            status="completed",
        )
    ]
    assert data_snapshot(demo_base.path) == without(before, due["paths"])
    assert cleaned_ids(demo_base.db) == {due["id"]}
    assert exit_code(report) == 0
    assert_database_free(demo_base.db)


def test_unknown_job_id_raises_database_error_and_deletes_nothing(demo_base: DemoBase) -> None:
    before = data_snapshot(demo_base.path)
    database_before = demo_base.db.read_bytes()
    due = scenario(demo_base, 1, "due")

    with pytest.raises(DatabaseError) as raised:
        run(demo_base.path, RunOptions(job_ids=(due["id"], "no-such-job")))

    assert str(raised.value) == f"--job no-such-job: no such job in {demo_base.db}"
    assert data_snapshot(demo_base.path) == before
    assert demo_base.db.read_bytes() == database_before
    assert_database_free(demo_base.db)


def test_unknown_job_id_writes_nothing_so_no_run_log_row_looks_like_a_crashed_run(
    demo_base: DemoBase,
) -> None:
    migrated = run(demo_base.path, RunOptions(job_ids=(scenario(demo_base, 2, "retained")["id"],)))
    assert exit_code(migrated) == 0
    runs_before = query(demo_base.db, "SELECT run_id FROM cleanup_log")

    with pytest.raises(DatabaseError):
        run(demo_base.path, RunOptions(job_ids=("no-such-job",)))

    assert query(demo_base.db, "SELECT run_id FROM cleanup_log") == runs_before
    unfinished = query(
        demo_base.db,
        "SELECT run_id, finished_at, exit_code FROM cleanup_log "
        "WHERE finished_at IS NULL OR exit_code IS NULL",
    )
    assert unfinished == []


def test_limit_two_cleans_the_two_longest_overdue_jobs(tmp_path: Path) -> None:
    jobs = [
        {"id": "job-8d", "days": 8, "upload": "u8_dem.tif"},
        {"id": "job-30d", "days": 30, "upload": "u30_dem.tif"},
        {"id": "job-10d", "days": 10, "upload": "u10_dem.tif"},
        {"id": "job-20d", "days": 20, "upload": "u20_dem.tif"},
    ]
    base = make_base(tmp_path / "base", jobs)
    before = data_snapshot(base)

    report = run(base, RunOptions(limit=2), now=NOW)

    assert [job.job_id for job in report.jobs] == ["job-30d", "job-20d"]
    assert all(job.cleaned for job in report.jobs)
    gone = job_paths("job-30d", "u30_dem.tif") + job_paths("job-20d", "u20_dem.tif")
    assert data_snapshot(base) == without(before, gone)
    assert cleaned_ids(base / "jobs.db") == {"job-30d", "job-20d"}
    assert exit_code(report) == 0


def test_keep_metadata_false_deletes_cleaned_successful_rows_but_keeps_their_audit_rows(
    demo_base: DemoBase,
) -> None:
    successful = {job["id"] for job in due_jobs(demo_base) if job["status"] == "completed"}
    failed = {job["id"] for job in due_jobs(demo_base) if job["status"] == "failed"}
    rows_before = web_rows(demo_base.db)

    report = run(demo_base.path, settings={"retention.successful_jobs.keep_metadata": False})

    assert exit_code(report) == 0
    rows_after = web_rows(demo_base.db)
    assert rows_after == {
        job_id: row for job_id, row in rows_before.items() if job_id not in successful
    }
    assert cleaned_ids(demo_base.db) == failed
    audited = {job_id for (job_id,) in query(demo_base.db, "SELECT job_id FROM cleanup_audit")}
    assert audited == successful | failed
    assert_database_free(demo_base.db)


# -- uploads -------------------------------------------------------------------------------


def test_upload_shared_with_a_retained_job_stays_and_kept_upload_row_names_that_job(
    tmp_path: Path,
) -> None:
    jobs = [
        {"id": "job-a", "days": 9, "upload": "shared_dem.tif"},
        {"id": "job-b", "days": 2, "upload": "shared_dem.tif"},
    ]
    base = make_base(tmp_path / "base", jobs)
    db = base / "jobs.db"
    upload = base / "uploads" / "shared_dem.tif"
    content = upload.read_bytes()
    upload_bytes = blocks(upload)
    reason = "upload still referenced by job job-b (completed, due 2026-03-06T12:00+00:00)"

    report = run(base, now=NOW)

    assert upload.read_bytes() == content
    assert [(job.job_id, job.cleaned, job.kept) for job in report.jobs] == [
        ("job-a", True, ["uploads/shared_dem.tif"])
    ]
    assert report.skipped == [
        Skip(
            job_id="job-a",
            reason=reason,
            code=SkipReason.UPLOAD_KEPT,
            status="completed",
            path="uploads/shared_dem.tif",
        )
    ]
    assert query(
        db,
        "SELECT job_id, path, bytes_freed, error FROM cleanup_audit WHERE action = ?",
        ("kept_upload",),
    ) == [("job-a", "uploads/shared_dem.tif", 0, reason)]
    assert cleaned_ids(db) == {"job-a"}
    assert exit_code(report) == 0

    # Once the other job is past retention and cleaned too, the upload goes with it.
    later = run(base, now=NOW + timedelta(days=6))

    assert [job.job_id for job in later.jobs] == ["job-b"]
    assert not upload.exists()
    assert query(
        db, "SELECT job_id, bytes_freed FROM cleanup_audit WHERE action = 'deleted_upload'"
    ) == [("job-b", upload_bytes)]
    assert cleaned_ids(db) == {"job-a", "job-b"}


# -- the run's own safety ------------------------------------------------------------------


class Requeue:
    """An event subscriber that puts one planned job back to ``running`` when the first job
    starts (after planning, before the later jobs are touched)."""

    def __init__(self, db: Path, job_id: str) -> None:
        self.db = db
        self.job_id = job_id
        self.requeued = 0
        self.done: list[str] = []

    def __call__(self, event: Any) -> None:
        if event.kind == "job_started" and not self.requeued:
            self.requeued += 1
            # timeout=0: the engine must hold no write lock while it cleans.
            conn = sqlite3.connect(self.db, timeout=0)
            try:
                conn.execute(
                    "UPDATE jobs SET status = 'running', completed_at = NULL WHERE id = ?",
                    (self.job_id,),
                )
                conn.commit()
            finally:
                conn.close()
        if event.kind == "job_finished":
            self.done.append(event.job.job_id)


def test_job_requeued_after_planning_is_skipped_untouched_while_the_others_are_cleaned(
    tmp_path: Path,
) -> None:
    jobs = [
        {"id": "job-a", "days": 10, "upload": "a_dem.tif"},
        {"id": "job-b", "days": 9, "upload": "b_dem.tif"},
        {"id": "job-c", "days": 8, "upload": "c_dem.tif"},
    ]
    base = make_base(tmp_path / "base", jobs)
    db = base / "jobs.db"
    before = data_snapshot(base)
    events = Requeue(db, "job-b")

    # One worker: the jobs are cleaned one after the other on the run's thread, so the
    # requeue made when job-a starts lands before job-b is read again.
    one_worker = {"performance.parallel_delete": False, "performance.max_workers": 1}
    report = run(base, settings=one_worker, events=events, now=NOW)

    assert events.requeued == 1
    assert events.done == ["job-a", "job-c"]
    assert report.skipped == [
        Skip(
            job_id="job-b",
            reason="status changed to running since planning",
            code=SkipReason.STATUS_CHANGED,
            status="completed",
        )
    ]
    gone = job_paths("job-a", "a_dem.tif") + job_paths("job-c", "c_dem.tif")
    assert data_snapshot(base) == without(before, gone)
    assert cleaned_ids(db) == {"job-a", "job-c"}
    assert query(db, "SELECT status FROM jobs WHERE id = 'job-b'") == [("running",)]
    assert query(db, "SELECT count(*) FROM cleanup_audit WHERE job_id = 'job-b'") == [(0,)]
    assert exit_code(report) == 0
    assert_database_free(db)


def test_mount_point_inside_one_job_fails_only_that_job(tmp_path: Path) -> None:
    jobs = [
        {"id": "job-a", "days": 10},
        {"id": "job-b", "days": 9},
        {"id": "job-c", "days": 8},
    ]
    base = make_base(tmp_path / "base", jobs)
    db = base / "jobs.db"
    mount_point = base / "results" / "job-b" / "outputs" / "mnt"
    mount_point.mkdir()
    error = "results/job-b/outputs/mnt/: a mount point: not crossed"
    with mounted(["-t", "tmpfs", "-o", "size=1m", "none"], mount_point):
        (mount_point / "other_fs.dat").write_bytes(b"not ours")

        report = run(base, now=NOW)

        assert (mount_point / "other_fs.dat").read_bytes() == b"not ours"
    assert exit_code(report) == 1
    assert [(job.job_id, job.cleaned, job.errors) for job in report.jobs] == [
        ("job-a", True, []),
        ("job-b", False, [error]),
        ("job-c", True, []),
    ]
    assert report.errors == [f"job job-b: {error}"]
    assert cleaned_ids(db) == {"job-a", "job-c"}
    for job_id in ("job-a", "job-c"):
        assert not (base / "results" / job_id).exists()
        assert not (base / "temp" / job_id).exists()
    assert query(
        db,
        "SELECT action, error FROM cleanup_audit WHERE job_id = 'job-b' AND path = ?",
        ("results/job-b/",),
    ) == [("error", error)]
    assert query(db, "SELECT errors, exit_code FROM cleanup_log") == [(1, 1)]
    assert_database_free(db)


def test_held_lock_raises_locked_error_naming_the_holder_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    base = make_base(tmp_path / "base", [{"id": "job-a", "days": 10, "upload": "a_dem.tif"}])
    db = base / "jobs.db"
    # The holder: a process holding the flock on the database file, with its run-log row.
    add_run_log_row(
        db,
        run_id="run-1",
        started_at="2026-03-01T11:00:00+00:00",
        trigger="cron",
        user="alice",
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    database = db.read_bytes()
    before = data_snapshot(base)
    fd = os.open(db, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockedError) as raised:
            run(base, now=NOW)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    assert str(raised.value) == (
        f"another eemt-cleanup run holds the lock on {db} (pid {os.getpid()}, on "
        f"{socket.gethostname()}, user alice, trigger cron, since 2026-03-01T11:00:00+00:00, "
        "run run-1); not starting"
    )
    assert error_exit_code(raised.value) == 75
    assert data_snapshot(base) == before
    assert db.read_bytes() == database
    assert not list(base.glob("jobs.db.*")), "no lock file beside the database"
    assert_database_free(db)


def test_stop_requested_before_the_run_touches_no_job_and_exits_143(demo_base: DemoBase) -> None:
    before = data_snapshot(demo_base.path)
    stop = StopFlag()
    stop.request(signal.SIGTERM)

    report = run(demo_base.path, stop=stop)

    assert exit_code(report) == 143
    assert report.stopped_by == signal.SIGTERM
    assert report.jobs == []
    assert data_snapshot(demo_base.path) == before
    assert cleaned_ids(demo_base.db) == set()
    assert query(
        demo_base.db,
        "SELECT run_id, jobs_successful, jobs_failed, bytes_freed, files_deleted, exit_code "
        "FROM cleanup_log",
    ) == [(report.run_id, 0, 0, 0, 0, 143)]
    assert query(demo_base.db, "SELECT count(*) FROM cleanup_audit") == [(0,)]
    assert_database_free(demo_base.db)


def test_hostile_job_id_and_upload_name_are_refused_and_nothing_outside_the_roots_changes(
    tmp_path: Path,
) -> None:
    base = make_base(tmp_path / "base", [{"id": "job-ok", "days": 10, "upload": "ok_dem.tif"}])
    db = base / "jobs.db"
    write(base / "canary" / "precious.dat", 9_000, b"p")
    write(base / "canary_results.zip", 1_000, b"z")
    conn = sqlite3.connect(db)
    conn.executemany(
        "INSERT INTO jobs (id, workflow_type, status, completed_at, dem_filename) "
        "VALUES (?, 'eemt', 'completed', ?, ?)",
        [
            ("../canary", (NOW - timedelta(days=10)).isoformat(), None),
            ("job-evil-upload", (NOW - timedelta(days=10)).isoformat(), "../jobs.db"),
        ],
    )
    conn.commit()
    conn.close()
    outside = {key: value for key, value in snapshot(base).items() if key.startswith("canary")}
    id_reason = "refused: job id '../canary' contains '/'"
    upload_reason = "refused: upload name '../jobs.db' contains '/'"

    report = run(base, now=NOW)

    assert {
        key: value for key, value in snapshot(base).items() if key.startswith("canary")
    } == outside
    assert db.is_file()
    assert exit_code(report) == 1
    assert sorted(report.skipped, key=lambda skip: skip.job_id) == [
        Skip(
            job_id="../canary",
            reason=id_reason,
            code=SkipReason.REFUSED,
            status="completed",
            needs_attention=True,
        ),
        Skip(
            job_id="job-evil-upload",
            reason=upload_reason,
            code=SkipReason.UPLOAD_REFUSED,
            status="completed",
            path="uploads/../jobs.db",
            needs_attention=True,
        ),
    ]
    assert cleaned_ids(db) == {"job-ok"}
    assert query(
        db, "SELECT job_id, path, error FROM cleanup_audit WHERE action = 'refused' ORDER BY id"
    ) == [
        ("../canary", None, id_reason),
        ("job-evil-upload", "uploads/../jobs.db", upload_reason),
    ]
    assert_database_free(db)


def test_job_whose_data_vanished_before_its_mark_was_committed_gets_an_audit_trail(
    tmp_path: Path,
) -> None:
    # The state a crash between the deletion and the batch commit leaves behind: the job's
    # data is gone, its row is not marked and the run's audit rows were never committed.
    # SPEC §7: the next run completes it, and no cleaned job lacks its audit trail.
    base = make_base(tmp_path / "base", [{"id": "job-a", "days": 10, "upload": "a_dem.tif"}])
    db = base / "jobs.db"
    for path in job_paths("job-a", "a_dem.tif"):
        target = base / path.rstrip("/")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    report = run(base, now=NOW)

    assert exit_code(report) == 0
    assert cleaned_ids(db) == {"job-a"}
    audit_rows = query(db, "SELECT action FROM cleanup_audit WHERE job_id = 'job-a'")
    assert len(audit_rows) >= 1, "job-a is marked cleaned without any audit row"

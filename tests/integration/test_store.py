"""Integration tests of the SQLite store: migrations, connections and job reads.

Real database files under ``tmp_path`` only (SPEC §2 and §6).
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import create_jobs_db

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.errors import DatabaseError
from eemt_cleanup.store.db import JobStore, check_jobs_table, connect, write_transaction
from eemt_cleanup.store.migrations import (
    COUNTS_COLUMNS,
    NOTICES_COLUMNS,
    USAGE_COLUMNS,
    migrate,
)

WEB_COLUMNS = [
    "id",
    "workflow_type",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "parameters",
    "dem_filename",
    "error_message",
    "progress",
]
AUDIT_COLUMNS = [
    "id",
    "timestamp",
    "job_id",
    "action",
    "space_freed_mb",
    "user",
    "run_id",
    "path",
    "bytes_freed",
    "files_deleted",
    "error",
]
LOG_COLUMNS = [
    "id",
    "run_id",
    "started_at",
    "finished_at",
    "trigger",
    "user",
    "host",
    "pid",
    "dry_run",
    "jobs_successful",
    "jobs_failed",
    "bytes_freed",
    "files_deleted",
    "errors",
    "exit_code",
    "dry_run_forced_by",
]
MIGRATION_NAMES = [
    "001_append_cleanup_columns",
    "002_cleanup_audit",
    "003_cleanup_log",
    "004_due_index_status",
    "005_upload_index_dem_filename",
    "006_cleanup_log_forced_dry_run",
    "007_cleanup_counts",
    "008_cleanup_usage",
    "009_cleanup_notices",
    "010_cleanup_schedule",
]
REFERENCE_AUDIT_DDL = """
CREATE TABLE cleanup_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    job_id TEXT,
    action TEXT,
    space_freed_mb REAL,
    user TEXT
)
"""


def job(job_id: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": status,
        "completed_at": "2024-01-10T08:00:00.000000",
        "dem_filename": f"{job_id}_dem.tif",
        **extra,
    }


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def schema(conn: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def migrated(path: Path, rows: list[dict[str, Any]]) -> sqlite3.Connection:
    create_jobs_db(path, rows)
    conn = connect(path, readonly=False)
    migrate(conn, "jobs", "status", "dem_filename")
    return conn


def assert_no_write_lock(path: Path) -> None:
    """Another connection (as the web interface would) gets the write lock at once."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("BEGIN EXCLUSIVE")
        other.execute("ROLLBACK")
    finally:
        other.close()


# -- migrations ----------------------------------------------------------------------------


def test_migration_appends_two_columns_after_the_ten_web_interface_columns(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "jobs.db", [job("a")])
    try:
        assert columns(conn, "jobs") == [*WEB_COLUMNS, "data_cleaned_at", "data_size_mb"]
        row = conn.execute("SELECT * FROM jobs").fetchone()
        assert row[:10] == (
            "a",
            "eemt",
            "completed",
            row[3],
            None,
            "2024-01-10T08:00:00.000000",
            None,
            "a_dem.tif",
            None,
            0,
        )
        assert row[10:] == (None, None)
        assert not conn.in_transaction
    finally:
        conn.close()


def test_migration_creates_audit_and_log_tables_with_the_spec_columns(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "jobs.db", [])
    try:
        assert columns(conn, "cleanup_audit") == AUDIT_COLUMNS
        assert columns(conn, "cleanup_log") == LOG_COLUMNS
        applied = conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'eemt_cleanup:jobs' "
            "ORDER BY id"
        ).fetchall()
        assert [name for (name,) in applied] == MIGRATION_NAMES
    finally:
        conn.close()


def test_migration_creates_the_append_only_tables_of_the_reports(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "jobs.db", [])
    try:
        assert columns(conn, "cleanup_counts") == ["id", *COUNTS_COLUMNS]
        assert columns(conn, "cleanup_usage") == ["id", *USAGE_COLUMNS]
        assert columns(conn, "cleanup_notices") == ["id", *NOTICES_COLUMNS]
        assert not conn.in_transaction
    finally:
        conn.close()


def test_migration_creates_partial_due_index_used_by_the_due_query(tmp_path: Path) -> None:
    rows = [job(f"j{number:02d}", "completed" if number % 3 else "failed") for number in range(30)]
    path = tmp_path / "jobs.db"
    conn = migrated(path, rows)
    try:
        partial = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' "
            "AND sql LIKE '%WHERE data_cleaned_at IS NULL%'"
        ).fetchall()
        assert [name for name, _sql in partial] == ["idx_jobs_cleanup_due"]

        store = JobStore(conn, path, Jobs())
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            found = [row.job_id for row in store.iter_unclean(["completed"], page_size=1000)]
        finally:
            conn.set_trace_callback(None)
        assert len(found) == 20
        assert len(statements) == 1
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statements[0])]
        assert plan == ["SEARCH jobs USING INDEX idx_jobs_cleanup_due (status=? AND rowid>?)"]
    finally:
        conn.close()


def test_migrating_twice_changes_nothing(tmp_path: Path) -> None:
    conn = migrated(tmp_path / "jobs.db", [job("a"), job("b", "failed")])
    try:
        before_schema = schema(conn)
        before_applied = conn.execute("SELECT * FROM _sqlite_migrations ORDER BY id").fetchall()
        before_changes = conn.total_changes

        migrate(conn, "jobs", "status", "dem_filename")

        assert schema(conn) == before_schema
        assert conn.execute("SELECT * FROM _sqlite_migrations ORDER BY id").fetchall() == (
            before_applied
        )
        assert conn.total_changes == before_changes
        assert not conn.in_transaction
    finally:
        conn.close()


def test_reference_six_column_audit_table_gains_missing_columns_and_keeps_its_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    create_jobs_db(path, [job("a")])
    setup = sqlite3.connect(path)
    setup.execute(REFERENCE_AUDIT_DDL)
    setup.execute(
        "INSERT INTO cleanup_audit (timestamp, job_id, action, space_freed_mb, user) "
        "VALUES ('2024-01-20 02:00:01', 'a', 'deleted', 12.5, 'root')"
    )
    setup.commit()
    setup.close()

    conn = connect(path, readonly=False)
    try:
        migrate(conn, "jobs", "status", "dem_filename")
        assert columns(conn, "cleanup_audit") == AUDIT_COLUMNS
        assert conn.execute("SELECT * FROM cleanup_audit").fetchall() == [
            (1, "2024-01-20 02:00:01", "a", "deleted", 12.5, "root", None, None, None, None, None)
        ]
    finally:
        conn.close()


# -- connect and check_jobs_table ----------------------------------------------------------


@pytest.mark.parametrize("readonly", [True, False])
def test_connect_missing_file_raises_database_error_and_creates_nothing(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(DatabaseError) as raised:
        connect(path, readonly=readonly)
    assert str(raised.value) == (
        f"database not found: {path} (set paths.database, EEMT_DB_PATH or --db-path)"
    )
    assert not path.exists()


@pytest.mark.parametrize("readonly", [True, False])
def test_connect_directory_raises_database_error(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "jobs.db"
    path.mkdir()
    with pytest.raises(DatabaseError) as raised:
        connect(path, readonly=readonly)
    assert str(raised.value) == f"database path is not a file: {path}"


@pytest.mark.parametrize("readonly", [True, False])
def test_connect_random_bytes_file_raises_database_error_and_leaves_it_unchanged(
    tmp_path: Path, readonly: bool
) -> None:
    path = tmp_path / "jobs.db"
    content = random.Random(7).randbytes(8192)
    path.write_bytes(content)
    with pytest.raises(DatabaseError) as raised:
        connect(path, readonly=readonly)
    assert str(raised.value) == (f"{path}: not a usable SQLite database (file is not a database)")
    assert path.read_bytes() == content
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["jobs.db"]


def test_check_jobs_table_without_jobs_table_lists_the_tables_found(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    setup.execute("CREATE TABLE sessions (id TEXT PRIMARY KEY)")
    setup.commit()
    setup.close()
    conn = connect(path, readonly=True)
    try:
        with pytest.raises(DatabaseError) as raised:
            check_jobs_table(conn, Jobs(), path)
    finally:
        conn.close()
    assert str(raised.value) == (
        f"{path}: no table 'jobs' (tables: sessions, users); is this the EEMT web "
        "interface's database? (jobs.table)"
    )


def test_check_jobs_table_missing_completed_at_and_dem_filename_names_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    setup = sqlite3.connect(path)
    setup.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, workflow_type TEXT NOT NULL, "
        "status TEXT NOT NULL, created_at TIMESTAMP, started_at TIMESTAMP, parameters TEXT)"
    )
    setup.commit()
    setup.close()
    conn = connect(path, readonly=True)
    try:
        with pytest.raises(DatabaseError) as raised:
            check_jobs_table(conn, Jobs(), path)
    finally:
        conn.close()
    assert str(raised.value) == (
        f"{path}: table 'jobs' lacks required columns: completed_at, dem_filename"
    )


# -- write_transaction ---------------------------------------------------------------------


def test_write_transaction_commits_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job("a")])
    try:
        with write_transaction(conn):
            conn.execute("UPDATE jobs SET progress = 42 WHERE id = 'a'")
            assert conn.in_transaction
        assert not conn.in_transaction
        assert_no_write_lock(path)
    finally:
        conn.close()
    check = sqlite3.connect(path)
    assert check.execute("SELECT progress FROM jobs").fetchall() == [(42,)]
    check.close()


def test_write_transaction_rolls_back_on_exception_and_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job("a")])
    try:
        with pytest.raises(RuntimeError, match=r"^boom$"), write_transaction(conn):
            conn.execute("UPDATE jobs SET progress = 42 WHERE id = 'a'")
            raise RuntimeError("boom")
        assert not conn.in_transaction
        assert_no_write_lock(path)
        assert conn.execute("SELECT progress FROM jobs").fetchall() == [(0,)]
    finally:
        conn.close()


def test_write_transaction_statement_that_already_rolled_back_reraises_its_own_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job("a")])
    try:
        with (
            pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: jobs\.id"),
            write_transaction(conn),
        ):
            conn.execute("UPDATE jobs SET progress = 7 WHERE id = 'a'")
            conn.execute(
                "INSERT OR ROLLBACK INTO jobs (id, workflow_type, status) "
                "VALUES ('a', 'eemt', 'completed')"
            )
        assert not conn.in_transaction
        assert_no_write_lock(path)
        assert conn.execute("SELECT progress FROM jobs").fetchall() == [(0,)]
    finally:
        conn.close()


def test_write_transaction_whose_commit_is_busy_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    # The web interface reading (an open read transaction in rollback-journal mode) makes
    # COMMIT wait for the exclusive lock; when the busy timeout expires COMMIT fails, and
    # the write transaction must not stay open holding the reserved lock.
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job("a")])
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 50")
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM jobs").fetchall()
        with (
            pytest.raises(sqlite3.OperationalError, match="database is locked"),
            write_transaction(conn),
        ):
            conn.execute("UPDATE jobs SET progress = 42 WHERE id = 'a'")
        assert not conn.in_transaction
    finally:
        reader.close()
        conn.close()


# -- JobStore.iter_unclean -----------------------------------------------------------------


def test_iter_unclean_streams_many_pages_without_duplicates_or_gaps(tmp_path: Path) -> None:
    statuses = ["completed", "failed", "running"]
    rows = [job(f"j{number:03d}", statuses[number % 3]) for number in range(41)]
    path = tmp_path / "jobs.db"
    conn = migrated(path, rows)
    try:
        cleaned = ["j003", "j016", "j030"]
        conn.executemany(
            "UPDATE jobs SET data_cleaned_at = '2024-02-01T00:00:00+00:00' WHERE id = ?",
            [(job_id,) for job_id in cleaned],
        )
        store = JobStore(conn, path, Jobs())
        found = [row.job_id for row in store.iter_unclean(["failed", "completed"], page_size=4)]
    finally:
        conn.close()
    expected = [
        f"j{number:03d}"
        for status in ("failed", "completed")
        for number in range(41)
        if statuses[number % 3] == status and f"j{number:03d}" not in cleaned
    ]
    assert len(expected) == 25
    assert found == expected


def test_iter_unclean_with_rows_filling_the_last_page_exactly_yields_each_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job(f"j{number:02d}") for number in range(12)])
    try:
        store = JobStore(conn, path, Jobs())
        found = [row.job_id for row in store.iter_unclean(["completed"], page_size=4)]
    finally:
        conn.close()
    assert found == [f"j{number:02d}" for number in range(12)]


def test_iter_unclean_holds_no_lock_between_pages_so_another_writer_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job(f"j{number:02d}") for number in range(10)])
    try:
        store = JobStore(conn, path, Jobs())
        rows = store.iter_unclean(["completed"], page_size=3)
        first = next(rows)
        writer = sqlite3.connect(path, timeout=0)
        writer.execute("UPDATE jobs SET status = 'running' WHERE id = 'j09'")
        writer.commit()
        writer.close()
        rest = [row.job_id for row in rows]
    finally:
        conn.close()
    assert first.job_id == "j00"
    assert rest == [f"j{number:02d}" for number in range(1, 9)]


def test_iter_unclean_row_with_invalid_utf8_id_does_not_stop_iteration(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    conn = migrated(path, [job("before"), job("after")])
    try:
        setup = sqlite3.connect(path)
        setup.execute("DELETE FROM jobs WHERE id = 'after'")
        setup.execute(
            "INSERT INTO jobs (id, workflow_type, status, completed_at) "
            "VALUES (CAST(x'ff41' AS TEXT), 'eemt', 'completed', '2024-01-10T08:00:00')"
        )
        setup.execute(
            "INSERT INTO jobs (id, workflow_type, status, completed_at) "
            "VALUES ('after', 'eemt', 'completed', '2024-01-10T08:00:00')"
        )
        setup.commit()
        setup.close()
        store = JobStore(conn, path, Jobs())
        found = [row.job_id for row in store.iter_unclean(["completed"], page_size=1)]
    finally:
        conn.close()
    assert found == ["before", "\udcffA", "after"]

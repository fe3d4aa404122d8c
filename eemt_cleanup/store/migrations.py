"""Idempotent, named schema migrations (sqlite-utils ``Migrations``).

They only ever *append* to the web interface's table (it reads rows with ``SELECT *`` by
position), and create our own tables and indexes.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from eemt_cleanup.store.db import CLEANED_COLUMN, SIZE_COLUMN, table_columns, write_transaction

if TYPE_CHECKING:
    from sqlite_utils import Migrations

MIGRATIONS_TABLE = "_sqlite_migrations"

AUDIT_TABLE = "cleanup_audit"
LOG_TABLE = "cleanup_log"
COUNTS_TABLE = "cleanup_counts"
USAGE_TABLE = "cleanup_usage"
NOTICES_TABLE = "cleanup_notices"
SCHEDULE_TABLE = "cleanup_schedule"

# Jobs cleaned per status, one row per batch and status, written in the batch's own
# transaction: the cumulative counters of the metrics are sums over it.
COUNTS_COLUMNS: dict[str, str] = {
    "run_id": "TEXT",
    "recorded_at": "TEXT",
    "status": "TEXT",
    "kind": "TEXT",
    "jobs": "INTEGER",
    "bytes_freed": "INTEGER",
    "files_deleted": "INTEGER",
}
# Usage samples: one sample (sample_id) per real run and per status, a row per scope/name:
# scope 'status' (name = job status), 'root' (name = uploads/results/temp, with the
# filesystem's size, free space and device number), 'due' (name = 'all': what is due now).
USAGE_COLUMNS: dict[str, str] = {
    "sample_id": "TEXT",
    "taken_at": "TEXT",
    "source": "TEXT",
    "run_id": "TEXT",
    "scope": "TEXT",
    "name": "TEXT",
    "jobs": "INTEGER",
    "bytes": "INTEGER",
    "fs_size": "INTEGER",
    "fs_free": "INTEGER",
    "fs_id": "INTEGER",
}
# Every notice decided, per channel: sent, suppressed (rate limit), failed, or unwanted (its
# kind is not in the channel's `on`); what the rate limit and "what changed" read.
NOTICES_COLUMNS: dict[str, str] = {
    "at": "TEXT",
    "channel": "TEXT",
    "kind": "TEXT",
    "decision": "TEXT",
    "run_id": "TEXT",
    "error": "TEXT",
    "suppressed_before": "INTEGER",
}

# The daemon's decisions (append-only): one row per scheduled slot handled (ran, skipped
# because a run held the lock, caught up at start) and per pressure run. The latest
# scheduled slot is what catch-up at start compares with.
SCHEDULE_COLUMNS: dict[str, str] = {
    "recorded_at": "TEXT",
    "trigger": "TEXT",
    "slot": "TEXT",
    "decision": "TEXT",
    "run_id": "TEXT",
    "exit_code": "INTEGER",
    "detail": "TEXT",
}

AUDIT_COLUMNS: dict[str, str] = {
    "timestamp": "TEXT",
    "job_id": "TEXT",
    "action": "TEXT",
    "space_freed_mb": "REAL",
    "user": "TEXT",
    "run_id": "TEXT",
    "path": "TEXT",
    "bytes_freed": "INTEGER",
    "files_deleted": "INTEGER",
    "error": "TEXT",
}
LOG_COLUMNS: dict[str, str] = {
    "run_id": "TEXT",
    "started_at": "TEXT",
    "finished_at": "TEXT",
    "trigger": "TEXT",
    "user": "TEXT",
    "host": "TEXT",
    "pid": "INTEGER",
    "dry_run": "INTEGER",
    "jobs_successful": "INTEGER",
    "jobs_failed": "INTEGER",
    "bytes_freed": "INTEGER",
    "files_deleted": "INTEGER",
    "errors": "INTEGER",
    "exit_code": "INTEGER",
    "dry_run_forced_by": "TEXT",
}


def _append_columns(conn: sqlite3.Connection, table: str, wanted: dict[str, str]) -> None:
    present = set(table_columns(conn, table))
    for name, kind in wanted.items():
        if name not in present:
            conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {kind}')


def _ensure_table(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    # An older audit table (the reference documentation's six columns) gains the rest.
    if not table_columns(conn, table):
        body = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
        conn.execute(f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, {body})')
    else:
        _append_columns(conn, table, columns)


def set_name(jobs_table: str) -> str:
    return f"eemt_cleanup:{jobs_table}"


def migration_names(status: str, dem_filename: str) -> list[str]:
    """Every migration of the set, in order (what ``migrate`` checks without sqlite-utils)."""
    return [
        "001_append_cleanup_columns",
        "002_cleanup_audit",
        "003_cleanup_log",
        f"004_due_index_{status}",
        f"005_upload_index_{dem_filename}",
        "006_cleanup_log_forced_dry_run",
        "007_cleanup_counts",
        "008_cleanup_usage",
        "009_cleanup_notices",
        "010_cleanup_schedule",
    ]


def build_migrations(jobs_table: str) -> Migrations:
    """The migration set for one jobs table (its name is part of the set's name)."""
    from sqlite_utils import Migrations

    migrations = Migrations(set_name(jobs_table))

    @migrations(name="001_append_cleanup_columns")
    def append_cleanup_columns(db: Any) -> None:
        _append_columns(db.conn, jobs_table, {CLEANED_COLUMN: "TEXT", SIZE_COLUMN: "REAL"})

    @migrations(name="002_cleanup_audit")
    def cleanup_audit(db: Any) -> None:
        _ensure_table(db.conn, AUDIT_TABLE, AUDIT_COLUMNS)
        for column in ("job_id", "run_id", "timestamp"):
            db.conn.execute(
                f'CREATE INDEX IF NOT EXISTS "idx_{AUDIT_TABLE}_{column}" '
                f'ON "{AUDIT_TABLE}" ("{column}")'
            )

    @migrations(name="003_cleanup_log")
    def cleanup_log(db: Any) -> None:
        _ensure_table(db.conn, LOG_TABLE, LOG_COLUMNS)
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{LOG_TABLE}_run_id" ON "{LOG_TABLE}" ("run_id")'
        )

    return migrations


def due_index_migration(
    migrations: Migrations, jobs_table: str, status: str, dem_filename: str
) -> None:
    """Register the indexes behind "which jobs are due" and "who uses this upload", and
    the migrations after them (006 onwards), so that the set applies in its names' order.

    The due index is partial: cleaned jobs are not in it, so planning never scans them.
    """

    @migrations(name=f"004_due_index_{status}")
    def due_index(db: Any) -> None:
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{jobs_table}_cleanup_due" ON '
            f'"{jobs_table}" ("{status}") WHERE {CLEANED_COLUMN} IS NULL'
        )

    @migrations(name=f"005_upload_index_{dem_filename}")
    def upload_index(db: Any) -> None:
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{jobs_table}_cleanup_upload" ON '
            f'"{jobs_table}" ("{dem_filename}")'
        )

    @migrations(name="006_cleanup_log_forced_dry_run")
    def cleanup_log_forced_dry_run(db: Any) -> None:
        # Which setting forced a run to be a dry run (EEMT_CLEANUP_DRY_RUN), for history.
        _append_columns(db.conn, LOG_TABLE, {"dry_run_forced_by": "TEXT"})

    @migrations(name="007_cleanup_counts")
    def cleanup_counts(db: Any) -> None:
        _ensure_table(db.conn, COUNTS_TABLE, COUNTS_COLUMNS)

    @migrations(name="008_cleanup_usage")
    def cleanup_usage(db: Any) -> None:
        _ensure_table(db.conn, USAGE_TABLE, USAGE_COLUMNS)
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{USAGE_TABLE}_taken_at" '
            f'ON "{USAGE_TABLE}" ("taken_at")'
        )

    @migrations(name="009_cleanup_notices")
    def cleanup_notices(db: Any) -> None:
        _ensure_table(db.conn, NOTICES_TABLE, NOTICES_COLUMNS)
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{NOTICES_TABLE}_channel" '
            f'ON "{NOTICES_TABLE}" ("channel", "id")'
        )

    @migrations(name="010_cleanup_schedule")
    def cleanup_schedule(db: Any) -> None:
        _ensure_table(db.conn, SCHEDULE_TABLE, SCHEDULE_COLUMNS)
        db.conn.execute(
            f'CREATE INDEX IF NOT EXISTS "idx_{SCHEDULE_TABLE}_trigger" '
            f'ON "{SCHEDULE_TABLE}" ("trigger", "id")'
        )


def applied(conn: sqlite3.Connection, jobs_table: str) -> set[str]:
    """Names already applied in this database (empty before the first migration)."""
    if not table_columns(conn, MIGRATIONS_TABLE):
        return set()
    rows = conn.execute(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", (set_name(jobs_table),)
    )
    return {row[0] for row in rows}


def migrate(conn: sqlite3.Connection, jobs_table: str, status: str, dem_filename: str) -> None:
    """Apply every pending migration, each in its own short transaction.

    A database that has them all is recognised with one query, without loading sqlite-utils.
    """
    if set(migration_names(status, dem_filename)) <= applied(conn, jobs_table):
        return
    from sqlite_utils import Database

    migrations = build_migrations(jobs_table)
    due_index_migration(migrations, jobs_table, status, dem_filename)
    db = Database(conn)
    # One BEGIN IMMEDIATE around all of them: sqlite-utils would start each with a deferred
    # BEGIN, and a deferred transaction that reads, then writes, while the web interface
    # holds the write lock fails at once instead of waiting out the busy timeout.
    with write_transaction(conn):
        if migrations.pending(db):
            migrations.apply(db)

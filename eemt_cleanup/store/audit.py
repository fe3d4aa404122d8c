"""Our own writes: per-batch marks with their audit rows, the run log, and their queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.store.db import CLEANED_COLUMN, SIZE_COLUMN, write_transaction
from eemt_cleanup.store.migrations import AUDIT_TABLE, LOG_TABLE

MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class AuditRow:
    """One path acted on or refused."""

    job_id: str
    action: str
    path: str | None
    bytes_freed: int = 0
    files_deleted: int = 0
    error: str | None = None


@dataclass(frozen=True)
class JobMark:
    """A job whose data is gone: mark it (or delete its row when metadata is not kept)."""

    job_id: Any
    data_size_bytes: int
    keep_metadata: bool


def write_batch(
    conn: sqlite3.Connection,
    jobs: Jobs,
    marks: Sequence[JobMark],
    audit: Sequence[AuditRow],
    *,
    run_id: str,
    user: str,
    timestamp: str,
) -> None:
    """Mark the batch's cleaned jobs and write its audit rows in one short transaction.

    A mark only applies to a row not already marked, so a rerun never rewrites history.
    """
    table, id_column = jobs.table, jobs.columns.id
    with write_transaction(conn):
        for mark in marks:
            if mark.keep_metadata:
                conn.execute(
                    f'UPDATE "{table}" SET {CLEANED_COLUMN} = ?, {SIZE_COLUMN} = ? '
                    f'WHERE "{id_column}" = ? AND {CLEANED_COLUMN} IS NULL',
                    (timestamp, round(mark.data_size_bytes / MEBIBYTE, 3), mark.job_id),
                )
            else:
                conn.execute(f'DELETE FROM "{table}" WHERE "{id_column}" = ?', (mark.job_id,))
        conn.executemany(
            f"INSERT INTO {AUDIT_TABLE} (timestamp, job_id, action, space_freed_mb, user, "
            "run_id, path, bytes_freed, files_deleted, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    timestamp,
                    row.job_id,
                    row.action,
                    round(row.bytes_freed / MEBIBYTE, 3),
                    user,
                    run_id,
                    row.path,
                    row.bytes_freed,
                    row.files_deleted,
                    row.error,
                )
                for row in audit
            ],
        )


def store_sizes(conn: sqlite3.Connection, jobs: Jobs, sizes: Sequence[tuple[Any, int]]) -> None:
    """Record measured data sizes (bytes) in ``data_size_mb`` for not-yet-cleaned jobs."""
    with write_transaction(conn):
        conn.executemany(
            f'UPDATE "{jobs.table}" SET {SIZE_COLUMN} = ? WHERE "{jobs.columns.id}" = ? '
            f"AND {CLEANED_COLUMN} IS NULL",
            [(round(size / MEBIBYTE, 3), job_id) for job_id, size in sizes],
        )


def start_run(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    started_at: str,
    trigger: str,
    user: str,
    host: str,
    pid: int,
    dry_run: bool,
) -> None:
    """Write the run-log row at the start (exit_code stays NULL until the run finishes, so a
    crashed run is visible in ``history``)."""
    with write_transaction(conn):
        conn.execute(
            f"INSERT INTO {LOG_TABLE} (run_id, started_at, trigger, user, host, pid, dry_run) "
            "VALUES (?,?,?,?,?,?,?)",
            (run_id, started_at, trigger, user, host, pid, int(dry_run)),
        )


def finish_run(
    conn: sqlite3.Connection,
    *,
    run_id: str,
    finished_at: str,
    jobs_successful: int,
    jobs_failed: int,
    bytes_freed: int,
    files_deleted: int,
    errors: int,
    exit_code: int,
) -> None:
    """Complete the run-log row."""
    with write_transaction(conn):
        conn.execute(
            f"UPDATE {LOG_TABLE} SET finished_at = ?, jobs_successful = ?, jobs_failed = ?, "
            "bytes_freed = ?, files_deleted = ?, errors = ?, exit_code = ? WHERE run_id = ?",
            (
                finished_at,
                jobs_successful,
                jobs_failed,
                bytes_freed,
                files_deleted,
                errors,
                exit_code,
                run_id,
            ),
        )


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def recent_runs(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The latest runs, newest first (empty before the first real run)."""
    if not _has_table(conn, LOG_TABLE):
        return []
    return _dicts(conn.execute(f"SELECT * FROM {LOG_TABLE} ORDER BY id DESC LIMIT ?", (limit,)))


def audit_rows(
    conn: sqlite3.Connection,
    *,
    job_id: str | None,
    since: str | None,
    action: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Audit rows matching the filters, newest first."""
    if not _has_table(conn, AUDIT_TABLE):
        return []
    clauses, params = [], []
    for clause, value in (
        ("job_id = ?", job_id),
        ("timestamp >= ?", since),
        ("action = ?", action),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return _dicts(
        conn.execute(
            f"SELECT * FROM {AUDIT_TABLE} {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
    )

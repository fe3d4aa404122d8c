"""Our own writes: per-batch marks with their audit rows, the run log, and their queries."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.store.db import CLEANED_COLUMN, SIZE_COLUMN, write_transaction
from eemt_cleanup.store.migrations import AUDIT_TABLE, COUNTS_TABLE, LOG_TABLE

MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class AuditRow:
    """One path acted on or refused. ``run_id`` and ``timestamp`` are set only for a row
    carried over from an earlier run whose records could not be written then."""

    job_id: str
    action: str
    path: str | None
    bytes_freed: int = 0
    files_deleted: int = 0
    error: str | None = None
    run_id: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class JobMark:
    """A job whose data is gone: mark it (or delete its row when metadata is not kept).

    ``kind``, ``bytes_freed`` and ``files_deleted`` are what the run log counts for it when
    the mark is written."""

    job_id: Any
    data_size_bytes: int
    keep_metadata: bool
    kind: str = "successful"
    bytes_freed: int = 0
    files_deleted: int = 0
    status: str = ""  # the job's status, for the per-status counters (cleanup_counts)


@dataclass(frozen=True)
class RunRow:
    """The run-log row's identity, written when the run starts (or with its first batch,
    when the start could not be written, e.g. on a full disk)."""

    run_id: str
    started_at: str
    trigger: str
    user: str
    host: str
    pid: int
    dry_run: bool = False
    dry_run_forced_by: str | None = None


def _ensure_run(conn: sqlite3.Connection, run: RunRow) -> None:
    conn.execute(
        f"INSERT INTO {LOG_TABLE} (run_id, started_at, trigger, user, host, pid, dry_run, "
        "dry_run_forced_by, jobs_successful, jobs_failed, bytes_freed, files_deleted) "
        f"SELECT ?,?,?,?,?,?,?,?,0,0,0,0 WHERE NOT EXISTS "
        f"(SELECT 1 FROM {LOG_TABLE} WHERE run_id = ?)",
        (
            run.run_id,
            run.started_at,
            run.trigger,
            run.user,
            run.host,
            run.pid,
            int(run.dry_run),
            run.dry_run_forced_by,
            run.run_id,
        ),
    )


def write_batch(
    conn: sqlite3.Connection,
    jobs: Jobs,
    marks: Sequence[JobMark],
    audit: Sequence[AuditRow],
    *,
    run: RunRow,
    user: str,
    timestamp: str,
) -> list[bool]:
    """Mark the batch's cleaned jobs, write its audit rows and add what was marked to the
    run-log row's counters, all in one short transaction (so the run log can never count a
    job whose mark was not written, or miss one that was).

    Returns, per mark, whether it was written: a mark only applies to a row not already
    marked, so a rerun never rewrites history and a job is never counted twice.
    """
    table, id_column = jobs.table, jobs.columns.id
    written: list[bool] = []
    with write_transaction(conn):
        _ensure_run(conn, run)
        for mark in marks:
            if mark.keep_metadata:
                cursor = conn.execute(
                    f'UPDATE "{table}" SET {CLEANED_COLUMN} = ?, {SIZE_COLUMN} = ? '
                    f'WHERE "{id_column}" = ? AND {CLEANED_COLUMN} IS NULL',
                    (timestamp, round(mark.data_size_bytes / MEBIBYTE, 3), mark.job_id),
                )
            else:
                cursor = conn.execute(
                    f'DELETE FROM "{table}" WHERE "{id_column}" = ? AND {CLEANED_COLUMN} IS NULL',
                    (mark.job_id,),
                )
            written.append(cursor.rowcount > 0)
        conn.executemany(
            f"INSERT INTO {AUDIT_TABLE} (timestamp, job_id, action, space_freed_mb, user, "
            "run_id, path, bytes_freed, files_deleted, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    row.timestamp or timestamp,
                    row.job_id,
                    row.action,
                    round(row.bytes_freed / MEBIBYTE, 3),
                    user,
                    row.run_id or run.run_id,
                    row.path,
                    row.bytes_freed,
                    row.files_deleted,
                    row.error,
                )
                for row in audit
            ],
        )
        counted = [mark for mark, done in zip(marks, written, strict=True) if done]
        conn.execute(
            f"UPDATE {LOG_TABLE} SET jobs_successful = coalesce(jobs_successful, 0) + ?, "
            "jobs_failed = coalesce(jobs_failed, 0) + ?, "
            "bytes_freed = coalesce(bytes_freed, 0) + ?, "
            "files_deleted = coalesce(files_deleted, 0) + ? WHERE run_id = ?",
            (
                sum(1 for mark in counted if mark.kind == "successful"),
                sum(1 for mark in counted if mark.kind != "successful"),
                sum(mark.bytes_freed for mark in counted),
                sum(mark.files_deleted for mark in counted),
                run.run_id,
            ),
        )
        _count_by_status(conn, run.run_id, timestamp, counted)
    return written


def _count_by_status(
    conn: sqlite3.Connection, run_id: str, timestamp: str, counted: Sequence[JobMark]
) -> None:
    """One cleanup_counts row per status of the marks just written (same transaction)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for mark in counted:
        totals = groups.setdefault((mark.status or mark.kind, mark.kind), [0, 0, 0])
        totals[0] += 1
        totals[1] += mark.bytes_freed
        totals[2] += mark.files_deleted
    conn.executemany(
        f"INSERT INTO {COUNTS_TABLE} (run_id, recorded_at, status, kind, jobs, bytes_freed, "
        "files_deleted) VALUES (?,?,?,?,?,?,?)",
        [(run_id, timestamp, status, kind, *totals) for (status, kind), totals in groups.items()],
    )


def store_sizes(conn: sqlite3.Connection, jobs: Jobs, sizes: Sequence[tuple[Any, int]]) -> None:
    """Record measured data sizes (bytes) in ``data_size_mb`` for not-yet-cleaned jobs."""
    with write_transaction(conn):
        conn.executemany(
            f'UPDATE "{jobs.table}" SET {SIZE_COLUMN} = ? WHERE "{jobs.columns.id}" = ? '
            f"AND {CLEANED_COLUMN} IS NULL",
            [(round(size / MEBIBYTE, 3), job_id) for job_id, size in sizes],
        )


def start_run(conn: sqlite3.Connection, run: RunRow) -> None:
    """Write the run-log row at the start (exit_code stays NULL until the run finishes, so
    a crashed run is visible in ``history``; its counters grow with every batch)."""
    with write_transaction(conn):
        _ensure_run(conn, run)


def finish_run(
    conn: sqlite3.Connection,
    run: RunRow,
    *,
    finished_at: str,
    errors: int,
    exit_code: int,
) -> None:
    """Complete the run-log row (its counters were added batch by batch)."""
    with write_transaction(conn):
        _ensure_run(conn, run)
        conn.execute(
            f"UPDATE {LOG_TABLE} SET finished_at = ?, errors = ?, exit_code = ? WHERE run_id = ?",
            (finished_at, errors, exit_code, run.run_id),
        )


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def unfinished_runs(conn: sqlite3.Connection, limit: int = 20) -> list[dict[str, Any]]:
    """Runs with no exit code yet (running, or killed), newest first."""
    if not _has_table(conn, LOG_TABLE):
        return []
    return _dicts(
        conn.execute(
            f"SELECT * FROM {LOG_TABLE} WHERE exit_code IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        )
    )


def recorded_totals(conn: sqlite3.Connection) -> dict[str, int]:
    """Sums over every run-log row (what the books say was ever cleaned)."""
    if not _has_table(conn, LOG_TABLE):
        return {"jobs": 0, "bytes_freed": 0, "files_deleted": 0}
    jobs, freed, files = conn.execute(
        f"SELECT coalesce(sum(jobs_successful), 0) + coalesce(sum(jobs_failed), 0), "
        f"coalesce(sum(bytes_freed), 0), coalesce(sum(files_deleted), 0) FROM {LOG_TABLE}"
    ).fetchone()
    return {"jobs": int(jobs), "bytes_freed": int(freed), "files_deleted": int(files)}


def recent_runs(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The latest runs, newest first (empty before the first real run)."""
    if not _has_table(conn, LOG_TABLE):
        return []
    return _dicts(conn.execute(f"SELECT * FROM {LOG_TABLE} ORDER BY id DESC LIMIT ?", (limit,)))


def run_row(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """The run-log row of ``run_id`` (None: no such run, or no run log yet)."""
    if not _has_table(conn, LOG_TABLE):
        return None
    rows = _dicts(
        conn.execute(
            f"SELECT * FROM {LOG_TABLE} WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)
        )
    )
    return rows[0] if rows else None


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

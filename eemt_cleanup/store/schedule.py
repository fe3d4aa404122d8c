"""The daemon's record of what it decided (``cleanup_schedule``, append-only).

Per scheduled slot: ``started`` (its run started), ``caught_up`` (a slot missed while the
daemon was down, started at start), ``skipped`` (a run, from anywhere, held the lock, or the
daemon's own run was still going), then ``finished`` with the run id and exit code. Pressure
runs (trigger ``disk_pressure``) the same, without a slot. Catch-up compares the latest
scheduled slot recorded here with the schedule; order is the row id, never the stored
time (a clock that steps back must not reorder the history).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.store.db import write_transaction
from eemt_cleanup.store.migrations import SCHEDULE_TABLE, migrate
from eemt_cleanup.store.usage import has_table
from eemt_cleanup.timeparse import format_utc, parse_timestamp

SCHEDULED = "schedule"
PRESSURE = "disk_pressure"


@dataclass(frozen=True)
class ScheduleRecord:
    """One row of ``cleanup_schedule``."""

    recorded_at: datetime
    trigger: str  # schedule or disk_pressure
    decision: str  # ran, caught_up, skipped, failed_to_start
    slot: datetime | None = None  # the scheduled time (None for pressure runs)
    run_id: str | None = None
    exit_code: int | None = None
    detail: str | None = None


def ensure_schedule_table(conn: sqlite3.Connection, jobs: Jobs) -> None:
    """Apply the migrations when ``cleanup_schedule`` is missing. Raises sqlite3.Error."""
    if not has_table(conn, SCHEDULE_TABLE):
        migrate(conn, jobs.table, jobs.columns.status, jobs.columns.dem_filename)


def record(conn: sqlite3.Connection, row: ScheduleRecord) -> None:
    """Append ``row`` in its own short transaction. Raises sqlite3.Error."""
    with write_transaction(conn):
        conn.execute(
            f"INSERT INTO {SCHEDULE_TABLE} (recorded_at, trigger, slot, decision, run_id, "
            "exit_code, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                format_utc(row.recorded_at),
                row.trigger,
                format_utc(row.slot) if row.slot is not None else None,
                row.decision,
                row.run_id,
                row.exit_code,
                row.detail,
            ),
        )


def _row(values: sqlite3.Row | tuple[object, ...]) -> ScheduleRecord:
    recorded_at, trigger, slot, decision, run_id, exit_code, detail = values
    recorded = parse_timestamp(str(recorded_at))
    assert recorded is not None
    return ScheduleRecord(
        recorded_at=recorded,
        trigger=str(trigger),
        decision=str(decision),
        slot=parse_timestamp(str(slot)) if slot else None,
        run_id=str(run_id) if run_id else None,
        exit_code=int(str(exit_code)) if exit_code is not None else None,
        detail=str(detail) if detail else None,
    )


def last_record(conn: sqlite3.Connection, trigger: str) -> ScheduleRecord | None:
    """The latest row of ``trigger`` (None when there is none, or no table yet)."""
    if not has_table(conn, SCHEDULE_TABLE):
        return None
    found = conn.execute(
        f"SELECT recorded_at, trigger, slot, decision, run_id, exit_code, detail "
        f"FROM {SCHEDULE_TABLE} WHERE trigger = ? ORDER BY id DESC LIMIT 1",
        (trigger,),
    ).fetchone()
    return _row(found) if found else None


def recent_records(conn: sqlite3.Connection, limit: int = 20) -> list[ScheduleRecord]:
    """The latest rows, newest first."""
    if not has_table(conn, SCHEDULE_TABLE):
        return []
    rows = conn.execute(
        f"SELECT recorded_at, trigger, slot, decision, run_id, exit_code, detail "
        f"FROM {SCHEDULE_TABLE} ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [_row(found) for found in rows]

"""What lasts between runs for the reports: usage samples, per-status cleaned totals, and
the run log's figures, read and written in SQLite (a cron run is a fresh process: nothing
kept in memory survives until the next one).

Every table here is ours and append-only; a database the migrations have not reached yet
(an older one opened read-only) reads as empty.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from eemt_cleanup.models import UtcTime
from eemt_cleanup.store.db import write_transaction
from eemt_cleanup.store.migrations import COUNTS_TABLE, LOG_TABLE, USAGE_TABLE
from eemt_cleanup.timeparse import format_utc, parse_timestamp


class StatusUsage(BaseModel):
    """Not-yet-cleaned jobs of one status and the bytes their data occupies."""

    status: str
    jobs: int
    bytes: int


class RootUsage(BaseModel):
    """Not-yet-cleaned job data in one root, and the root's filesystem (None: unknown)."""

    root: str
    jobs: int
    bytes: int
    fs_size: int | None = None
    fs_free: int | None = None
    fs_id: int | None = None  # the filesystem's device number (st_dev): roots sharing one

    @property
    def free_percent(self) -> float | None:
        if not self.fs_size or self.fs_free is None:
            return None
        return 100.0 * self.fs_free / self.fs_size


class UsageSample(BaseModel):
    """One measurement of the site: after a real run (``source='run'``) or by ``status``."""

    sample_id: str
    taken_at: UtcTime
    source: str
    run_id: str | None = None
    by_status: list[StatusUsage] = Field(default_factory=list)
    by_root: list[RootUsage] = Field(default_factory=list)
    due_jobs: int = 0
    due_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(group.bytes for group in self.by_status)

    def root(self, name: str) -> RootUsage | None:
        return next((usage for usage in self.by_root if usage.root == name), None)


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def write_sample(conn: sqlite3.Connection, sample: UsageSample) -> None:
    """Append ``sample`` (one row per status, per root, and one for what is due)."""
    common = (sample.sample_id, format_utc(sample.taken_at), sample.source, sample.run_id)
    rows: list[tuple[Any, ...]] = [
        (*common, "status", group.status, group.jobs, group.bytes, None, None, None)
        for group in sample.by_status
    ]
    rows += [
        (
            *common,
            "root",
            usage.root,
            usage.jobs,
            usage.bytes,
            usage.fs_size,
            usage.fs_free,
            usage.fs_id,
        )
        for usage in sample.by_root
    ]
    rows.append((*common, "due", "all", sample.due_jobs, sample.due_bytes, None, None, None))
    with write_transaction(conn):
        conn.executemany(
            f"INSERT INTO {USAGE_TABLE} (sample_id, taken_at, source, run_id, scope, name, jobs,"
            " bytes, fs_size, fs_free, fs_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )


def _samples(rows: Sequence[sqlite3.Row | tuple[Any, ...]]) -> list[UsageSample]:
    samples: dict[str, UsageSample] = {}
    for row in rows:
        sample_id, taken_at, source, run_id, scope, name, jobs, size, fs_size, fs_free, fs_id = row
        sample = samples.get(sample_id)
        if sample is None:
            moment = parse_timestamp(taken_at)
            if moment is None:
                continue
            sample = samples[sample_id] = UsageSample(
                sample_id=sample_id, taken_at=moment, source=source, run_id=run_id
            )
        if scope == "status":
            sample.by_status.append(StatusUsage(status=name, jobs=jobs or 0, bytes=size or 0))
        elif scope == "root":
            sample.by_root.append(
                RootUsage(
                    root=name,
                    jobs=jobs or 0,
                    bytes=size or 0,
                    fs_size=fs_size,
                    fs_free=fs_free,
                    fs_id=fs_id,
                )
            )
        elif scope == "due":
            sample.due_jobs, sample.due_bytes = jobs or 0, size or 0
    return sorted(samples.values(), key=lambda s: s.taken_at)


_SAMPLE_COLUMNS = (
    "sample_id, taken_at, source, run_id, scope, name, jobs, bytes, fs_size, fs_free, fs_id"
)


def latest_sample(conn: sqlite3.Connection) -> UsageSample | None:
    """The newest usage sample, or None before the first."""
    if not has_table(conn, USAGE_TABLE):
        return None
    rows = conn.execute(
        f"SELECT {_SAMPLE_COLUMNS} FROM {USAGE_TABLE} WHERE sample_id = "
        f"(SELECT sample_id FROM {USAGE_TABLE} ORDER BY id DESC LIMIT 1) ORDER BY id"
    ).fetchall()
    samples = _samples(rows)
    return samples[-1] if samples else None


def samples_since(conn: sqlite3.Connection, since: datetime) -> list[UsageSample]:
    """Every usage sample taken at or after ``since``, oldest first."""
    if not has_table(conn, USAGE_TABLE):
        return []
    rows = conn.execute(
        f"SELECT {_SAMPLE_COLUMNS} FROM {USAGE_TABLE} WHERE taken_at >= ? ORDER BY id",
        (format_utc(since),),
    ).fetchall()
    return _samples(rows)


@dataclass(frozen=True)
class CleanedTotal:
    """Jobs of one status cleaned over all runs, and what they freed."""

    status: str
    kind: str
    jobs: int
    bytes_freed: int
    files_deleted: int


def cleaned_totals(conn: sqlite3.Connection, since: datetime | None = None) -> list[CleanedTotal]:
    """Per status, what every real run recorded as cleaned (batch by batch, in the same
    transaction as the marks: these only ever grow). ``since`` limits to batches recorded
    at or after it."""
    if not has_table(conn, COUNTS_TABLE):
        return []
    where, params = ("WHERE recorded_at >= ?", (format_utc(since),)) if since else ("", ())
    rows = conn.execute(
        f"SELECT status, kind, coalesce(sum(jobs), 0), coalesce(sum(bytes_freed), 0), "
        f"coalesce(sum(files_deleted), 0) FROM {COUNTS_TABLE} {where} "
        "GROUP BY status, kind ORDER BY status",
        params,
    ).fetchall()
    return [CleanedTotal(str(s), str(k), int(j), int(b), int(f)) for s, k, j, b, f in rows]


def freed_per_day(conn: sqlite3.Connection, since: datetime) -> list[tuple[str, int, int]]:
    """``(YYYY-MM-DD in UTC, bytes freed, jobs cleaned)`` per day with cleanups since
    ``since``, oldest first."""
    if not has_table(conn, COUNTS_TABLE):
        return []
    rows = conn.execute(
        f"SELECT substr(recorded_at, 1, 10) AS day, coalesce(sum(bytes_freed), 0), "
        f"coalesce(sum(jobs), 0) FROM {COUNTS_TABLE} WHERE recorded_at >= ? "
        "GROUP BY day ORDER BY day",
        (format_utc(since),),
    ).fetchall()
    return [(str(day), int(freed), int(jobs)) for day, freed, jobs in rows]


@dataclass(frozen=True)
class RunStats:
    """The run log's figures for the metrics: real runs only (a dry run changes nothing)."""

    runs: int  # real runs that finished (an exit code recorded)
    bytes_freed: int  # over every real run
    files_deleted: int
    durations: list[float]  # seconds, of every finished real run
    last_success_at: datetime | None  # when the last run that exited 0 finished
    last_exit_code: int | None  # of the last finished real run
    last_finished_at: datetime | None
    by_trigger: dict[str, int] = field(default_factory=dict)  # finished real runs per trigger


def run_stats(conn: sqlite3.Connection) -> RunStats:
    if not has_table(conn, LOG_TABLE):
        return RunStats(0, 0, 0, [], None, None, None)
    real = "coalesce(dry_run, 0) = 0"
    freed, files = conn.execute(
        f"SELECT coalesce(sum(bytes_freed), 0), coalesce(sum(files_deleted), 0) FROM {LOG_TABLE}"
        f" WHERE {real}"
    ).fetchone()
    durations: list[float] = []
    last_success: datetime | None = None
    last_code: int | None = None
    last_finished: datetime | None = None
    runs = 0
    by_trigger: dict[str, int] = {}
    for started, finished, code, trigger in conn.execute(
        f"SELECT started_at, finished_at, exit_code, trigger FROM {LOG_TABLE} "
        f"WHERE {real} AND exit_code IS NOT NULL ORDER BY id"
    ):
        name = str(trigger) if trigger is not None else "unknown"
        by_trigger[name] = by_trigger.get(name, 0) + 1
        begin, end = parse_timestamp(started), parse_timestamp(finished)
        if begin is not None and end is not None:
            durations.append(max(0.0, (end - begin).total_seconds()))
        runs += 1
        last_code, last_finished = int(code), end
        if code == 0 and end is not None:
            last_success = end
    return RunStats(
        runs=runs,
        bytes_freed=int(freed),
        files_deleted=int(files),
        durations=durations,
        last_success_at=last_success,
        last_exit_code=last_code,
        last_finished_at=last_finished,
        by_trigger=by_trigger,
    )


__all__ = [
    "CleanedTotal",
    "RootUsage",
    "RunStats",
    "StatusUsage",
    "UsageSample",
    "cleaned_totals",
    "freed_per_day",
    "latest_sample",
    "run_stats",
    "samples_since",
    "write_sample",
]

"""The books of a real run: every write it makes to the database, so that what it reports
is exactly what it recorded.

- Nothing here needs new blocks before the first deletion: when the disk is full, the
  migrations and the run-log row are put off and written with the first batch that finds
  room (deleting is what makes room).
- A batch's marks, its audit rows and the run-log counters are one transaction. When it
  fails, it is retried with backoff for ``commit_retry_seconds``; a failure that deleting
  more can cure (a full disk) is retried after the next batch instead. Records that still
  could not be written are not counted anywhere, and the run says so.
- A database file replaced under the run (renamed over, deleted) is never written again:
  the run stops, since the lock no longer guards the file others now use.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.errors import BusyError, DatabaseError
from eemt_cleanup.lock import RunLock
from eemt_cleanup.store import audit as audit_store
from eemt_cleanup.store.audit import AuditRow, JobMark, RunRow
from eemt_cleanup.store.migrations import migrate

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_FULL = 13
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0

BUSY = "busy"
FULL = "full"
REPLACED = "replaced"
OTHER = "other"


class DatabaseReplaced(sqlite3.DatabaseError):
    """The database path no longer names the file the run locked and wrote."""


def classify(error: BaseException) -> str:
    """BUSY (another writer), FULL (no space), REPLACED, or OTHER."""
    if isinstance(error, DatabaseReplaced):
        return REPLACED
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    message = str(error).lower()
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or "database is locked" in message:
        return BUSY
    if primary == SQLITE_FULL or "disk is full" in message or "no space" in message:
        return FULL
    return OTHER


def describe(error: BaseException) -> str:
    if isinstance(error, DatabaseReplaced):
        return str(error)
    return f"{error} ({classify(error)})" if classify(error) == OTHER else str(error)


@dataclass
class Batch:
    """One batch's records: its marks (one per cleaned job), its audit rows, and the
    journal keys of earlier leftovers it settles."""

    number: int
    marks: list[JobMark]
    audit: list[AuditRow]
    settles: list[str] = field(default_factory=list)
    on_written: Callable[[list[bool]], None] | None = None


@dataclass
class Books:
    """Writes the records of one locked, real run."""

    conn: sqlite3.Connection
    jobs: Jobs
    run: RunRow
    lock: RunLock
    retry_seconds: float
    migrate_names: tuple[str, str]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    migrated: bool = False
    run_row_written: bool = False
    pending: list[Batch] = field(default_factory=list)
    last_error: BaseException | None = None
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    # -- the start ---------------------------------------------------------------------

    def open(self) -> None:
        """Migrate and write the run-log row. A full disk defers both (nothing before the
        first deletion may need new blocks); another writer holding the database past the
        busy timeout is BusyError (exit 75, nothing deleted); anything else DatabaseError."""
        steps = (
            ("adding our columns and tables", self._migrate),
            ("writing the run-log row", self._start),
        )
        for what, step in steps:
            try:
                self._check_identity()
                step()
            except sqlite3.Error as error:
                kind = classify(error)
                if kind == FULL:
                    self.deferred.append((what, str(error)))
                    return
                if kind == BUSY:
                    raise BusyError(
                        f"{self.lock.path}: the database stayed locked by another writer "
                        f"past the busy timeout ({error}); try again later"
                    ) from None
                raise DatabaseError(
                    f"{self.lock.path}: cannot write the database: {error}"
                ) from None

    def _migrate(self) -> None:
        if not self.migrated:
            status, dem_filename = self.migrate_names
            migrate(self.conn, self.jobs.table, status, dem_filename)
            self.migrated = True

    def _start(self) -> None:
        if not self.run_row_written:
            audit_store.start_run(self.conn, self.run)
            self.run_row_written = True

    def _check_identity(self) -> None:
        if self.lock.replaced():
            raise DatabaseReplaced(
                f"{self.lock.path} was replaced or removed during the run: records are not "
                "written to the old file"
            )

    # -- batches -----------------------------------------------------------------------

    def record(self, batch: Batch, *, timestamp: Callable[[], str]) -> str | None:
        """Queue ``batch`` and write everything queued. Returns None when written (or put
        off until deleting makes room), or why the run must stop deleting."""
        self.pending.append(batch)
        return self.flush(timestamp=timestamp, patient=False)

    def flush(self, *, timestamp: Callable[[], str], patient: bool) -> str | None:
        """Write the queued batches, oldest first. Busy and other errors are retried with
        backoff for ``retry_seconds``; a full disk is retried now only when ``patient``
        (at the end of the run), otherwise after the next batch has deleted. Returns None
        or the reason to stop."""
        deadline: float | None = None
        delay = FIRST_BACKOFF_SECONDS
        while self.pending:
            try:
                self._write(self.pending[0], timestamp())
                self.pending.pop(0)
                self.last_error = None
                deadline, delay = None, FIRST_BACKOFF_SECONDS
                continue
            except sqlite3.Error as error:
                self.last_error = error
                kind = classify(error)
            if kind == REPLACED:
                return describe(self.last_error)
            if kind == FULL and not patient:
                return None
            now = self.clock()
            deadline = now + self.retry_seconds if deadline is None else deadline
            if now >= deadline:
                return f"records could not be written for {self.retry_seconds:g} s: " + describe(
                    self.last_error
                )
            self.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        return None

    def _write(self, batch: Batch, now: str) -> None:
        self._check_identity()
        self._migrate()
        written = audit_store.write_batch(
            self.conn,
            self.jobs,
            batch.marks,
            batch.audit,
            run=self.run,
            user=self.run.user,
            timestamp=now,
        )
        self.run_row_written = True
        # Renamed over while we committed? Then the commit went to the old file: not
        # recorded where anyone will look.
        self._check_identity()
        if batch.on_written is not None:
            batch.on_written(written)

    # -- the end -----------------------------------------------------------------------

    def finish(self, *, timestamp: Callable[[], str], errors: int, exit_code: int) -> str | None:
        """Complete the run-log row (retried like a batch). Returns None or the error."""
        deadline = self.clock() + self.retry_seconds
        delay = FIRST_BACKOFF_SECONDS
        while True:
            try:
                self._check_identity()
                self._migrate()
                audit_store.finish_run(
                    self.conn,
                    self.run,
                    finished_at=timestamp(),
                    errors=errors,
                    exit_code=exit_code,
                )
                return None
            except sqlite3.Error as error:
                if classify(error) == REPLACED or self.clock() >= deadline:
                    return describe(error)
            self.sleep(min(delay, max(0.0, deadline - self.clock())))
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def unwritten(self) -> list[Batch]:
        return list(self.pending)

"""One run: lock → plan → delete in batches → mark → audit → summary.

The CLI, the compatibility script and every later caller (daemon, HTTP API) run cleanups
through :func:`run_cleanup`; they only differ in how they render the :class:`RunReport`.
"""

from __future__ import annotations

import contextlib
import getpass
import heapq
import logging
import os
import resource
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    CleanupError,
    ConfigError,
    DatabaseError,
)
from eemt_cleanup.fs.pool import Deleter, make_deleter
from eemt_cleanup.fs.remove import Remover, mount_points_under
from eemt_cleanup.fs.walk import os_name
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.lock import RunLock
from eemt_cleanup.policy import (
    FAILED,
    SUCCESSFUL,
    Artifact,
    Decision,
    Policy,
    Verdict,
    decide,
    display_value,
)
from eemt_cleanup.policy import upload_blocker as policy_upload_blocker
from eemt_cleanup.store.audit import AuditRow, JobMark, RunRow
from eemt_cleanup.store.db import JobRow, JobStore, check_database_path, connect
from eemt_cleanup.timeparse import format_utc, utc_now

if TYPE_CHECKING:
    # Imported where a real run needs them: a dry run (the common interactive command)
    # loads neither.
    from eemt_cleanup.store.books import Books
    from eemt_cleanup.store.journal import Journal, Leftover

log = logging.getLogger("eemt_cleanup")

PLAN_CHUNK_MINIMUM = 1000
ROOT_KEYS = ("uploads", "results", "temp")
# Rows never cleaned are summarised per run with this many examples (not one line a row:
# a table of a million rows with garbage timestamps must not make a million lines).
EXAMPLES = 3
# Shown even under --quiet: cron must tell the operator that data is being kept forever, or
# that a dry run was forced.
ALWAYS = {"always": True}


@dataclass(frozen=True)
class RunOptions:
    """What one run is asked to do, beyond the configuration."""

    dry_run: bool = False
    job_ids: tuple[str, ...] = ()
    limit: int | None = None
    size_threshold: int | None = None
    trigger: str = "cli"


@dataclass
class JobResult:
    """What happened (or, in a dry run, would happen) to one due job."""

    job_id: str  # printable; ``raw_id`` is the value stored in the table
    status: str
    kind: str
    age_days: float | None
    paths: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    files_deleted: int = 0
    cleaned: bool = False
    audit: list[AuditRow] = field(default_factory=list)
    raw_id: Any = None
    committed: bool = False  # its batch's records (audit rows, mark) are committed
    recorded: bool = False  # its mark is committed, so the run log counts it (real runs)
    # What an earlier run deleted of this job but could not record (from the journal).
    recovered_run: str | None = None
    recovered_bytes: int = 0
    recovered_files: int = 0


@dataclass(frozen=True)
class Skip:
    """A job (or one of its paths) left alone, and why."""

    job_id: str
    reason: str
    status: str | None = None
    path: str | None = None
    needs_attention: bool = False


@dataclass
class Kept:
    """Rows of one kind the run will not clean (unknown age, unknown status, a time in the
    future): how many, and the first few for the operator to look at."""

    label: str
    count: int = 0
    examples: list[Skip] = field(default_factory=list)

    def add(self, skip: Skip) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(skip)

    def describe(self) -> str:
        shown = "; ".join(f"job {skip.job_id}: {skip.reason}" for skip in self.examples)
        more = ", ..." if self.count > len(self.examples) else ""
        jobs = "job" if self.count == 1 else "jobs"
        return f"{self.count} {jobs} {self.label} (e.g. {shown}{more})"


UNKNOWN_AGE = "unknown_age"
UNKNOWN_STATUS = "unknown_status"
CLOCK_SKEW = "clock_skew"


def kept_kinds() -> dict[str, Kept]:
    return {
        UNKNOWN_AGE: Kept("with an unknown age"),
        UNKNOWN_STATUS: Kept("with an unknown status"),
        CLOCK_SKEW: Kept("with a time in the future"),
    }


@dataclass
class RunReport:
    """The whole run, for tables, JSON, the run log and exit codes."""

    run_id: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    jobs: list[JobResult] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retained: int = 0
    next_due_at: datetime | None = None
    stopped_by: int | None = None
    exit_code: int = EXIT_OK
    forced_by: str | None = None  # the setting that forced a dry run
    kept: dict[str, Kept] = field(default_factory=kept_kinds)
    unrecorded: int = 0  # jobs deleted whose records could not be written

    def cleaned(self, kind: str) -> int:
        """Jobs of ``kind`` cleaned: in a real run only those whose mark was committed
        (what the run log counts), in a dry run those that would be."""
        if self.dry_run:
            return sum(1 for job in self.jobs if job.cleaned and job.kind == kind)
        return sum(1 for job in self.jobs if job.recorded and job.kind == kind)

    @property
    def bytes_freed(self) -> int:
        """Bytes this run returned to the filesystem (or would, in a dry run)."""
        return sum(job.bytes_freed for job in self.jobs)

    @property
    def files_deleted(self) -> int:
        return sum(job.files_deleted for job in self.jobs)

    @property
    def recovered(self) -> list[JobResult]:
        """Jobs recorded now whose data an earlier run deleted without recording it."""
        return [job for job in self.jobs if job.recovered_run is not None and job.recorded]


class RunEvents(Protocol):
    """Progress callbacks (called from the engine's thread)."""

    def planned(self, total: int) -> None: ...

    def job_done(self, result: JobResult) -> None: ...


class _NoEvents:
    def planned(self, total: int) -> None:
        return None

    def job_done(self, result: JobResult) -> None:
        return None


class StopFlag:
    """Set by a signal handler: finish the jobs under way, write the books, stop."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def request(self, signal_number: int) -> None:
        self.signal_number = signal_number

    @property
    def requested(self) -> bool:
        return self.signal_number is not None


@dataclass
class _JobWork:
    """One job's work on a worker thread: its result, skips and log lines, handed back to
    the engine's thread in plan order."""

    decision: Decision
    result: JobResult | None = None
    skips: list[Skip] = field(default_factory=list)
    lines: list[tuple[int, str]] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)  # rows of a job left alone

    def say(self, level: int, message: str) -> None:
        self.lines.append((level, message))

    def skip(self, reason: str, *, attention: bool = False, path: str | None = None) -> None:
        self.skips.append(Skip(self.decision.job_id, reason, self.decision.status, path, attention))
        level = logging.ERROR if attention else logging.WARNING
        where = f" {path}" if path else ""
        self.say(level, f"Skipped job {self.decision.job_id}{where}: {reason}")


def run_cleanup(
    config: LoadedConfig,
    options: RunOptions,
    *,
    events: RunEvents | None = None,
    stop: StopFlag | None = None,
    now: datetime | None = None,
) -> RunReport:
    """Run one cleanup. Raises ConfigError/DatabaseError (nothing deleted) or LockedError."""
    engine = _Engine(config, options, events or _NoEvents(), stop or StopFlag(), now)
    return engine.run()


def check_roots(config: LoadedConfig) -> dict[str, Path]:
    """The three deletion roots, which must exist as directories (raises ConfigError)."""
    roots = {key: getattr(config.roots, key) for key in ROOT_KEYS}
    for key, path in roots.items():
        if not path.is_dir():
            raise ConfigError(
                f"paths.{key}: not an existing directory: {path} "
                f"(from {config.sources.get('paths.' + key, 'default')})"
            )
    return roots


def _raise_fd_limit() -> None:
    # One descriptor is held per directory level being walked; deep trees need many.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.debug("could not raise the open-file limit above %s", soft)


class _Engine:
    def __init__(
        self,
        config: LoadedConfig,
        options: RunOptions,
        events: RunEvents,
        stop: StopFlag,
        now: datetime | None,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.options = options
        self.dry_run = options.dry_run or config.force_dry_run
        self.events = events
        self.stop = stop
        self.now = now or utc_now()
        self.policy = Policy.from_settings(self.settings)
        self.report = RunReport(
            run_id=str(uuid.uuid4()),
            dry_run=self.dry_run,
            started_at=utc_now(),
            # Forced by the environment (not asked for with --dry-run): said in every output
            # mode and recorded in history, so an operator sees why nothing is freed.
            forced_by=config.force_dry_run_source
            if config.force_dry_run and not options.dry_run
            else None,
        )
        self.user = _current_user()
        self.selected: set[str] | None = None
        self.deferred: set[str] = set()
        self._claimed_uploads: set[str] = set()
        self._claim_lock = threading.Lock()
        self._pending_audit: list[AuditRow] = []
        self.root_fds: dict[str, int] = {}
        self.deleter: Deleter
        self.books: Books | None = None
        self.journal: Journal | None = None
        self.leftovers: dict[str, Leftover] = {}
        self.halt: str | None = None  # why deleting stopped early (records not writable)
        self._batches = 0

    # -- the run -----------------------------------------------------------------------

    def run(self) -> RunReport:
        roots = check_roots(self.config)
        if self.dry_run:
            report = self._dry_run(roots)
            if report.forced_by is not None:
                self._record_forced_dry_run(report)
            return report
        database = self.config.roots.database
        check_database_path(database)
        with contextlib.ExitStack() as stack:
            # The lock comes first and goes last: its descriptor may only be closed once no
            # SQLite connection of this process is left (see lock.py).
            lock = stack.enter_context(RunLock(database))
            conn = connect(database, readonly=False, timeout=self._busy_timeout())
            stack.callback(conn.close)
            # Checks the jobs table (a view, WITHOUT ROWID...) before anything is altered.
            store = JobStore(conn, database, self.settings.jobs)
            self._check_selected(store)
            # Roots before the books: a root that cannot be opened as resolved is a setup
            # error that leaves no trace in the run log.
            self._open_roots(roots)
            stack.callback(self._close_roots)
            self.books = self._books(conn, lock)
            self.books.open()
            for what, why in self.books.deferred:
                log.warning("Put off %s until deleting has made room (%s)", what, why)
            if self.books.migrated:
                store = JobStore(conn, database, self.settings.jobs)
            from eemt_cleanup.store.journal import Journal

            self.journal = Journal(Path(self.settings.paths.logs))
            stack.callback(self.journal.close)
            self.journal.load()
            self.leftovers = self.journal.leftovers
            return self._run_unlocked(store, roots)

    def _dry_run(self, roots: dict[str, Path]) -> RunReport:
        database = self.config.roots.database
        conn = connect(database, readonly=True, timeout=self._busy_timeout())
        try:
            store = JobStore(conn, database, self.settings.jobs)
            self._check_selected(store)
            self._open_roots(roots)
            return self._run_unlocked(store, roots)
        finally:
            self._close_roots()
            conn.close()

    def _run_row(self, *, dry_run: bool = False) -> RunRow:
        return RunRow(
            run_id=self.report.run_id,
            started_at=format_utc(self.report.started_at),
            trigger=self.options.trigger,
            user=self.user,
            host=socket.gethostname(),
            pid=os.getpid(),
            dry_run=dry_run,
            dry_run_forced_by=self.report.forced_by,
        )

    def _books(self, conn: sqlite3.Connection, lock: RunLock, *, dry_run: bool = False) -> Books:
        from eemt_cleanup.store.books import Books

        columns = self.settings.jobs.columns
        return Books(
            conn=conn,
            jobs=self.settings.jobs,
            run=self._run_row(dry_run=dry_run),
            lock=lock,
            retry_seconds=self._commit_retry_seconds(),
            migrate_names=(columns.status, columns.dem_filename),
        )

    def _busy_timeout(self) -> float:
        return self.settings.performance.busy_timeout_seconds

    def _commit_retry_seconds(self) -> float:
        return self.settings.performance.commit_retry_seconds

    def _record_forced_dry_run(self, report: RunReport) -> None:
        """A dry run forced by the environment is recorded in ``history`` (the operator
        meant a real run and must be able to see why nothing was freed). Best effort."""
        database = self.config.roots.database
        try:
            with contextlib.ExitStack() as stack:
                lock = stack.enter_context(RunLock(database))
                conn = connect(database, readonly=False, timeout=self._busy_timeout())
                stack.callback(conn.close)
                JobStore(conn, database, self.settings.jobs)
                books = self._books(conn, lock, dry_run=True)
                books.open()
                problem = books.finish(
                    timestamp=lambda: format_utc(report.finished_at or utc_now()),
                    errors=len(report.errors),
                    exit_code=report.exit_code,
                )
        except CleanupError as error:
            problem = str(error)
        if problem is not None:
            log.warning("The forced dry run is not recorded in history: %s", problem, extra=ALWAYS)

    def _check_selected(self, store: JobStore) -> None:
        """Unknown ``--job`` ids are an input error, raised before anything is written."""
        for job_id in self.options.job_ids:
            if not store.by_id(job_id):
                raise DatabaseError(f"--job {job_id}: no such job in {store.path}")

    def _run_unlocked(self, store: JobStore, roots: dict[str, Path]) -> RunReport:
        """Plan, delete and record, on the roots already opened."""
        _raise_fd_limit()
        remover = Remover(
            dry_run=self.dry_run,
            protected=self._protected(roots),
            mount_points=mount_points_under(roots.values()),
        )
        self.deleter = make_deleter(self.root_fds, remover, self._workers())
        try:
            self._log_start()
            self._process(store, remover)
        except sqlite3.Error as error:
            # The database failed us mid-run (e.g. it could not be read): what was deleted
            # but not yet marked is finished by the next run; say so and exit 1.
            self.report.errors.append(f"database error, run stopped early: {error}")
            log.error("Database error, run stopped early: %s", error)
        finally:
            self.deleter.close()
            store.close()
        return self._finish(store)

    def _close_roots(self) -> None:
        for fd in self.root_fds.values():
            os.close(fd)
        self.root_fds.clear()

    def _workers(self) -> int:
        performance = self.settings.performance
        return performance.max_workers if performance.parallel_delete else 1

    def _open_roots(self, roots: dict[str, Path]) -> None:
        """Open each root once; all deletion is relative to these descriptors."""
        for key, path in roots.items():
            try:
                # Resolved at start: if the path turned into a symlink since, refuse it.
                self.root_fds[key] = os.open(
                    path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                )
            except OSError as error:
                for fd in self.root_fds.values():
                    os.close(fd)
                self.root_fds.clear()
                raise ConfigError(
                    f"paths.{key}: cannot open the root {path}: {error.strerror}"
                ) from None

    def _protected(self, roots: dict[str, Path]) -> set[tuple[int, int]]:
        paths: list[Path] = [
            *roots.values(),
            self.config.roots.database,
            self.config.roots.database.parent,
            self.config.roots.logs,
        ]
        if self.config.config_file is not None:
            paths.append(self.config.config_file)
        protected = set()
        for path in paths:
            try:
                info = os.stat(path)
            except OSError:
                continue
            protected.add((info.st_dev, info.st_ino))
        return protected

    def _log_start(self) -> None:
        prefix = "[DRY RUN] " if self.dry_run else ""
        if self.report.forced_by is not None:
            log.warning(
                "[DRY RUN] Dry run forced by %s: nothing is deleted",
                self.report.forced_by,
                extra=ALWAYS,
            )
        log.info(
            "%sStarting job cleanup (run %s, successful after %sh, failed after %sh)",
            prefix,
            self.report.run_id,
            _hours(self.policy.successful_hours),
            _hours(self.policy.failed_hours),
        )

    # -- planning ----------------------------------------------------------------------

    def _candidates(self, store: JobStore) -> Iterator[Decision]:
        """Every decision worth acting on or reporting, streamed."""
        if self.options.job_ids:
            yield from self._selected_jobs(store)
            return
        terminal = sorted(self.policy.successful_statuses | self.policy.failed_statuses)
        for row in store.iter_unclean(terminal):
            yield decide(row, self.policy, self.now)
        for row in store.iter_unknown(self.policy.known_statuses):
            yield decide(row, self.policy, self.now)

    def _selected_jobs(self, store: JobStore) -> Iterator[Decision]:
        rows = []
        for job_id in dict.fromkeys(self.options.job_ids):
            found = store.by_id(job_id)
            if not found:
                raise DatabaseError(f"--job {job_id}: no such job in {store.path}")
            rows.extend(found)
        self.selected = {str(row.job_id) for row in rows}
        for row in rows:
            decision = decide(row, self.policy, self.now)
            if decision.verdict in (
                Verdict.DUE,
                Verdict.REFUSED,
                Verdict.UNKNOWN_AGE,
                Verdict.UNKNOWN_STATUS,
            ):
                yield decision
            else:
                self._skip(decision, decision.reason or decision.verdict.value)

    def _due_chunks(
        self, store: JobStore, pool: ThreadPoolExecutor, remover: Remover
    ) -> Iterator[list[Decision]]:
        """Due decisions in chunks (oldest first within a chunk; the N oldest with --limit)."""
        chunk_size = max(PLAN_CHUNK_MINIMUM, 10 * self.settings.performance.batch_size)
        due: Iterable[Decision] = (
            d for d in map(self._triage, self._candidates(store)) if d is not None
        )
        if self.options.size_threshold is not None:
            # Deferral is decided for every due job before any is touched, so a deferred job
            # is not "in this run" when another job asks whether their shared upload may go.
            due = self._defer_large(list(due), pool, remover, self.options.size_threshold)
        if self.options.limit is not None:
            chosen = heapq.nsmallest(self.options.limit, due, key=_due_order)
            self.selected = {str(d.row.job_id) for d in chosen}
            yield chosen
            return
        chunk: list[Decision] = []
        for decision in due:
            chunk.append(decision)
            if len(chunk) >= chunk_size:
                yield sorted(chunk, key=_due_order)
                chunk = []
        if chunk:
            yield sorted(chunk, key=_due_order)

    def _defer_large(
        self, due: list[Decision], pool: ThreadPoolExecutor, remover: Remover, threshold: int
    ) -> list[Decision]:
        """Measure every due job; report and set aside those larger than ``threshold``."""
        meter = Remover(
            dry_run=True, protected=remover.protected, mount_points=remover.mount_points
        )

        def size_of(decision: Decision) -> int:
            return sum(
                meter.remove(
                    self.root_fds[a.root], a.name, a.display, a.keep, file_only=not a.directory
                ).bytes_freed
                for a in decision.artifacts
            )

        kept = []
        for decision, size in zip(due, pool.map(size_of, due), strict=True):
            if size <= threshold:
                kept.append(decision)
                continue
            self.deferred.add(str(decision.row.job_id))
            self._skip(
                decision,
                f"deferred: {human_size(size)} is larger than the size threshold "
                f"{human_size(threshold)}",
            )
        return kept

    def _triage(self, decision: Decision) -> Decision | None:
        """Keep due jobs; account for or report every other one."""
        verdict = decision.verdict
        if verdict is Verdict.DUE:
            return decision
        if verdict is Verdict.RETAINED or verdict is Verdict.CLOCK_SKEW:
            report = self.report
            report.retained += 1
            due_at = decision.due_at
            if due_at is not None and (report.next_due_at is None or due_at < report.next_due_at):
                report.next_due_at = due_at
            if verdict is Verdict.CLOCK_SKEW:
                self._keep(CLOCK_SKEW, decision)
        elif verdict is Verdict.REFUSED:
            self._skip(decision, decision.reason or "refused", attention=True)
            self._pending_audit.append(
                AuditRow(decision.job_id, "refused", None, error=decision.reason)
            )
        elif verdict is Verdict.UNKNOWN_AGE:
            self._keep(UNKNOWN_AGE, decision)
        elif verdict is Verdict.UNKNOWN_STATUS:
            self._keep(UNKNOWN_STATUS, decision)
        return None

    def _keep(self, kind: str, decision: Decision) -> None:
        """Count a row this run will not clean; the first few are examples in the one
        summary line (and JSON), never one line a row."""
        kept = self.report.kept[kind]
        skip = Skip(decision.job_id, decision.reason or kind, decision.status)
        if len(kept.examples) < EXAMPLES:
            self.report.skipped.append(skip)
        kept.add(skip)

    def _skip(
        self, decision: Decision, reason: str, *, attention: bool = False, path: str | None = None
    ) -> None:
        self.report.skipped.append(Skip(decision.job_id, reason, decision.status, path, attention))
        level = logging.ERROR if attention else logging.WARNING
        where = f" {path}" if path else ""
        log.log(level, "Skipped job %s%s: %s", decision.job_id, where, reason)

    # -- processing --------------------------------------------------------------------

    def _process(self, store: JobStore, remover: Remover) -> None:
        workers = self._workers()
        planned = 0
        batch_size = self.settings.performance.batch_size
        with ThreadPoolExecutor(max_workers=2 * workers, thread_name_prefix="eemt-clean") as pool:
            for chunk in self._due_chunks(store, pool, remover):
                planned += len(chunk)
                self.events.planned(planned)
                for start in range(0, len(chunk), batch_size):
                    if self.stop.requested or self.halt:
                        break
                    self._run_batch(pool, store, remover, chunk[start : start + batch_size])
                if self.stop.requested or self.halt:
                    break
        if self._pending_audit:
            self._record([])

    def _run_batch(
        self, pool: ThreadPoolExecutor, store: JobStore, remover: Remover, batch: list[Decision]
    ) -> None:
        self._batches += 1
        if self.journal is not None:
            self.journal.intend(
                self.report.run_id,
                self._batches,
                [(d.row.job_id, [a.display for a in d.artifacts]) for d in batch],
            )
        # Jobs whose data is small (files and flat directories that fit in one block) are
        # cleaned on this thread: handing them to a pool thread costs more in GIL hand-overs
        # than the work itself. The others go to the pool, whose threads wait on the workers.
        futures: dict[int, Future[_JobWork]] = {
            index: pool.submit(self._clean_job, store, remover, decision)
            for index, decision in enumerate(batch)
            if not self._small_job(decision)
        }
        here = {
            index: self._clean_job(store, remover, decision)
            for index, decision in enumerate(batch)
            if index not in futures
        }
        works = [here[i] if i in here else futures[i].result() for i in range(len(batch))]
        results = []
        # Collected in plan order, so output and audit order do not depend on thread timing.
        for work in works:
            for level, message in work.lines:
                log.log(level, message)
            self.report.skipped.extend(work.skips)
            self._pending_audit.extend(work.audit)
            if work.result is not None:
                results.append(work.result)
                self.report.errors.extend(
                    f"job {work.result.job_id}: {error}" for error in work.result.errors
                )
                self.events.job_done(work.result)
        self.report.jobs.extend(results)
        self._record(results)

    def _record(self, results: list[JobResult]) -> None:
        """Hand the batch's marks and audit rows to the books (and its outcome to the
        journal first, so it survives a commit that fails)."""
        rows = self._pending_audit + [row for result in results for row in result.audit]
        self._pending_audit = []
        if self.dry_run or self.books is None:
            return
        number = self._batches
        if self.journal is not None:
            self.journal.done(
                self.report.run_id,
                number,
                [self._journal_entry(r) for r in results if r.paths or r.recovered_run],
            )
        cleaned = [result for result in results if result.cleaned]
        marks = [
            JobMark(
                job_id=result.raw_id,
                data_size_bytes=result.bytes_freed + result.recovered_bytes,
                keep_metadata=self._keep_metadata(result),
                kind=result.kind,
                bytes_freed=result.bytes_freed + result.recovered_bytes,
                files_deleted=result.files_deleted + result.recovered_files,
            )
            for result in cleaned
        ]
        from eemt_cleanup.store.books import Batch

        settles = [job_key(r.raw_id) for r in results if r.recovered_run is not None]
        journal, run_id = self.journal, self.report.run_id

        def written(done: list[bool]) -> None:
            for result in results:
                result.committed = True
            for result, recorded in zip(cleaned, done, strict=True):
                result.recorded = recorded
                if not recorded:
                    # Its row was marked, or removed, by someone else while we cleaned it:
                    # the audit rows are written, but the job is not ours to count.
                    log.warning(
                        "Job %s: its row was marked or removed by someone else during the "
                        "run; not counted",
                        result.job_id,
                    )
            if journal is not None:
                journal.recorded(run_id, number, settles)

        stop = self.books.record(
            Batch(number, marks, rows, settles, written), timestamp=lambda: format_utc(utc_now())
        )
        if stop is not None:
            self.halt = stop
            log.error("Stopped deleting: %s", stop)

    def _journal_entry(self, result: JobResult) -> dict[str, Any]:
        at = format_utc(utc_now())
        return {
            "job": result.raw_id,
            "run": result.recovered_run or self.report.run_id,
            "audit": [
                [
                    row.action,
                    row.path,
                    row.bytes_freed,
                    row.files_deleted,
                    row.error,
                    row.timestamp or at,
                    row.run_id or self.report.run_id,
                ]
                for row in result.audit
            ],
            "bytes": result.bytes_freed + result.recovered_bytes,
            "files": result.files_deleted + result.recovered_files,
            "paths": result.paths,
            "finished": True,
        }

    def _keep_metadata(self, result: JobResult) -> bool:
        if result.kind == SUCCESSFUL:
            return self.policy.keep_metadata_successful
        return self.policy.keep_metadata_failed

    def _small_job(self, decision: Decision) -> bool:
        """Whether every target of the job is small enough to clean on the engine's thread
        (a routing choice only: the job is checked and cleaned the same way either way)."""
        return all(self.deleter.is_small(a.root, a.name) for a in decision.artifacts)

    def _clean_job(self, store: JobStore, remover: Remover, decision: Decision) -> _JobWork:
        """Clean one job (runs on a worker thread; never raises for one job's trouble)."""
        work = _JobWork(decision)
        if self.stop.requested:
            return work
        try:
            self._clean_job_unguarded(store, remover, work)
        except Exception as error:
            log.debug("Job %s: unexpected error", decision.job_id, exc_info=True)
            result = work.result or JobResult(
                decision.job_id,
                decision.status,
                decision.kind or FAILED,
                decision.age_days,
                raw_id=decision.row.job_id,
            )
            result.errors.append(f"unexpected error: {error}")
            result.audit.append(AuditRow(decision.job_id, "error", None, error=str(error)))
            result.cleaned = False
            work.result = result
            work.say(logging.ERROR, f"Job {decision.job_id}: unexpected error: {error}")
        return work

    def _clean_job_unguarded(self, store: JobStore, remover: Remover, work: _JobWork) -> None:
        decision = work.decision
        if not self.dry_run:
            fresh = self._recheck(store, work)
            if fresh is None:
                return
            decision = work.decision = fresh
        if self._ambiguous(store, decision):
            reason = "refused: another row's id names the same directory (e.g. 123 and '123')"
            work.audit.append(AuditRow(decision.job_id, "refused", None, error=reason))
            work.skip(reason, attention=True)
            return
        result = JobResult(
            decision.job_id,
            decision.status,
            decision.kind or FAILED,
            decision.age_days,
            raw_id=decision.row.job_id,
        )
        work.result = result
        if self.dry_run:
            work.say(
                logging.INFO,
                f"[DRY RUN] Would clean job {decision.job_id} (status: "
                f"{decision.status}, age: {decision.age_days} days)",
            )
        else:
            work.say(
                logging.INFO,
                f"Cleaning job {decision.job_id} ({decision.status}, {decision.age_days} days old)",
            )
        for artifact in decision.artifacts:
            if artifact.root == "uploads" and (
                not self._exists(artifact) or not self._may_delete_upload(store, work, artifact)
            ):
                continue
            self._apply(remover, artifact, work)
        if decision.upload_refused:
            # The upload cannot be named safely, so it may still be on disk: the job stays
            # unmarked and is reported again by every run until someone looks.
            path = f"uploads/{display_value(decision.row.dem_filename)}"
            result.errors.append(f"{path}: {decision.upload_refused}")
            result.audit.append(
                AuditRow(decision.job_id, "refused", path, error=decision.upload_refused)
            )
            work.skip(decision.upload_refused, attention=True, path=path)
        leftover = self.leftovers.get(job_key(decision.row.job_id)) if self.leftovers else None
        if leftover is not None:
            self._carry(result, leftover, work)
        result.cleaned = not result.errors
        if result.cleaned and not result.paths and leftover is None:
            # Nothing left on disk (e.g. a crash after deleting, before marking): the mark
            # still gets its audit row, so no cleaned job lacks an audit trail.
            result.audit.append(AuditRow(decision.job_id, "no_data", None))
            work.say(logging.INFO, f"Job {decision.job_id}: no data left on disk")

    def _carry(self, result: JobResult, leftover: Leftover, work: _JobWork) -> None:
        """Record what an earlier run deleted of this job but could not record: its audit
        rows (with that run's id) go in before ours, and its bytes and files are counted
        with this job's mark, so the run log counts the job exactly once."""
        result.recovered_run = leftover.run_id
        if not leftover.finished:
            paths = ", ".join(leftover.paths) or "its data"
            rows = [
                AuditRow(
                    result.job_id,
                    "no_data",
                    None,
                    error=f"deleted by run {leftover.run_id}, whose records were lost "
                    f"(bytes unknown): {paths}",
                    run_id=leftover.run_id,
                )
            ]
        else:
            result.recovered_bytes = leftover.bytes_freed
            result.recovered_files = leftover.files_deleted
            rows = [
                AuditRow(
                    result.job_id,
                    str(action),
                    path,
                    int(freed or 0),
                    int(files or 0),
                    error,
                    run_id=str(run or leftover.run_id),
                    timestamp=at,
                )
                for action, path, freed, files, error, at, run, *_ in leftover.audit
            ]
        result.audit[0:0] = rows
        work.say(
            logging.INFO,
            f"Job {result.job_id}: recording what run {leftover.run_id} deleted "
            f"({human_size(leftover.bytes_freed)}) but could not record",
        )

    def _recheck(self, store: JobStore, work: _JobWork) -> Decision | None:
        """Read the row again right before touching the job's data; None to leave it."""
        row = store.reread(work.decision.row)
        if row is None:
            work.skip("row disappeared since planning")
            return None
        fresh = decide(row, self.policy, self.now)
        if fresh.verdict is not Verdict.DUE:
            why = fresh.reason or fresh.verdict.value
            if fresh.verdict is Verdict.CLEANED:
                why = "cleaned by someone else since planning"
            elif row.status != work.decision.row.status:
                why = f"status changed to {fresh.status} since planning"
            work.skip(why)
            return None
        return fresh

    def _may_delete_upload(self, store: JobStore, work: _JobWork, artifact: Artifact) -> bool:
        decision = work.decision
        blocker = policy_upload_blocker(
            decision.row.job_id,
            store.references(decision.row.dem_filename),
            self.policy,
            self.now,
            self._in_run,
        )
        with self._claim_lock:
            if blocker is None and artifact.name in self._claimed_uploads:
                return False  # another job of this run has it in hand
            if blocker is None:
                self._claimed_uploads.add(artifact.name)
                return True
        assert work.result is not None
        work.result.kept.append(artifact.display)
        work.result.audit.append(
            AuditRow(decision.job_id, "kept_upload", artifact.display, error=blocker)
        )
        work.skips.append(Skip(decision.job_id, blocker, decision.status, artifact.display))
        work.say(logging.INFO, f"Kept {artifact.display} (job {decision.job_id}): {blocker}")
        return False

    def _ambiguous(self, store: JobStore, decision: Decision) -> bool:
        """Whether a numeric id and its text form are both in the table (two rows, one
        directory name): then neither may be cleaned by name."""
        value = decision.row.job_id
        if not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            return False
        return store.count_ids([str(value), int(value)]) > 1

    def _exists(self, artifact: Artifact) -> bool:
        """Whether the entry is there (so a missing upload costs no reference query)."""
        try:
            os.stat(
                os_name(artifact.name), dir_fd=self.root_fds[artifact.root], follow_symlinks=False
            )
        except FileNotFoundError:
            return False
        except OSError:
            return True  # let the removal report what is wrong with it
        return True

    def _in_run(self, row: JobRow) -> bool:
        job_id = str(row.job_id)
        if job_id in self.deferred:
            return False
        return self.selected is None or job_id in self.selected

    def _apply(self, remover: Remover, artifact: Artifact, work: _JobWork) -> None:
        result = work.result
        assert result is not None
        tally = self.deleter.remove(
            artifact.root,
            artifact.name,
            artifact.display,
            artifact.keep,
            file_only=not artifact.directory,
        )
        if not tally.existed:
            return
        result.paths.append(artifact.display)
        result.kept.extend(tally.kept)
        result.errors.extend(tally.errors)
        result.bytes_freed += tally.bytes_freed
        result.files_deleted += tally.files_deleted
        action = artifact.action if tally.complete else "error"
        result.audit.append(
            AuditRow(
                result.job_id,
                action,
                artifact.display,
                tally.bytes_freed,
                tally.files_deleted,
                "; ".join(tally.errors) or None,
            )
        )
        if tally.kept:
            result.audit.append(
                AuditRow(result.job_id, "kept_logs", artifact.display, error=", ".join(tally.kept))
            )
        size = human_size(tally.bytes_freed)
        if self.dry_run:
            work.say(logging.INFO, f"[DRY RUN] Would delete: {tally.display} ({size})")
        elif tally.complete:
            work.say(logging.INFO, f"Deleted {tally.display} ({size}, {tally.files_deleted} files)")
        for error in tally.errors:
            work.say(logging.ERROR, f"Job {result.job_id}: could not delete {error}")
        for kept in tally.kept:
            work.say(logging.DEBUG, f"Kept {kept}")

    # -- the end -----------------------------------------------------------------------

    def _finish(self, store: JobStore) -> RunReport:
        report = self.report
        report.finished_at = utc_now()
        if self.halt is not None:
            report.errors.append(f"run stopped early: {self.halt}")
        if self.books is not None:
            self.books.flush(timestamp=lambda: format_utc(utc_now()), patient=True)
            self._report_unrecorded(report)
        attention = any(skip.needs_attention for skip in report.skipped)
        report.exit_code = EXIT_PARTIAL if report.errors or attention else EXIT_OK
        if self.stop.signal_number is not None:
            report.stopped_by = self.stop.signal_number
            report.exit_code = EXIT_SIGINT if self.stop.signal_number == 2 else EXIT_SIGTERM
        if self.books is not None:
            problem = self.books.finish(
                timestamp=lambda: format_utc(report.finished_at or utc_now()),
                errors=len(report.errors),
                exit_code=report.exit_code,
            )
            if problem is not None:
                report.errors.append(f"the run-log row could not be completed: {problem}")
                report.exit_code = report.exit_code or EXIT_PARTIAL
            self._settle_journal(store, report)
        _log_summary(report)
        return report

    def _report_unrecorded(self, report: RunReport) -> None:
        """Jobs deleted whose marks never got committed are not counted as cleaned
        anywhere; the journal keeps what they freed, for the next run to record."""
        assert self.books is not None
        unrecorded = [job for job in report.jobs if job.cleaned and not job.committed]
        if not unrecorded:
            return
        report.unrecorded = len(unrecorded)
        why = self.books.last_error or "the run stopped before writing them"
        for job in unrecorded:
            job.errors.append(f"data deleted, but its record could not be written: {why}")
        report.errors.append(
            f"{len(unrecorded)} jobs were deleted but their records could not be written "
            f"({why}): not counted as cleaned; the next run records them"
        )

    def _settle_journal(self, store: JobStore, report: RunReport) -> None:
        if self.journal is None:
            return
        unrecorded = [
            self._journal_entry(job) for job in report.jobs if job.audit and not job.committed
        ]
        gone = set()
        for key in set(self.leftovers) - self.journal.resolved:
            try:
                rows = store.by_id(_json_value(key))
            except sqlite3.Error:
                continue
            if not rows or all(row.data_cleaned_at is not None for row in rows):
                gone.add(key)  # recorded after all, or the row is gone: nothing to carry
        self.journal.settle(unrecorded, gone)


def _due_order(decision: Decision) -> tuple[datetime, int]:
    assert decision.due_at is not None
    return decision.due_at, decision.row.rowid


def _hours(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _log_summary(report: RunReport) -> None:
    kept = [report.kept[kind] for kind in (UNKNOWN_AGE, UNKNOWN_STATUS) if report.kept[kind].count]
    if kept:
        log.warning(
            "Never cleaned until fixed: %s", "; ".join(k.describe() for k in kept), extra=ALWAYS
        )
    if report.kept[CLOCK_SKEW].count:
        log.warning(
            "Clock skew: %s; each is kept until it is due",
            report.kept[CLOCK_SKEW].describe(),
            extra=ALWAYS,
        )
    if report.dry_run:
        cleaned = sum(1 for job in report.jobs if job.cleaned)
        log.info(
            "[DRY RUN] Summary: Would clean %d jobs, freeing ~%s",
            cleaned,
            human_size(report.bytes_freed),
        )
        if report.forced_by is not None:
            log.warning(
                "[DRY RUN] Nothing was deleted: the dry run was forced by %s",
                report.forced_by,
                extra=ALWAYS,
            )
        return
    log.info(
        "Cleanup summary: %d successful, %d failed, %s freed",
        report.cleaned(SUCCESSFUL),
        report.cleaned(FAILED),
        human_size(report.bytes_freed),
    )
    recovered = report.recovered
    if recovered:
        log.info(
            "Recorded %d jobs that earlier runs had cleaned without recording them (%s)",
            len(recovered),
            human_size(sum(job.recovered_bytes for job in recovered)),
        )
    if report.stopped_by is not None:
        log.warning(
            "Cleanup stopped by signal %d; the rest is left for the next run", report.stopped_by
        )
    elif report.exit_code == EXIT_OK:
        log.info("Cleanup completed successfully")
    else:
        log.error(
            "Cleanup finished with %d errors",
            len(report.errors) + sum(1 for s in report.skipped if s.needs_attention),
        )


def _json_value(key: str) -> Any:
    import json

    return json.loads(key)


def job_key(raw_id: Any) -> str:
    """The journal's key for a stored job id (see store/journal.py)."""
    from eemt_cleanup.store.journal import job_key as key

    return key(raw_id)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


__all__ = [
    "JobResult",
    "RunEvents",
    "RunOptions",
    "RunReport",
    "Skip",
    "StopFlag",
    "check_roots",
    "run_cleanup",
]

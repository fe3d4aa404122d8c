"""One run: lock → plan → delete in batches → mark → audit → report, told as events.

The CLI, the compatibility script and every later caller (daemon, HTTP API) run cleanups
through :func:`run_cleanup`; they differ only in which subscribers they give it (progress
bar, log lines, JSON lines) and how they render the :class:`RunReport`.
"""

from __future__ import annotations

import collections
import contextlib
import getpass
import heapq
import logging
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import CleanupError, DatabaseError
from eemt_cleanup.events import (
    BatchRecorded,
    Dispatcher,
    JobFinished,
    JobSkipped,
    JobStarted,
    PathKept,
    PathRemoved,
    RunFinished,
    RunStarted,
)
from eemt_cleanup.fs.pool import Deleter
from eemt_cleanup.fs.remove import Remover
from eemt_cleanup.fs.walk import os_name
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.lock import RunLock
from eemt_cleanup.models import (
    EXAMPLES,
    JobKind,
    JobResult,
    Outcome,
    RunReport,
    Skip,
    SkipReason,
)
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
from eemt_cleanup.site import Site, open_site
from eemt_cleanup.store.actions import AuditAction
from eemt_cleanup.store.audit import AuditRow, JobMark, RunRow
from eemt_cleanup.store.db import JobRow, JobStore, connect
from eemt_cleanup.timeparse import format_utc, utc_now

if TYPE_CHECKING:
    # Imported where a real run needs them: a dry run (the common interactive command)
    # loads neither.
    from eemt_cleanup.store.books import Books
    from eemt_cleanup.store.journal import Journal, Leftover

log = logging.getLogger("eemt_cleanup")

PLAN_CHUNK_MINIMUM = 1000


@dataclass(frozen=True)
class RunOptions:
    """What one run is asked to do, beyond the configuration."""

    dry_run: bool = False
    job_ids: tuple[str, ...] = ()
    limit: int | None = None
    size_threshold: int | None = None
    trigger: str = "cli"
    # Who asked, as recorded in the run log's and the audit's ``user`` (e.g. the HTTP API's
    # ``api:<token name>@<client address>``); None: the account the process runs as.
    user: str | None = None


class StopFlag(threading.Event):
    """Asks a run to stop: it finishes the jobs under way, writes the books, and returns.
    Any ``threading.Event`` does; the CLI's signal handler says which signal asked."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_number: int | None = None

    def request(self, signal_number: int | None = None) -> None:
        self.signal_number = signal_number
        self.set()

    @property
    def requested(self) -> bool:
        return self.is_set()


@dataclass
class _JobWork:
    """One job's work on a worker thread: its result, skips and events, handed back to
    the engine's thread and delivered in plan order."""

    decision: Decision
    run_id: str
    result: JobResult | None = None
    skips: list[Skip] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)  # rows of a job left alone
    finished_at: datetime | None = None  # when its thread was done with it

    def skip(
        self,
        code: SkipReason,
        reason: str,
        *,
        attention: bool = False,
        path: str | None = None,
    ) -> None:
        skip = Skip(
            job_id=self.decision.job_id,
            reason=reason,
            code=code,
            status=self.decision.status,
            path=path,
            needs_attention=attention,
        )
        self.skips.append(skip)
        self.events.append(JobSkipped.of(self.run_id, skip))


def run_cleanup(
    config: LoadedConfig,
    options: RunOptions | None = None,
    on_event: Callable[[Any], None] | None = None,
    stop: threading.Event | None = None,
    *,
    now: datetime | None = None,
) -> RunReport:
    """Run one cleanup and return its report.

    ``on_event`` is called with each event (see :mod:`eemt_cleanup.events`) on the thread
    that called ``run_cleanup``; one that raises is logged once and never breaks the run.
    ``stop`` (any ``threading.Event``) asks the run to finish the jobs under way and stop.
    Callable from any thread, several times in one process: the run installs no signal
    handler, configures no logging and never exits the process.

    Raises ConfigError/DatabaseError (nothing deleted), LockedError or BusyError.
    """
    dispatch = Dispatcher([on_event])
    engine = _Engine(config, options or RunOptions(), dispatch, stop or StopFlag(), now)
    return engine.run()


class _Engine:
    def __init__(
        self,
        config: LoadedConfig,
        options: RunOptions,
        emit: Dispatcher,
        stop: threading.Event,
        now: datetime | None,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.options = options
        self.dry_run = options.dry_run or config.force_dry_run
        self.emit = emit
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
        self.user = options.user or _current_user()
        self.selected: set[str] | None = None
        self.deferred: set[str] = set()
        self._claimed_uploads: set[str] = set()
        self._claim_lock = threading.Lock()
        self._pending_audit: list[AuditRow] = []
        self.root_fds: dict[str, int] = {}
        self.deleter: Deleter
        self._workers = 1
        self.books: Books | None = None
        self.journal: Journal | None = None
        self.leftovers: dict[str, Leftover] = {}
        self.halt: str | None = None  # why deleting stopped early (records not writable)
        self._batches = 0
        self._planned = 0
        self._jobs_done = 0
        self._bytes_so_far = 0

    # -- the run -----------------------------------------------------------------------

    def run(self) -> RunReport:
        report = self._run_site()
        # Told once everything is closed and the run lock released: what a subscriber does
        # with the report (notices, a usage sample) never holds up the next run.
        self.emit(_run_finished(report))
        return report

    def _run_site(self) -> RunReport:
        if self.dry_run:
            with open_site(self.config, write=False, check=self._check_selected) as site:
                self.root_fds = site.root_fds
                report = self._run_unlocked(site)
            if report.forced_by is not None:
                self._record_forced_dry_run(report)
            return report
        # Roots before the books: a root that cannot be opened as resolved is a setup
        # error that leaves no trace in the run log.
        with (
            open_site(self.config, write=True, lock=True, check=self._check_selected) as site,
            contextlib.ExitStack() as stack,
        ):
            assert site.lock is not None
            self.root_fds = site.root_fds
            self.books = self._books(site.conn, site.lock)
            self.books.open()
            for what, why in self.books.deferred:
                log.warning("Put off %s until deleting has made room (%s)", what, why)
            if self.books.migrated:
                site.reload_store()
            from eemt_cleanup.store.journal import Journal

            self.journal = Journal(Path(self.settings.paths.logs))
            stack.callback(self.journal.close)
            self.journal.load()
            self.leftovers = self.journal.leftovers
            return self._run_unlocked(site)

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
        from eemt_cleanup.cli.exit_codes import exit_code

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
                    exit_code=exit_code(report),
                )
        except CleanupError as error:
            problem = str(error)
        if problem is not None:
            log.warning(
                "The forced dry run is not recorded in history: %s", problem, extra={"always": True}
            )

    def _check_selected(self, store: JobStore) -> None:
        """Unknown ``--job`` ids are an input error, raised before anything is written."""
        for job_id in self.options.job_ids:
            if not store.by_id(job_id):
                raise DatabaseError(f"--job {job_id}: no such job in {store.path}")

    def _run_unlocked(self, site: Site) -> RunReport:
        """Plan, delete and record, on the site opened."""
        store = site.store
        remover = site.remover(dry_run=self.dry_run)
        self.deleter = site.deleter(remover)
        self._workers = site.workers
        try:
            self._started()
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

    def _started(self) -> None:
        self.emit(
            RunStarted(
                run_id=self.report.run_id,
                at=self.report.started_at,
                dry_run=self.dry_run,
                forced_by=self.report.forced_by,
                trigger=self.options.trigger,
                successful_hours=self.policy.successful_hours,
                failed_hours=self.policy.failed_hours,
            )
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
                self._skip(decision, SkipReason.NOT_DUE, decision.reason or decision.verdict.value)

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
            due = self._defer_large(store, list(due), pool, remover, self.options.size_threshold)
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
        self,
        store: JobStore,
        due: list[Decision],
        pool: ThreadPoolExecutor,
        remover: Remover,
        threshold: int,
    ) -> list[Decision]:
        """Measure every due job as a dry run would (its kept logs and a shared upload that
        stays are not counted); report and set aside those larger than ``threshold``."""
        meter = Remover(
            dry_run=True, protected=remover.protected, mount_points=remover.mount_points
        )

        def size_of(decision: Decision) -> int:
            total = 0
            for a in decision.artifacts:
                if a.root == "uploads" and policy_upload_blocker(
                    decision.row.job_id,
                    store.references(decision.row.dem_filename),
                    self.policy,
                    self.now,
                    self._in_run,
                ):
                    continue  # stays: another job not cleaned now still needs it
                total += meter.remove(
                    self.root_fds[a.root], a.name, a.display, a.keep, file_only=not a.directory
                ).bytes_freed
            return total

        kept = []
        for decision, size in zip(due, pool.map(size_of, due), strict=True):
            if size <= threshold:
                kept.append(decision)
                continue
            self.deferred.add(str(decision.row.job_id))
            self._skip(
                decision,
                SkipReason.DEFERRED,
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
                self._keep(SkipReason.CLOCK_SKEW, decision)
        elif verdict is Verdict.REFUSED:
            self._skip(decision, SkipReason.REFUSED, decision.reason or "refused", attention=True)
            self._pending_audit.append(
                AuditRow(decision.job_id, AuditAction.REFUSED, None, error=decision.reason)
            )
        elif verdict is Verdict.UNKNOWN_AGE:
            self._keep(SkipReason.UNKNOWN_AGE, decision)
        elif verdict is Verdict.UNKNOWN_STATUS:
            self._keep(SkipReason.UNKNOWN_STATUS, decision)
        return None

    def _keep(self, kind: SkipReason, decision: Decision) -> None:
        """Count a row this run will not clean; the first few are examples in the one
        summary line (and JSON), never one line a row."""
        kept = self.report.kept[kind]
        skip = Skip(
            job_id=decision.job_id,
            reason=decision.reason or str(kind),
            code=kind,
            status=decision.status,
        )
        if len(kept.examples) < EXAMPLES:
            # The first few are also events; all are counted in run_finished (a table of a
            # million rows with garbage timestamps must not make a million events).
            self.report.skipped.append(skip)
            self.emit(JobSkipped.of(self.report.run_id, skip))
        kept.add(skip)

    def _skip(
        self,
        decision: Decision,
        code: SkipReason,
        reason: str,
        *,
        attention: bool = False,
        path: str | None = None,
    ) -> None:
        skip = Skip(
            job_id=decision.job_id,
            reason=reason,
            code=code,
            status=decision.status,
            path=path,
            needs_attention=attention,
        )
        self.report.skipped.append(skip)
        self.emit(JobSkipped.of(self.report.run_id, skip))

    # -- processing --------------------------------------------------------------------

    def _process(self, store: JobStore, remover: Remover) -> None:
        workers = self._workers
        planned = 0
        batch_size = self.settings.performance.batch_size
        with ThreadPoolExecutor(max_workers=2 * workers, thread_name_prefix="eemt-clean") as pool:
            for chunk in self._due_chunks(store, pool, remover):
                planned += len(chunk)
                self._planned = planned
                for start in range(0, len(chunk), batch_size):
                    if self.stop.is_set() or self.halt:
                        break
                    self._run_batch(pool, store, remover, chunk[start : start + batch_size])
                if self.stop.is_set() or self.halt:
                    break
        if self._pending_audit:
            self._batches += 1  # a batch of its own: audit rows of jobs left alone
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
        here: dict[int, _JobWork] = {}
        small = collections.deque(i for i in range(len(batch)) if i not in futures)
        results = []
        # Delivered in plan order, each job as soon as it and every job before it is done,
        # so output and audit order do not depend on thread timing. While a job of the pool
        # is not done, this thread cleans the small jobs that come after it.
        for index in range(len(batch)):
            if index in futures:
                while small and not futures[index].done():
                    later = small.popleft()
                    here[later] = self._clean_job(store, remover, batch[later])
                work = futures[index].result()
            else:
                if index not in here:
                    small.remove(index)
                    here[index] = self._clean_job(store, remover, batch[index])
                work = here.pop(index)
            self._deliver(work)
            if work.result is not None:
                results.append(work.result)
        self.report.jobs.extend(results)
        self._record(results)

    def _deliver(self, work: _JobWork) -> None:
        """Account for one job's work and hand its events on."""
        self.report.skipped.extend(work.skips)
        self._pending_audit.extend(work.audit)
        for event in work.events:
            self.emit(event)
        result = work.result
        if result is None:
            return
        self.report.errors.extend(f"job {result.job_id}: {error}" for error in result.errors)
        self._jobs_done += 1
        self._bytes_so_far += result.bytes_freed
        self.emit(
            JobFinished(
                run_id=self.report.run_id,
                at=work.finished_at or utc_now(),
                job=result,
                job_kind=result.kind,
                cleaned=result.cleaned,
                dry_run=self.dry_run,
                jobs_done=self._jobs_done,
                jobs_planned=max(self._planned, self._jobs_done),
                bytes_so_far=self._bytes_so_far,
            )
        )

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
                status=result.status,
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
            self.emit(
                BatchRecorded(
                    run_id=run_id,
                    batch=number,
                    job_ids=[r.job_id for r, ok in zip(cleaned, done, strict=True) if ok],
                    audit_rows=len(rows),
                )
            )

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
        work = _JobWork(decision, self.report.run_id)
        if self.stop.is_set():
            return work
        try:
            self._clean_job_unguarded(store, remover, work)
        except Exception as error:
            log.debug("Job %s: unexpected error", decision.job_id, exc_info=True)
            result = work.result or self._result(decision)
            result.errors.append(f"unexpected error: {error}")
            result.audit.append(
                AuditRow(decision.job_id, AuditAction.ERROR, None, error=str(error))
            )
            result.cleaned = False
            work.result = result
        work.finished_at = utc_now()
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
            work.audit.append(AuditRow(decision.job_id, AuditAction.REFUSED, None, error=reason))
            work.skip(SkipReason.AMBIGUOUS_ID, reason, attention=True)
            return
        result = self._result(decision)
        work.result = result
        work.events.append(
            JobStarted(
                run_id=self.report.run_id,
                job_id=decision.job_id,
                status=decision.status,
                job_kind=result.kind,
                age_days=decision.age_days,
                dry_run=self.dry_run,
            )
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
                AuditRow(decision.job_id, AuditAction.REFUSED, path, error=decision.upload_refused)
            )
            work.skip(SkipReason.UPLOAD_REFUSED, decision.upload_refused, attention=True, path=path)
        leftover = self.leftovers.get(job_key(decision.row.job_id)) if self.leftovers else None
        if leftover is not None:
            self._carry(result, leftover, work)
        result.cleaned = not result.errors
        if result.cleaned and not result.paths and leftover is None:
            # Nothing left on disk (e.g. a crash after deleting, before marking): the mark
            # still gets its audit row, so no cleaned job lacks an audit trail.
            result.audit.append(AuditRow(decision.job_id, AuditAction.NO_DATA, None))

    def _result(self, decision: Decision) -> JobResult:
        return JobResult(
            job_id=decision.job_id,
            status=decision.status,
            kind=JobKind(decision.kind or FAILED),
            age_days=decision.age_days,
            raw_id=decision.row.job_id,
        )

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
                    AuditAction.NO_DATA,
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

    def _recheck(self, store: JobStore, work: _JobWork) -> Decision | None:
        """Read the row again right before touching the job's data; None to leave it."""
        row = store.reread(work.decision.row)
        if row is None:
            work.skip(SkipReason.ROW_GONE, "row disappeared since planning")
            return None
        fresh = decide(row, self.policy, self.now)
        if fresh.verdict is not Verdict.DUE:
            code, why = SkipReason.NOT_DUE, fresh.reason or fresh.verdict.value
            if fresh.verdict is Verdict.CLEANED:
                code, why = SkipReason.CLEANED_ELSEWHERE, "cleaned by someone else since planning"
            elif row.status != work.decision.row.status:
                code = SkipReason.STATUS_CHANGED
                why = f"status changed to {fresh.status} since planning"
            work.skip(code, why)
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
            AuditRow(decision.job_id, AuditAction.KEPT_UPLOAD, artifact.display, error=blocker)
        )
        # In ``skipped`` of the JSON (SPEC §5), but the job itself is cleaned: no
        # job_skipped event, and the tables list it with the job, not under "Skipped".
        work.skips.append(
            Skip(
                job_id=decision.job_id,
                reason=blocker,
                code=SkipReason.UPLOAD_KEPT,
                status=decision.status,
                path=artifact.display,
            )
        )
        work.events.append(
            PathKept(
                run_id=self.report.run_id,
                job_id=decision.job_id,
                path=artifact.display,
                why=blocker,
            )
        )
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
        action = artifact.action if tally.complete else AuditAction.ERROR
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
        # One row per log file kept, with its path (not a list in the error column).
        result.audit.extend(
            AuditRow(result.job_id, AuditAction.KEPT_LOGS, kept) for kept in tally.kept
        )
        work.events.append(
            PathRemoved(
                run_id=self.report.run_id,
                job_id=result.job_id,
                path=tally.display,
                bytes=tally.bytes_freed,
                files=tally.files_deleted,
                complete=tally.complete,
                emptied=bool(tally.kept),
                kept=sorted(_basename(kept) for kept in tally.kept),
                errors=list(tally.errors),
                dry_run=self.dry_run,
            )
        )

    # -- the end -----------------------------------------------------------------------

    def _finish(self, store: JobStore) -> RunReport:
        from eemt_cleanup.cli.exit_codes import exit_code

        report = self.report
        report.finished_at = utc_now()
        if self.halt is not None:
            report.errors.append(f"run stopped early: {self.halt}")
        if self.books is not None:
            self.books.flush(timestamp=lambda: format_utc(utc_now()), patient=True)
            self._report_unrecorded(report)
        report.outcome = (
            Outcome.PARTIAL if report.errors or report.needs_attention else Outcome.DONE
        )
        if self.stop.is_set():
            report.outcome = Outcome.STOPPED
            report.stopped_by = getattr(self.stop, "signal_number", None)
        if self.books is not None:
            problem = self.books.finish(
                timestamp=lambda: format_utc(report.finished_at or utc_now()),
                errors=len(report.errors),
                exit_code=exit_code(report),
            )
            if problem is not None:
                report.errors.append(f"the run-log row could not be completed: {problem}")
                if report.outcome is Outcome.DONE:
                    report.outcome = Outcome.PARTIAL
            self._settle_journal(store, report)
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


def _run_finished(report: RunReport) -> RunFinished:
    from eemt_cleanup.cli.exit_codes import signal_name

    never = [
        report.kept[kind].describe()
        for kind in (SkipReason.UNKNOWN_AGE, SkipReason.UNKNOWN_STATUS)
        if report.kept[kind].count
    ]
    skew = report.kept[SkipReason.CLOCK_SKEW]
    return RunFinished(
        run_id=report.run_id,
        at=report.finished_at or utc_now(),
        outcome=report.outcome,
        report=report.summary(),
        retained=report.retained,
        next_due_at=report.next_due_at,
        stopped_by=signal_name(report.stopped_by),
        never_cleaned=never,
        clock_skew=skew.describe() if skew.count else None,
        attention=sum(1 for skip in report.skipped if skip.needs_attention),
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
    "RunOptions",
    "RunReport",
    "Skip",
    "StopFlag",
    "run_cleanup",
]


def _basename(display: str) -> str:
    return display.rstrip("/").rsplit("/", 1)[-1]

"""The run's log lines, made from its events: one subscriber for the console and the log
file (``2024-01-20 02:00:01 INFO: Cleaning job <id> (completed, 7.5 days old)``).

Each line carries the time of its event, not the time it was written: a job cleaned on a
worker thread is told when every job before it is done, but its lines say when it happened.
Values from rows and directory entries are escaped by the formatters (report/logs.py).
"""

from __future__ import annotations

import logging
from typing import Any

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import JobKind, SkipReason, job_word

# Shown even under --quiet: cron must tell the operator that data is being kept forever, or
# that a dry run was forced.
ALWAYS = {"always": True}
DRY = "[DRY RUN] "
NEVER_CLEANED = {SkipReason.UNKNOWN_AGE, SkipReason.UNKNOWN_STATUS, SkipReason.CLOCK_SKEW}
KIND_WORDS = {JobKind.SUCCESSFUL: "completed", JobKind.FAILED: "failed"}


class LogLines:
    """``on_event`` subscriber writing the run's lines to the ``eemt_cleanup`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("eemt_cleanup")
        self.dry_run = False

    def __call__(self, event: Any) -> None:
        handler = getattr(self, f"_{event.kind}", None)
        if handler is not None:
            handler(event)

    # -- one method per event kind -------------------------------------------------------

    def _run_started(self, event: Any) -> None:
        self.dry_run = event.dry_run
        if event.forced_by is not None:
            self._line(
                event,
                logging.WARNING,
                f"{DRY}Dry run forced by {event.forced_by}: nothing is deleted",
                always=True,
            )
        self._line(
            event,
            logging.INFO,
            f"{self._prefix}Starting job cleanup (run {event.run_id}, successful after "
            f"{_hours(event.successful_hours)}h, failed after {_hours(event.failed_hours)}h)",
        )

    def _job_started(self, event: Any) -> None:
        if event.dry_run:
            text = (
                f"{DRY}Would clean job {event.job_id} (status: {event.status}, "
                f"age: {event.age_days} days)"
            )
        else:
            text = f"Cleaning job {event.job_id} ({event.status}, {event.age_days} days old)"
        self._line(event, logging.INFO, text)

    def _path_removed(self, event: Any) -> None:
        size = human_size(event.bytes)
        kept = ", ".join(event.kept)
        if event.dry_run:
            if event.emptied:
                text = f"{DRY}Would empty {event.path} ({size}; would keep {kept})"
            else:
                text = f"{DRY}Would delete: {event.path} ({size})"
            self._line(event, logging.INFO, text)
        elif event.complete:
            files = job_word(event.files, "file")
            if event.emptied:
                text = f"Emptied {event.path} ({size}, {files}; kept {kept})"
            else:
                text = f"Deleted {event.path} ({size}, {files})"
            self._line(event, logging.INFO, text)
        for error in event.errors:
            self._line(
                event, logging.ERROR, f"{self._prefix}Job {event.job_id}: could not delete {error}"
            )

    def _path_kept(self, event: Any) -> None:
        verb = f"{DRY}Would keep" if self.dry_run else "Kept"
        self._line(event, logging.INFO, f"{verb} {event.path} (job {event.job_id}): {event.why}")

    def _job_skipped(self, event: Any) -> None:
        if event.reason in NEVER_CLEANED:
            return  # said once, in the run's summary line (never one line a row)
        level = logging.ERROR if event.needs_attention else logging.WARNING
        where = f" {event.path}" if event.path else ""
        self._line(event, level, f"{self._prefix}Skipped job {event.job_id}{where}: {event.detail}")

    def _job_finished(self, event: Any) -> None:
        job = event.job
        if event.cleaned and not job.paths and not getattr(job, "recovered_run", None):
            self._line(event, logging.INFO, f"{self._prefix}Job {job.job_id}: no data left on disk")
        recovered = getattr(job, "recovered_run", None)
        if recovered is not None:
            self._line(
                event,
                logging.INFO,
                f"Job {job.job_id}: recording what run {recovered} deleted "
                f"({human_size(getattr(job, 'recovered_bytes', 0))}) but could not record",
            )
        for error in job.errors:
            # (Errors of a path or a refused upload were told by their own events.)
            if error.startswith("unexpected error"):
                self._line(event, logging.ERROR, f"{self._prefix}Job {job.job_id}: {error}")

    def _batch_recorded(self, event: Any) -> None:
        self._line(
            event,
            logging.DEBUG,
            f"Recorded batch {event.batch}: {job_word(len(event.job_ids))} marked, "
            f"{event.audit_rows} audit rows",
        )

    def _run_finished(self, event: Any) -> None:
        report = event.report
        if event.never_cleaned:
            text = f"{self._prefix}Never cleaned until fixed: " + "; ".join(event.never_cleaned)
            self._line(event, logging.WARNING, text, always=True)
        if event.clock_skew is not None:
            text = f"{self._prefix}Clock skew: {event.clock_skew}; each is kept until it is due"
            self._line(event, logging.WARNING, text, always=True)
        if report.dry_run:
            jobs = report.cleaned_jobs.successful + report.cleaned_jobs.failed
            self._line(
                event,
                logging.INFO,
                f"{DRY}Summary: Would clean {job_word(jobs)}, freeing "
                f"~{report.space_freed.human_readable}",
            )
            if report.dry_run_forced_by is not None:
                self._line(
                    event,
                    logging.WARNING,
                    f"{DRY}Nothing was deleted: the dry run was forced by "
                    f"{report.dry_run_forced_by}",
                    always=True,
                )
            return
        self._line(
            event,
            logging.INFO,
            f"Cleanup summary: {cleaned_words(report.cleaned_jobs)} cleaned, "
            f"{report.space_freed.human_readable} freed",
        )
        if report.recorded_late:
            late = sum(job.bytes_freed for job in report.recorded_late)
            self._line(
                event,
                logging.INFO,
                f"Recorded {job_word(len(report.recorded_late))} that earlier runs had cleaned "
                f"without recording them ({human_size(late)})",
            )
        if event.stopped_by is not None:
            text = f"Cleanup stopped by {event.stopped_by}; the rest is left for the next run"
            self._line(event, logging.WARNING, text)
        elif report.success:
            self._line(event, logging.INFO, "Cleanup completed successfully")
        else:
            problems = len(report.errors) + event.attention
            self._line(event, logging.ERROR, f"Cleanup finished with {job_word(problems, 'error')}")

    # -- writing ---------------------------------------------------------------------

    @property
    def _prefix(self) -> str:
        return DRY if self.dry_run else ""

    def _line(self, event: Any, level: int, text: str, *, always: bool = False) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        record = logger.makeRecord(
            logger.name, level, "(events)", 0, text, (), None, extra=ALWAYS if always else None
        )
        # The time of the event, not of this call.
        created = event.at.timestamp()
        record.created = created
        record.msecs = (created - int(created)) * 1000
        logger.handle(record)


def cleaned_words(cleaned: Any) -> str:
    """``3 completed jobs and 4 failed jobs`` (``no jobs`` when there are none)."""
    parts = [
        f"{job_word(count)}".replace(" job", f" {KIND_WORDS[kind]} job", 1)
        for kind, count in (
            (JobKind.SUCCESSFUL, cleaned.successful),
            (JobKind.FAILED, cleaned.failed),
        )
        if count
    ]
    return " and ".join(parts) or "no jobs"


def _hours(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)

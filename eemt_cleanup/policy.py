"""Which jobs are due and which artifacts they own. Pure: rows, settings and "now" in,
decisions out; no filesystem, no database."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from eemt_cleanup.config.schema import Settings
from eemt_cleanup.fs.names import NameRefused, component
from eemt_cleanup.models import JobKind, Root
from eemt_cleanup.store.actions import AuditAction
from eemt_cleanup.store.db import JobRow
from eemt_cleanup.timeparse import parse_timestamp, resolve_zone

SUCCESSFUL = JobKind.SUCCESSFUL
FAILED = JobKind.FAILED
ARCHIVE_SUFFIX = "_results.zip"
# A reference time further than this in the future is reported as clock skew (a wrong
# jobs.timezone shows up the same way): such a job is kept until it is due, and said so.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=5)


class Verdict(enum.Enum):
    DUE = "due"
    RETAINED = "retained"
    ACTIVE = "active"
    UNKNOWN_STATUS = "unknown_status"
    UNKNOWN_AGE = "unknown_age"
    REFUSED = "refused"
    CLEANED = "cleaned"
    CLOCK_SKEW = "clock_skew"


@dataclass(frozen=True)
class Policy:
    """The retention settings the decisions need, read once from Settings."""

    successful_statuses: frozenset[str]
    failed_statuses: frozenset[str]
    active_statuses: frozenset[str]
    successful_hours: float
    failed_hours: float
    keep_logs: bool
    keep_error_logs: bool
    keep_metadata_successful: bool
    keep_metadata_failed: bool
    log_files: frozenset[str]
    naive_zone: tzinfo | None
    created_zone: tzinfo | None
    # The retention periods as timedeltas, made once rather than for every row.
    successful_period: timedelta = field(init=False, repr=False, compare=False)
    failed_period: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "successful_period", timedelta(hours=self.successful_hours))
        object.__setattr__(self, "failed_period", timedelta(hours=self.failed_hours))

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        retention, jobs = settings.retention, settings.jobs
        return cls(
            successful_statuses=frozenset(jobs.statuses.successful),
            failed_statuses=frozenset(jobs.statuses.failed),
            active_statuses=frozenset(jobs.statuses.active),
            successful_hours=retention.successful_jobs.hours,
            failed_hours=retention.failed_jobs.hours,
            keep_logs=retention.successful_jobs.keep_logs,
            keep_error_logs=retention.failed_jobs.keep_error_logs,
            keep_metadata_successful=retention.successful_jobs.keep_metadata,
            keep_metadata_failed=retention.failed_jobs.keep_metadata,
            log_files=frozenset(retention.log_files),
            naive_zone=resolve_zone(jobs.timezone),
            created_zone=resolve_zone(jobs.created_at_timezone),
        )

    @property
    def known_statuses(self) -> list[str]:
        return sorted(self.successful_statuses | self.failed_statuses | self.active_statuses)

    def kind_of(self, status: Any) -> str | None:
        """ "successful", "failed", or None for active and unknown statuses."""
        if status in self.successful_statuses:
            return SUCCESSFUL
        if status in self.failed_statuses:
            return FAILED
        return None


@dataclass(frozen=True)
class Artifact:
    """One deletion target: a direct child ``name`` of the root ``root``."""

    root: str  # "results", "temp" or "uploads": the config key of the root
    name: str
    action: str  # the audit action when it is deleted
    directory: bool
    keep: frozenset[str] = frozenset()

    @property
    def display(self) -> str:
        return f"{self.root}/{self.name}{'/' if self.directory else ''}"


@dataclass(slots=True)
class Decision:
    """What the policy says of one job. Treated as immutable, but not frozen: planning builds
    one per not-yet-cleaned row, and a frozen dataclass is built three times slower."""

    row: JobRow
    verdict: Verdict
    kind: str | None = None
    age_seconds: float | None = None
    due_at: datetime | None = None
    reason: str | None = None
    name: str | None = None
    upload: str | None = None
    upload_refused: str | None = None
    keep_metadata: bool = True
    artifacts: tuple[Artifact, ...] = field(default=())

    @property
    def age_days(self) -> float | None:
        return None if self.age_seconds is None else round(self.age_seconds / 86400, 1)

    @property
    def job_id(self) -> str:
        return display_value(self.row.job_id)

    @property
    def status(self) -> str:
        return display_value(self.row.status)


def display_value(value: Any) -> str:
    """A printable form of any stored value (hostile bytes shown escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(value) if value is not None else "NULL"


def reference_time(row: JobRow, policy: Policy) -> tuple[datetime | None, str | None]:
    """The instant age is measured from, or None with the reason it is unknown.

    ``completed_at``; when that is NULL, the latest of ``started_at`` and ``created_at``.
    A value present but unparseable makes the age unknown rather than falling back.
    """
    if not _is_null(row.completed_at):
        completed = parse_timestamp(row.completed_at, policy.naive_zone)
        if completed is None:
            return None, f"completed_at {display_value(row.completed_at)!s} cannot be parsed"
        return completed, None
    candidates = []
    for column, value, zone in (
        ("started_at", row.started_at, policy.naive_zone),
        ("created_at", row.created_at, policy.created_zone),
    ):
        if _is_null(value):
            continue
        parsed = parse_timestamp(value, zone)
        if parsed is None:
            return None, f"{column} {display_value(value)!s} cannot be parsed"
        candidates.append(parsed)
    if not candidates:
        return None, "completed_at, started_at and created_at are all NULL"
    return max(candidates), None


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes) and not value.strip())


def decide(row: JobRow, policy: Policy, now: datetime) -> Decision:
    """Decide one job's fate at ``now``."""
    if row.data_cleaned_at is not None:
        return Decision(row, Verdict.CLEANED, reason="data already cleaned")
    kind = policy.kind_of(row.status)
    if kind is None:
        if row.status in policy.active_statuses:
            return Decision(row, Verdict.ACTIVE, reason=f"status {row.status} is never cleaned")
        return Decision(
            row,
            Verdict.UNKNOWN_STATUS,
            reason=f"unknown status '{display_value(row.status)}': never touched",
        )
    start, why = reference_time(row, policy)
    if start is None:
        return Decision(
            row, Verdict.UNKNOWN_AGE, kind=kind, reason=f"age unknown ({why}): never cleaned"
        )
    period = policy.successful_period if kind == SUCCESSFUL else policy.failed_period
    try:
        due_at = start + period
    except OverflowError:
        return Decision(
            row,
            Verdict.UNKNOWN_AGE,
            kind=kind,
            reason=f"age unknown (it becomes due after the end of the calendar, {start:%Y-%m-%d}"
            "): never cleaned",
        )
    age = (now - start).total_seconds()
    if start > now + CLOCK_SKEW_TOLERANCE:
        return Decision(
            row,
            Verdict.CLOCK_SKEW,
            kind=kind,
            age_seconds=age,
            due_at=due_at,
            reason=f"its time {start.isoformat(timespec='seconds')} is in the future (clock "
            "skew, or a wrong jobs.timezone?): kept until it is due",
        )
    if now < due_at:
        return Decision(
            row,
            Verdict.RETAINED,
            kind=kind,
            age_seconds=age,
            due_at=due_at,
            reason="within retention",
        )
    return _due(row, policy, kind, age, due_at)


def owned_artifacts(
    row: JobRow, keep: frozenset[str] = frozenset()
) -> tuple[list[Artifact], str | None]:
    """The artifacts a job owns, and why its upload is refused (if it is).

    A NULL or empty ``dem_filename`` means no upload is recorded: the job owns none. A
    name that could name something else (separators, ``..``, blank, a BLOB...) is refused.
    Raises NameRefused when the job id cannot name a direct child of a root.
    """
    name = component(row.job_id, "job id")
    if name.endswith(ARCHIVE_SUFFIX):
        raise NameRefused(
            f"job id {name!r} ends with {ARCHIVE_SUFFIX!r}: results/<id> would be another "
            "job's archive"
        )
    archive = component(row.job_id, "job id", suffix=ARCHIVE_SUFFIX)
    artifacts = [
        Artifact(Root.TEMP, name, AuditAction.DELETED_TEMP, True),
        Artifact(Root.RESULTS, archive, AuditAction.DELETED_ARCHIVE, False),
        Artifact(Root.RESULTS, name, AuditAction.DELETED_RESULTS, True, keep),
    ]
    if row.dem_filename is None or (isinstance(row.dem_filename, str) and not row.dem_filename):
        # No upload recorded (a job that failed before its upload was stored): normal.
        return artifacts, None
    try:
        upload = component(row.dem_filename, "upload name")
    except NameRefused as refusal:
        return artifacts, f"refused: {refusal}"
    artifacts.append(Artifact(Root.UPLOADS, upload, AuditAction.DELETED_UPLOAD, False))
    return artifacts, None


def _due(row: JobRow, policy: Policy, kind: str, age: float, due_at: datetime) -> Decision:
    keep_logs = policy.keep_logs if kind == SUCCESSFUL else policy.keep_error_logs
    keep = policy.log_files if keep_logs else frozenset()
    try:
        artifacts, upload_refused = owned_artifacts(row, keep)
    except NameRefused as refusal:
        return Decision(
            row,
            Verdict.REFUSED,
            kind=kind,
            age_seconds=age,
            due_at=due_at,
            reason=f"refused: {refusal}",
        )
    name = artifacts[0].name
    upload = artifacts[-1].name if artifacts[-1].root == "uploads" else None
    keep_metadata = (
        policy.keep_metadata_successful if kind == SUCCESSFUL else policy.keep_metadata_failed
    )
    return Decision(
        row,
        Verdict.DUE,
        kind=kind,
        age_seconds=age,
        due_at=due_at,
        name=name,
        upload=upload,
        upload_refused=upload_refused,
        keep_metadata=keep_metadata,
        artifacts=tuple(artifacts),
    )


def upload_blocker(
    job_id: Any,
    references: Iterable[JobRow],
    policy: Policy,
    now: datetime,
    in_run: Callable[[JobRow], bool],
) -> str | None:
    """Why the upload of ``job_id`` must stay, or None when it may go.

    It may go only when every other job that references it has had its data cleaned, or is
    due now and being cleaned in this run (``in_run``).
    """
    for other in references:
        if other.job_id == job_id or other.data_cleaned_at is not None:
            continue
        decision = decide(other, policy, now)
        if decision.verdict is Verdict.DUE and in_run(other):
            continue
        state = display_value(other.status)
        waiting = (Verdict.RETAINED, Verdict.CLOCK_SKEW)
        if decision.verdict in waiting and decision.due_at is not None:
            state += f", due {decision.due_at.isoformat(timespec='minutes')}"
        elif decision.verdict is Verdict.DUE:
            state += ", not in this run"
        return f"upload still referenced by job {display_value(other.job_id)} ({state})"
    return None

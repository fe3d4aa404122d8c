"""The domain's words and the shapes every caller sees: one set of pydantic models.

:class:`RunReport` is what :func:`eemt_cleanup.run_cleanup` returns; :class:`RunSummary` is
its ``--json`` object (SPEC §5, exactly that shape) and the ``report`` of the
``run_finished`` event; :class:`JobDetail` is one entry of ``details`` and the ``job`` of a
``job_finished`` event. The HTTP API answers with the same models.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_serializer
from typing_extensions import TypedDict

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.timeparse import format_utc

# Rows never cleaned are summarised per run with this many examples (not one line a row:
# a table of a million rows with garbage timestamps must not make a million lines).
EXAMPLES = 3

UtcTime = Annotated[datetime, PlainSerializer(format_utc, return_type=str)]


class JobKind(enum.StrEnum):
    """Which retention window a terminal status falls under."""

    SUCCESSFUL = "successful"
    FAILED = "failed"


class Root(enum.StrEnum):
    """The three deletion roots (``paths.<root>``)."""

    UPLOADS = "uploads"
    RESULTS = "results"
    TEMP = "temp"


class SkipReason(enum.StrEnum):
    """Why a job (or one of its paths) was left alone."""

    NOT_DUE = "not_due"  # --job on a job within retention, active or cleaned
    ROW_GONE = "row_gone"  # the row disappeared since planning
    STATUS_CHANGED = "status_changed"  # e.g. re-queued since planning
    CLEANED_ELSEWHERE = "cleaned_elsewhere"  # marked by someone else since planning
    REFUSED = "refused"  # a hostile id or name: reported, never touched
    AMBIGUOUS_ID = "ambiguous_id"  # 123 and '123': two rows, one directory name
    UPLOAD_KEPT = "upload_kept"  # the job is cleaned; its shared upload stays
    UPLOAD_REFUSED = "upload_refused"  # the upload cannot be named safely
    DEFERRED = "deferred"  # larger than --size-threshold
    UNKNOWN_AGE = "unknown_age"
    UNKNOWN_STATUS = "unknown_status"
    CLOCK_SKEW = "clock_skew"


class Outcome(enum.StrEnum):
    """How a run ended (the CLI maps it to an exit code, see ``cli/exit_codes.py``)."""

    DONE = "done"  # everything due was handled (or there was nothing to do)
    PARTIAL = "partial"  # finished, but at least one job or path failed
    STOPPED = "stopped"  # asked to stop (a signal, or the caller's stop flag)


class JobDetailJson(TypedDict):
    """An entry of ``details`` as serialised, in this key order (the return type of
    :meth:`JobDetail._in_order`: what JSON schemas, such as the HTTP API's OpenAPI
    document, show for it)."""

    job_id: str
    status: str
    age_days: float | None
    bytes_freed: int
    space_freed: str
    files_deleted: int
    paths: list[str]
    kept: list[str]
    errors: list[str]


class JobDetail(BaseModel):
    """One job cleaned (or, in a dry run, that would be): an entry of ``details``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    job_id: str  # printable (escaped); the stored value may differ
    status: str
    age_days: float | None
    bytes_freed: int = 0
    files_deleted: int = 0
    paths: list[str] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _in_order(self, handler: Any) -> JobDetailJson:
        data: dict[str, Any] = handler(self)
        return {
            "job_id": data["job_id"],
            "status": data["status"],
            "age_days": data["age_days"],
            "bytes_freed": data["bytes_freed"],
            "space_freed": human_size(self.bytes_freed),
            "files_deleted": data["files_deleted"],
            "paths": data["paths"],
            "kept": data["kept"],
            "errors": data["errors"],
        }


class Skip(BaseModel):
    """A job (or one of its paths) left alone, and why."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    reason: str  # for people
    code: SkipReason
    status: str | None = None
    path: str | None = None
    needs_attention: bool = False

    @property
    def text(self) -> str:
        """The reason with its path, as ``skipped`` shows it."""
        return f"{self.path}: {self.reason}" if self.path else self.reason


class SkipEntry(BaseModel):
    """An entry of ``skipped``: ``{"job_id": ..., "reason": ...}``."""

    job_id: str
    reason: str


class Kept(BaseModel):
    """Rows of one kind the run will not clean (unknown age, unknown status, a time in the
    future): how many, and the first few for the operator to look at."""

    label: str
    count: int = 0
    examples: list[Skip] = Field(default_factory=list)

    def add(self, skip: Skip) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(skip)

    def describe(self) -> str:
        shown = "; ".join(f"job {skip.job_id}: {skip.reason}" for skip in self.examples)
        more = ", ..." if self.count > len(self.examples) else ""
        jobs = "job" if self.count == 1 else "jobs"
        return f"{self.count} {jobs} {self.label} (e.g. {shown}{more})"


def kept_kinds() -> dict[str, Kept]:
    return {
        SkipReason.UNKNOWN_AGE: Kept(label="with an unknown age"),
        SkipReason.UNKNOWN_STATUS: Kept(label="with an unknown status"),
        SkipReason.CLOCK_SKEW: Kept(label="with a time in the future"),
    }


class CleanedJobs(BaseModel):
    successful: int
    failed: int


class SpaceFreed(BaseModel):
    bytes: int
    human_readable: str


class NeverCleaned(BaseModel):
    count: int
    examples: list[SkipEntry]


class RecordedLate(BaseModel):
    job_id: str
    deleted_by_run: str | None
    bytes_freed: int
    files_deleted: int


class RunSummary(BaseModel):
    """The ``--json`` object of SPEC §5 (a dry run describes what would happen), and the
    keys beyond the SPEC's: a dry run forced by the environment, the rows this run will not
    clean (counts and a few examples; ``skipped`` lists the same examples), and the jobs
    recorded now that an earlier run deleted without recording them."""

    success: bool
    dry_run: bool
    run_id: str
    started_at: UtcTime
    finished_at: UtcTime | None
    cleaned_jobs: CleanedJobs
    space_freed: SpaceFreed
    files_deleted: int
    details: list[JobDetail]
    skipped: list[SkipEntry]
    errors: list[str]
    dry_run_forced_by: str | None
    never_cleaned: dict[str, NeverCleaned]
    recorded_late: list[RecordedLate]

    def to_json(self, indent: int | None = None) -> str:
        """The ``--json`` text: ASCII-safe, so a file name that is not UTF-8 (kept as lone
        surrogates) is escaped, never a serialisation error."""
        return to_json(self, indent)


def to_json(model: BaseModel, indent: int | None = None) -> str:
    """Any model of this package (the report, an event) as ASCII-safe JSON."""
    import json

    return json.dumps(model.model_dump(mode="json"), ensure_ascii=True, indent=indent)


class JobResult(JobDetail):
    """What happened (or, in a dry run, would happen) to one due job: its detail, and the
    engine's books on it (not serialised)."""

    kind: JobKind = Field(exclude=True)
    cleaned: bool = Field(default=False, exclude=True)
    audit: list[Any] = Field(default_factory=list, exclude=True)  # store.audit.AuditRow
    raw_id: Any = Field(default=None, exclude=True)  # the value stored in the table
    committed: bool = Field(default=False, exclude=True)  # its batch's records are committed
    recorded: bool = Field(default=False, exclude=True)  # its mark is committed (real runs)
    # What an earlier run deleted of this job but could not record (from the journal).
    recovered_run: str | None = Field(default=None, exclude=True)
    recovered_bytes: int = Field(default=0, exclude=True)
    recovered_files: int = Field(default=0, exclude=True)


class RunReport(BaseModel):
    """The whole run, as :func:`eemt_cleanup.run_cleanup` returns it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    dry_run: bool
    started_at: UtcTime
    finished_at: UtcTime | None = None
    jobs: list[JobResult] = Field(default_factory=list)
    skipped: list[Skip] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    retained: int = 0
    next_due_at: UtcTime | None = None
    outcome: Outcome = Outcome.DONE
    stopped_by: int | None = None  # the signal that stopped the run, if one did
    forced_by: str | None = None  # the setting that forced a dry run
    kept: dict[str, Kept] = Field(default_factory=kept_kinds)
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

    @property
    def needs_attention(self) -> bool:
        return any(skip.needs_attention for skip in self.skipped)

    def summary(self) -> RunSummary:
        """The ``--json`` object."""
        return RunSummary(
            success=self.outcome is Outcome.DONE,
            dry_run=self.dry_run,
            run_id=self.run_id,
            started_at=self.started_at,
            finished_at=self.finished_at,
            cleaned_jobs=CleanedJobs(
                successful=self.cleaned(JobKind.SUCCESSFUL), failed=self.cleaned(JobKind.FAILED)
            ),
            space_freed=SpaceFreed(
                bytes=self.bytes_freed, human_readable=human_size(self.bytes_freed)
            ),
            files_deleted=self.files_deleted,
            details=list(self.jobs),
            skipped=[SkipEntry(job_id=skip.job_id, reason=skip.text) for skip in self.skipped],
            errors=self.errors,
            dry_run_forced_by=self.forced_by,
            never_cleaned={
                str(kind): NeverCleaned(
                    count=kept.count,
                    examples=[
                        SkipEntry(job_id=skip.job_id, reason=skip.reason) for skip in kept.examples
                    ],
                )
                for kind, kept in self.kept.items()
            },
            recorded_late=[
                RecordedLate(
                    job_id=job.job_id,
                    deleted_by_run=job.recovered_run,
                    bytes_freed=job.recovered_bytes,
                    files_deleted=job.recovered_files,
                )
                for job in self.recovered
            ],
        )


def job_word(count: int, word: str = "job") -> str:
    """``1 job``, ``2 jobs`` (``1 file``, ``3 files``)."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


__all__ = [
    "CleanedJobs",
    "JobDetail",
    "JobKind",
    "JobResult",
    "Kept",
    "NeverCleaned",
    "Outcome",
    "RecordedLate",
    "Root",
    "RunReport",
    "RunSummary",
    "Skip",
    "SkipEntry",
    "SkipReason",
    "SpaceFreed",
    "job_word",
    "kept_kinds",
    "to_json",
]

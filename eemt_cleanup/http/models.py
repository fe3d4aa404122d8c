"""The HTTP API's request and response shapes (pydantic; the OpenAPI document shows them).

A run's result is the engine's own :class:`~eemt_cleanup.models.RunSummary`: the SPEC §5
object, a superset of the reference's response (``success``, ``cleaned_jobs``,
``space_freed``, ``details``). The rest describe what the API adds around it: a run in
progress, the run log, the audit, the status figures and the errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eemt_cleanup.models import NeverCleaned, Outcome, RunSummary, UtcTime
from eemt_cleanup.store.usage import UsageSample

# The longest retention a request may ask for. Longer is not a policy, it is a typo (the
# configuration itself accepts up to a century, for "never").
MAX_RETENTION_HOURS = 10 * 365 * 24
MAX_RETENTION_DAYS = 10 * 365

RetentionHours = Annotated[
    float,
    Field(ge=0, le=MAX_RETENTION_HOURS, strict=True, allow_inf_nan=False),
]


class CleanupRequest(BaseModel):
    """The body of ``POST /api/cleanup`` (the reference's): every key optional; retention
    in hours, from 0 to ten years; unset keys keep the configured values. Unknown keys are
    refused (a misspelt retention must not silently become the default)."""

    model_config = ConfigDict(extra="forbid")

    dry_run: Annotated[bool, Field(strict=True)] = False
    success_retention_hours: RetentionHours | None = None
    failed_retention_hours: RetentionHours | None = None


RunState = Literal["running", "finished", "failed", "interrupted"]


class Progress(BaseModel):
    """How far a run is, from its event stream."""

    jobs_done: int = 0  # jobs finished so far
    jobs_planned: int = 0  # due jobs planned so far (grows while planning streams)
    jobs_recorded: int = 0  # jobs whose marks are committed
    batches_recorded: int = 0
    bytes_so_far: int = 0  # freed (in a dry run: to be freed) so far
    human_readable: str = "0 Bytes"
    current_job: str | None = None  # the last job finished
    last_event: str | None = None  # the kind of the last event
    last_event_at: UtcTime | None = None


class RunLogEntry(BaseModel):
    """A row of ``cleanup_log``: one real run (or a dry run forced by the environment)."""

    model_config = ConfigDict(extra="allow")

    id: int | None = None
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    trigger: str | None = None
    user: str | None = None
    host: str | None = None
    pid: int | None = None
    dry_run: int | None = None
    jobs_successful: int | None = None
    jobs_failed: int | None = None
    bytes_freed: int | None = None
    files_deleted: int | None = None
    errors: int | None = None
    exit_code: int | None = None  # None: still running, or killed
    dry_run_forced_by: str | None = None


class RunStatus(BaseModel):
    """A run, as ``GET /api/cleanup/runs/{run_id}`` shows it.

    ``state``: ``running``; ``finished`` (``result`` is its report, ``outcome`` and
    ``exit_code`` say how it went); ``failed`` (it could not start, or broke: ``error``);
    ``interrupted`` (a run of the run log that never finished: killed, or its host
    rebooted). ``source`` says where it is known from: this server (``api``, with live
    progress) or the run log only (``run_log``: runs started by cron, a timer, the CLI)."""

    run_id: str
    state: RunState
    source: Literal["api", "run_log"]
    dry_run: bool | None = None
    trigger: str | None = None
    user: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None
    progress: Progress | None = None
    result: RunSummary | None = None
    # What went out after a real run (usage sample, alerts, notices, metrics textfile),
    # as the CLI's --json shows it.
    reports: dict[str, Any] | None = None
    error: str | None = None
    record: RunLogEntry | None = None  # its cleanup_log row, for a run of the run log


class RunAccepted(BaseModel):
    """The ``202`` answer to a real run: it runs; follow ``status_url`` (also the
    ``Location`` header)."""

    run_id: str
    state: RunState
    status_url: str
    dry_run: bool = False


class LockHolder(BaseModel):
    """The run holding the lock, as far as it can be told (every field may be unknown)."""

    pid: int | None = None
    run_id: str | None = None
    host: str | None = None
    user: str | None = None
    trigger: str | None = None
    started_at: str | None = None


class Locked(BaseModel):
    """The ``409`` answer: another run (cron, a timer, the CLI, this API) holds the lock."""

    detail: str
    holder: LockHolder | None = None


class ErrorDetail(BaseModel):
    detail: str


class AuditEntry(BaseModel):
    """A row of ``cleanup_audit``: one path deleted, kept or refused."""

    model_config = ConfigDict(extra="allow")

    id: int | None = None
    timestamp: str | None = None
    job_id: str | int | None = None
    action: str | None = None
    space_freed_mb: float | None = None
    user: str | None = None
    run_id: str | None = None
    path: str | None = None
    bytes_freed: int | None = None
    files_deleted: int | None = None
    error: str | None = None


class StatusGroup(BaseModel):
    """Not-yet-cleaned jobs of one status, the disk their data uses, and what is due."""

    status: str
    jobs: int
    bytes: int
    human_readable: str
    due_now: int
    due_bytes: int


class CleanedLastDay(BaseModel):
    """What the real runs of the last 24 hours cleaned (the reference's monitoring
    figure)."""

    since: UtcTime
    jobs: int
    bytes_freed: int
    human_readable: str
    jobs_by_status: dict[str, int] = Field(default_factory=dict)


class StatusReport(BaseModel):
    """``GET /api/cleanup/status``: what ``eemt-cleanup status --json`` shows, measured the
    same way (without storing anything: a GET changes nothing)."""

    by_status: list[StatusGroup]
    measured: bool
    due_now: int
    due_bytes: int
    due_human_readable: str
    next_due_at: UtcTime | None
    next_due_job: str | None
    last_run: RunLogEntry | None
    running: LockHolder | None
    cleaned_last_24h: CleanedLastDay
    never_cleaned: dict[str, NeverCleaned]
    problems: list[str]
    notes: list[str]
    latest_sample: UsageSample | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


__all__ = [
    "MAX_RETENTION_DAYS",
    "MAX_RETENTION_HOURS",
    "AuditEntry",
    "CleanedLastDay",
    "CleanupRequest",
    "ErrorDetail",
    "Health",
    "LockHolder",
    "Locked",
    "Progress",
    "RunAccepted",
    "RunLogEntry",
    "RunState",
    "RunStatus",
    "StatusGroup",
    "StatusReport",
]

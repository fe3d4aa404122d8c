"""What a run tells its subscribers, as it happens: typed, JSON-serialisable events.

A run emits, in plan order: ``run_started``; per job ``job_started``, then ``path_removed``
(in a dry run: what would be removed) and ``path_kept`` for each of its paths, then
``job_finished``, or ``job_skipped`` for a job left alone (rows never cleaned - unknown age,
unknown status, a time in the future - are counted in ``run_finished``'s ``never_cleaned``,
the first three of each kind also as ``job_skipped``); ``batch_recorded`` once a batch's
marks and audit rows are committed (never before the deletions it records); and
``run_finished`` with the whole report, once the run has closed its database connections
and released the run lock (a subscriber may take its time without holding up the next
run). Every event has a ``kind`` and the time ``at`` which it happened (a job's events are
made on the thread that cleans it and delivered in plan order as soon as every job before
it is done).

Subscribers are plain callables ``on_event(event)``. One that raises is logged once (its
later failures are not) and never breaks the run (:class:`Dispatcher`). The terminal's
progress bar and log lines, and ``run --events jsonl``, are such subscribers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter

from eemt_cleanup.models import (
    JobDetail,
    JobKind,
    Outcome,
    RunSummary,
    Skip,
    SkipReason,
    UtcTime,
)
from eemt_cleanup.timeparse import utc_now

log = logging.getLogger("eemt_cleanup")


def _precise(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


# When an event happened, to the microsecond (timings are read from it).
EventTime = Annotated[datetime, PlainSerializer(_precise, return_type=str)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    at: EventTime = Field(default_factory=utc_now)

    def to_json(self) -> str:
        """The event as one line of ASCII-safe JSON (what ``run --events jsonl`` writes)."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=True, separators=(",", ":"))


class RunStarted(_Event):
    kind: Literal["run_started"] = "run_started"
    dry_run: bool
    forced_by: str | None = None  # the setting that forced a dry run
    trigger: str
    successful_hours: float
    failed_hours: float


class JobStarted(_Event):
    kind: Literal["job_started"] = "job_started"
    job_id: str
    status: str
    job_kind: JobKind
    age_days: float | None
    dry_run: bool


class PathRemoved(_Event):
    """One path of a job removed (in a dry run: measured, and would be removed)."""

    kind: Literal["path_removed"] = "path_removed"
    job_id: str
    path: str
    bytes: int
    files: int
    complete: bool  # False: errors (in ``errors``) left some of it in place
    emptied: bool = False  # a directory emptied but kept, for the logs it keeps (``kept``)
    kept: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    dry_run: bool = False


class PathKept(_Event):
    """A path of a job left in place while the job is cleaned (a shared upload)."""

    kind: Literal["path_kept"] = "path_kept"
    job_id: str
    path: str
    why: str


class JobSkipped(_Event):
    kind: Literal["job_skipped"] = "job_skipped"
    job_id: str
    status: str | None
    reason: SkipReason
    detail: str  # the reason for people
    path: str | None = None
    needs_attention: bool = False

    @classmethod
    def of(cls, run_id: str, skip: Skip) -> JobSkipped:
        return cls(
            run_id=run_id,
            job_id=skip.job_id,
            status=skip.status,
            reason=skip.code,
            detail=skip.reason,
            path=skip.path,
            needs_attention=skip.needs_attention,
        )


class JobFinished(_Event):
    kind: Literal["job_finished"] = "job_finished"
    job: JobDetail
    job_kind: JobKind
    cleaned: bool  # no error: the job is marked once its batch is recorded (real runs)
    dry_run: bool
    jobs_done: int  # jobs finished so far in this run
    jobs_planned: int  # due jobs planned so far (grows while planning streams)
    bytes_so_far: int  # freed (or, dry, to be freed) so far in this run


class BatchRecorded(_Event):
    kind: Literal["batch_recorded"] = "batch_recorded"
    batch: int
    job_ids: list[str]  # jobs whose marks are now committed
    audit_rows: int


class RunFinished(_Event):
    kind: Literal["run_finished"] = "run_finished"
    outcome: Outcome
    report: RunSummary
    retained: int  # jobs within retention
    next_due_at: UtcTime | None  # when the next one becomes due
    stopped_by: str | None = None  # the signal that stopped the run (SIGINT, SIGTERM)
    never_cleaned: list[str] = Field(default_factory=list)  # one line per kind, examples
    clock_skew: str | None = None  # rows kept because their time is in the future
    attention: int = 0  # skips that need someone to look (hostile names, refusals)


Event = Annotated[
    RunStarted
    | JobStarted
    | PathRemoved
    | PathKept
    | JobSkipped
    | JobFinished
    | BatchRecorded
    | RunFinished,
    Field(discriminator="kind"),
]
EVENT_KINDS = (
    "run_started",
    "job_started",
    "path_removed",
    "path_kept",
    "job_skipped",
    "job_finished",
    "batch_recorded",
    "run_finished",
)
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)

Subscriber = Callable[[Any], None]


def parse_event(data: str | bytes | dict[str, Any]) -> Any:
    """An event back from its JSON (a line of ``run --events jsonl``) or its dict."""
    if isinstance(data, dict):
        return _ADAPTER.validate_python(data)
    return _ADAPTER.validate_json(data)


class Dispatcher:
    """Hands every event to each subscriber; a subscriber that raises is logged once (with
    its traceback at debug level), and the run goes on."""

    def __init__(self, subscribers: Iterable[Subscriber | None] = ()) -> None:
        self.subscribers = [s for s in subscribers if s is not None]
        self._failed: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.subscribers)

    def __call__(self, event: Any) -> None:
        for index, subscriber in enumerate(self.subscribers):
            try:
                subscriber(event)
            except Exception as error:  # a subscriber never breaks the run
                if index in self._failed:
                    continue
                self._failed.add(index)
                log.error(
                    "An event subscriber failed on %s (%r); further failures of it are not logged",
                    getattr(event, "kind", "?"),
                    error,
                )
                log.debug("subscriber traceback", exc_info=True)


def event_time(event: Any) -> datetime:
    at: datetime = event.at
    return at


__all__ = [
    "EVENT_KINDS",
    "BatchRecorded",
    "Dispatcher",
    "Event",
    "JobFinished",
    "JobSkipped",
    "JobStarted",
    "PathKept",
    "PathRemoved",
    "RunFinished",
    "RunStarted",
    "parse_event",
]

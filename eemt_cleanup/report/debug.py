"""``--debug`` (or ``EEMT_CLEANUP_LOG_LEVEL=DEBUG``): what the reference's "Debug Mode"
promises, as an event subscriber. Each file operation (every path removed, emptied or kept,
with its bytes and files), the time per job and per phase (planning, cleaning, recording),
and the peak memory of the run and its worker processes; the SQL executed is logged by
:func:`eemt_cleanup.store.db.connect` (sqlite3's trace callback) on the ``eemt_cleanup.sql``
logger. Every value is escaped by the log formatters, like every other line.
"""

from __future__ import annotations

import logging
import resource
from datetime import datetime
from typing import Any

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import job_word


class DebugView:
    """``on_event`` subscriber writing DEBUG lines to the ``eemt_cleanup`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("eemt_cleanup")
        self.started: datetime | None = None
        self.first_job: datetime | None = None
        self.last_job: datetime | None = None
        self.job_started: dict[str, datetime] = {}

    def __call__(self, event: Any) -> None:
        if not self.log.isEnabledFor(logging.DEBUG):
            return
        kind = event.kind
        if kind == "run_started":
            self.started = event.at
        elif kind == "job_started":
            self.job_started[event.job_id] = event.at
            self.first_job = self.first_job or event.at
        elif kind == "path_removed":
            verb = "measured" if event.dry_run else ("emptied" if event.emptied else "removed")
            self.log.debug(
                "file operation: %s %s (%s, %s%s%s)",
                verb,
                event.path,
                human_size(event.bytes),
                job_word(event.files, "file"),
                f"; kept {', '.join(event.kept)}" if event.kept else "",
                f"; {len(event.errors)} errors" if event.errors else "",
            )
        elif kind == "path_kept":
            self.log.debug("file operation: kept %s (%s)", event.path, event.why)
        elif kind == "job_finished":
            self.last_job = event.at
            began = self.job_started.pop(event.job.job_id, None)
            if began is not None:
                self.log.debug("job %s took %s", event.job.job_id, _duration(event.at - began))
        elif kind == "batch_recorded":
            self.log.debug(
                "batch %d committed: %d marks, %d audit rows",
                event.batch,
                len(event.job_ids),
                event.audit_rows,
            )
        elif kind == "run_finished":
            self._phases(event.at)

    def _phases(self, end: datetime) -> None:
        start = self.started or end
        first = self.first_job or end
        last = self.last_job or first
        self.log.debug(
            "time per phase: planning %s, cleaning %s, recording %s; total %s",
            _duration(first - start),
            _duration(last - first),
            _duration(end - last),
            _duration(end - start),
        )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        self.log.debug(
            "peak memory: %s in this process, %s in the largest worker process",
            human_size(own * 1024),
            human_size(workers * 1024),
        )


def _duration(delta: Any) -> str:
    seconds = max(0.0, delta.total_seconds())
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"

"""The runs the HTTP API starts: each on a thread of its own, through the library API, with
its live progress read from the run's events.

A request never runs a cleanup on the event loop: :meth:`RunManager.start` (called from a
worker thread of the server) starts the run's thread and returns once the run has either
taken the lock and started (``run_started``), or failed before it could (another run holds
the lock, a configuration or database error). So the answer to a request says truthfully
whether its run is under way, and a lock held elsewhere is a ``409``, never a ``202`` for a
run that then cannot start.

The engine's deletion workers are processes started with a fresh interpreter, so threads in
the server's process are safe. The run's thread is not a daemon: an interpreter that exits
waits for it to finish its jobs in hand and write its books (``stop_all`` asks it to stop
first). No FastAPI here.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eemt_cleanup.engine import RunOptions, StopFlag, run_cleanup
from eemt_cleanup.events import Dispatcher
from eemt_cleanup.http.models import Progress, RunState, RunStatus
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.timeparse import format_utc, utc_now

if TYPE_CHECKING:
    from eemt_cleanup.config.loader import LoadedConfig
    from eemt_cleanup.models import RunReport

log = logging.getLogger("eemt_cleanup")

# Finished runs whose reports are kept for GET /api/cleanup/runs/{id} (older ones are still
# in the run log, without their details).
KEEP_FINISHED = 50


class RunHandle:
    """One run started by the API: an event subscriber that keeps its progress, and its
    outcome once it is over. Read it with :meth:`status` (a consistent snapshot)."""

    def __init__(self, options: RunOptions, on_started: Callable[[RunHandle], None]) -> None:
        self.options = options
        self.stop = StopFlag()
        self.started = threading.Event()  # run_started seen, or the run failed before it
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        self.run_id: str | None = None
        self.dry_run = options.dry_run
        self.state: RunState = "running"
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.report: RunReport | None = None
        self.reports: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._progress = Progress()
        self._lock = threading.Lock()
        self._on_started = on_started

    # -- the event subscriber ----------------------------------------------------------

    def __call__(self, event: Any) -> None:
        kind = event.kind
        with self._lock:
            progress = self._progress
            progress.last_event = kind
            progress.last_event_at = event.at
            if kind == "run_started":
                self.run_id = event.run_id
                self.dry_run = event.dry_run
                self.started_at = format_utc(event.at)
            elif kind == "job_finished":
                progress.jobs_done = event.jobs_done
                progress.jobs_planned = event.jobs_planned
                progress.bytes_so_far = event.bytes_so_far
                progress.human_readable = human_size(event.bytes_so_far)
                progress.current_job = event.job.job_id
            elif kind == "batch_recorded":
                progress.batches_recorded += 1
                progress.jobs_recorded += len(event.job_ids)
        if kind == "run_started":
            self._on_started(self)
            self.started.set()

    # -- the outcome -------------------------------------------------------------------

    def finished(self, report: RunReport, reports: dict[str, Any] | None) -> None:
        with self._lock:
            self.report = report
            self.reports = reports
            self.run_id = report.run_id
            self.dry_run = report.dry_run
            self.started_at = self.started_at or format_utc(report.started_at)
            self.finished_at = format_utc(report.finished_at or utc_now())
            self.state = "finished"

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.error = error
            self.finished_at = format_utc(utc_now())
            self.state = "failed"

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def status(self) -> RunStatus:
        """What the run is at, now."""
        from eemt_cleanup.cli.exit_codes import exit_code
        from eemt_cleanup.report.escape import printable

        with self._lock:
            report = self.report
            return RunStatus(
                run_id=self.run_id or "",
                state=self.state,
                source="api",
                dry_run=self.dry_run,
                trigger=self.options.trigger,
                user=self.options.user,
                started_at=self.started_at,
                finished_at=self.finished_at,
                outcome=report.outcome if report is not None else None,
                exit_code=exit_code(report) if report is not None else None,
                progress=self._progress.model_copy(),
                result=report.summary() if report is not None else None,
                reports=self.reports,
                error=printable(str(self.error)) if self.error is not None else None,
            )


class RunManager:
    """Starts runs on threads of their own and keeps them (all running ones, the last
    ``keep`` finished ones) for their status. ``on_event`` is a subscriber of every run's
    events besides the API's own (e.g. the host application's progress display)."""

    def __init__(
        self,
        keep: int = KEEP_FINISHED,
        on_event: Callable[[Any], None] | None = None,
    ) -> None:
        self.keep = keep
        self.on_event = on_event
        self._runs: collections.OrderedDict[str, RunHandle] = collections.OrderedDict()
        self._lock = threading.Lock()

    def start(self, config: LoadedConfig, options: RunOptions) -> RunHandle:
        """Start a run of ``config`` and return its handle once it is under way or has
        failed to start (``handle.error``: LockedError, BusyError, ConfigError, ...).
        Blocks, so call it from a worker thread, never on the event loop."""
        handle = RunHandle(options, self._register)
        thread = threading.Thread(
            target=self._run, args=(handle, config), name="eemt-api-run", daemon=False
        )
        handle.thread = thread
        thread.start()
        handle.started.wait()
        return handle

    def _run(self, handle: RunHandle, config: LoadedConfig) -> None:
        from eemt_cleanup.report.log_lines import LogLines

        options = handle.options
        dry_run = options.dry_run or config.force_dry_run
        subscribers: list[Any] = [handle, self.on_event]
        outlets = None
        if not dry_run:
            # A real run tells the log (and the log file, where the server has one) what it
            # deletes, as the CLI does; a preview asked over HTTP is not worth a log line
            # per job.
            subscribers.append(LogLines())
            if config.settings.reports_wanted:
                from eemt_cleanup.outlets import Outlets

                outlets = Outlets(config, handle.stop)
                subscribers.append(outlets)
        try:
            report = run_cleanup(config, options, Dispatcher(subscribers), handle.stop)
        except Exception as error:
            from eemt_cleanup.errors import CleanupError

            if not isinstance(error, CleanupError):
                log.error("An API run failed unexpectedly: %r", error)
                log.debug("API run traceback", exc_info=True)
            handle.failed(error)
        else:
            reports = None
            if outlets is not None and outlets.result is not None:
                reports = outlets.result.json_keys()
            handle.finished(report, reports)
            self._register(handle)
        finally:
            handle.started.set()
            handle.done.set()
            self._prune()

    def _register(self, handle: RunHandle) -> None:
        if handle.run_id is None:
            return
        with self._lock:
            self._runs[handle.run_id] = handle

    def _prune(self) -> None:
        with self._lock:
            finished = [key for key, handle in self._runs.items() if handle.done.is_set()]
            for key in finished[: max(0, len(finished) - self.keep)]:
                del self._runs[key]

    def get(self, run_id: str) -> RunHandle | None:
        with self._lock:
            return self._runs.get(run_id)

    def running(self) -> list[RunHandle]:
        with self._lock:
            return [handle for handle in self._runs.values() if not handle.done.is_set()]

    def stop_all(self, timeout: float | None = None) -> bool:
        """Ask every running run to stop after its jobs in hand, and wait for them (at most
        ``timeout`` seconds in all). Returns whether all of them are done."""
        import time

        handles = self.running()
        for handle in handles:
            handle.stop.request()
        deadline = None if timeout is None else time.monotonic() + timeout
        for handle in handles:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if handle.thread is not None:
                handle.thread.join(left)
        return all(handle.done.is_set() for handle in handles)


__all__ = ["KEEP_FINISHED", "RunHandle", "RunManager"]

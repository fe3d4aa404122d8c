"""``eemt-cleanup run``: the main job."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from eemt_cleanup.cli.common import (
    BatchSizeOption,
    ConfigOption,
    DbOption,
    DebugOption,
    DryRunOption,
    EventsOption,
    FailedRetentionOption,
    JobsOption,
    JsonOption,
    QuietOption,
    ReportsOption,
    ResultsOption,
    RunLimitOption,
    SuccessRetentionOption,
    TempOption,
    TriggerOption,
    UploadsOption,
    VerboseOption,
    WorkersOption,
    check_run_flags,
    examples,
    handle_errors,
    run_overrides,
)

RUN_HELP = (
    "Clean every job whose data is past retention.\n\n"
    "Deletes its results/<id>/ directory, results/<id>_results.zip, temp/<id>/ and its "
    "upload (unless another job still needs it), keeps its database row, sets "
    "data_cleaned_at and writes audit rows. Pending, running and unknown-status jobs are "
    "never touched. Nothing outside the configured roots is ever deleted, symlinks are "
    "never followed, mount points never crossed.\n\n"
    "Exit codes: 0 done (or nothing to do), 1 finished but something failed, 2 usage, "
    "configuration or input error (nothing deleted), 75 another run holds the lock."
)

RUN_EPILOG = examples(
    "eemt-cleanup run --dry-run             # what would go, and how much space it frees",
    "eemt-cleanup run -c /srv/eemt/cleanup_config.yaml --quiet     # from cron",
    "eemt-cleanup run --failed-retention 24 --json     # keep failed jobs a day; JSON out",
    "eemt-cleanup run --job 3f2a... --job 9b1c... -v   # only these jobs (still by policy)",
    "EEMT_CLEANUP_DRY_RUN=true eemt-cleanup run        # forced dry run",
    "eemt-cleanup run --events jsonl | jq -c .kind     # events as they happen, for programs",
)


@handle_errors(json_arg="json_output")
def run(
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    success_retention: SuccessRetentionOption = None,
    failed_retention: FailedRetentionOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    job: JobsOption = None,
    limit: RunLimitOption = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
    events: EventsOption = None,
    trigger: TriggerOption = "cli",
    reports: ReportsOption = True,
) -> None:
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.engine import RunOptions

    check_run_flags(quiet=quiet, verbose=verbose, events=events, json_output=json_output)
    loaded = load_config(
        config_path=config,
        overrides=run_overrides(
            db_path,
            uploads_dir,
            results_dir,
            temp_dir,
            success_retention,
            failed_retention,
            workers,
            batch_size,
        ),
    )
    options = RunOptions(
        dry_run=dry_run,  # the engine adds EEMT_CLEANUP_DRY_RUN, and says it was forced
        job_ids=tuple(job or ()),
        limit=limit,
        trigger=trigger,
    )
    code = execute(
        loaded,
        options,
        json_output=json_output,
        verbose=verbose,
        quiet=quiet,
        events_jsonl=events is not None,
        debug=debug,
        reports=reports,
    )
    raise typer.Exit(code)


def execute(
    loaded: Any,
    options: Any,
    *,
    json_output: bool,
    verbose: bool,
    quiet: bool,
    rich: bool | None = None,
    events_jsonl: bool = False,
    debug: bool = False,
    reports: bool = True,
) -> int:
    """Run the engine with the right output for this terminal (or as ``rich`` says);
    return the exit code. The progress bar, the log lines and ``--events jsonl`` are
    subscribers of the run's events."""
    from eemt_cleanup.cli.exit_codes import error_exit_code, exit_code
    from eemt_cleanup.engine import StopFlag, run_cleanup
    from eemt_cleanup.errors import EXIT_USAGE, CleanupError
    from eemt_cleanup.events import Dispatcher
    from eemt_cleanup.fs.worker import raise_fd_limit
    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.report.log_lines import LogLines
    from eemt_cleanup.report.logs import OutputMode, close_logging, configure_logging, use_rich

    settings = loaded.settings
    machine = json_output or events_jsonl  # stdout is for a program: logs go to stderr
    if rich is None:
        rich = use_rich() and not machine and not quiet
    level = "DEBUG" if debug else settings.logging.level
    mode = OutputMode(rich=rich, json=machine, quiet=quiet, verbose=verbose, level=level)
    dry_run = options.dry_run or loaded.force_dry_run
    # The configured path, not the resolved one: the log handler resolves it itself and
    # refuses a symlink someone else could have planted on the way.
    log_file = None if dry_run else Path(settings.paths.logs) / settings.logging.file
    console = None
    if mode.rich:
        from eemt_cleanup.report.console import make_console

        console = make_console()
    configure_logging(mode, log_file, console)
    # This process is ours: deep trees deleted in it need a descriptor per level.
    raise_fd_limit()
    stop = StopFlag()
    previous = _install_signal_handlers(stop)
    subscribers: list[Any] = [LogLines()]
    if level == "DEBUG":
        from eemt_cleanup.report.debug import DebugView
        from eemt_cleanup.store.db import TRACE_SQL

        subscribers.append(DebugView())
        TRACE_SQL.enabled = True
    if events_jsonl:
        subscribers.append(_jsonl_writer(sys.stdout))
    outlets = None
    if reports and settings.reports_wanted and not dry_run:
        # Usage sample, alerts, metrics textfile, notices: after the run, never changing
        # its outcome. Not even imported when none is configured.
        from eemt_cleanup.outlets import Outlets

        outlets = Outlets(loaded, stop)
        subscribers.append(outlets)
    try:
        try:
            if console is not None:
                from eemt_cleanup.report.tables import progress_bar, render_report

                with progress_bar(console, dry_run) as progress:
                    report = run_cleanup(
                        loaded, options, Dispatcher([*subscribers, progress]), stop
                    )
                render_report(console, report, verbose=verbose)
            else:
                report = run_cleanup(loaded, options, Dispatcher(subscribers), stop)
        except CleanupError as error:
            # A run that could not start (a root gone with its mount, a broken database) is
            # announced as a failure; another run holding the lock is not (exit 75).
            code = error_exit_code(error)
            if outlets is not None and code == EXIT_USAGE:
                outlets.after_error(printable(str(error)), code)
            raise
        if json_output:
            from eemt_cleanup.report.json_out import dumps, report_to_dict

            out = outlets.result if outlets is not None else None
            print(dumps(report_to_dict(report, out)))
        return exit_code(report)
    finally:
        _restore_signal_handlers(previous)
        close_logging()


def _jsonl_writer(stream: Any) -> Any:
    """An event subscriber writing one JSON line per event, flushed at once (a reader
    sees each event as it happens)."""
    from eemt_cleanup.report.json_out import event_line

    def write(event: Any) -> None:
        stream.write(event_line(event) + "\n")
        stream.flush()

    return write


def _install_signal_handlers(stop: Any) -> dict[int, Any]:
    def request(signal_number: int, _frame: FrameType | None) -> None:
        if stop.requested:
            # A second signal means "now": no waiting for the job in hand. Every state a
            # kill can leave is one the next run completes (data goes before its mark, the
            # open transaction is rolled back, the lock dies with us, workers die with us).
            with contextlib.suppress(OSError):  # stderr may be a pipe nobody reads
                os.write(2, b"eemt-cleanup: second signal: stopping now; the next run finishes\n")
            os._exit(128 + signal_number)
        stop.request(signal_number)

    previous: dict[int, Any] = {}
    for number in (signal.SIGTERM, signal.SIGINT):
        previous[number] = signal.signal(number, request)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)

"""What every command shares: the path options, config loading, and error → exit mapping."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from eemt_cleanup.cli.exit_codes import error_exit_code
from eemt_cleanup.errors import EXIT_PARTIAL, CleanupError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# A str, not a Path: Path("") is ".", and an empty --config must be refused, not read as
# the working directory.
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        show_default=False,
        help="Config file (else $EEMT_CLEANUP_CONFIG, ./cleanup_config.yaml, "
        "/etc/eemt-cleanup/cleanup_config.yaml).",
    ),
]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db-path", metavar="PATH", show_default=False, help="The jobs database (paths.database)."
    ),
]
UploadsOption = Annotated[
    str | None,
    typer.Option(
        "--uploads-dir", metavar="DIR", show_default=False, help="Uploads root (paths.uploads)."
    ),
]
ResultsOption = Annotated[
    str | None,
    typer.Option(
        "--results-dir", metavar="DIR", show_default=False, help="Results root (paths.results)."
    ),
]
TempOption = Annotated[
    str | None,
    typer.Option("--temp-dir", metavar="DIR", show_default=False, help="Temp root (paths.temp)."),
]
SuccessRetentionOption = Annotated[
    float | None,
    typer.Option(
        "--success-retention",
        metavar="HOURS",
        show_default=False,
        help="Hours to keep successful jobs' data (default 168).",
    ),
]
FailedRetentionOption = Annotated[
    float | None,
    typer.Option(
        "--failed-retention",
        metavar="HOURS",
        show_default=False,
        help="Hours to keep failed jobs' data (default 12).",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", metavar="N", show_default=False, help="Parallel deletion workers (default 4)."
    ),
]
BatchSizeOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        metavar="N",
        show_default=False,
        help="Jobs marked and audited per transaction (default 100).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
DebugOption = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Debug lines (for run: the SQL executed, each file operation, time per phase "
        "and per job, peak memory) and a traceback for unexpected errors.",
    ),
]

# The flags of ``run`` that set no configuration key; ``config show`` accepts them too, so a
# run's command line can be pasted after it.
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would be deleted; change nothing.")
]
JobsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--job",
        metavar="ID",
        show_default=False,
        help="Only this job (repeatable); still subject to the policy.",
    ),
]
RunLimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        min=1,
        show_default=False,
        help="Clean at most N jobs, the longest overdue first.",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Per-job table and debug lines.")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing unless something failed.")
]
EventsOption = Annotated[
    str | None,
    typer.Option(
        "--events",
        metavar="FORMAT",
        show_default=False,
        help="Stream the run's events on stdout as they happen: 'jsonl' (one JSON object "
        "a line, flushed per event; log lines go to stderr).",
    ),
]
TriggerOption = Annotated[
    str,
    typer.Option(
        "--trigger",
        metavar="LABEL",
        help="Who started the run, recorded in the run log (cron, systemd, kubernetes...).",
    ),
]

ReportsOption = Annotated[
    bool,
    typer.Option(
        "--reports/--no-reports",
        help="After a real run: the usage sample, alerts, metrics textfile and notices "
        "(--no-reports: the caller does them, as eemt-cleanup daemon does).",
    ),
]


def check_run_flags(
    *, quiet: bool, verbose: bool, events: str | None, json_output: bool = False
) -> None:
    """The combinations of ``run``'s flags that make no sense (raises ConfigError)."""
    if quiet and verbose:
        raise ConfigError("--quiet and --verbose contradict each other")
    if events is not None and events != "jsonl":
        raise ConfigError(f"--events {events!r}: the only format is 'jsonl'")
    if events is not None and json_output:
        raise ConfigError(
            "--events jsonl and --json both write stdout: the run_finished event carries "
            "the --json object"
        )


def examples(*lines: str, after: str = "") -> str:
    """An epilog of example command lines, kept verbatim by the help formatter (``\b``)."""
    text = "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
    return text + (f"\n\n{after}" if after else "")


def path_overrides(
    db_path: str | None, uploads_dir: str | None, results_dir: str | None, temp_dir: str | None
) -> dict[str, tuple[Any, str]]:
    """Command-line path flags as config overrides (flag name kept for ``config show``)."""
    return {
        "paths.database": (db_path, "--db-path"),
        "paths.uploads": (uploads_dir, "--uploads-dir"),
        "paths.results": (results_dir, "--results-dir"),
        "paths.temp": (temp_dir, "--temp-dir"),
    }


def run_overrides(
    db_path: str | None,
    uploads_dir: str | None,
    results_dir: str | None,
    temp_dir: str | None,
    success_retention: float | None,
    failed_retention: float | None,
    workers: int | None,
    batch_size: int | None,
) -> dict[str, tuple[Any, str]]:
    """The flags of ``run`` that set configuration keys, as overrides (flag name kept for
    ``config show``)."""
    overrides = path_overrides(db_path, uploads_dir, results_dir, temp_dir)
    overrides.update(
        {
            "retention.successful_jobs.hours": (success_retention, "--success-retention"),
            "retention.failed_jobs.hours": (failed_retention, "--failed-retention"),
            "performance.max_workers": (workers, "--workers"),
            "performance.batch_size": (batch_size, "--batch-size"),
        }
    )
    if workers is not None and workers > 1:
        overrides["performance.parallel_delete"] = (True, "--workers")
    return overrides


def fail(message: str, code: int) -> typer.Exit:
    """Print one line on stderr (values in it escaped) and return the Exit to raise."""
    from eemt_cleanup.report.escape import printable

    # Values in core messages are often quoted with repr (backslashes already escaped).
    print(f"eemt-cleanup: error: {printable(message, backslashes=False)}", file=sys.stderr)
    return typer.Exit(code)


def handle_errors(debug_arg: str = "debug", json_arg: str | None = None) -> Callable[[F], F]:
    """Map domain errors to one stderr line and their exit code; never show a traceback
    unless ``--debug``. With ``--json`` the error is also one JSON object on stdout."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except CleanupError as error:
                if json_arg and kwargs.get(json_arg):
                    _json_error(str(error))
                raise fail(str(error), error_exit_code(error)) from None
            except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
                raise
            except Exception as error:  # noqa: BLE001 - the last line of defence
                if kwargs.get(debug_arg):
                    traceback.print_exc()
                if json_arg and kwargs.get(json_arg):
                    _json_error(f"unexpected error: {error}")
                raise fail(
                    f"unexpected error: {error} (run with --debug for the traceback)", EXIT_PARTIAL
                ) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def _json_error(message: str) -> None:
    from eemt_cleanup.report.json_out import dumps

    print(dumps({"success": False, "errors": [message]}))


def own_output_only() -> None:
    """For commands that print what the core did themselves (notify, status): keep the
    core's warnings about the same thing (a channel that failed) from also reaching stderr
    through Python's last-resort handler."""
    import logging

    logger = logging.getLogger("eemt_cleanup")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())

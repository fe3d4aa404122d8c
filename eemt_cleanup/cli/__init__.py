"""The ``eemt-cleanup`` command line (Typer). Commands parse, call one core function,
render, and exit with the documented code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
import typer.main

from eemt_cleanup import __version__
from eemt_cleanup.cli import (
    daemon_cmd,
    info_cmds,
    metrics_cmd,
    notify_cmd,
    report_cmd,
    run_cmd,
    serve_cmd,
)
from eemt_cleanup.cli.common import examples
from eemt_cleanup.cli.config_cmd import config_app
from eemt_cleanup.cli.streams import guard_standard_streams
from eemt_cleanup.errors import EXIT_PARTIAL

try:  # Typer keeps its own copy of Click; before it did, it raised Click's own exceptions.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older Typer
    from click.exceptions import (  # type: ignore[assignment]
        ClickException,
        NoArgsIsHelpError,
        UsageError,
    )

PROGRAM = "eemt-cleanup"

app = typer.Typer(
    name="eemt-cleanup",
    help="Safe, fast, honest cleanup of EEMT web-interface job data past its retention.",
    epilog=examples(
        "eemt-cleanup run --dry-run                     # what would go, how much it frees",
        "eemt-cleanup run                               # clean it",
        "eemt-cleanup run -c /srv/eemt/cleanup_config.yaml --quiet   # from cron",
        "eemt-cleanup status                            # disk use per status, what is due",
        "eemt-cleanup daemon                            # run by itself, on schedule.cron",
        "eemt-cleanup config init && eemt-cleanup config show",
        after="Exit codes: 0 ok, 1 something failed, 2 bad input (nothing deleted), 75 locked.",
    ),
    # Plain help: it needs neither Rich nor Markdown, so --help starts fast.
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)
app.command("run", help=run_cmd.RUN_HELP, epilog=run_cmd.RUN_EPILOG)(run_cmd.run)
app.command("status", epilog=info_cmds.STATUS_EPILOG)(info_cmds.status)
app.command("history", epilog=info_cmds.HISTORY_EPILOG)(info_cmds.history)
app.command("audit", epilog=info_cmds.AUDIT_EPILOG)(info_cmds.audit)
app.command("metrics", epilog=metrics_cmd.METRICS_EPILOG)(metrics_cmd.metrics)
app.command("notify", epilog=notify_cmd.NOTIFY_EPILOG)(notify_cmd.notify)
app.command("report", epilog=report_cmd.REPORT_EPILOG)(report_cmd.report)
app.command("daemon", help=daemon_cmd.DAEMON_HELP, epilog=daemon_cmd.DAEMON_EPILOG)(
    daemon_cmd.daemon
)
app.command("schedule", epilog=daemon_cmd.SCHEDULE_EPILOG)(daemon_cmd.schedule)
app.command("health", epilog=daemon_cmd.HEALTH_EPILOG)(daemon_cmd.health)
app.command("serve", epilog=serve_cmd.SERVE_EPILOG)(serve_cmd.serve)
app.add_typer(config_app, name="config")


def _version(value: bool) -> None:
    if value:
        print(f"eemt-cleanup {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Safe, fast, honest cleanup of EEMT web-interface job data past its retention."""


def main() -> None:
    """Console-script entry point.

    The standard streams are guarded first, before anything opens a file (see
    :mod:`eemt_cleanup.cli.streams`): output that cannot be written never changes the run.
    The process ends with ``os._exit`` once the command is done: by then every database
    connection, log file and worker has been closed by the command itself, and letting the
    interpreter tear down its objects one by one would add 40-70 ms to every run.
    """
    guard_standard_streams()
    exit_now(invoke(sys.argv[1:]))


def invoke(args: Sequence[str]) -> int:
    """Run the command line ``args``; return its exit status.

    Click's own handling of a bad command line (a usage block and ``Error: ...`` over several
    lines) is replaced by the project's: one line on stderr naming the help to read, exit 2,
    and with ``--json`` one JSON error object on stdout. ``--help``, ``--version``, a group
    called without a command (its help, exit 2) and the commands' exit codes are Click's.
    """
    command = typer.main.get_command(app)
    try:
        result: Any = command.main(args=list(args), standalone_mode=False)
    except SystemExit as done:
        return exit_status(done.code)
    except NoArgsIsHelpError as shown:
        shown.show()
        return shown.exit_code
    except UsageError as error:
        hint = f"see '{command_path(command, args, error.ctx)} --help'"
        return usage_error(f"{error.format_message()} ({hint})", error.exit_code, args)
    except ClickException as error:
        return usage_error(error.format_message(), error.exit_code, args)
    except typer.Abort:
        return usage_error("aborted", EXIT_PARTIAL, args)
    # Non-standalone Click returns a command's typer.Exit code, or what the command returned.
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def usage_error(message: str, code: int, args: Sequence[str]) -> int:
    """Print ``message`` as the one error line (and, with ``--json``, the JSON error object);
    return ``code``. The message quotes the command line, so it is escaped."""
    from eemt_cleanup.report.escape import printable

    line = printable(message)
    if "--json" in args:
        from eemt_cleanup.report.json_out import dumps

        print(dumps({"success": False, "errors": [line]}))
    print(f"{PROGRAM}: error: {line}", file=sys.stderr)
    return code


def command_path(root: Any, args: Sequence[str], context: Any = None) -> str:
    """``eemt-cleanup config show``: the (sub)command whose line ``args`` is wrong.

    Click's ``context`` of the error says it when there is one. An option missing its value
    is reported without one: then it is read from the arguments (the groups of this app take
    only flags, so each word that is not an option names the next subcommand, until one is
    unknown).
    """
    if context is not None:
        names = []
        while context.parent is not None:
            names.append(context.info_name)
            context = context.parent
        return " ".join([PROGRAM, *reversed(names)])
    words = [PROGRAM]
    command = root
    for arg in args:
        if arg == "--":
            break
        if arg.startswith("-"):
            continue
        subcommands = getattr(command, "commands", None)
        if not subcommands or arg not in subcommands:
            break
        words.append(arg)
        command = subcommands[arg]
    return " ".join(words)


def exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    from eemt_cleanup.report.escape import printable

    print(printable(str(code)), file=sys.stderr)
    return 1


def exit_now(status: int) -> NoReturn:
    """Flush what is buffered and end the process without tearing the interpreter down."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # Guarded streams never fail; output that cannot be written is not the run's outcome.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(status)

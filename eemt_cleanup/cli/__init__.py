"""The ``eemt-cleanup`` command line (Typer). Commands parse, call one core function,
render, and exit with the documented code."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import typer

from eemt_cleanup import __version__
from eemt_cleanup.cli import info_cmds, run_cmd
from eemt_cleanup.cli.common import examples
from eemt_cleanup.cli.config_cmd import config_app

app = typer.Typer(
    name="eemt-cleanup",
    help="Safe, fast, honest cleanup of EEMT web-interface job data past its retention.",
    epilog=examples(
        "eemt-cleanup run --dry-run                     # what would go, how much it frees",
        "eemt-cleanup run                               # clean it",
        "eemt-cleanup run -c /srv/eemt/cleanup_config.yaml --quiet   # from cron",
        "eemt-cleanup status                            # disk use per status, what is due",
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

    The process ends with ``os._exit`` once the command is done: by then every database
    connection, log file and worker has been closed by the command itself, and letting the
    interpreter tear down its objects one by one would add 40-70 ms to every run.
    """
    try:
        app()
        status = 0
    except SystemExit as done:
        status = exit_status(done.code)
    exit_now(status)


def exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(status: int) -> NoReturn:
    """Flush what is buffered and end the process without tearing the interpreter down."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # e.g. stdout was a pipe closed by the reader
            status = status or 1
    os._exit(status)

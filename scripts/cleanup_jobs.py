#!/usr/bin/env python3
"""Compatibility entry point for deployments that call ``python scripts/cleanup_jobs.py``.

It keeps the old script's flags and maps them onto the same engine as ``eemt-cleanup run``
(same safety rules, database writes, log file and exit codes). Output is always plain log
lines, as cron and ``docker exec`` callers expect. Run with a Python that lacks the package
or one of its dependencies, it prints one line naming what is missing and the Python to run
it with, and exits 2.

    python scripts/cleanup_jobs.py --dry-run --verbose
    python scripts/cleanup_jobs.py --db-path /app/jobs.db --uploads-dir /app/uploads \\
        --results-dir /app/results --parallel --workers 4
    python scripts/cleanup_jobs.py --skip-large --size-threshold 10G
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[1]
try:
    import eemt_cleanup  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(CHECKOUT))

# Until the install is known to be complete, only the standard library is imported here: a
# Python without the package or its dependencies gets one line and exit 2, not a traceback.
EXIT_USAGE = 2
MINIMUM_PYTHON = (3, 11)  # pyproject.toml's requires-python
# The top-level modules of pyproject.toml's [project] dependencies, in its order.
DEPENDENCY_MODULES = (
    "typer",
    "rich",
    "sqlite_utils",
    "humanize",
    "watchdog",
    "yaml",
    "pydantic",
    "cronsim",
    "tzlocal",
    "prometheus_client",
)
INSTALLED_CLI = "/usr/local/bin/eemt-cleanup"  # where README "Installing for production" puts it
EXAMPLE_PYTHON = "/opt/eemt-cleanup/bin/python"

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10G`` → 10737418240 (1024-based; ``10GB``, ``10GiB``, ``512M``, ``1.5T``, bytes)."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 10G, 500M, 1.5T)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cleanup_jobs.py",
        description="Clean EEMT job data past retention (compatibility wrapper around "
        "'eemt-cleanup run'). Exit codes: 0 ok, 1 something failed, 2 bad input, 75 locked.",
    )
    parser.add_argument("--config", help="config file (default: discovery as eemt-cleanup)")
    parser.add_argument("--db-path", help="SQLite jobs database (default ./jobs.db)")
    parser.add_argument("--uploads-dir", help="uploaded DEMs (default ./uploads)")
    parser.add_argument("--results-dir", help="job outputs (default ./results)")
    parser.add_argument("--temp-dir", help="job working files (default ./temp)")
    parser.add_argument(
        "--success-retention",
        type=float,
        metavar="HOURS",
        help="hours to keep successful jobs' data (default 168)",
    )
    parser.add_argument(
        "--failed-retention",
        type=float,
        metavar="HOURS",
        help="hours to keep failed jobs' data (default 12)",
    )
    parser.add_argument("--dry-run", action="store_true", help="preview; delete nothing")
    parser.add_argument("--verbose", action="store_true", help="more detail")
    parser.add_argument("--parallel", action="store_true", help="delete with several threads")
    parser.add_argument("--workers", type=positive_int, metavar="N", help="threads (default 4)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="jobs per database transaction (default 100)",
    )
    parser.add_argument(
        "--skip-large",
        action="store_true",
        help="defer jobs larger than --size-threshold (default 10G), reported",
    )
    parser.add_argument(
        "--size-threshold",
        type=parse_size,
        metavar="SIZE",
        help="size for --skip-large, e.g. 10G or 500M (implies --skip-large)",
    )
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, tuple[Any, str]]:
    overrides: dict[str, tuple[Any, str]] = {
        "paths.database": (args.db_path, "--db-path"),
        "paths.uploads": (args.uploads_dir, "--uploads-dir"),
        "paths.results": (args.results_dir, "--results-dir"),
        "paths.temp": (args.temp_dir, "--temp-dir"),
        "retention.successful_jobs.hours": (args.success_retention, "--success-retention"),
        "retention.failed_jobs.hours": (args.failed_retention, "--failed-retention"),
        "performance.max_workers": (args.workers, "--workers"),
        "performance.batch_size": (args.batch_size, "--batch-size"),
        "logging.level": ("DEBUG" if args.debug else None, "--debug"),
    }
    if args.parallel:
        overrides["performance.parallel_delete"] = (True, "--parallel")
    return overrides


def _shown(text: str) -> str:
    """``text`` quoted for a shell, control characters as backslash escapes."""
    quoted = shlex.quote(text)
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in quoted)


def missing_requirement() -> str | None:
    """What this Python lacks to run eemt-cleanup (a too old version, or the first module of
    the package or of its dependencies it cannot find), or None when nothing is missing."""
    if sys.version_info < MINIMUM_PYTHON:
        found = ".".join(map(str, sys.version_info[:3]))
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        return f"it needs Python {wanted} or later, this is {found}"
    for name in ("eemt_cleanup", *DEPENDENCY_MODULES):
        try:
            found_spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found_spec = None
        if found_spec is None:
            return f"no module named {name!r}"
    return None


def installed_python() -> str | None:
    """The interpreter of an installed ``eemt-cleanup`` (on PATH, else the documented path),
    read from its ``#!`` line; None when there is none, it is gone, or it is this one."""
    cli = shutil.which("eemt-cleanup") or INSTALLED_CLI
    try:
        with open(cli, "rb") as file:
            first_line = file.readline(4096)
    except OSError:
        return None
    words = first_line[2:].decode(errors="replace").split() if first_line[:2] == b"#!" else []
    if not words or not os.path.isabs(words[0]) or "python" not in os.path.basename(words[0]):
        return None
    if not os.access(words[0], os.X_OK):  # a stale program whose environment is gone
        return None
    # One environment is one bin directory (a venv's python is a symlink to the system's).
    if os.path.dirname(os.path.abspath(words[0])) == os.path.dirname(sys.executable):
        return None
    return words[0]


def not_installed_line(reason: str) -> str:
    """The one line that tells how to run this script when this Python cannot run it."""
    script = _shown(sys.argv[0] if sys.argv and sys.argv[0] else str(Path(__file__)))
    head = f"cleanup_jobs.py: error: eemt-cleanup is not installed for {_shown(sys.executable)}"
    python = installed_python()
    if python is not None:
        return f"{head} ({reason}): run this script with the Python of the install: " + (
            f"{_shown(python)} {script}"
        )
    venv = EXAMPLE_PYTHON.removesuffix("/bin/python")
    source = _shown(str(CHECKOUT)) if (CHECKOUT / "pyproject.toml").is_file() else "CHECKOUT"
    return (
        f"{head} ({reason}): run this script with the Python of the install, e.g. "
        f"{EXAMPLE_PYTHON} {script}, or install it (README.md, 'Installing for production'): "
        f"python3 -m venv {venv} && {venv}/bin/pip install {source}"
    )


def import_failure(error: ImportError) -> str:
    """The reason for :func:`not_installed_line` when a module was found but did not import."""
    return f"cannot import {error.name or 'a module'}: {error}"


def report_not_installed(reason: str) -> int:
    """Print :func:`not_installed_line` on stderr (if there is one) and return exit 2."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):  # a broken stderr: the exit code says it
            print(not_installed_line(reason), file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    reason = missing_requirement()
    if reason is not None:
        return report_not_installed(reason)
    try:
        from eemt_cleanup.cli.streams import guard_standard_streams
        from eemt_cleanup.errors import EXIT_PARTIAL, CleanupError
        from eemt_cleanup.report.escape import printable
    except ImportError as error:  # found, but it does not import (a broken or foreign install)
        return report_not_installed(import_failure(error))

    # First, before anything opens a file: output that cannot be written (closed fds, a
    # reader that went away, a locale without the names' characters) never changes the run.
    guard_standard_streams()
    args = build_parser().parse_args(argv)
    try:
        from eemt_cleanup.cli.exit_codes import error_exit_code
        from eemt_cleanup.cli.run_cmd import execute
        from eemt_cleanup.config.loader import load_config
        from eemt_cleanup.engine import RunOptions
    except ImportError as error:
        return report_not_installed(import_failure(error))

    threshold = args.size_threshold
    if args.skip_large and threshold is None:
        threshold = parse_size("10G")
    try:
        loaded = load_config(config_path=args.config, overrides=overrides_from(args))
        options = RunOptions(
            dry_run=args.dry_run,  # the engine adds EEMT_CLEANUP_DRY_RUN and says it was forced
            size_threshold=threshold,
            trigger="cleanup_jobs.py",
        )
        return execute(
            loaded,
            options,
            json_output=False,
            verbose=args.verbose or args.debug,
            quiet=False,
            rich=False,
        )
    except CleanupError as error:
        print(
            f"cleanup_jobs.py: error: {printable(str(error), backslashes=False)}", file=sys.stderr
        )
        return error_exit_code(error)
    except Exception as error:  # noqa: BLE001 - never a traceback unless --debug
        if args.debug:
            traceback.print_exc()
        message = printable(str(error), backslashes=False)
        print(f"cleanup_jobs.py: error: unexpected error: {message}", file=sys.stderr)
        return EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "parse_size"]

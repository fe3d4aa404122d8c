#!/usr/bin/env python3
"""Compatibility entry point for deployments that call ``python scripts/cleanup_jobs.py``.

It keeps the old script's flags and maps them onto the same engine as ``eemt-cleanup run``
(same safety rules, database writes, log file and exit codes). Output is always plain log
lines, as cron and ``docker exec`` callers expect.

    python scripts/cleanup_jobs.py --dry-run --verbose
    python scripts/cleanup_jobs.py --db-path /app/jobs.db --uploads-dir /app/uploads \\
        --results-dir /app/results --parallel --workers 4
    python scripts/cleanup_jobs.py --skip-large --size-threshold 10G
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path
from typing import Any

try:
    import eemt_cleanup  # noqa: F401
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eemt_cleanup.errors import EXIT_PARTIAL, CleanupError
from eemt_cleanup.report.escape import printable

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


def main(argv: list[str] | None = None) -> int:
    from eemt_cleanup.cli.streams import guard_standard_streams

    # First, before anything opens a file: output that cannot be written (closed fds, a
    # reader that went away, a locale without the names' characters) never changes the run.
    guard_standard_streams()
    args = build_parser().parse_args(argv)
    from eemt_cleanup.cli.run_cmd import execute
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.engine import RunOptions

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
        return error.exit_code
    except Exception as error:  # noqa: BLE001 - never a traceback unless --debug
        if args.debug:
            traceback.print_exc()
        message = printable(str(error), backslashes=False)
        print(f"cleanup_jobs.py: error: unexpected error: {message}", file=sys.stderr)
        return EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "parse_size"]

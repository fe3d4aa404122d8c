"""The one mapping from what happened to the documented exit codes (SPEC §5).

The engine reports an :class:`~eemt_cleanup.models.Outcome` and the core raises
:class:`~eemt_cleanup.errors.CleanupError` subclasses; only here do they become numbers:
the CLI exits with them, and the run log's ``exit_code`` column records the same number.
"""

from __future__ import annotations

import signal
from typing import Any

from eemt_cleanup.errors import (
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    BusyError,
    CleanupError,
    LockedError,
)

# The values of models.Outcome (a StrEnum), compared as text: --help must not import the
# pydantic models just to know exit codes.
DONE, STOPPED = "done", "stopped"


def outcome_exit_code(outcome: str, stopped_by: int | None = None) -> int:
    """0 done, 1 partial; a run stopped by a signal exits 128 + its number (130 for
    SIGINT, 143 for SIGTERM), one stopped by its caller exits 1."""
    if outcome == STOPPED:
        return 128 + stopped_by if stopped_by else EXIT_PARTIAL
    return EXIT_OK if outcome == DONE else EXIT_PARTIAL


def exit_code(report: Any) -> int:
    """The exit code of a :class:`~eemt_cleanup.models.RunReport`."""
    return outcome_exit_code(report.outcome, report.stopped_by)


def error_exit_code(error: BaseException) -> int:
    """75 for contention (another run holds the lock, the database stayed busy), 2 for
    every other error the core raises on purpose (usage, configuration, input)."""
    if isinstance(error, LockedError | BusyError):
        return EXIT_LOCKED
    if isinstance(error, CleanupError):
        return EXIT_USAGE
    return EXIT_PARTIAL


def signal_name(number: int | None) -> str | None:
    """``SIGINT`` for 2 (signals are named for people, not numbered)."""
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

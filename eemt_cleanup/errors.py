"""The domain errors raised by the core, and the exit codes they map to.

Commands never print tracebacks: ``cli`` maps each of these to one line on stderr and
the documented exit code.
"""

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CleanupError(Exception):
    """Base of every error the core raises on purpose."""

    exit_code = EXIT_USAGE


class ConfigError(CleanupError):
    """A configuration value (file, environment or flag) is unknown, mistyped or impossible."""


class DatabaseError(CleanupError):
    """The database is missing, corrupt, foreign, or lacks the columns we need."""


class UnsafePathError(CleanupError):
    """A path that must never be deleted was about to be (a safety rule refused it)."""


class LockedError(CleanupError):
    """Another run holds the exclusive lock."""

    exit_code = EXIT_LOCKED

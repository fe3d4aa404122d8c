"""The domain errors raised by the core, and the exit code numbers of SPEC §5.

Commands never print tracebacks: ``cli`` maps each of these to one line on stderr and the
documented exit code (the mapping is ``cli/exit_codes.py``, and only there).
"""

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class CleanupError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(CleanupError):
    """A configuration value (file, environment or flag) is unknown, mistyped or impossible."""


class DatabaseError(CleanupError):
    """The database is missing, corrupt, foreign, or lacks the columns we need."""


class LockPathError(DatabaseError):
    """The database cannot be opened to take the run lock (missing, a directory, a FIFO, a
    planted symlink, permission denied): a setup problem, not contention (exit 2)."""


class LockedError(CleanupError):
    """Another live run holds the exclusive lock: try again later."""


class BusyError(CleanupError):
    """Another writer kept the database locked past the busy timeout before anything was
    deleted (also during migrations): try again later."""

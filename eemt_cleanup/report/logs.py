"""How a run talks to people off a terminal, and the log file.

Tables and progress bars only on a terminal (not with ``TERM=dumb``; ``NO_COLOR`` drops
colour only); off a terminal every line is plain text, which is what cron mails. This
module imports no Rich, so a plain run starts fast; :mod:`eemt_cleanup.report.tables` has
the Rich side.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from eemt_cleanup.fs.safe_open import (
    UnsafeFileError,
    make_directories,
    open_directory,
    open_regular,
    trusted_path,
)
from eemt_cleanup.report.escape import printable

LOGGER = "eemt_cleanup"
FILE_FORMAT = "%(asctime)s %(levelname)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def use_rich(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stdout) is a terminal that can show tables and a progress bar.

    ``NO_COLOR`` removes colour only (Rich honours it: tables keep their layout); off a
    terminal, or with ``TERM=dumb``, output is plain lines."""
    stream = stream or sys.stdout
    if os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class ConsoleFormatter(logging.Formatter):
    """INFO lines as they are (``[DRY RUN] Would ...``); others prefixed with their level.
    Values from rows and directory entries are escaped (no control character, no newline
    a row could use to forge a line)."""

    def format(self, record: logging.LogRecord) -> str:
        message = printable(record.getMessage())
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname}: {message}"


class FileFormatter(logging.Formatter):
    """``2024-01-20 02:00:01 INFO: ...``, escaped like the console: one record, one line."""

    def __init__(self) -> None:
        super().__init__(FILE_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class Threshold(logging.Filter):
    """Records at ``level`` or above, and those logged with ``extra={"always": True}``
    (shown even under --quiet: data kept forever, a forced dry run)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or bool(getattr(record, "always", False))


@dataclass(frozen=True)
class OutputMode:
    """The output choices of one command invocation."""

    rich: bool
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    level: str = "INFO"


class ConsolePrintHandler(logging.Handler):
    """Log records printed through a Rich console, so they appear above a live progress bar.
    Printed as Text: never parsed for markup or emoji codes."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        style = "red" if record.levelno >= logging.ERROR else "yellow"
        self.console.print(Text(self.format(record), style=style))


def configure_logging(mode: OutputMode, log_file: Path | None, console: Any = None) -> None:
    """Attach the console and file handlers.

    On a terminal (``console`` given) only warnings and errors are printed, through Rich;
    otherwise plain lines go to stdout (stderr with ``--json``) at the configured level.
    Records marked ``always`` are printed even under --quiet.
    """
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    logger.propagate = False
    # A closed pipe (``... | head``) must not print logging tracebacks.
    logging.raiseExceptions = False
    # Our formats show neither the caller's file and line nor thread or process names: do not
    # collect them for every record (the logging HOWTO's "Optimization" settings).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    level = logging.getLevelName(mode.level)
    if mode.quiet:
        console_level = logging.ERROR
    elif level <= logging.DEBUG:
        console_level = logging.DEBUG  # --debug: everything, on a terminal too
    elif console is not None:
        console_level = logging.WARNING
    elif mode.verbose:
        console_level = logging.DEBUG
    else:
        console_level = level
    handler: logging.Handler
    if console is not None:
        handler = ConsolePrintHandler(console)
    else:
        handler = logging.StreamHandler(sys.stderr if mode.json else sys.stdout)
    handler.addFilter(Threshold(console_level))
    handler.setFormatter(ConsoleFormatter())
    logger.addHandler(handler)
    wanted = [console_level, logging.WARNING]  # WARNING: the records marked "always"
    if log_file is not None:
        file_handler = LogFileHandler(log_file)
        file_handler.setLevel(level)
        file_handler.setFormatter(FileFormatter())
        logger.addHandler(file_handler)
        wanted.append(level)
    # Records no handler wants (DEBUG, mostly) are then not even built.
    logger.setLevel(min(wanted))
    # The SQL executed only with --debug (or the DEBUG level), not with --verbose.
    logging.getLogger(LOGGER + ".sql").setLevel(
        logging.DEBUG if level <= logging.DEBUG else logging.INFO
    )


# Lines kept in memory while the log file's filesystem is full, written once there is room.
BACKLOG_LINES = 10_000
_TRANSIENT = (errno.ENOSPC, errno.EDQUOT)


class LogFileHandler(logging.Handler):
    """``logs/cleanup.log``, opened so that the web application (which can write ``logs/``)
    cannot turn it into a write somewhere else:

    - a symlink on the way to the logs directory is followed only where nobody but root
      could have planted it (``trusted_path``: the default ``logs/`` beside a database in
      ``/tmp`` is not reached through someone's symlink);
    - the directory is created as 0750 and the file as 0640, whatever the umask;
    - the file is opened — first and after every logrotate move — relative to the logs
      directory's descriptor with ``O_NOFOLLOW | O_NOCTTY | O_NONBLOCK``, and must be a
      regular file with one link (a symlink, FIFO, device or hard link planted there is
      refused: one warning on stderr, the run goes on without a log file);
    - it is only opened at the first record, so a run refused before it starts (bad input,
      exit 2) leaves no file behind;
    - on a full disk the lines wait in memory (up to BACKLOG_LINES) and are written once
      deleting has made room; lines lost beyond that are counted in the file.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._dir_fd: int | None = None
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._backlog: collections.deque[bytes] = collections.deque()
        self._lost = 0
        self.failed = False  # refused for good
        self._warned_full = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not fatal
            self.handleError(record)
            return
        if len(self._backlog) >= BACKLOG_LINES:
            self._backlog.popleft()
            self._lost += 1
        self._backlog.append(line)
        self._drain()

    def _drain(self) -> None:
        try:
            fd = self._file()
            if self._lost:
                self._write(fd, f"{self._lost} log lines were lost: the disk was full\n".encode())
                self._lost = 0
            while self._backlog:
                try:
                    self._write(fd, self._backlog[0])
                except _Partial as partial:
                    self._backlog[0] = partial.rest  # never write a line's start twice
                    raise
                self._backlog.popleft()
        except OSError as error:
            if error.errno in _TRANSIENT:
                if not self._warned_full:
                    self._warned_full = True
                    self._warn(error, "lines are kept and written once there is room")
                return
            self.failed = True
            self._backlog.clear()
            self._close()
            self._warn(error, "the run goes on without it")

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        """Write all of ``data``; raises _Partial with the unwritten rest on an error."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except OSError as error:
                raise _Partial(error, bytes(view)) from None

    def _file(self) -> int:
        if self._dir_fd is None:
            directory = trusted_path(self.path.parent)
            make_directories(directory, 0o750)
            self._dir_fd = open_directory(directory)
        name = self.path.name
        if self._fd is not None:
            # Moved by logrotate (or swapped)? Then open the name again, safely.
            try:
                info = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
                current: tuple[int, int] | None = (info.st_dev, info.st_ino)
            except FileNotFoundError:
                current = None
            if current != self._identity:
                os.close(self._fd)
                self._fd = None
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._fd = open_regular(name, flags, mode=0o640, dir_fd=self._dir_fd)
            info = os.fstat(self._fd)
            self._identity = (info.st_dev, info.st_ino)
        return self._fd

    def _warn(self, error: OSError, consequence: str) -> None:
        reason = str(error) if isinstance(error, UnsafeFileError) else error.strerror
        print(
            printable(
                f"eemt-cleanup: warning: cannot write the log file {self.path}: {reason}; "
                f"{consequence}"
            ),
            file=sys.stderr,
        )

    def _close(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._dir_fd = None

    def close(self) -> None:
        if self._backlog and not self.failed:
            self._drain()
        self._close()
        super().close()


class _Partial(OSError):
    """A write that failed part-way: ``rest`` is what is still to be written."""

    def __init__(self, error: OSError, rest: bytes) -> None:
        super().__init__(error.errno, error.strerror)
        self.rest = rest


def close_logging() -> None:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)

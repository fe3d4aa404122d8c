"""How a run talks to people off a terminal, and the log file.

Colour and progress bars only on a terminal and never with ``NO_COLOR`` (or ``TERM=dumb``);
off a terminal every line is plain text, which is what cron mails. This module imports no
Rich, so a plain run starts fast; :mod:`eemt_cleanup.report.tables` has the Rich side.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

LOGGER = "eemt_cleanup"
FILE_FORMAT = "%(asctime)s %(levelname)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def use_rich(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stdout) is a terminal and colour is not refused."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class ConsoleFormatter(logging.Formatter):
    """INFO lines as they are (``[DRY RUN] Would ...``); others prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname}: {message}"


@dataclass(frozen=True)
class OutputMode:
    """The output choices of one command invocation."""

    rich: bool
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    level: str = "INFO"


class ConsolePrintHandler(logging.Handler):
    """Log records printed through a Rich console, so they appear above a live progress bar."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        style = "red" if record.levelno >= logging.ERROR else "yellow"
        self.console.print(self.format(record), style=style, markup=False, highlight=False)


def configure_logging(mode: OutputMode, log_file: Path | None, console: Any = None) -> None:
    """Attach the console and file handlers.

    On a terminal (``console`` given) only warnings and errors are printed, through Rich;
    otherwise plain lines go to stdout (stderr with ``--json``) at the configured level.
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
    handler.setLevel(console_level)
    handler.setFormatter(ConsoleFormatter())
    logger.addHandler(handler)
    if log_file is not None:
        file_handler = LogFileHandler(log_file)
        file_handler.setLevel(level)
        file_handler.setFormatter(logging.Formatter(FILE_FORMAT, DATE_FORMAT))
        logger.addHandler(file_handler)
    # Records no handler wants (DEBUG, mostly) are then not even built.
    logger.setLevel(min(handler.level for handler in logger.handlers))


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """The log file: reopened when logrotate moves it (WatchedFileHandler), and opened — its
    directory created — only at the first record, so a run refused before it starts (bad
    input, exit 2) leaves no file behind. A file that cannot be written costs one warning on
    stderr, never the run."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.failed = False

    def _open(self) -> io.TextIOWrapper:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        try:
            if self.stream is None:
                self.stream = self._open()
        except OSError as error:
            self.failed = True
            print(
                f"eemt-cleanup: warning: cannot write the log file {self.baseFilename}: "
                f"{error.strerror}",
                file=sys.stderr,
            )
            return
        super().emit(record)


def close_logging() -> None:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)

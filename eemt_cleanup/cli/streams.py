"""The process's own standard streams: writing output can never stop the janitor.

A run started from cron, systemd or ``docker exec`` may find its stdout or stderr closed
(``>&-``), a pipe whose reader has gone (``| head -1``), a terminal that hung up, a full
disk behind a redirection, or a locale (``LC_ALL=C``, ``PYTHONIOENCODING=latin-1``) in which
a job's name cannot be encoded. None of that may change what the run deletes, records or
exits with. :func:`guard_standard_streams`, called first thing by the entry points, makes it
so in one place:

- fds 0, 1 and 2 are always open (a closed one is re-occupied by ``/dev/null``), so a file
  the run opens later (the database, the log file, the lock) can never become its stdout;
- ``sys.stdout`` and ``sys.stderr`` never raise when written or flushed: after the first
  failed write the stream's fd is pointed at ``/dev/null``, so nothing more is attempted by
  anyone (``os.write(2, ...)`` and child processes included), and nothing is said about it;
- they never raise on encoding either: the encoding Python chose is kept, characters it
  cannot represent are written as backslash escapes, so every line is written.

Everything that writes output (``print``, logging's ``StreamHandler``, Rich's ``Console``)
looks ``sys.stdout``/``sys.stderr`` up at call or configure time, after this has run.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import locale
import os
import sys
from typing import TYPE_CHECKING, BinaryIO, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_STDIN, _STDOUT, _STDERR = 0, 1, 2


def guard_standard_streams() -> None:
    """Occupy closed fds 0-2 and install ``sys.stdout``/``sys.stderr`` that never raise.

    Idempotent. A stream replaced in-process by someone else (a test's capture, a
    ``redirect_stdout``) is left alone: only the interpreter's own streams, or a missing one,
    are replaced.
    """
    for fd in (_STDIN, _STDOUT, _STDERR):
        _occupy_if_closed(fd)
    if sys.stdin is None:
        sys.stdin = open(  # noqa: SIM115 - the process's stdin, never closed
            _STDIN, encoding=_encoding_for(None), errors="surrogateescape", closefd=False
        )
    sys.stdout = _guard(sys.stdout, _STDOUT)
    sys.stderr = _guard(sys.stderr, _STDERR)


def guarded_stream(
    fd: int,
    encoding: str,
    *,
    line_buffering: bool = False,
    write_through: bool = False,
    buffered: bool = True,
) -> TextIO:
    """A text stream writing to ``fd`` that never raises on write, flush or encoding.

    ``encoding`` is kept; what it cannot represent is written as ``\\xe9``/``\\u65e5``.
    ``buffered=False`` (with ``write_through``) is Python's ``-u``/``PYTHONUNBUFFERED``
    stream: every write goes straight to the fd.
    """
    raw = QuietFileIO(fd)
    buffer: BinaryIO = io.BufferedWriter(raw) if buffered else raw
    return io.TextIOWrapper(
        buffer,
        encoding=encoding,
        errors="backslashreplace",
        line_buffering=line_buffering,
        write_through=write_through,
    )


class QuietFileIO(io.FileIO):
    """The raw layer of a guarded stream. A write that fails (``EPIPE``, ``EBADF``, ``EIO``,
    ``ENOSPC``: any ``OSError``) is reported as done and the fd is pointed at ``/dev/null``,
    so nothing more is attempted. A write is always complete (short writes are continued),
    and a non-blocking fd (``O_NONBLOCK`` inherited from the parent) is waited on, as a
    blocking one would be, instead of raising."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "w", closefd=False)
        self.silenced = False

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view) and not self.silenced:
            try:
                written = super().write(view[done:])
            except OSError:
                self.silence()
                break
            if written is None:
                _wait_until_writable(self.fileno())
            elif written == 0:
                break  # nothing can be written and no error says why: do not spin
            else:
                done += written
        return len(view)

    def silence(self) -> None:
        """Send everything written to this fd from now on to ``/dev/null``."""
        self.silenced = True
        with contextlib.suppress(OSError):
            placeholder = _placeholder_fd()
            try:
                os.dup2(placeholder, self.fileno())
            finally:
                os.close(placeholder)


def _guard(stream: TextIO | None, fd: int) -> TextIO:
    if stream is None:
        return guarded_stream(fd, _encoding_for(None), line_buffering=_line_buffered(fd))
    if not _is_interpreter_stream(stream, fd):
        return stream  # already guarded, or replaced in-process by a caller
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # normally empty: nothing has been written yet
    wrapper: io.TextIOWrapper = stream  # type: ignore[assignment]
    return guarded_stream(
        fd,
        _encoding_for(stream),
        line_buffering=wrapper.line_buffering,
        write_through=wrapper.write_through,
        buffered=isinstance(wrapper.buffer, io.BufferedIOBase),
    )


def _is_interpreter_stream(stream: TextIO, fd: int) -> bool:
    """True for a plain text stream on ``fd`` that is not guarded yet."""
    if type(stream) is not io.TextIOWrapper:
        return False
    buffer = stream.buffer
    if isinstance(getattr(buffer, "raw", buffer), QuietFileIO):
        return False
    try:
        return stream.fileno() == fd
    except (OSError, ValueError):
        return False


def _line_buffered(fd: int) -> bool:
    """As Python opens a standard stream: stderr always line-buffered, stdout on a tty."""
    return fd == _STDERR or os.isatty(fd)


def _encoding_for(stream: TextIO | None) -> str:
    """The encoding Python chose for ``stream`` or, without one, would have chosen:
    ``PYTHONIOENCODING``, else UTF-8 in UTF-8 mode, else the locale's."""
    candidates = [
        getattr(stream, "encoding", None),
        os.environ.get("PYTHONIOENCODING", "").partition(":")[0],
        locale.getpreferredencoding(False),
    ]
    for name in candidates:
        if name:
            try:
                return codecs.lookup(name).name
            except LookupError:
                continue
    return "utf-8"


def _occupy_if_closed(fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        pass  # closed: occupy it
    else:
        return
    placeholder = _placeholder_fd()
    if placeholder == fd:
        os.set_inheritable(fd, True)  # a standard fd, as a child process expects it
    else:
        os.dup2(placeholder, fd)
        os.close(placeholder)


def _placeholder_fd() -> int:
    """``/dev/null`` read-write; where it cannot be opened, the read end of a pipe whose
    write end is closed (reads see end-of-file, writes fail and are silenced)."""
    try:
        return os.open(os.devnull, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        read_end, write_end = os.pipe()
        os.close(write_end)
        return read_end


def _wait_until_writable(fd: int) -> None:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()


__all__ = ["QuietFileIO", "guard_standard_streams", "guarded_stream"]

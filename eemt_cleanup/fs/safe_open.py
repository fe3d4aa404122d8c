"""Open and create the files of our own (the log file, the journal, ``config init``'s file)
so that a planted symlink, FIFO, device or hard link cannot turn a write into a write
somewhere else.

The tool runs as root next to directories the web application can write (``logs/``, and
possibly a world-writable directory holding the database, such as ``/tmp``). Every file of
ours is therefore opened with ``O_NOFOLLOW`` (a symlink is refused, dangling or not),
``O_NOCTTY`` and ``O_NONBLOCK`` (a FIFO or device cannot block or become our terminal), must
turn out to be a regular file with a single link (a hard link to someone else's file is
refused), and gets its mode set explicitly when we create it, whatever the umask.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from pathlib import Path

OPEN_FLAGS = os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_ATTEMPTS = 5


class UnsafeFileError(OSError):
    """A path of ours is not a plain file (or directory) we may write; the message says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(errno.EPERM, reason, str(path))
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def describe_kind(mode: int) -> str:
    """``a directory``, ``a FIFO``, ... for messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refusal(error: OSError, path: str | Path) -> OSError:
    if error.errno == errno.ELOOP:
        return UnsafeFileError(path, "is a symbolic link: refused (never written through)")
    if error.errno == errno.EISDIR:
        return UnsafeFileError(path, "is a directory, not a regular file")
    if error.errno == errno.ENXIO:
        return UnsafeFileError(path, "is a FIFO or socket with no reader: refused")
    return error


def open_regular(
    path: str | Path,
    flags: int,
    *,
    mode: int = 0o640,
    dir_fd: int | None = None,
    single_link: bool = True,
) -> int:
    """Open ``path`` (relative to ``dir_fd`` when given) as a regular file and return the fd.

    ``flags`` are the access flags (``os.O_WRONLY | os.O_APPEND``, ...), optionally with
    ``os.O_CREAT``: a file we create gets exactly ``mode``. Raises UnsafeFileError when the
    path is a symlink, a directory, a FIFO, a device or (``single_link``) a file with other
    hard links; other OSErrors (ENOENT, EACCES, ENOSPC, EROFS) as they come.
    """
    create = bool(flags & os.O_CREAT)
    access = flags & ~(os.O_CREAT | os.O_EXCL)
    for _ in range(_CREATE_ATTEMPTS):
        created = False
        try:
            if create:
                try:
                    exclusive = access | os.O_CREAT | os.O_EXCL | OPEN_FLAGS
                    fd = os.open(path, exclusive, mode, dir_fd=dir_fd)
                    created = True
                except FileExistsError:
                    fd = os.open(path, access | OPEN_FLAGS, dir_fd=dir_fd)
            else:
                fd = os.open(path, access | OPEN_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if create:
                continue  # removed between the two opens: try again
            raise
        except OSError as error:
            raise _refusal(error, path) from None
        try:
            _check_regular(fd, path, single_link)
            if created:
                os.fchmod(fd, mode)
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise OSError(errno.EAGAIN, "kept disappearing while being created", str(path))


def _check_regular(fd: int, path: str | Path, single_link: bool) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(path, f"is {describe_kind(info.st_mode)}, not a regular file")
    if single_link and info.st_nlink != 1:
        raise UnsafeFileError(
            path, f"has {info.st_nlink} hard links: refused (it may be another file's name)"
        )


def make_directories(path: str | Path, mode: int = 0o750) -> None:
    """Create ``path`` and its missing parents, each with exactly ``mode`` whatever the
    umask (existing directories are left as they are). A component that exists but is not
    a directory raises NotADirectoryError / UnsafeFileError."""
    target = Path(path)
    missing: list[Path] = []
    for candidate in (target, *target.parents):
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            missing.append(candidate)
            continue
        if not stat.S_ISDIR(info.st_mode):
            if stat.S_ISLNK(info.st_mode) and candidate != target:
                break  # a symlinked parent (the operator's layout) is opened as resolved
            raise UnsafeFileError(candidate, f"is {describe_kind(info.st_mode)}, not a directory")
        break
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, mode)
        fd = open_directory(directory)
        try:
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, mode)
        finally:
            os.close(fd)


def open_directory(path: str | Path, *, dir_fd: int | None = None) -> int:
    """Open a directory without following a symlink in its last component."""
    try:
        return os.open(path, DIRECTORY_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                kind = describe_kind(os.lstat(path, dir_fd=dir_fd).st_mode)
            except OSError:
                kind = "not a directory"
            raise UnsafeFileError(path, f"is {kind}, not a directory: refused") from None
        raise


MAX_SYMLINKS = 40


def trusted_path(path: str | Path) -> Path:
    """``path`` resolved like ``realpath``, but a symlink on the way is followed only where
    nobody but root (or this user) could have put it: in a directory that only root or we
    can write, or, in a sticky directory such as ``/tmp``, when root or we own the link
    (the kernel's ``protected_symlinks`` rule). A missing tail is returned as given (it is
    created later). Raises UnsafeFileError naming the symlink otherwise.

    Used for the directories we create and write our files in (the logs directory, beside
    a database that may sit in a world-writable directory).
    """
    pending = list(Path(os.path.abspath(path)).parts[1:])
    current = Path("/")
    followed = 0
    while pending:
        name = pending.pop(0)
        candidate = current / name
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            return candidate.joinpath(*pending)
        if not stat.S_ISLNK(info.st_mode):
            current = candidate
            continue
        followed += 1
        if followed > MAX_SYMLINKS:
            raise UnsafeFileError(path, "too many levels of symbolic links")
        if not _trusted_link(current, info):
            raise UnsafeFileError(
                candidate,
                "is a symbolic link in a directory others can write: not followed "
                "(it may have been planted there)",
            )
        target = Path(os.readlink(candidate))
        resolved = Path(os.path.normpath(target if target.is_absolute() else current / target))
        pending = list(resolved.parts[1:]) + pending
        current = Path("/")
    return current


def _trusted_link(directory: Path, link: os.stat_result) -> bool:
    ours = {0, os.geteuid()}
    info = os.stat(directory)
    only_ours = info.st_uid in ours and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky_and_ours = bool(info.st_mode & stat.S_ISVTX) and link.st_uid in ours
    return only_ours or sticky_and_ours


def write_new_file(path: str | Path, data: bytes, *, mode: int = 0o640, replace: bool) -> None:
    """Write ``data`` as the file ``path`` without ever opening what is at ``path``.

    The content goes to a new temporary file (``O_EXCL | O_NOFOLLOW``) in the same
    directory, which is then linked in (``replace=False``: fails with FileExistsError when
    anything, even a dangling symlink, has that name) or renamed over it (``replace=True``:
    a symlink there is replaced, never written through). Raises UnsafeFileError when the
    path is a directory.
    """
    target = Path(path)
    try:
        existing = os.lstat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            raise UnsafeFileError(target, "is a directory")
        if not replace:
            raise FileExistsError(errno.EEXIST, "exists", str(target))
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, mode)
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(temporary, target)
            renamed = True  # the temporary name is gone: nothing left to remove
        else:
            os.link(temporary, target, follow_symlinks=False)
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)


__all__ = [
    "UnsafeFileError",
    "describe_kind",
    "make_directories",
    "open_directory",
    "open_regular",
    "trusted_path",
    "write_new_file",
]

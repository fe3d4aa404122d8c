"""What every deletion walk shares: how a name reaches a system call, and whether a
directory may be entered.

Names. The web interface writes file names as UTF-8, and the database holds them as text,
so a name from the database (a job id, an upload name, a task path component) is encoded
for system calls with UTF-8 whatever this process's locale (:func:`os_name`); under
``LC_ALL=C`` Python's own filesystem encoding is ASCII and could not encode ``Mätterhorn``.
Names read from a directory stay as the OS gives them; :func:`text_name` turns one into
the same UTF-8 text for displays and for task paths sent to the workers.

Entering. :func:`enter` is the one rule for going into a directory during a walk (the
Remover's walk and the workers' task paths use it): opened without following links, on
the parent's device and mount, not a mount point listed at start, not a protected inode,
and still inside its root. The web application can rename a job directory, or any
directory below it, to a place outside the root while a walk is inside it; descriptors
keep working across a rename, so without this check the walk would go on deleting
outside the root. Containment is judged by the directory's current path
(``/proc/self/fd``), and where that cannot tell (a path longer than PATH_MAX, no ``/proc``,
the root itself renamed) by the chain of names from the directory up to the root's
descriptor, each of which must still name the directory below it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PROC_FD = b"/proc/self/fd/%d"

MOUNT_POINT = "a mount point: not crossed"
PROTECTED = "refused: a protected path (database, config, log directory or a root)"
MOVED = "moved out of its root while being deleted: stopped"

Inode = tuple[int, int]

# With a UTF-8 filesystem encoding, names from directories already are UTF-8 text.
_UTF8_FILESYSTEM = sys.getfilesystemencoding().lower().replace("-", "") == "utf8"


def os_name(name: str) -> bytes:
    """``name`` (from the database, or a task path component) as the bytes a system call
    takes: UTF-8, whatever the locale; lone surrogates (bytes that were not UTF-8) become
    those bytes again."""
    return name.encode("utf-8", "surrogateescape")


def local_name(name: str) -> str:
    """``name`` (as for :func:`os_name`) as a ``str`` that Python encodes to the same bytes
    in this process's filesystem encoding, as names from ``os.scandir`` are."""
    if name.isascii() or _UTF8_FILESYSTEM:
        return name
    return os.fsdecode(os_name(name))


def text_name(name: str) -> str:
    """A name read from a directory, as UTF-8 text (bytes that are not UTF-8 stay lone
    surrogates): what displays show and what task paths carry (:func:`os_name` of it is
    the name's bytes)."""
    if name.isascii() or _UTF8_FILESYSTEM:
        return name
    return os.fsencode(name).decode("utf-8", "surrogateescape")


def mount_id(fd: int) -> int | None:
    """The id of the mount an open file lives on (``/proc/self/fdinfo``), or None."""
    try:
        info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(info, 1024)
    finally:
        os.close(info)
    for line in data.splitlines():
        if line.startswith(b"mnt_id:"):
            return int(line[7:])
    return None


def current_path(fd: int) -> bytes | None:
    """The path an open directory has now, or None when the kernel cannot say (longer
    than PATH_MAX, no ``/proc``)."""
    try:
        return os.readlink(PROC_FD % fd)
    except OSError:
        return None


@dataclass(frozen=True)
class Level:
    """An open directory of a walk and the way back up to the root it must stay inside.

    ``parent`` is None for the root itself, whose descriptor belongs to the caller; every
    other level's descriptor belongs to whoever entered it. ``root_path`` is the root's
    path with a trailing ``/``, read once per target (None when it cannot be read).
    """

    fd: int
    name: str
    device: int
    inode: int
    mount: int | None
    blocks: int
    parent: Level | None
    root_path: bytes | None
    fits: bool = True  # its path could be read when it was entered

    @classmethod
    def root(cls, fd: int) -> Level:
        """The root a target lies in, from the root's open descriptor.

        Its path and mount id are read once per descriptor (one ``fstat`` a target tells
        that it is still the same directory): a root renamed during the run only makes
        its directories fall back to the chain of names, which still ends at this fd."""
        info = os.fstat(fd)
        key = (fd, info.st_dev, info.st_ino)
        known = _ROOTS.get(key)
        if known is None:
            path = current_path(fd)
            root_path = None if path is None else path.rstrip(b"/") + b"/"
            known = cls(fd, "", info.st_dev, info.st_ino, mount_id(fd), 0, None, root_path)
            _ROOTS[key] = known
        return known


# Levels of the roots, by (descriptor, device, inode): a root's fd is open for a whole run.
_ROOTS: dict[tuple[int, int, int], Level] = {}


class NotEntered(Exception):
    """The directory may not be entered; ``reason`` says why, ``moved`` whether it is
    outside its root (then the whole walk stops)."""

    def __init__(self, reason: str, *, moved: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.moved = moved


def enter(parent: Level, name: str, mount_points: set[Inode], protected: set[Inode]) -> Level:
    """Open the directory ``name`` (a name as the OS takes it) in ``parent`` and return its
    level, the caller owning its descriptor.

    Raises OSError from the open (ELOOP/ENOTDIR: not a directory, or a symlink), and
    NotEntered when it is a mount point, protected, or outside the root.
    """
    fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent.fd)
    try:
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        mount = mount_id(fd)
        if (
            info.st_dev != parent.device
            or key in mount_points
            or (mount is not None and parent.mount is not None and mount != parent.mount)
        ):
            # The mount id also catches a bind mount of the same filesystem made after the
            # run started (st_dev cannot, and the start-time mount list does not have it).
            raise NotEntered(MOUNT_POINT)
        if key in protected:
            raise NotEntered(PROTECTED)
        path = current_path(fd)
        level = Level(
            fd,
            name,
            info.st_dev,
            info.st_ino,
            mount,
            info.st_blocks,
            parent,
            parent.root_path,
            fits=path is not None,
        )
        if not _inside(level, path):
            raise NotEntered(MOVED, moved=True)
    except BaseException:
        os.close(fd)
        raise
    return level


def inside_root(level: Level) -> bool:
    """Whether the directory ``level`` is still inside its root (see the module's notes)."""
    return _inside(level, current_path(level.fd))


def _inside(level: Level, path: bytes | None) -> bool:
    if path is not None and level.root_path is not None and path.startswith(level.root_path):
        return True
    return _named_up_to_root(level)


def _named_up_to_root(level: Level) -> bool:
    """Each name from ``level`` up to the root still names the directory below it, or an
    ancestor's current path (where it can be read) is inside the root."""
    node = level
    while node.parent is not None:
        try:
            info = os.stat(node.name, dir_fd=node.parent.fd, follow_symlinks=False)
        except OSError:
            return False
        if (info.st_dev, info.st_ino) != (node.device, node.inode):
            return False
        node = node.parent
        if node.parent is not None and node.fits and node.root_path is not None:
            path = current_path(node.fd)
            if path is not None and path.startswith(node.root_path):
                return True
    return True


__all__ = [
    "DIRECTORY_FLAGS",
    "MOUNT_POINT",
    "MOVED",
    "PROTECTED",
    "Level",
    "NotEntered",
    "current_path",
    "enter",
    "inside_root",
    "local_name",
    "mount_id",
    "os_name",
    "text_name",
]

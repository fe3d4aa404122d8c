"""Delete (or measure) one direct child of a root, on directory file descriptors.

Rules (SPEC §7) this module enforces:
- every operation is relative to an open directory fd (``openat``/``unlinkat`` style) and
  directories are opened with ``O_NOFOLLOW``, so a path swapped for a symlink mid-run cannot
  redirect us; a symlink is unlinked as a link, its target never entered;
- mount points (another ``st_dev``, or a mount listed in ``/proc/self/mountinfo`` at start,
  which also catches same-filesystem bind mounts) are never entered;
- every directory is still inside its root when the walk enters it and right before it is
  removed; one that was moved out (renamed away by the web application mid-walk) stops the
  whole walk, so at most the directory being emptied at that instant is affected
  (:mod:`eemt_cleanup.fs.walk` holds that rule, shared with the workers' task paths);
- names from the database are encoded with UTF-8 for system calls, whatever the locale;
- FIFOs, sockets and devices are unlinked without being opened;
- the walk is iterative (no recursion limit) and single pass: each file is ``lstat``-ed once,
  right before its unlink, and freed bytes are its allocated blocks; an inode with other hard
  links frees nothing until its last link goes.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from eemt_cleanup.fs.safe_open import describe_kind
from eemt_cleanup.fs.walk import (
    DIRECTORY_FLAGS,
    MOVED,
    Inode,
    Level,
    NotEntered,
    enter,
    inside_root,
    local_name,
    mount_id,
    os_name,
    text_name,
)

BLOCK = 512
EMPTY_RETRIES = 3
MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


@dataclass
class Tally:
    """What happened to one target. ``bytes_freed`` is allocated bytes (st_blocks * 512)."""

    display: str
    existed: bool = True
    bytes_freed: int = 0
    files_deleted: int = 0
    dirs_removed: int = 0
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    subdirs: list[str] = field(default_factory=list)  # left for other tasks (remove_files)
    # Dry runs in a worker process: [st_dev, st_ino, st_nlink, bytes] of each link of a
    # multiply-linked file met, for the engine's process to settle (see Remover.settle_links).
    links: list[list[int]] = field(default_factory=list)
    # The walk found a directory moved out of its root and stopped: nothing more of this
    # job is removed (the pool does not send the job's remaining tasks either).
    stopped: bool = False

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass
class _Frame:
    """A directory being emptied: its open level and the walk's state for it."""

    level: Level
    display: str
    keep: frozenset[str] = frozenset()
    pending: list[str] | None = None
    blocked: bool = False
    retries: int = 0
    parent: _Frame | None = None

    @property
    def fd(self) -> int:
        return self.level.fd


def _unescape_mount_path(text: bytes) -> bytes:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return _OCTAL_ESCAPE.sub(lambda match: bytes([int(match.group(1), 8)]), text)


def mount_points_under(roots: Iterable[Path], mountinfo: Path = MOUNTINFO) -> set[Inode]:
    """(st_dev, st_ino) of every mount point strictly inside one of ``roots``.

    Stat-ing a mount point gives the mounted tree's root, so a directory with that identity
    met during a walk is a mount point even when it is on the same device (a bind mount).
    Mount paths are bytes, whatever their encoding and the locale's.
    """
    try:
        lines = mountinfo.read_bytes().splitlines()
    except OSError:
        return set()
    prefixes = [os.fsencode(root).rstrip(b"/") + b"/" for root in roots]
    found: set[Inode] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = _unescape_mount_path(fields[4])
        if any(point.startswith(prefix) for prefix in prefixes):
            try:
                info = os.stat(point)
            except OSError:
                continue
            found.add((info.st_dev, info.st_ino))
    return found


class Remover:
    """Deletes (or, with ``dry_run``, measures) direct children of open root directories.

    Thread-safe: one instance serves every worker; only the hard-link registry is shared.
    ``protected`` inodes (the database, the config file, the roots...) are never removed.
    """

    def __init__(
        self,
        *,
        dry_run: bool,
        protected: set[Inode] | None = None,
        mount_points: set[Inode] | None = None,
        before_open: Callable[[int, str], None] | None = None,
        links_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.dry_run = dry_run
        self.protected = protected or set()
        self.mount_points = mount_points or set()
        # Test hook: called with (parent fd, name) after a directory was listed and before it
        # is opened, so tests can swap it for a symlink in exactly that window.
        self.before_open = before_open
        self._links_guard = threading.Lock()
        self.links_lock: AbstractContextManager[object] = links_lock or self._links_guard
        self._links_seen: dict[Inode, int] = {}
        # Set in deletion worker processes: a dry run there reports the links of multiply
        # linked files in the tally instead of counting them, because the other links may
        # be met by another worker; the engine's process settles them in one registry.
        self.defer_links = False
        self._links_freed: set[Inode] = set()

    def remove(
        self,
        parent: int | Level,
        name: str,
        display: str,
        keep: frozenset[str] = frozenset(),
        *,
        file_only: bool = False,
    ) -> Tally:
        """Remove ``name`` inside ``parent``; never raises for filesystem errors.

        ``parent`` is a root's open descriptor, or (a worker's task path) an open level of a
        walk from the root. ``name`` is text as the database holds it (see
        :func:`~eemt_cleanup.fs.walk.os_name`). ``keep`` names entries directly inside a
        directory target that stay (kept logs). ``file_only`` targets (an upload, an
        archive) must be a regular file or a symlink (removed as a link): a directory or any
        other kind of entry there is refused and reported, never deleted whole.
        """
        tally = Tally(display)
        parent_fd = parent if isinstance(parent, int) else parent.fd
        local = local_name(name)
        info = self._target(parent_fd, local, tally)
        if info is None:
            return tally
        if file_only and not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            tally.errors.append(
                f"{display}: refused: {describe_kind(info.st_mode)}, not a regular file "
                "(an upload or archive name must name a file)"
            )
            return tally
        if stat.S_ISDIR(info.st_mode):
            level = parent if isinstance(parent, Level) else Level.root(parent)
            self._remove_tree(level, local, display, keep, tally)
        else:
            self._remove_file(parent_fd, local, display, info, tally)
        return tally

    def remove_files(
        self, parent: int | Level, name: str, display: str, keep: frozenset[str] = frozenset()
    ) -> Tally:
        """Remove the files directly in directory ``name`` and, when it has no
        subdirectory, the directory too; otherwise leave it and list its subdirectories in
        ``tally.subdirs`` (as text, for other workers' task paths). Anything but a
        directory is removed as :meth:`remove` would. Kept entries are reported by the pass
        that finishes the directory, not by this one. Not for dry runs (nothing is removed,
        so the finishing pass would count the files again)."""
        assert not self.dry_run, "remove_files deletes; a dry run measures whole trees"
        tally = Tally(display)
        level = parent if isinstance(parent, Level) else Level.root(parent)
        local = local_name(name)
        info = self._target(level.fd, local, tally)
        if info is None:
            return tally
        if not stat.S_ISDIR(info.st_mode):
            return self.remove(level, name, display, keep)
        frame = self._open_dir(level, local, display, tally, None, keep)
        if frame is None:
            return tally
        try:
            subdirs = self._scan(frame, tally)
        finally:
            os.close(frame.fd)
        tally.kept.clear()
        if subdirs:
            tally.subdirs = [text_name(subdir) for subdir in subdirs]
            return tally
        rest = self.remove(level, name, display, keep)  # an emptied directory: cheap
        tally.bytes_freed += rest.bytes_freed
        tally.files_deleted += rest.files_deleted
        tally.dirs_removed += rest.dirs_removed
        tally.kept.extend(rest.kept)
        tally.errors.extend(rest.errors)
        tally.stopped |= rest.stopped
        return tally

    def _target(self, parent_fd: int, name: str, tally: Tally) -> os.stat_result | None:
        """``lstat`` of a target; None (with the tally saying why) when it is absent,
        unreadable or protected."""
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            tally.existed = False
            return None
        except OSError as error:
            tally.errors.append(f"{tally.display}: {error.strerror}")
            return None
        if self._refuse(info, tally.display, tally):
            return None
        return info

    def _refuse(self, info: os.stat_result, display: str, tally: Tally) -> bool:
        if (info.st_dev, info.st_ino) in self.protected:
            tally.errors.append(
                f"{display}: refused: a protected path (database, config, "
                "log directory or a root) is linked here"
            )
            return True
        return False

    # -- files -------------------------------------------------------------------------

    def _remove_file(
        self, dir_fd: int, name: str, display: str, info: os.stat_result, tally: Tally
    ) -> None:
        if self._refuse(info, display, tally):
            return
        if self.dry_run:
            if self.defer_links and info.st_nlink > 1:
                tally.links.append(
                    [info.st_dev, info.st_ino, info.st_nlink, info.st_blocks * BLOCK]
                )
            else:
                tally.bytes_freed += self._would_free(info)
            tally.files_deleted += 1
            return
        try:
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                tally.bytes_freed += self._unlink_linked(dir_fd, name, info)
            else:
                os.unlink(name, dir_fd=dir_fd)
                tally.bytes_freed += info.st_blocks * BLOCK
            tally.files_deleted += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            tally.errors.append(f"{display}: {error.strerror}")

    def _would_free(self, info: os.stat_result) -> int:
        if info.st_nlink <= 1:
            return info.st_blocks * BLOCK
        return self._count_link((info.st_dev, info.st_ino), info.st_nlink, info.st_blocks * BLOCK)

    def _count_link(self, key: Inode, links: int, size: int) -> int:
        """A dry run met one link of ``key``: its bytes would be freed only with the last."""
        with self._links_guard:
            seen = self._links_seen.get(key, 0) + 1
            self._links_seen[key] = seen
            return size if seen == links else 0

    def settle_links(self, tally: Tally) -> None:
        """Count the links a worker reported in ``tally`` (dry runs), in this process's one
        registry: a file whose links are spread over several workers' tasks is counted once,
        with whichever task meets its last link, as a real run would free it."""
        for device, inode, links, size in tally.links:
            tally.bytes_freed += self._count_link((device, inode), links, size)
        tally.links = []

    def _unlink_linked(self, dir_fd: int, name: str, info: os.stat_result) -> int:
        # Hold the inode through an O_PATH descriptor across the unlink, then ask it how many
        # links remain: only the unlink that leaves none frees the blocks. Unlink and check
        # happen under one lock (shared with the other deletion processes), so two links of
        # one inode removed at the same moment cannot both see zero.
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            with self.links_lock:
                os.unlink(name, dir_fd=dir_fd)
                after = os.fstat(handle)
            key = (info.st_dev, info.st_ino)
            with self._links_guard:
                if after.st_nlink == 0 and key not in self._links_freed:
                    self._links_freed.add(key)
                    return after.st_blocks * BLOCK
        finally:
            os.close(handle)
        return 0

    # -- directories -------------------------------------------------------------------

    def _open_dir(
        self,
        parent: Level,
        name: str,
        display: str,
        tally: Tally,
        parent_frame: _Frame | None,
        keep: frozenset[str],
    ) -> _Frame | None:
        """Enter a directory entry under the walk's one rule (:func:`enter`); None when it
        is not entered (a directory moved out of its root also stops the walk)."""
        if self.before_open is not None:
            self.before_open(parent.fd, name)
        try:
            level = enter(parent, name, self.mount_points, self.protected)
        except NotEntered as refusal:
            tally.errors.append(f"{display}: {refusal.reason}")
            tally.stopped |= refusal.moved
            return None
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                # Swapped for a link or a file since it was listed: remove that, as what it is.
                self._remove_changed(parent.fd, name, display, tally)
            else:
                tally.errors.append(f"{display}: {error.strerror}")
            return None
        return _Frame(level, display, keep=keep, parent=parent_frame)

    def _remove_changed(self, parent_fd: int, name: str, display: str, tally: Tally) -> None:
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as error:
            tally.errors.append(f"{display}: {error.strerror}")
            return
        if stat.S_ISDIR(info.st_mode):
            tally.errors.append(f"{display}: changed while being deleted")
        else:
            self._remove_file(parent_fd, name, display, info, tally)

    def _scan(self, frame: _Frame, tally: Tally) -> list[str]:
        """Unlink (or measure) every non-directory entry; return the subdirectory names.

        This loop runs once per file, so the common case (a regular file with one link, not
        protected) is handled inline: one ``lstat`` from the directory entry, one
        ``unlinkat``; everything unusual goes through :meth:`_remove_file`.
        """
        subdirs: list[str] = []
        try:
            entries = os.scandir(frame.fd)
        except OSError as error:
            tally.errors.append(f"{frame.display}: {error.strerror}")
            frame.blocked = True
            return subdirs
        fd, keep, fast = frame.fd, frame.keep, not self.dry_run
        protected = self.protected
        unlink = os.unlink
        freed = files = 0
        with entries:
            for entry in entries:
                name = entry.name
                if keep and name in keep:
                    tally.kept.append(frame.display + text_name(name))
                    frame.blocked = True
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(name)
                        continue
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as error:
                    tally.errors.append(f"{frame.display}{text_name(name)}: {error.strerror}")
                    frame.blocked = True
                    continue
                if fast and info.st_nlink == 1 and (info.st_dev, info.st_ino) not in protected:
                    try:
                        unlink(name, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    except OSError as error:
                        tally.errors.append(f"{frame.display}{text_name(name)}: {error.strerror}")
                        frame.blocked = True
                        continue
                    freed += info.st_blocks
                    files += 1
                    continue
                before = len(tally.errors)
                self._remove_file(fd, name, frame.display + text_name(name), info, tally)
                frame.blocked |= len(tally.errors) > before
        tally.bytes_freed += freed * BLOCK
        tally.files_deleted += files
        return subdirs

    def _remove_tree(
        self, parent: Level, name: str, display: str, keep: frozenset[str], tally: Tally
    ) -> None:
        top = self._open_dir(parent, name, display, tally, None, keep)
        stack = [top] if top is not None else []
        while stack:
            if tally.stopped:
                # A directory was found outside its root: leave the rest of the tree alone.
                for frame in stack:
                    os.close(frame.fd)
                return
            frame = stack[-1]
            if frame.pending is None:
                frame.pending = self._scan(frame, tally)
            if frame.pending:
                child_name = frame.pending.pop()
                before = len(tally.errors)
                child = self._open_dir(
                    frame.level,
                    child_name,
                    f"{frame.display}{text_name(child_name)}/",
                    tally,
                    frame,
                    frozenset(),
                )
                frame.blocked |= len(tally.errors) > before
                if child is not None:
                    stack.append(child)
                continue
            stack.pop()
            self._finish_dir(frame, tally, stack)

    def _finish_dir(self, frame: _Frame, tally: Tally, stack: list[_Frame]) -> None:
        """Remove an emptied directory, if it is still inside its root; rescan a bounded
        number of times if files appeared."""
        level = frame.level
        if frame.blocked:
            os.close(frame.fd)
            if frame.parent is not None:
                frame.parent.blocked = True
            return
        if self.dry_run:
            os.close(frame.fd)
            tally.bytes_freed += level.blocks * BLOCK
            tally.dirs_removed += 1
            return
        assert level.parent is not None, "a walk never removes its root"
        if not inside_root(level):
            # Moved away while it was being emptied: its parent may be outside the root now,
            # and removing it by name there would be removing outside.
            os.close(frame.fd)
            tally.errors.append(f"{frame.display}: {MOVED}")
            tally.stopped = True
            return
        try:
            os.rmdir(level.name, dir_fd=level.parent.fd)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and frame.retries < EMPTY_RETRIES:
                frame.retries += 1
                frame.pending = None
                stack.append(frame)
                return
            os.close(frame.fd)
            if error.errno == errno.ENOTEMPTY:
                message = f"{frame.display}: entries kept appearing; not empty after retries"
            else:
                message = f"{frame.display}: {error.strerror}"
            tally.errors.append(message)
            if frame.parent is not None:
                frame.parent.blocked = True
            return
        os.close(frame.fd)
        tally.bytes_freed += level.blocks * BLOCK
        tally.dirs_removed += 1


__all__ = [
    "BLOCK",
    "DIRECTORY_FLAGS",
    "Inode",
    "Level",
    "Remover",
    "Tally",
    "mount_id",
    "mount_points_under",
    "os_name",
]

"""Delete (or measure) one direct child of a root, on directory file descriptors.

Rules (SPEC §7) this module enforces:
- every operation is relative to an open directory fd (``openat``/``unlinkat`` style) and
  directories are opened with ``O_NOFOLLOW``, so a path swapped for a symlink mid-run cannot
  redirect us; a symlink is unlinked as a link, its target never entered;
- mount points (another ``st_dev``, or a mount listed in ``/proc/self/mountinfo`` at start,
  which also catches same-filesystem bind mounts) are never entered;
- FIFOs, sockets and devices are unlinked without being opened;
- the walk is iterative (no recursion limit) and single pass: each file is ``lstat``-ed once,
  right before its unlink, and freed bytes are its allocated blocks; an inode with other hard
  links frees nothing until its last link goes.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from eemt_cleanup.fs.safe_open import describe_kind

BLOCK = 512
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
EMPTY_RETRIES = 3
MOUNTINFO = Path("/proc/self/mountinfo")

Inode = tuple[int, int]


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

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass
class _Frame:
    fd: int
    parent_fd: int
    name: str
    display: str
    device: int
    blocks: int
    mount: int | None = None
    keep: frozenset[str] = frozenset()
    pending: list[str] | None = None
    blocked: bool = False
    retries: int = 0
    parent: _Frame | None = None


def _unescape_mount_path(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 3 < len(text) and text[index + 1 : index + 4].isdigit():
            out.append(chr(int(text[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def mount_points_under(roots: Iterable[Path], mountinfo: Path = MOUNTINFO) -> set[Inode]:
    """(st_dev, st_ino) of every mount point strictly inside one of ``roots``.

    Stat-ing a mount point gives the mounted tree's root, so a directory with that identity
    met during a walk is a mount point even when it is on the same device (a bind mount).
    """
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return set()
    prefixes = [str(root).rstrip("/") + "/" for root in roots]
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
        root_fd: int,
        name: str,
        display: str,
        keep: frozenset[str] = frozenset(),
        *,
        file_only: bool = False,
    ) -> Tally:
        """Remove ``name`` inside the directory ``root_fd``; never raises for filesystem errors.

        ``keep`` names entries directly inside a directory target that stay (kept logs).
        ``file_only`` targets (an upload, an archive) must be a regular file or a symlink
        (removed as a link): a directory or any other kind of entry there is refused and
        reported, never deleted whole.
        """
        tally = Tally(display)
        info = self._target(root_fd, name, tally)
        if info is None:
            return tally
        if file_only and not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            tally.errors.append(
                f"{display}: refused: {describe_kind(info.st_mode)}, not a regular file "
                "(an upload or archive name must name a file)"
            )
            return tally
        if stat.S_ISDIR(info.st_mode):
            root_device = os.fstat(root_fd).st_dev
            self._remove_tree(root_fd, name, display, keep, root_device, tally)
        else:
            self._remove_file(root_fd, name, display, info, tally)
        return tally

    def remove_files(
        self, parent_fd: int, name: str, display: str, keep: frozenset[str] = frozenset()
    ) -> Tally:
        """Remove the files directly in directory ``name`` and, when it has no
        subdirectory, the directory too; otherwise leave it and list its subdirectories in
        ``tally.subdirs`` (for other workers). Anything but a directory is removed as
        :meth:`remove` would. Kept entries are reported by the pass that finishes the
        directory, not by this one. Not for dry runs (nothing is removed, so the finishing
        pass would count the files again)."""
        assert not self.dry_run, "remove_files deletes; a dry run measures whole trees"
        tally = Tally(display)
        info = self._target(parent_fd, name, tally)
        if info is None:
            return tally
        if not stat.S_ISDIR(info.st_mode):
            return self.remove(parent_fd, name, display, keep)
        parent = os.fstat(parent_fd)
        frame = self._open_dir(
            parent_fd, name, display, parent.st_dev, tally, None, keep, mount_id(parent_fd)
        )
        if frame is None:
            return tally
        try:
            subdirs = self._scan(frame, tally)
        finally:
            os.close(frame.fd)
        tally.kept.clear()
        if subdirs:
            tally.subdirs = subdirs
            return tally
        rest = self.remove(parent_fd, name, display, keep)  # an emptied directory: cheap
        tally.bytes_freed += rest.bytes_freed
        tally.files_deleted += rest.files_deleted
        tally.dirs_removed += rest.dirs_removed
        tally.kept.extend(rest.kept)
        tally.errors.extend(rest.errors)
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
        parent_fd: int,
        name: str,
        display: str,
        parent_device: int,
        tally: Tally,
        parent: _Frame | None,
        keep: frozenset[str],
        parent_mount: int | None = None,
    ) -> _Frame | None:
        """Open a directory entry without following links; None when it is not entered."""
        if self.before_open is not None:
            self.before_open(parent_fd, name)
        try:
            fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                # Swapped for a link or a file since it was listed: remove that, as what it is.
                self._remove_changed(parent_fd, name, display, tally)
            else:
                tally.errors.append(f"{display}: {error.strerror}")
            return None
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        mount = mount_id(fd)
        reason = None
        if (
            info.st_dev != parent_device
            or key in self.mount_points
            or (mount is not None and parent_mount is not None and mount != parent_mount)
        ):
            # The mount id also catches a bind mount of the same filesystem made after the
            # run started (st_dev cannot, and the start-time mount list does not have it).
            reason = "a mount point: not crossed"
        elif key in self.protected:
            reason = "refused: a protected path (database, config, log directory or a root)"
        if reason is not None:
            os.close(fd)
            tally.errors.append(f"{display}: {reason}")
            return None
        return _Frame(
            fd=fd,
            parent_fd=parent_fd,
            name=name,
            display=display,
            device=info.st_dev,
            blocks=info.st_blocks,
            mount=mount,
            keep=keep,
            parent=parent,
        )

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
                    tally.kept.append(frame.display + name)
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
                    tally.errors.append(f"{frame.display}{name}: {error.strerror}")
                    frame.blocked = True
                    continue
                if fast and info.st_nlink == 1 and (info.st_dev, info.st_ino) not in protected:
                    try:
                        unlink(name, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    except OSError as error:
                        tally.errors.append(f"{frame.display}{name}: {error.strerror}")
                        frame.blocked = True
                        continue
                    freed += info.st_blocks
                    files += 1
                    continue
                before = len(tally.errors)
                self._remove_file(fd, name, frame.display + name, info, tally)
                frame.blocked |= len(tally.errors) > before
        tally.bytes_freed += freed * BLOCK
        tally.files_deleted += files
        return subdirs

    def _remove_tree(
        self,
        root_fd: int,
        name: str,
        display: str,
        keep: frozenset[str],
        root_device: int,
        tally: Tally,
    ) -> None:
        top = self._open_dir(
            root_fd, name, display, root_device, tally, None, keep, mount_id(root_fd)
        )
        stack = [top] if top is not None else []
        while stack:
            frame = stack[-1]
            if frame.pending is None:
                frame.pending = self._scan(frame, tally)
            if frame.pending:
                child_name = frame.pending.pop()
                before = len(tally.errors)
                child = self._open_dir(
                    frame.fd,
                    child_name,
                    f"{frame.display}{child_name}/",
                    frame.device,
                    tally,
                    frame,
                    frozenset(),
                    frame.mount,
                )
                frame.blocked |= len(tally.errors) > before
                if child is not None:
                    stack.append(child)
                continue
            stack.pop()
            self._finish_dir(frame, tally, stack)

    def _finish_dir(self, frame: _Frame, tally: Tally, stack: list[_Frame]) -> None:
        """Remove an emptied directory; rescan a bounded number of times if files appeared."""
        if frame.blocked:
            os.close(frame.fd)
            if frame.parent is not None:
                frame.parent.blocked = True
            return
        if self.dry_run:
            os.close(frame.fd)
            tally.bytes_freed += frame.blocks * BLOCK
            tally.dirs_removed += 1
            return
        try:
            os.rmdir(frame.name, dir_fd=frame.parent_fd)
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
        tally.bytes_freed += frame.blocks * BLOCK
        tally.dirs_removed += 1

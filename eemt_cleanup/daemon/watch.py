"""File events as hints (watchdog): something changed in a root, the database's directory
or the config file's directory, so look now rather than at the next poll.

Watches are non-recursive (a root with a million files costs one watch). Events never
decide anything: the daemon measures free space and compares the config file's content
itself, so a filesystem where inotify says nothing (NFS, some bind mounts) only makes the
daemon later, never wrong. A directory that cannot be watched is logged once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("eemt_cleanup.daemon")


class Hints:
    """Starts one watchdog observer over ``disk`` directories and ``config`` directories;
    calls ``on_disk()`` / ``on_config()`` from the observer's thread (they must be quick)."""

    def __init__(
        self,
        disk: Iterable[Path],
        config: Iterable[Path],
        on_disk: Callable[[], None],
        on_config: Callable[[], None],
    ) -> None:
        self.on_disk = on_disk
        self.on_config = on_config
        self.disk = sorted({Path(path) for path in disk})
        self.config = sorted({Path(path) for path in config})
        self.watched: list[Path] = []
        self.unwatched: list[tuple[Path, str]] = []
        self._observer: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError as error:  # pragma: no cover - a core dependency
            log.warning("file events unavailable (%s): polling only", error)
            return

        class Handler(FileSystemEventHandler):
            def __init__(self, callback: Callable[[], None]) -> None:
                self.callback = callback

            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return  # reads (our own included) change nothing
                self.callback()

        observer = Observer()
        observer.daemon = True
        try:
            observer.start()
        except (OSError, RuntimeError) as error:
            log.warning("file events unavailable (%s): polling only", error)
            return
        # Scheduled on the running observer: a directory that cannot be watched fails alone.
        for directory, callback in [(path, self.on_disk) for path in self.disk] + [
            (path, self.on_config) for path in self.config
        ]:
            try:
                observer.schedule(Handler(callback), str(directory), recursive=False)
                self.watched.append(directory)
            except (OSError, RuntimeError) as error:
                reason = getattr(error, "strerror", None) or str(error)
                self.unwatched.append((directory, reason))
                log.warning("no file events for %s (%s): the poll alone decides", directory, reason)
        self._observer = observer

    def stop(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

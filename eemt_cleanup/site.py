"""One installation opened for work: the store, the policy, the root descriptors and the
means to delete under them, opened the same way by ``run``, ``status`` and every later
command (daemon, HTTP API).

Opening order is what keeps a failed start harmless: the roots are checked, the run lock
taken (writers only), the database connected, the jobs table checked (a view, WITHOUT ROWID,
...) and the caller's own checks run, all before anything is written; then each root is
opened once, without following a symlink, and every deletion is relative to those
descriptors.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import ConfigError
from eemt_cleanup.fs.pool import Deleter, make_deleter
from eemt_cleanup.fs.remove import Remover, mount_points_under
from eemt_cleanup.fs.walk import DIRECTORY_FLAGS, Inode
from eemt_cleanup.lock import RunLock
from eemt_cleanup.models import Root
from eemt_cleanup.policy import Policy
from eemt_cleanup.store.db import JobStore, check_database_path, connect


def check_roots(config: LoadedConfig) -> dict[str, Path]:
    """The three deletion roots, which must exist as directories (raises ConfigError)."""
    roots = {str(key): getattr(config.roots, key) for key in Root}
    for key, path in roots.items():
        if not path.is_dir():
            raise ConfigError(
                f"paths.{key}: not an existing directory: {path} "
                f"(from {config.sources.get('paths.' + key, 'default')})"
            )
    return roots


def open_roots(roots: dict[str, Path]) -> dict[str, int]:
    """Open each root once, as resolved at start: a root that turned into a symlink since
    is refused (raises ConfigError, nothing left open)."""
    fds: dict[str, int] = {}
    for key, path in roots.items():
        try:
            fds[key] = os.open(path, DIRECTORY_FLAGS)
        except OSError as error:
            for fd in fds.values():
                os.close(fd)
            raise ConfigError(
                f"paths.{key}: cannot open the root {path}: {error.strerror}"
            ) from None
    return fds


@dataclass
class Site:
    config: LoadedConfig
    conn: sqlite3.Connection
    store: JobStore
    policy: Policy
    roots: dict[str, Path]
    root_fds: dict[str, int]
    lock: RunLock | None = None
    _mount_points: set[Inode] | None = field(default=None, repr=False)

    @property
    def database(self) -> Path:
        return self.config.roots.database

    def reload_store(self) -> JobStore:
        """A fresh view of the jobs table (after migrations added columns)."""
        self.store = JobStore(self.conn, self.database, self.config.settings.jobs)
        return self.store

    @property
    def workers(self) -> int:
        performance = self.config.settings.performance
        return performance.max_workers if performance.parallel_delete else 1

    def remover(self, *, dry_run: bool) -> Remover:
        """The Remover for this site: never inside the roots themselves, the database, its
        directory, the logs directory or the config file; never across a mount point."""
        if self._mount_points is None:
            self._mount_points = mount_points_under(self.roots.values())
        return Remover(dry_run=dry_run, protected=self.protected(), mount_points=self._mount_points)

    def deleter(self, remover: Remover, workers: int | None = None) -> Deleter:
        return make_deleter(self.root_fds, remover, self.workers if workers is None else workers)

    def protected(self) -> set[Inode]:
        paths: list[Path] = [
            *self.roots.values(),
            self.config.roots.database,
            self.config.roots.database.parent,
            self.config.roots.logs,
        ]
        if self.config.config_file is not None:
            paths.append(self.config.config_file)
        protected = set()
        for path in paths:
            try:
                info = os.stat(path)
            except OSError:
                continue
            protected.add((info.st_dev, info.st_ino))
        return protected


@contextlib.contextmanager
def open_site(
    config: LoadedConfig,
    *,
    write: bool,
    lock: bool = False,
    check: Callable[[JobStore], None] | None = None,
) -> Iterator[Site]:
    """Open the site; everything is closed again on leaving (the lock last: its descriptor
    may only be closed once no SQLite connection of this process is left, see lock.py).

    ``write`` connects read-write; ``lock`` takes the run lock first (a run that deletes);
    ``check`` is called with the store before the roots are opened (e.g. unknown --job ids).
    Raises ConfigError/DatabaseError (nothing written), LockedError or BusyError.
    """
    roots = check_roots(config)
    database = config.roots.database
    settings = config.settings
    with contextlib.ExitStack() as stack:
        run_lock = None
        if lock:
            check_database_path(database)
            run_lock = stack.enter_context(RunLock(database))
        conn = connect(
            database, readonly=not write, timeout=settings.performance.busy_timeout_seconds
        )
        stack.callback(conn.close)
        store = JobStore(conn, database, settings.jobs)
        if check is not None:
            check(store)
        fds = open_roots(roots)

        def close_roots() -> None:
            for fd in fds.values():
                os.close(fd)
            fds.clear()

        stack.callback(close_roots)
        yield Site(
            config=config,
            conn=conn,
            store=store,
            policy=Policy.from_settings(settings),
            roots=roots,
            root_fds=fds,
            lock=run_lock,
        )


__all__ = ["Site", "check_roots", "open_roots", "open_site"]

"""Usage samples: what the data of the jobs not yet cleaned occupies, per status and per
root, and how full each root's filesystem is; taken after a real run and by ``status``, and
stored (append-only) for the metrics, the alerts and ``report``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from datetime import datetime

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import CleanupError
from eemt_cleanup.models import Root
from eemt_cleanup.stocktake import Inventory, take_inventory
from eemt_cleanup.store.db import connect
from eemt_cleanup.store.migrations import migrate
from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample, write_sample
from eemt_cleanup.timeparse import utc_now

log = logging.getLogger("eemt_cleanup")


def filesystem_of(path: os.PathLike[str] | str) -> tuple[int | None, int | None, int | None]:
    """``(size, available, device)`` of the filesystem holding ``path``: bytes as ``df``
    shows Size and Avail (blocks reserved for root are not counted as free), and its
    device number (roots with the same one share the filesystem); None when unknown."""
    try:
        info = os.statvfs(path)
        device = os.stat(path).st_dev
    except OSError:
        return None, None, None
    return info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize, device


def sample_from(
    config: LoadedConfig,
    inventory: Inventory,
    *,
    source: str,
    run_id: str | None = None,
    now: datetime | None = None,
) -> UsageSample:
    """The usage sample that ``inventory`` (measured) and the roots' filesystems make."""
    by_root = []
    for root in Root:
        tally = inventory.roots[root]
        size, free, device = filesystem_of(getattr(config.roots, root))
        by_root.append(
            RootUsage(
                root=str(root),
                jobs=tally.jobs,
                bytes=tally.bytes_used,
                fs_size=size,
                fs_free=free,
                fs_id=device,
            )
        )
    return UsageSample(
        sample_id=str(uuid.uuid4()),
        taken_at=now or utc_now(),
        source=source,
        run_id=run_id,
        by_status=[
            StatusUsage(status=group.status, jobs=group.jobs, bytes=group.bytes_used)
            for group in sorted(inventory.groups.values(), key=lambda g: g.status)
        ],
        by_root=by_root,
        due_jobs=inventory.due_now,
        due_bytes=inventory.due_bytes,
    )


def take_sample(config: LoadedConfig, *, source: str, run_id: str | None = None) -> UsageSample:
    """Measure the site now (as ``status`` does, storing nothing). Raises CleanupError."""
    inventory = take_inventory(config, measure=True, store_sizes=False)
    return sample_from(config, inventory, source=source, run_id=run_id)


def store_sample(config: LoadedConfig, sample: UsageSample) -> str | None:
    """Append ``sample`` to the usage history (adding our tables first if needed).
    Returns None, or why it could not be stored (never raises for a database problem)."""
    settings = config.settings
    try:
        conn = connect(
            config.roots.database,
            readonly=False,
            timeout=settings.performance.busy_timeout_seconds,
        )
    except CleanupError as error:
        return str(error)
    try:
        columns = settings.jobs.columns
        migrate(conn, settings.jobs.table, columns.status, columns.dem_filename)
        write_sample(conn, sample)
    except sqlite3.Error as error:
        return f"the usage sample could not be stored: {error}"
    finally:
        conn.close()
    return None


__all__ = ["filesystem_of", "sample_from", "store_sample", "take_sample"]

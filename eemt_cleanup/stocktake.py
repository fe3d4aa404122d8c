"""``status``: what the data of not-yet-cleaned jobs occupies, what is due, what comes next."""

from __future__ import annotations

import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.fs.names import NameRefused
from eemt_cleanup.lock import Holder, find_holder
from eemt_cleanup.models import Kept, Root, Skip, SkipReason, kept_kinds
from eemt_cleanup.policy import Decision, Policy, Verdict, decide, owned_artifacts
from eemt_cleanup.site import Site, open_site
from eemt_cleanup.store import audit as audit_store
from eemt_cleanup.store.db import JobStore
from eemt_cleanup.store.migrations import migrate
from eemt_cleanup.timeparse import utc_now

log = logging.getLogger("eemt_cleanup")

_KEPT = {
    Verdict.UNKNOWN_AGE: SkipReason.UNKNOWN_AGE,
    Verdict.UNKNOWN_STATUS: SkipReason.UNKNOWN_STATUS,
}


@dataclass
class StatusGroup:
    """Not-yet-cleaned jobs of one status and the disk their data uses."""

    status: str
    jobs: int = 0
    bytes_used: int = 0
    due_now: int = 0
    due_bytes: int = 0


@dataclass
class RootTally:
    """Not-yet-cleaned jobs with data in one root, and the bytes of that data."""

    root: str
    jobs: int = 0
    bytes_used: int = 0


@dataclass
class Inventory:
    groups: dict[str, StatusGroup] = field(default_factory=dict)
    roots: dict[str, RootTally] = field(
        default_factory=lambda: {str(root): RootTally(str(root)) for root in Root}
    )
    next_due_at: datetime | None = None
    next_due_job: str | None = None
    last_run: dict[str, Any] | None = None
    running: Holder | None = None  # the run in progress, if one holds the lock
    measured: bool = True
    sizes_stored: bool = False
    notes: list[str] = field(default_factory=list)  # why sizes were not stored, ...
    kept: dict[str, Kept] = field(default_factory=kept_kinds)
    refused: Kept = field(default_factory=lambda: Kept(label="refused (hostile names)"))

    @property
    def problems(self) -> list[str]:
        """One line per kind of row that is never cleaned, with a few examples."""
        kinds = [*self.kept.values(), self.refused]
        return [kept.describe() for kept in kinds if kept.count]

    @property
    def due_now(self) -> int:
        return sum(group.due_now for group in self.groups.values())

    @property
    def due_bytes(self) -> int:
        return sum(group.due_bytes for group in self.groups.values())


def take_inventory(
    config: LoadedConfig, *, measure: bool = True, store_sizes: bool = True
) -> Inventory:
    """Measure (in parallel) every not-yet-cleaned job's data, per status.

    "Due now" is what ``run --dry-run`` would free, measured by the same dry run (the same
    rules for shared uploads and kept logs). Stores each measured size in ``data_size_mb``
    when ``store_sizes`` (adding the column first if needed). Raises ConfigError/
    DatabaseError for unusable paths or databases.
    """
    settings = config.settings
    inventory = Inventory(measured=measure)
    with open_site(config, write=store_sizes) as site:
        conn = site.conn
        if store_sizes and not _try_write(
            inventory,
            lambda: migrate(
                conn,
                settings.jobs.table,
                settings.jobs.columns.status,
                settings.jobs.columns.dem_filename,
            ),
        ):
            store_sizes = False
        store = site.reload_store()
        now = utc_now()
        decisions = [decide(row, site.policy, now) for row in _all_unclean(store, site.policy)]
        sizes = _measure(site, decisions) if measure else {}
        _aggregate(inventory, decisions, sizes)
        if measure and store_sizes and sizes:
            inventory.sizes_stored = _try_write(
                inventory,
                lambda: audit_store.store_sizes(
                    conn,
                    settings.jobs,
                    [(d.row.job_id, sizes[i].total) for i, d in enumerate(decisions) if i in sizes],
                ),
            )
        runs = audit_store.recent_runs(conn, 1)
        inventory.last_run = runs[0] if runs else None
        inventory.running = find_holder(config.roots.database)
        store.close()
    if measure:
        _due_as_dry_run(config, inventory, now)
    return inventory


def _due_as_dry_run(config: LoadedConfig, inventory: Inventory, now: Any) -> None:
    """Due now per status: what the dry run frees, job by job."""
    from eemt_cleanup.engine import RunOptions, run_cleanup

    report = run_cleanup(config, RunOptions(dry_run=True, trigger="status"), now=now)
    for group in inventory.groups.values():
        group.due_now = 0
        group.due_bytes = 0
    for job in report.jobs:
        group = inventory.groups.setdefault(job.status, StatusGroup(job.status))
        group.due_now += 1
        group.due_bytes += job.bytes_freed


def _try_write(inventory: Inventory, write: Any) -> bool:
    """Run one write of ``status``; a database that cannot be written (read-only, locked
    by another writer past the busy timeout, full) only means sizes are not stored."""
    try:
        write()
    except sqlite3.Error as error:
        inventory.notes.append(f"sizes not stored in data_size_mb: {error}")
        return False
    return True


def _all_unclean(store: JobStore, policy: Policy) -> Any:
    yield from store.iter_unclean(policy.known_statuses)
    yield from store.iter_unknown(policy.known_statuses)


@dataclass(frozen=True)
class _Size:
    own: int  # results dir, archive and temp dir
    upload: str | None
    upload_bytes: int
    results: int = 0  # of ``own``: the results dir and the archive
    temp: int = 0  # of ``own``: the temp dir

    @property
    def total(self) -> int:
        return self.own + self.upload_bytes


def _measure(site: Site, decisions: list[Decision]) -> dict[int, _Size]:
    """Index → measured size of each job whose paths can be named safely.

    Measured as a dry run measures: big trees in the deletion worker processes, small ones
    here; a file hard-linked from several jobs counts once, with the last link met.
    """
    meter = site.remover(dry_run=True)

    def size_of(index: int) -> tuple[int, _Size] | None:
        try:
            artifacts, _refused = owned_artifacts(decisions[index].row)
        except NameRefused:
            return None
        own, upload, upload_bytes = 0, None, 0
        per_root = {str(root): 0 for root in Root}
        for artifact in artifacts:
            size = deleter.remove(
                artifact.root,
                artifact.name,
                artifact.display,
                frozenset(),
                file_only=not artifact.directory,
            ).bytes_freed
            per_root[str(artifact.root)] += size
            if artifact.root == "uploads":
                upload, upload_bytes = artifact.name, size
            else:
                own += size
        return index, _Size(own, upload, upload_bytes, per_root[Root.RESULTS], per_root[Root.TEMP])

    workers = site.workers
    deleter = site.deleter(meter)
    try:
        with ThreadPoolExecutor(max_workers=2 * workers) as pool:
            measured = [item for item in pool.map(size_of, range(len(decisions))) if item]
    finally:
        deleter.close()
    return dict(measured)


def _aggregate(inventory: Inventory, decisions: list[Decision], sizes: dict[int, _Size]) -> None:
    counted_uploads: set[str] = set()
    for index, decision in enumerate(decisions):
        group = inventory.groups.setdefault(decision.status, StatusGroup(decision.status))
        group.jobs += 1
        measured = sizes.get(index, _Size(0, None, 0))
        size = measured.own
        _tally(inventory.roots[Root.RESULTS], measured.results)
        _tally(inventory.roots[Root.TEMP], measured.temp)
        if measured.upload is not None and measured.upload not in counted_uploads:
            # A shared upload occupies the disk once: count it with the first job seen.
            counted_uploads.add(measured.upload)
            size += measured.upload_bytes
            _tally(inventory.roots[Root.UPLOADS], measured.upload_bytes)
        group.bytes_used += size
        if decision.verdict is Verdict.DUE:
            group.due_now += 1
            group.due_bytes += size
        elif (
            decision.verdict in (Verdict.RETAINED, Verdict.CLOCK_SKEW)
            and decision.due_at is not None
            and (inventory.next_due_at is None or decision.due_at < inventory.next_due_at)
        ):
            inventory.next_due_at = decision.due_at
            inventory.next_due_job = decision.job_id
        elif decision.verdict in _KEPT:
            kept = inventory.kept[_KEPT[decision.verdict]]
            kept.add(_skip(decision, _KEPT[decision.verdict]))
        elif decision.verdict is Verdict.REFUSED:
            inventory.refused.add(_skip(decision, SkipReason.REFUSED))
        if decision.verdict is Verdict.CLOCK_SKEW:
            inventory.kept[SkipReason.CLOCK_SKEW].add(_skip(decision, SkipReason.CLOCK_SKEW))


def _tally(tally: RootTally, size: int) -> None:
    if size:
        tally.jobs += 1
        tally.bytes_used += size


def _skip(decision: Decision, code: SkipReason) -> Skip:
    return Skip(
        job_id=decision.job_id,
        reason=decision.reason or str(code).replace("_", " "),
        code=code,
        status=decision.status,
    )

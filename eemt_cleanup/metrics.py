"""Prometheus metrics, built from what SQLite holds (never from counters in this process).

A cron run is a fresh process: counters kept in memory would start from zero every night
and break ``increase()``. Every value here is read from the database instead: the counters
are sums over the run log (``cleanup_log``) and the per-batch cleaned totals
(``cleanup_counts``), which only ever grow; the gauges come from the latest usage sample
(``cleanup_usage``) and the alerts it crosses.

Conventions (also in the README):

- ``eemt_cleanup_last_success_timestamp_seconds`` and
  ``eemt_cleanup_last_sample_timestamp_seconds`` are ``0`` before the first success or
  sample, so ``time() - eemt_cleanup_last_success_timestamp_seconds > 2 * 86400`` also fires
  for a janitor that never succeeded (no separate ``absent()`` rule).
- ``eemt_cleanup_last_run_exit_code`` has no series before the first finished run (``0``
  would claim a success).
- The gauges of a usage sample (``eemt_storage_usage_*``, ``eemt_cleanup_jobs_due``,
  ``eemt_cleanup_filesystem_*``) have no series before the first sample: unknown is not zero.
- ``eemt_jobs_cleaned_total`` has a series for every configured successful and failed status
  (``0`` until one is cleaned), and ``eemt_cleanup_alert`` a ``0`` series for every configured
  threshold that is not crossed, so rules always have something to compare.

This module imports prometheus_client at load: it is itself imported only where metrics
are wanted (the ``metrics`` command, a run with ``metrics.textfile``), never at start-up.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from eemt_cleanup.alerts import AlertKind, check_alerts
from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.config.schema import Alerts
from eemt_cleanup.errors import BusyError, DatabaseError
from eemt_cleanup.models import Root
from eemt_cleanup.report.escape import printable
from eemt_cleanup.store.db import connect
from eemt_cleanup.store.usage import (
    CleanedTotal,
    RunStats,
    UsageSample,
    cleaned_totals,
    latest_sample,
    run_stats,
)

log = logging.getLogger("eemt_cleanup")

# Seconds: from a quiet night (under a second) to a backlog of millions of files (hours).
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200)


@dataclass(frozen=True)
class Figures:
    """What the metrics are made of, read from the database in one snapshot."""

    runs: RunStats
    cleaned: list[CleanedTotal]
    sample: UsageSample | None


def read_figures(config: LoadedConfig) -> Figures:
    """The run log's figures, the cleaned totals and the latest usage sample of
    ``config.roots.database``, read in one read-only transaction (a run committing
    meanwhile is seen whole or not at all). A database without our tables reads as empty.

    Raises DatabaseError when the database is missing, not SQLite, or unreadable;
    BusyError when another writer keeps it locked past the busy timeout.
    """
    database = config.roots.database
    conn = connect(database, readonly=True)
    try:
        conn.execute("BEGIN")
        return Figures(
            runs=run_stats(conn), cleaned=cleaned_totals(conn), sample=latest_sample(conn)
        )
    except sqlite3.Error as error:
        # A run writing the metrics textfile must get a domain error it can report, never
        # a raw sqlite3 exception; a writer outlasting the busy timeout is "try again".
        if "locked" in str(error) or "busy" in str(error):
            raise BusyError(f"{database}: locked by another writer ({error})") from None
        raise DatabaseError(f"{database}: cannot read the metrics ({error})") from None
    finally:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")  # a read transaction: nothing to lose
        conn.close()


def label(value: object) -> str:
    """A label value from the database, safe to show on a terminal.

    prometheus_client escapes ``\\``, ``"`` and newlines itself; every other control or
    reordering character, and bytes that were not UTF-8, become backslash escapes (a label
    value must be UTF-8, and ``eemt-cleanup metrics`` prints to a terminal).
    """
    return "\n".join(printable(part, backslashes=False) for part in str(value).split("\n"))


def _summed(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    # Two values that escape alike must not make two identical series: Prometheus (and
    # node_exporter's textfile collector) refuse a file with a duplicate series.
    totals: dict[str, float] = {}
    for name, value in pairs:
        key = label(name)
        totals[key] = totals.get(key, 0) + value
    return totals


def _counters(figures: Figures, statuses: Sequence[str]) -> Iterator[Metric]:
    runs = figures.runs
    yield CounterMetricFamily(
        "eemt_cleanup_runs", "Real cleanup runs that finished (dry runs excluded).", runs.runs
    )
    by_trigger = CounterMetricFamily(
        "eemt_cleanup_runs_by_trigger",
        "Real cleanup runs that finished, by who started them (cron, schedule, "
        "disk_pressure, api...).",
        labels=["trigger"],
    )
    for trigger, count in sorted(_summed(runs.by_trigger.items()).items()):
        by_trigger.add_metric([trigger], count)
    yield by_trigger
    jobs = CounterMetricFamily(
        "eemt_jobs_cleaned", "Jobs whose data was cleaned, by job status.", labels=["status"]
    )
    cleaned = {label(status): 0.0 for status in statuses}
    cleaned.update(_summed((total.status, total.jobs) for total in figures.cleaned))
    for status, count in cleaned.items():
        jobs.add_metric([status], count)
    yield jobs
    yield CounterMetricFamily(
        "eemt_space_freed_bytes",
        "Bytes returned to the filesystem by real cleanup runs.",
        runs.bytes_freed,
    )
    yield CounterMetricFamily(
        "eemt_cleanup_files_deleted", "Files deleted by real cleanup runs.", runs.files_deleted
    )


def _duration(durations: Sequence[float]) -> Metric:
    # Bounds written as Go writes floats ("1.0"), as prometheus_client's own histograms do.
    buckets = [
        (repr(float(bound)), float(sum(1 for seconds in durations if seconds <= bound)))
        for bound in DURATION_BUCKETS
    ]
    buckets.append(("+Inf", float(len(durations))))
    return HistogramMetricFamily(
        "eemt_cleanup_duration_seconds",
        "Duration of every finished real cleanup run, in seconds.",
        buckets=buckets,
        sum_value=sum(durations),
    )


def _run_gauges(runs: RunStats) -> Iterator[Metric]:
    success = runs.last_success_at.timestamp() if runs.last_success_at else 0.0
    yield GaugeMetricFamily(
        "eemt_cleanup_last_success_timestamp_seconds",
        "When the last real run that exited 0 finished (Unix time; 0: never).",
        success,
    )
    code = GaugeMetricFamily(
        "eemt_cleanup_last_run_exit_code",
        "Exit code of the last finished real run (no series before the first).",
    )
    if runs.last_exit_code is not None:
        code.add_metric([], runs.last_exit_code)
    yield code


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _sample_gauges(sample: UsageSample | None, statuses: Sequence[str]) -> Iterator[Metric]:
    taken = sample.taken_at.timestamp() if sample else 0.0
    yield GaugeMetricFamily(
        "eemt_cleanup_last_sample_timestamp_seconds",
        "When the latest usage sample was taken (Unix time; 0: never).",
        taken,
    )
    by_status = _gauge(
        "eemt_storage_usage_bytes", "Bytes of not-yet-cleaned job data, by job status.", ["status"]
    )
    by_root = _gauge(
        "eemt_storage_usage_root_bytes",
        "Bytes of not-yet-cleaned job data, by root (uploads, results, temp).",
        ["root"],
    )
    due = _gauge("eemt_cleanup_jobs_due", "Jobs past retention, due to be cleaned.")
    free = _gauge(
        "eemt_cleanup_filesystem_free_bytes",
        "Bytes available to the cleanup on the filesystem of each root (df's Avail).",
        ["root"],
    )
    size = _gauge(
        "eemt_cleanup_filesystem_size_bytes", "Size of the filesystem of each root.", ["root"]
    )
    if sample is not None:
        # A sample measures every job not yet cleaned: a status it does not list has none.
        used_by_status = {label(status): 0.0 for status in statuses}
        used_by_status.update(_summed((g.status, g.bytes) for g in sample.by_status))
        for status, used in used_by_status.items():
            by_status.add_metric([status], used)
        for root, used in _summed((u.root, u.bytes) for u in sample.by_root).items():
            by_root.add_metric([root], used)
        due.add_metric([], sample.due_jobs)
        known = [usage for usage in sample.by_root if usage.fs_size is not None]
        for root, value in _summed((u.root, u.fs_free or 0) for u in known).items():
            free.add_metric([root], value)
        for root, value in _summed((u.root, u.fs_size or 0) for u in known).items():
            size.add_metric([root], value)
    yield from (by_status, by_root, due, free, size)


def _alert_series(alerts: Alerts, sample: UsageSample | None) -> dict[tuple[str, str], float]:
    series: dict[tuple[str, str], float] = {}
    # 0 for each configured threshold first, then 1 where check_alerts says it is crossed.
    if alerts.results_limit is not None:
        series[(AlertKind.MAX_RESULTS_BYTES.value, Root.RESULTS.value)] = 0.0
    if alerts.min_free_percent is not None:
        roots = [root.value for root in Root]
        roots += [label(u.root) for u in sample.by_root] if sample else []
        for root in roots:
            series[(AlertKind.MIN_FREE_PERCENT.value, root)] = 0.0
    for alert in check_alerts(alerts, sample):
        for root in alert.roots:
            series[(alert.kind.value, label(root))] = 1.0
    return series


def _alert_gauge(alerts: Alerts, sample: UsageSample | None) -> Metric:
    gauge = _gauge(
        "eemt_cleanup_alert",
        "1 when a disk alert threshold (alerts.max_results_bytes, alerts.min_free_percent) "
        "is crossed in the latest usage sample, 0 when configured and not crossed; one "
        "series per root.",
        ["alert", "root"],
    )
    for (kind, root), value in sorted(_alert_series(alerts, sample).items()):
        gauge.add_metric([kind, root], value)
    return gauge


class CleanupCollector(Collector):
    """The metric families of one :class:`Figures` snapshot (read once, before collection)."""

    def __init__(
        self,
        figures: Figures,
        alerts: Alerts,
        *,
        cleaned_statuses: Sequence[str],
        usage_statuses: Sequence[str],
    ) -> None:
        self.figures = figures
        self.alerts = alerts
        self.cleaned_statuses = list(cleaned_statuses)  # 0 series in eemt_jobs_cleaned_total
        self.usage_statuses = list(usage_statuses)  # 0 series in eemt_storage_usage_bytes

    def collect(self) -> Iterable[Metric]:
        yield from _counters(self.figures, self.cleaned_statuses)
        yield _duration(self.figures.runs.durations)
        yield from _run_gauges(self.figures.runs)
        yield from _sample_gauges(self.figures.sample, self.usage_statuses)
        yield _alert_gauge(self.alerts, self.figures.sample)


def build_registry(figures: Figures, config: LoadedConfig) -> CollectorRegistry:
    """A dedicated registry (never the global one: no process or platform metrics, nothing
    another library registered) holding the collector of ``figures``."""
    statuses = config.settings.jobs.statuses
    registry = CollectorRegistry(auto_describe=False)
    cleaned = [*statuses.successful, *statuses.failed]
    registry.register(
        CleanupCollector(
            figures,
            config.settings.alerts,
            cleaned_statuses=cleaned,
            usage_statuses=[*cleaned, *statuses.active],
        )
    )
    return registry


def render(config: LoadedConfig) -> bytes:
    """The exposition text of ``config.roots.database``'s figures (read read-only; a
    database without our tables gives zeros).

    Raises DatabaseError when the database is missing or not SQLite.
    """
    return generate_latest(build_registry(read_figures(config), config))


def write_textfile(config: LoadedConfig, path: str | Path) -> None:
    """Write the exposition to ``path`` atomically, for node_exporter's textfile collector:
    a new temporary file in the same directory (``.NAME.<random>.tmp``, which the collector
    ignores: it reads only ``*.prom``), mode 0644 whatever the umask (node_exporter runs as
    its own user), then a rename over ``path``.

    prometheus_client's ``write_to_textfile`` is not used: it opens its temporary file
    with a plain ``open()``, so a symlink planted at that name in a directory others can
    write would make a root process write through it. Here the temporary file is created
    ``O_EXCL | O_NOFOLLOW`` and a symlink at ``path`` is replaced, never followed.

    Raises OSError when the directory is missing or not writable, or ``path`` is a
    directory; DatabaseError as :func:`render` does.
    """
    from eemt_cleanup.fs.safe_open import write_new_file

    data = generate_latest(build_registry(read_figures(config), config))
    write_new_file(path, data, mode=0o644, replace=True)
    log.debug("metrics written to %s", printable(str(path)))


__all__ = [
    "DURATION_BUCKETS",
    "CleanupCollector",
    "Figures",
    "build_registry",
    "label",
    "read_figures",
    "render",
    "write_textfile",
]

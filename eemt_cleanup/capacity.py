"""The capacity picture (reference best practice 5, "Capacity Planning"): storage usage over
time from the stored usage samples, what the cleanups freed per day, the last 24 hours (the
reference's monitoring script), and a linear projection of when the results filesystem is
full, fitted to each day's highest used space (see :func:`project`).

Everything here reads the database (read-only) and computes; rendering is
:mod:`eemt_cleanup.report.capacity_view` (terminal) and :mod:`eemt_cleanup.report.chart`
(PNG). Days are UTC days, as the database stores UTC and ``freed_per_day`` groups by them.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import Root, UtcTime
from eemt_cleanup.store.db import connect
from eemt_cleanup.store.usage import (
    UsageSample,
    cleaned_totals,
    freed_per_day,
    latest_sample,
    samples_since,
)

SECONDS_PER_DAY = 86400.0
# Said with every projection (the --json "method", next to its sentence).
METHOD = "least squares over each day's highest used space"
# A trend needs the peaks of at least two days, the first and the last this far apart: two
# peaks a minute apart (either side of midnight) would turn noise (a job writing its
# results) into a confident date.
MIN_DAYS = 2
MIN_SPAN = timedelta(hours=1)
# Below this growth (either way) the used space is called flat: no date is given.
FLAT_BYTES_PER_DAY = 1024.0**2
# A full date further away than this is not a date anyone plans with (and would overflow
# datetime near year 9999).
FAR_DAYS = 36500.0
RESULTS_ROOT = str(Root.RESULTS)
LAST_DAY = timedelta(hours=24)

NO_SAMPLES_HINT = (
    "No usage samples yet: run 'eemt-cleanup status' (it stores one each time), or set "
    "usage.sample_after_run: true in cleanup_config.yaml so that every real run stores one."
)

Trend = Literal["growing", "shrinking", "flat", "not_enough_history"]


class FsPoint(BaseModel):
    """The results filesystem at one sample: its size and the bytes used on it."""

    taken_at: UtcTime
    used: int
    size: int


class DayUsage(BaseModel):
    """One UTC day: its last usage sample (None: no sample that day) and what the cleanups
    of that day freed."""

    day: str  # YYYY-MM-DD, UTC
    sample: UsageSample | None = None
    results_fs_used: int | None = None
    results_free_percent: float | None = None
    freed_bytes: int = 0
    jobs_cleaned: int = 0


class FreedDay(BaseModel):
    day: str  # YYYY-MM-DD, UTC
    bytes_freed: int
    jobs_cleaned: int


class CleanedRecently(BaseModel):
    """What the real runs cleaned since ``since`` (the reference's "last 24 hours")."""

    since: UtcTime
    jobs: int = 0
    bytes_freed: int = 0
    human_readable: str = "0 Bytes"
    files_deleted: int = 0
    jobs_by_status: dict[str, int] = Field(default_factory=dict)


class Projection(BaseModel):
    """A least-squares line through each UTC day's highest used bytes of the results
    filesystem (``method``; see :func:`project` for why the peaks).

    The projection starts at the latest day's peak (``anchor_at``, ``anchor_used``: where
    the disk really was, not where the fitted line puts it) and goes on at the fitted rate:
    ``used(t) = used_at_until + growth_bytes_per_day * (t - until) / 1 day``. ``samples``
    counts the samples of the filesystem in the window, ``peak_days`` the days whose peaks
    were fitted, and ``span_hours`` is the time from the first peak to the last.
    """

    trend: Trend
    samples: int
    peak_days: int = 0
    span_hours: float = 0.0
    growth_bytes_per_day: float | None = None
    anchor_at: UtcTime | None = None
    anchor_used: int | None = None
    used_at_until: float | None = None
    fs_size: int | None = None
    days_until_full: float | None = None
    full_at: UtcTime | None = None
    full_on: str | None = None  # YYYY-MM-DD, UTC
    method: str = METHOD
    sentence: str


class CapacityReport(BaseModel):
    """Usage over the window ``since``..``until``; ``notes`` says why parts are empty."""

    since: UtcTime
    until: UtcTime
    samples: int
    days: list[DayUsage] = Field(default_factory=list)
    freed_per_day: list[FreedDay] = Field(default_factory=list)
    results_filesystem: list[FsPoint] = Field(default_factory=list)
    cleaned_last_24h: CleanedRecently
    current: UsageSample | None = None
    projection: Projection
    notes: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- building


def build_report(config: LoadedConfig, *, since: datetime, now: datetime) -> CapacityReport:
    """The capacity picture of ``config``'s database from ``since`` to ``now``.

    Opens the database read-only. Raises DatabaseError when it is missing or not SQLite.
    """
    conn = connect(
        config.roots.database,
        readonly=True,
        timeout=config.settings.performance.busy_timeout_seconds,
    )
    try:
        return report_from(conn, since=since, now=now)
    finally:
        conn.close()


def report_from(conn: sqlite3.Connection, *, since: datetime, now: datetime) -> CapacityReport:
    """The capacity picture read through ``conn`` (see :func:`build_report`)."""
    window = [sample for sample in samples_since(conn, since) if sample.taken_at <= now]
    freed = [
        FreedDay(day=day, bytes_freed=size, jobs_cleaned=jobs)
        for day, size, jobs in freed_per_day(conn, since)
        if day <= now.astimezone(UTC).date().isoformat()
    ]
    points = filesystem_points(window)
    current = _current(conn, window, now)
    return CapacityReport(
        since=since,
        until=now,
        samples=len(window),
        days=daily(window, freed),
        freed_per_day=freed,
        results_filesystem=points,
        cleaned_last_24h=cleaned_recently(conn, now - LAST_DAY),
        current=current,
        projection=project(points, now) if window else _no_projection(),
        notes=_notes(window, current, since),
    )


def _current(
    conn: sqlite3.Connection, window: Sequence[UsageSample], now: datetime
) -> UsageSample | None:
    """The newest sample taken by ``now`` (before the window, when none is in it)."""
    if window:
        return window[-1]
    latest = latest_sample(conn)
    return latest if latest is not None and latest.taken_at <= now else None


def _notes(
    window: Sequence[UsageSample], current: UsageSample | None, since: datetime
) -> list[str]:
    if window:
        return []
    if current is None:
        return [NO_SAMPLES_HINT]
    from eemt_cleanup.report.dates import moment

    return [
        f"No usage samples since {moment(since)} (the latest is from "
        f"{moment(current.taken_at)}): give an earlier --since, or take one with "
        "'eemt-cleanup status'."
    ]


def _no_projection() -> Projection:
    return Projection(
        trend="not_enough_history",
        samples=0,
        sentence="not enough history for a projection: there are no usage samples",
    )


def cleaned_recently(conn: sqlite3.Connection, since: datetime) -> CleanedRecently:
    """Jobs cleaned and bytes freed by the real runs' batches recorded since ``since``."""
    totals = cleaned_totals(conn, since=since)
    freed = sum(total.bytes_freed for total in totals)
    by_status: dict[str, int] = {}
    for total in totals:
        by_status[total.status] = by_status.get(total.status, 0) + total.jobs
    return CleanedRecently(
        since=since,
        jobs=sum(total.jobs for total in totals),
        bytes_freed=freed,
        human_readable=human_size(freed),
        files_deleted=sum(total.files_deleted for total in totals),
        jobs_by_status=by_status,
    )


def day_of(moment: datetime) -> str:
    """``YYYY-MM-DD`` of ``moment``'s UTC day."""
    return moment.astimezone(UTC).date().isoformat()


def daily(samples: Sequence[UsageSample], freed: Sequence[FreedDay]) -> list[DayUsage]:
    """One entry per UTC day from the first day with a sample or a cleanup to the last,
    with the day's *last* sample (samples are oldest first) and what was freed that day.
    A day with neither is kept, empty, so that a gap in the history shows."""
    last: dict[str, UsageSample] = {}
    for taken in samples:
        last[day_of(taken.taken_at)] = taken
    freed_on = {entry.day: entry for entry in freed}
    known = sorted(set(last) | set(freed_on))
    if not known:
        return []
    days = []
    first, final = date.fromisoformat(known[0]), date.fromisoformat(known[-1])
    for offset in range((final - first).days + 1):
        day = (first + timedelta(days=offset)).isoformat()
        sample, cleaned = last.get(day), freed_on.get(day)
        results = sample.root(RESULTS_ROOT) if sample is not None else None
        days.append(
            DayUsage(
                day=day,
                sample=sample,
                results_fs_used=_used(results.fs_size, results.fs_free) if results else None,
                results_free_percent=results.free_percent if results else None,
                freed_bytes=cleaned.bytes_freed if cleaned else 0,
                jobs_cleaned=cleaned.jobs_cleaned if cleaned else 0,
            )
        )
    return days


def _used(size: int | None, free: int | None) -> int | None:
    return None if size is None or free is None else size - free


def filesystem_points(samples: Sequence[UsageSample]) -> list[FsPoint]:
    """The results filesystem's size and used bytes at each sample that recorded them."""
    points = []
    for sample in samples:
        results = sample.root(RESULTS_ROOT)
        if results is None or not results.fs_size or results.fs_free is None:
            continue
        points.append(
            FsPoint(
                taken_at=sample.taken_at,
                used=results.fs_size - results.fs_free,
                size=results.fs_size,
            )
        )
    return points


# --------------------------------------------------------------------------- projection


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line through the points.

    Raises ValueError with fewer than two points or when every x is the same.
    """
    try:
        slope, intercept = statistics.linear_regression(xs, ys)
    except statistics.StatisticsError as error:
        raise ValueError(str(error)) from None
    return slope, intercept


def daily_peaks(points: Sequence[FsPoint]) -> list[FsPoint]:
    """Each UTC day's point with the highest used space (the earliest of equal ones),
    oldest day first, from ``points`` oldest first."""
    peaks: dict[str, FsPoint] = {}
    for point in points:
        day = day_of(point.taken_at)
        if day not in peaks or point.used > peaks[day].used:
            peaks[day] = point
    return [peaks[day] for day in sorted(peaks)]


def project(points: Sequence[FsPoint], now: datetime) -> Projection:
    """The trend of the results filesystem's used bytes, and when, going on from the
    latest day's peak at that rate, it reaches the filesystem's size (the latest point's).

    Given ``points`` oldest first; returns a Projection whose trend is
    ``not_enough_history`` with peaks of fewer than 2 days, or less than an hour apart.
    The rate is the least-squares slope through *one point per UTC day, its highest used
    space* (``METHOD``), not through every sample: samples come low after the nightly run
    (just cleaned) and higher from ``status`` during the day, and a fit over that saw-tooth
    follows whichever kind happens to be taken more often; the daily peak is what fills the
    disk, the conservative envelope.
    """
    peaks = daily_peaks(points)
    span = peaks[-1].taken_at - peaks[0].taken_at if peaks else timedelta(0)
    if len(peaks) < MIN_DAYS or span < MIN_SPAN:
        return Projection(
            trend="not_enough_history",
            samples=len(points),
            peak_days=len(peaks),
            span_hours=span.total_seconds() / 3600,
            fs_size=points[-1].size if points else None,
            sentence=_short_history(len(peaks), span),
        )
    start = peaks[0].taken_at
    slope, _ = fit_line(
        [(peak.taken_at - start).total_seconds() for peak in peaks],
        [float(peak.used) for peak in peaks],
    )
    growth = slope * SECONDS_PER_DAY
    latest = peaks[-1]
    projection = Projection(
        trend="flat",
        samples=len(points),
        peak_days=len(peaks),
        span_hours=span.total_seconds() / 3600,
        growth_bytes_per_day=growth,
        anchor_at=latest.taken_at,
        anchor_used=latest.used,
        used_at_until=latest.used + slope * (now - latest.taken_at).total_seconds(),
        fs_size=points[-1].size,
        sentence="",
    )
    if abs(growth) < FLAT_BYTES_PER_DAY:
        projection.sentence = (
            "used space on the results filesystem is flat (it changes less than "
            f"{human_size(int(FLAT_BYTES_PER_DAY))} a day): not growing, no full date"
        )
        return projection
    if growth < 0:
        projection.trend = "shrinking"
        projection.sentence = (
            f"used space on the results filesystem shrinks {human_size(int(-growth))} a day: "
            "not growing, no full date"
        )
        return projection
    projection.trend = "growing"
    _full_date(projection, now, growth)
    return projection


def _full_date(projection: Projection, now: datetime, growth: float) -> None:
    """Set when the growing line reaches the filesystem's size, and say so."""
    assert projection.fs_size is not None and projection.used_at_until is not None
    days = (projection.fs_size - projection.used_at_until) / growth
    rate = f"used space on the results filesystem grows {human_size(int(growth))} a day"
    if days > FAR_DAYS:
        projection.sentence = (
            f"{rate}; at this rate the results filesystem is full in more than "
            f"{int(FAR_DAYS / 365)} years"
        )
        return
    full_at = now + timedelta(days=days)
    projection.full_at, projection.full_on = full_at, day_of(full_at)
    projection.days_until_full = max(0.0, days)
    if days <= 0:
        projection.sentence = (
            f"{rate}; at this rate the results filesystem is already full (the trend "
            f"reached its size on {projection.full_on})"
        )
        return
    projection.sentence = (
        f"{rate}; at this rate the results filesystem is full in {_in_days(days)} "
        f"({projection.full_on})"
    )


def _in_days(days: float) -> str:
    if days < 1:
        return "less than a day"
    whole = round(days)
    return "1 day" if whole == 1 else f"{whole} days"


def _short_history(days: int, span: timedelta) -> str:
    """Why there is no projection: ``days`` daily peaks, the first and last ``span`` apart."""
    import humanize

    if days == 0:
        have = "no sample of it"
    elif days == 1:
        have = "1 day"
    else:
        have = f"{days} days, their peaks within {humanize.naturaldelta(span)}"
    return (
        "not enough history for a projection: it needs the results filesystem's highest "
        f"used space on at least 2 days, at least 1 hour apart (have {have})"
    )


__all__ = [
    "METHOD",
    "NO_SAMPLES_HINT",
    "RESULTS_ROOT",
    "CapacityReport",
    "CleanedRecently",
    "DayUsage",
    "FreedDay",
    "FsPoint",
    "Projection",
    "build_report",
    "cleaned_recently",
    "daily",
    "daily_peaks",
    "filesystem_points",
    "fit_line",
    "project",
    "report_from",
]

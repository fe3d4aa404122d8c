"""Integration: the capacity picture from real SQLite files — the projection's arithmetic on
hand-made samples (a fit over each day's highest used space: a saw-tooth of low nightly and
high daytime samples does not bend it), the per-day aggregation (the last sample of each
day), freed per day and the last 24 hours from inserted counts, the window, and the
sparklines and tables it shows."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import create_jobs_db

from eemt_cleanup.capacity import (
    METHOD,
    NO_SAMPLES_HINT,
    CapacityReport,
    build_report,
    daily_peaks,
    fit_line,
    report_from,
)
from eemt_cleanup.config.loader import load_config
from eemt_cleanup.report.capacity_view import (
    condense,
    daily_table,
    last_day_line,
    projection_lines,
    sparkline,
    unit_for,
)
from eemt_cleanup.report.info_tables import column_widths
from eemt_cleanup.store.migrations import migrate
from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample, write_sample
from eemt_cleanup.timeparse import format_utc

GIB = 1024**3
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    create_jobs_db(path, [])
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, "jobs", "status", "dem_filename")
    finally:
        conn.close()
    return path


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        yield connection
    finally:
        assert not connection.in_transaction
        connection.close()


def add_sample(
    conn: sqlite3.Connection,
    taken_at: datetime,
    *,
    used: int = 0,
    fs_size: int | None = 100 * GIB,
    completed: int = 0,
    failed: int = 0,
    results: int = 0,
    source: str = "status",
) -> None:
    write_sample(
        conn,
        UsageSample(
            sample_id=str(uuid.uuid4()),
            taken_at=taken_at,
            source=source,
            by_status=[
                StatusUsage(status="completed", jobs=3, bytes=completed),
                StatusUsage(status="failed", jobs=1, bytes=failed),
            ],
            by_root=[
                RootUsage(
                    root="results",
                    jobs=4,
                    bytes=results,
                    fs_size=fs_size,
                    fs_free=None if fs_size is None else fs_size - used,
                ),
            ],
        ),
    )


def add_counts(conn: sqlite3.Connection, at: datetime, status: str, jobs: int, freed: int) -> None:
    kind = "successful" if status == "completed" else "failed"
    conn.execute(
        "INSERT INTO cleanup_counts (run_id, recorded_at, status, kind, jobs, bytes_freed, "
        "files_deleted) VALUES (?,?,?,?,?,?,?)",
        ("run-1", format_utc(at), status, kind, jobs, freed, jobs * 10),
    )


def report(conn: sqlite3.Connection, since: datetime = NOW - 30 * DAY) -> CapacityReport:
    return report_from(conn, since=since, now=NOW)


# --------------------------------------------------------------------------- projection


def test_used_growing_10_gib_a_day_on_100_gib_with_40_used_is_full_in_6_days(
    conn: sqlite3.Connection,
) -> None:
    for days_ago, used in ((4, 0), (3, 10), (2, 20), (1, 30), (0, 40)):
        add_sample(conn, NOW - days_ago * DAY, used=used * GIB)

    projection = report(conn).projection

    assert projection.trend == "growing"
    assert projection.samples == 5
    assert projection.growth_bytes_per_day == pytest.approx(10 * GIB)
    assert projection.used_at_until == pytest.approx(40 * GIB)
    assert projection.fs_size == 100 * GIB
    assert projection.days_until_full == pytest.approx(6.0)
    assert projection.full_on == "2026-12-08"
    assert projection.sentence == (
        "used space on the results filesystem grows 10.0 GB a day; at this rate the "
        "results filesystem is full in 6 days (2026-12-08)"
    )


def test_projection_is_measured_from_now_when_the_last_sample_is_older(
    conn: sqlite3.Connection,
) -> None:
    # 10 GiB a day, 40 GiB two days ago: 60 GiB by the fit now, full in 4 days.
    for days_ago, used in ((4, 20), (3, 30), (2, 40)):
        add_sample(conn, NOW - days_ago * DAY, used=used * GIB)

    projection = report(conn).projection

    assert projection.days_until_full == pytest.approx(4.0)
    assert projection.full_on == "2026-12-06"
    assert "full in 4 days (2026-12-06)" in projection.sentence


def test_projection_starts_from_the_latest_sample_at_the_fitted_rate(
    conn: sqlite3.Connection,
) -> None:
    # The fit: 5 GiB a day (its line is at 25 GiB now); the disk: 20 GiB used now.
    for days_ago, used in ((2, 10), (1, 30), (0, 20)):
        add_sample(conn, NOW - days_ago * DAY, used=used * GIB)

    projection = report(conn).projection

    assert projection.growth_bytes_per_day == pytest.approx(5 * GIB)
    assert (projection.anchor_at, projection.anchor_used) == (NOW, 20 * GIB)
    assert projection.days_until_full == pytest.approx(16.0)
    assert "full in 16 days (2026-12-18)" in projection.sentence


def test_shrinking_used_space_says_not_growing_and_gives_no_date(
    conn: sqlite3.Connection,
) -> None:
    for days_ago, used in ((2, 60), (1, 55), (0, 50)):
        add_sample(conn, NOW - days_ago * DAY, used=used * GIB)

    projection = report(conn).projection

    assert projection.trend == "shrinking"
    assert projection.growth_bytes_per_day == pytest.approx(-5 * GIB)
    assert projection.full_on is None and projection.days_until_full is None
    assert projection.sentence == (
        "used space on the results filesystem shrinks 5.0 GB a day: not growing, no full date"
    )


def test_flat_used_space_says_not_growing(conn: sqlite3.Connection) -> None:
    for days_ago in (3, 2, 1, 0):
        add_sample(conn, NOW - days_ago * DAY, used=70 * GIB)

    projection = report(conn).projection

    assert projection.trend == "flat"
    assert projection.growth_bytes_per_day == pytest.approx(0.0)
    assert projection.full_on is None
    assert projection.sentence == (
        "used space on the results filesystem is flat (it changes less than 1.0 MB a day): "
        "not growing, no full date"
    )


def test_one_sample_is_not_enough_history(conn: sqlite3.Connection) -> None:
    add_sample(conn, NOW - DAY, used=40 * GIB)

    projection = report(conn).projection

    assert projection.trend == "not_enough_history"
    assert projection.growth_bytes_per_day is None and projection.full_on is None
    assert projection.sentence == (
        "not enough history for a projection: it needs the results filesystem's highest "
        "used space on at least 2 days, at least 1 hour apart (have 1 day)"
    )
    assert projection_lines(report(conn)) == [f"Projection: {projection.sentence}"]


def test_many_samples_of_one_day_are_not_enough_history(conn: sqlite3.Connection) -> None:
    for hour in (2, 8, 11):
        add_sample(conn, NOW.replace(hour=hour), used=(40 + hour) * GIB)

    projection = report(conn).projection

    assert (projection.trend, projection.samples, projection.peak_days) == (
        "not_enough_history",
        3,
        1,
    )
    assert projection.sentence.endswith("(have 1 day)")


def test_peaks_of_two_days_less_than_an_hour_apart_are_not_enough_history(
    conn: sqlite3.Connection,
) -> None:
    midnight = NOW.replace(hour=0)
    add_sample(conn, midnight - timedelta(minutes=20), used=40 * GIB)
    add_sample(conn, midnight + timedelta(minutes=10), used=41 * GIB)

    projection = report(conn).projection

    assert projection.trend == "not_enough_history"
    assert projection.sentence.endswith("(have 2 days, their peaks within 30 minutes)")


def test_low_nightly_and_high_daytime_samples_give_the_growth_of_the_daily_peaks(
    conn: sqlite3.Connection,
) -> None:
    # Ten days growing 1 GiB a day: 02:05 after the nightly run (just cleaned), 14:00 from
    # status 5 GiB higher, and on the last four days status run twice more that afternoon.
    first_night = datetime(2026, 11, 23, 2, 5, tzinfo=UTC)
    base = 40 * GIB
    for day in range(10):
        night = first_night + day * DAY
        add_sample(conn, night, used=base + day * GIB, source="run")
        for hour in (14, 15, 16) if day >= 6 else (14,):
            add_sample(conn, night.replace(hour=hour, minute=0), used=base + (day + 5) * GIB)

    evening = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    capacity = report_from(conn, since=evening - 30 * DAY, now=evening)
    projection = capacity.projection

    # Every sample alike, the extra afternoons would bend the line up (the old fit).
    every_sample, _ = fit_line(
        [(p.taken_at - first_night).total_seconds() / 86400 for p in capacity.results_filesystem],
        [p.used / GIB for p in capacity.results_filesystem],
    )
    assert every_sample == pytest.approx(1.22, abs=0.01)
    assert projection.growth_bytes_per_day == pytest.approx(GIB, rel=0.01)
    assert (projection.samples, projection.peak_days, projection.method) == (28, 10, METHOD)
    # From the latest day's peak (14:00, the first of its 54 GiB samples) on to 18:00.
    assert projection.anchor_at == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
    assert projection.anchor_used == base + 14 * GIB
    assert projection.days_until_full == pytest.approx(46 - 4 / 24, rel=1e-6)
    assert projection.full_on == "2027-01-17"
    assert projection_lines(capacity) == [
        "Projection: used space on the results filesystem grows 1.0 GB a day; at this rate "
        "the results filesystem is full in 46 days (2027-01-17)",
        "  (least squares over each day's highest used space, 10 days)",
    ]


def test_the_latest_days_peak_is_the_anchor_even_when_a_later_sample_is_lower(
    conn: sqlite3.Connection,
) -> None:
    add_sample(conn, NOW - 2 * DAY, used=20 * GIB)
    add_sample(conn, NOW - DAY, used=30 * GIB)
    add_sample(conn, NOW - timedelta(hours=4), used=40 * GIB)
    add_sample(conn, NOW, used=35 * GIB)  # someone cleaned by hand since

    projection = report(conn).projection

    assert (projection.anchor_at, projection.anchor_used) == (
        NOW - timedelta(hours=4),
        40 * GIB,
    )
    assert projection.growth_bytes_per_day == pytest.approx(
        fit_line([0.0, 1.0, 2.0 - 4 / 24], [20.0, 30.0, 40.0])[0] * GIB
    )


def test_daily_peaks_keep_each_days_highest_and_the_earliest_of_equal_ones(
    conn: sqlite3.Connection,
) -> None:
    day = datetime(2026, 11, 30, tzinfo=UTC)
    for hour, used in ((2, 10), (9, 14), (13, 14), (20, 12)):
        add_sample(conn, day + timedelta(hours=hour), used=used * GIB)
    add_sample(conn, day + DAY + timedelta(hours=2), used=11 * GIB)

    peaks = daily_peaks(report(conn).results_filesystem)

    assert [(peak.taken_at, peak.used) for peak in peaks] == [
        (day + timedelta(hours=9), 14 * GIB),
        (day + DAY + timedelta(hours=2), 11 * GIB),
    ]


def test_samples_without_filesystem_figures_are_left_out_of_the_fit(
    conn: sqlite3.Connection,
) -> None:
    add_sample(conn, NOW - 2 * DAY, used=10 * GIB)
    add_sample(conn, NOW - DAY, fs_size=None)
    add_sample(conn, NOW, used=30 * GIB)

    capacity = report(conn)

    assert [point.used for point in capacity.results_filesystem] == [10 * GIB, 30 * GIB]
    assert (capacity.projection.samples, capacity.projection.peak_days) == (2, 2)
    assert capacity.projection.growth_bytes_per_day == pytest.approx(10 * GIB)


def test_fit_line_is_the_least_squares_line() -> None:
    slope, intercept = fit_line([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0])
    assert slope == pytest.approx(0.8)
    assert intercept == pytest.approx(1.3)
    with pytest.raises(ValueError):
        fit_line([5.0, 5.0], [1.0, 2.0])


# --------------------------------------------------------------------------- per day


def test_each_day_shows_its_last_sample_and_a_day_without_one_stays_empty(
    conn: sqlite3.Connection,
) -> None:
    first_day = datetime(2026, 11, 28, tzinfo=UTC)
    for hour, completed in ((8, 1 * GIB), (12, 2 * GIB), (23, 3 * GIB)):
        add_sample(conn, first_day + timedelta(hours=hour, minutes=30), completed=completed)
    add_sample(conn, first_day + 2 * DAY + timedelta(hours=1), completed=5 * GIB)

    days = report(conn).days

    assert [day.day for day in days] == ["2026-11-28", "2026-11-29", "2026-11-30"]
    assert days[0].sample is not None
    assert days[0].sample.taken_at == first_day + timedelta(hours=23, minutes=30)
    assert days[0].sample.by_status[0].bytes == 3 * GIB
    assert days[1].sample is None
    assert days[2].sample is not None and days[2].sample.by_status[0].bytes == 5 * GIB


def test_freed_per_day_matches_the_inserted_counts(conn: sqlite3.Connection) -> None:
    add_sample(conn, NOW - 3 * DAY)
    add_counts(conn, datetime(2026, 11, 29, 2, 0, tzinfo=UTC), "completed", 2, 7 * GIB)
    add_counts(conn, datetime(2026, 11, 29, 2, 5, tzinfo=UTC), "failed", 1, 1 * GIB)
    add_counts(conn, datetime(2026, 12, 1, 2, 0, tzinfo=UTC), "completed", 3, 12 * GIB)

    capacity = report(conn)

    freed = [(entry.day, entry.bytes_freed, entry.jobs_cleaned) for entry in capacity.freed_per_day]
    assert freed == [("2026-11-29", 8 * GIB, 3), ("2026-12-01", 12 * GIB, 3)]
    by_day = {day.day: (day.freed_bytes, day.jobs_cleaned) for day in capacity.days}
    assert by_day == {
        "2026-11-29": (8 * GIB, 3),
        "2026-11-30": (0, 0),
        "2026-12-01": (12 * GIB, 3),
    }


def test_last_24_hours_count_only_the_batches_recorded_since(conn: sqlite3.Connection) -> None:
    add_sample(conn, NOW)
    add_counts(conn, NOW - timedelta(hours=25), "completed", 9, 90 * GIB)
    add_counts(conn, NOW - timedelta(hours=23), "completed", 2, 30 * GIB)
    add_counts(conn, NOW - timedelta(hours=1), "failed", 1, 2 * GIB)

    recent = report(conn).cleaned_last_24h

    assert recent.since == NOW - timedelta(hours=24)
    assert (recent.jobs, recent.bytes_freed, recent.files_deleted) == (3, 32 * GIB, 30)
    assert recent.jobs_by_status == {"completed": 2, "failed": 1}
    assert recent.human_readable == "32.0 GB"
    assert last_day_line(report(conn)) == (
        "Last 24 h: 3 jobs cleaned (2 completed, 1 failed), 32.0 GB freed"
    )


def test_the_window_keeps_samples_from_since_to_now(conn: sqlite3.Connection) -> None:
    for days_ago in (10, 6, 4, 1):
        add_sample(conn, NOW - days_ago * DAY, used=days_ago * GIB)
    add_sample(conn, NOW + DAY, used=99 * GIB)  # after "now": not in the picture

    capacity = report(conn, since=NOW - 5 * DAY)

    assert capacity.samples == 2
    assert [day.day for day in capacity.days if day.sample] == ["2026-11-28", "2026-12-01"]
    assert capacity.current is not None and capacity.current.taken_at == NOW - DAY


def test_no_sample_in_the_window_names_the_latest_and_suggests_an_earlier_since(
    conn: sqlite3.Connection,
) -> None:
    add_sample(conn, NOW - 40 * DAY)

    capacity = report(conn)

    assert capacity.samples == 0 and capacity.days == []
    assert capacity.notes == [
        "No usage samples since 2026-11-02 12:00 UTC (the latest is from 2026-10-23 12:00 "
        "UTC): give an earlier --since, or take one with 'eemt-cleanup status'."
    ]


def test_build_report_on_a_database_never_migrated_is_empty_and_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    create_jobs_db(path, [])
    before = path.read_bytes()
    loaded = load_config(
        environ={}, cwd=tmp_path, overrides={"paths.database": (str(path), "--db-path")}
    )

    capacity = build_report(loaded, since=NOW - 30 * DAY, now=NOW)

    assert capacity.samples == 0 and capacity.current is None
    assert capacity.notes == [NO_SAMPLES_HINT]
    assert capacity.projection.trend == "not_enough_history"
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- shown


def test_sparkline_scales_from_zero_to_the_largest_value_with_gaps() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([4.0, None, 8.0]) == "▅ █"
    assert sparkline([0.0, 0.0]) == "▁▁"


def test_long_sparklines_are_condensed_to_the_width() -> None:
    def largest(group: Sequence[float | None]) -> float | None:
        return max(value for value in group if value is not None)

    assert condense([1, 2, 3, 4, 5], 2, largest) == [3, 5]
    assert len(sparkline([float(n) for n in range(90)], width=40)) == 30


def test_unit_keeps_every_value_below_ten_thousand() -> None:
    assert unit_for(5 * 1024**2) == ("KB", 1024)
    assert unit_for(50 * 1024**2) == ("MB", 1024**2)
    assert unit_for(9000 * GIB) == ("GB", GIB)
    assert unit_for(12000 * GIB) == ("TB", 1024**4)


def test_daily_table_fits_80_columns_with_four_statuses(conn: sqlite3.Connection) -> None:
    for days_ago in range(30):
        write_sample(
            conn,
            UsageSample(
                sample_id=str(uuid.uuid4()),
                taken_at=NOW - days_ago * DAY,
                source="run",
                by_status=[
                    StatusUsage(status=status, jobs=1, bytes=size * GIB)
                    for status, size in (
                        ("completed", 1203),
                        ("failed", 12),
                        ("pending", 30),
                        ("running", 45),
                    )
                ],
                by_root=[
                    RootUsage(
                        root="results",
                        jobs=4,
                        bytes=1100 * GIB,
                        fs_size=2048 * GIB,
                        fs_free=512 * GIB,
                    )
                ],
            ),
        )
    add_counts(conn, NOW - DAY, "completed", 4, 850 * GIB)

    table = daily_table(report(conn), ["completed", "failed", "pending", "running"])

    assert table.title == "Storage per Day (GB)"
    assert [column.header for column in table.columns] == [
        "Date",
        "Completed",
        "Failed",
        "Pending",
        "Running",
        "Results",
        "Free",
        "Freed",
    ]
    assert table.rows[-1] == [
        "2026-12-02",
        "1203.0",
        "12.0",
        "30.0",
        "45.0",
        "1100.0",
        "25%",
        "0.0",
    ]
    assert table.rows[-2][-1] == "850.0"
    assert column_widths(table, 80) is not None

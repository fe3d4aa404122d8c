"""What ``report`` shows people: the capacity picture as tables and lines, shown the way
:func:`eemt_cleanup.report.info_tables.show` shows every table (Rich on a terminal, a block
per record when a table cannot fit, tab-separated lines off a terminal).

- "Storage per Day": one row per UTC day (its last sample): data per status, job data in
  results/, the results filesystem's free space, and what cleanups freed that day, in one
  unit (the title names it) so that the columns line up at 80 columns;
- "Current Usage" per status and per root (the latest sample), in human sizes;
- sparklines (one mark a day, the eight block characters) of the data, the results
  filesystem's used space and the bytes freed, the last 24 hours, and the projection with
  the method of its fit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TextIO

from eemt_cleanup.capacity import RESULTS_ROOT, CapacityReport, DayUsage
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import job_word
from eemt_cleanup.report.dates import moment
from eemt_cleanup.report.escape import printable
from eemt_cleanup.report.info_tables import MISSING, Column, InfoTable, Kind, show

BLOCKS = "▁▂▃▄▅▆▇█"
GAP = " "  # a day without a sample
# Sparklines longer than this are condensed (several days a mark): label + line + figure
# stay within 80 columns.
SPARK_WIDTH = 40
LABEL_WIDTH = 15
UNITS = (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("TB", 1024**4), ("PB", 1024**5))
OTHER = "other"


# --------------------------------------------------------------------------- sparklines


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """One block character per value, scaled from 0 to the largest value (so a full but
    steady disk reads high, not flat at the bottom); None is a gap. More values than
    ``width`` are condensed first (see :func:`condense`, the last value of each group)."""
    values = condense(values, width, _last)
    top = max((value for value in values if value is not None), default=0.0)
    marks = []
    for value in values:
        if value is None:
            marks.append(GAP)
        elif top <= 0:
            marks.append(BLOCKS[0])
        else:
            level = round(max(0.0, value) / top * (len(BLOCKS) - 1))
            marks.append(BLOCKS[level])
    return "".join(marks)


def condense(
    values: Sequence[float | None],
    width: int,
    combine: Callable[[Sequence[float | None]], float | None],
) -> list[float | None]:
    """At most ``width`` values: consecutive groups of ``values`` combined into one."""
    if len(values) <= width:
        return list(values)
    per_mark = -(-len(values) // width)  # ceiling: the line never exceeds width
    return [combine(values[index : index + per_mark]) for index in range(0, len(values), per_mark)]


def _last(group: Sequence[float | None]) -> float | None:
    return next((value for value in reversed(group) if value is not None), None)


def _total(group: Sequence[float | None]) -> float | None:
    return sum(value for value in group if value is not None)


# --------------------------------------------------------------------------- tables


def unit_for(largest: int) -> tuple[str, int]:
    """The unit in which ``largest`` bytes reads below 10000 with one decimal (``GB`` up to
    about 9.7 TB), so that no value of a column is wider than six characters."""
    for name, size in UNITS:
        if largest < 10000 * size:
            return name, size
    return UNITS[-1]


def status_columns(report: CapacityReport, order: Sequence[str] = ()) -> list[str]:
    """The statuses that held data on some day: those of ``order`` (the configured
    successful, failed and active statuses) in that order, then ``other`` for the rest."""
    seen: set[str] = set()
    for day in report.days:
        if day.sample is not None:
            seen.update(group.status for group in day.sample.by_status if group.bytes)
    known = [status for status in order if status in seen]
    return known + ([OTHER] if seen - set(known) else [])


def _status_bytes(day: DayUsage, columns: Sequence[str]) -> dict[str, int]:
    assert day.sample is not None
    shown = {column: 0 for column in columns}
    for group in day.sample.by_status:
        key = group.status if group.status in shown and group.status != OTHER else OTHER
        if key in shown:
            shown[key] += group.bytes
    return shown


def _header(status: str) -> str:
    # Headers are not escaped by show(): a status is a value from the database.
    text = printable(status)
    return text[:1].upper() + text[1:]


def daily_table(
    report: CapacityReport, order: Sequence[str] = (), *, unit_in_headers: bool = False
) -> InfoTable:
    """One row per day: date, data per status, job data in results/, the results
    filesystem's free percentage, and what the cleanups freed that day. The unit is in the
    title; ``unit_in_headers`` also puts it in each size column's header (plain output,
    where no title is printed)."""
    statuses = status_columns(report, order)
    rows_bytes: list[tuple[DayUsage, dict[str, int] | None, int | None]] = []
    largest = 0
    for day in report.days:
        per_status = _status_bytes(day, statuses) if day.sample is not None else None
        results = day.sample.root(RESULTS_ROOT) if day.sample is not None else None
        results_bytes = results.bytes if results is not None else None
        rows_bytes.append((day, per_status, results_bytes))
        largest = max(largest, day.freed_bytes, results_bytes or 0, *(per_status or {}).values())
    unit, size = unit_for(largest)
    suffix = f" ({unit})" if unit_in_headers else ""

    def amount(value: int | None) -> str:
        return MISSING if value is None else f"{value / size:.1f}"

    rows = []
    for day, per_status, results_bytes in rows_bytes:
        free = day.results_free_percent
        rows.append(
            [
                day.day,
                *(amount(per_status[s] if per_status else None) for s in statuses),
                amount(results_bytes),
                MISSING if free is None else f"{free:.0f}%",
                amount(day.freed_bytes),
            ]
        )
    return InfoTable(
        f"Storage per Day ({unit})",
        [
            Column("Date", Kind.FIXED),
            *(Column(_header(status) + suffix, Kind.NUMBER) for status in statuses),
            Column("Results" + suffix, Kind.NUMBER),
            Column("Free", Kind.NUMBER),
            Column("Freed" + suffix, Kind.NUMBER),
        ],
        rows,
        empty="No usage samples in this window.",
    )


def current_tables(report: CapacityReport) -> list[InfoTable]:
    """The latest sample: data of the jobs not yet cleaned per status, and per root with
    its filesystem (none before the first sample)."""
    current = report.current
    if current is None:
        return []
    by_status = InfoTable(
        "Current Usage",
        [Column("Status", Kind.FIXED), Column("Jobs", Kind.NUMBER), Column("Data", Kind.NUMBER)],
        [[group.status, str(group.jobs), human_size(group.bytes)] for group in current.by_status],
        empty="No job data left to clean.",
    )
    by_root = InfoTable(
        "Current Usage per Root",
        [
            Column("Root", Kind.FIXED),
            Column("Jobs", Kind.NUMBER),
            Column("Data", Kind.NUMBER),
            Column("Filesystem", Kind.NUMBER),
            Column("Free", Kind.NUMBER),
        ],
        [
            [
                usage.root,
                str(usage.jobs),
                human_size(usage.bytes),
                MISSING if usage.fs_size is None else human_size(usage.fs_size),
                MISSING if usage.free_percent is None else f"{usage.free_percent:.1f}%",
            ]
            for usage in current.by_root
        ],
    )
    return [by_status, by_root]


# --------------------------------------------------------------------------- lines


def trend_lines(report: CapacityReport) -> list[str]:
    """Sparklines of the days: job data (every status), the results filesystem's used
    space, and the bytes freed, each followed by its figure."""
    days = report.days
    if not days or report.samples == 0:
        return []
    data = [float(day.sample.total_bytes) if day.sample else None for day in days]
    used = [None if day.results_fs_used is None else float(day.results_fs_used) for day in days]
    freed = condense([float(day.freed_bytes) for day in days], SPARK_WIDTH, _total)
    marks = "a mark a day" if len(days) <= SPARK_WIDTH else "days condensed"
    lines = [f"Trend, {days[0].day} to {days[-1].day} ({marks}):"]
    lines.append(_spark("Job data", data, _latest_size(data, "now")))
    if any(value is not None for value in used):
        lines.append(_spark("Results fs used", used, _latest_size(used, "used")))
    total_freed = sum(day.freed_bytes for day in days)
    lines.append(_spark("Freed per day", freed, f"{human_size(total_freed)} in all"))
    return lines


def _spark(label: str, values: Sequence[float | None], figure: str) -> str:
    return f"  {label:<{LABEL_WIDTH}} {sparkline(values)}  {figure}"


def _latest_size(values: Sequence[float | None], word: str) -> str:
    latest = _last(values)
    return MISSING if latest is None else f"{human_size(int(latest))} {word}"


def last_day_line(report: CapacityReport) -> str:
    """The reference's monitoring script: jobs cleaned and space freed in the last 24 h."""
    recent = report.cleaned_last_24h
    per_status = ", ".join(
        f"{jobs} {status}" for status, jobs in sorted(recent.jobs_by_status.items())
    )
    detail = f" ({per_status})" if per_status else ""
    return (
        f"Last 24 h: {job_word(recent.jobs, 'job')} cleaned{detail}, {recent.human_readable} freed"
    )


def filesystem_line(report: CapacityReport) -> str | None:
    """When the latest sample was taken and how full the results filesystem was (None
    before the first sample)."""
    current = report.current
    if current is None:
        return None
    results = current.root(RESULTS_ROOT)
    if results is None or not results.fs_size or results.fs_free is None:
        return f"Latest sample: {moment(current.taken_at)}"
    used = results.fs_size - results.fs_free
    return (
        f"Latest sample ({moment(current.taken_at)}): results filesystem {human_size(used)} "
        f"used of {human_size(results.fs_size)}, {results.free_percent:.1f}% free"
    )


def report_lines(report: CapacityReport) -> list[str]:
    """Every line under the tables, the notes last."""
    lines = [
        f"Window: {moment(report.since)} to {moment(report.until)}, "
        f"{report.samples} usage {'sample' if report.samples == 1 else 'samples'}",
        *trend_lines(report),
        last_day_line(report),
    ]
    filesystem = filesystem_line(report)
    if filesystem:
        lines.append(filesystem)
    if report.samples or report.current is not None:
        lines.extend(projection_lines(report))
    lines.extend(report.notes)
    return lines


def projection_lines(report: CapacityReport) -> list[str]:
    """The projection's sentence and, when there was a fit, how it was made (the fit is
    over each day's peak, not every sample: the figure means something else)."""
    projection = report.projection
    lines = [f"Projection: {projection.sentence}"]
    if projection.growth_bytes_per_day is not None:
        lines.append(f"  ({projection.method}, {job_word(projection.peak_days, 'day')})")
    return lines


def show_report(
    report: CapacityReport,
    *,
    stream: TextIO,
    rich: bool,
    order: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> None:
    """Write the capacity picture to ``stream`` (Rich when ``rich``, plain lines otherwise),
    then ``extra`` lines. ``order``: the configured statuses, in the order of the columns."""
    tables = [daily_table(report, order, unit_in_headers=not rich)] if report.days else []
    tables += current_tables(report)
    show(tables, [*report_lines(report), *extra], stream=stream, rich=rich)


__all__ = [
    "BLOCKS",
    "condense",
    "current_tables",
    "daily_table",
    "last_day_line",
    "projection_lines",
    "report_lines",
    "show_report",
    "sparkline",
    "status_columns",
    "trend_lines",
    "unit_for",
]

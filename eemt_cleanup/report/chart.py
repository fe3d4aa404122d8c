"""``report --png FILE``: the capacity picture as a PNG (matplotlib, the ``[charts]`` extra).

matplotlib is imported here only, inside :func:`draw_chart`, with the Agg backend (no
display needed on a server): nothing else the CLI imports pays for it. The figure is a
:class:`matplotlib.figure.Figure` of its own (not pyplot's global list of figures), drawn
in two panels sharing the date axis:

- storage (GB): data of the jobs not yet cleaned per status, stacked (the last sample of
  each day); the results filesystem's used space (every sample), and from its latest
  sample the projection at the least-squares rate, dashed, to the day it is full (at most
  ``MAX_AHEAD_DAYS`` ahead; 30 days when it is not growing); the filesystem's size as a
  horizontal line;
- freed per day (GB), as bars.

The file is written atomically: a temporary file in the same directory, then ``os.replace``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eemt_cleanup.capacity import CapacityReport, DayUsage, Projection
from eemt_cleanup.errors import ConfigError

MISSING_HINT = "--png needs matplotlib: pip install 'eemt-cleanup[charts]'"
DEFAULT_SIZE = (1200, 700)
DPI = 100
GIB = 1024**3
# How far the dashed projection reaches: to the day the filesystem is full, but not past
# this (a date years away would squash the history into a sliver); 30 days otherwise.
MAX_AHEAD_DAYS = 90
DEFAULT_AHEAD_DAYS = 30
TITLE = "EEMT storage usage"


class ChartUnavailable(ConfigError):
    """matplotlib (the ``[charts]`` extra) is not installed."""


def load_matplotlib() -> Any:
    """The ``matplotlib`` module, on the Agg backend. Raises ChartUnavailable without it."""
    try:
        import matplotlib
    except ImportError:
        raise ChartUnavailable(MISSING_HINT) from None
    matplotlib.use("Agg")
    return matplotlib


def draw_chart(
    report: CapacityReport, target: Path, *, size: tuple[int, int] = DEFAULT_SIZE
) -> None:
    """Draw ``report`` into the PNG file ``target`` of ``size`` (width, height) pixels.

    Raises ChartUnavailable without matplotlib, ConfigError when ``target`` cannot be
    written (its directory missing, not writable, or ``target`` a directory).
    """
    _save(_figure(report, size), target)


def chart_png(report: CapacityReport, *, size: tuple[int, int] = DEFAULT_SIZE) -> bytes:
    """``report`` drawn as PNG bytes, in memory (the admin page shows it inline). Raises
    ChartUnavailable without matplotlib."""
    import io

    buffer = io.BytesIO()
    _figure(report, size).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _figure(report: CapacityReport, size: tuple[int, int]) -> Any:
    load_matplotlib()
    from matplotlib.figure import Figure

    width, height = size
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    storage, freed = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _draw_storage(storage, report)
    _draw_freed(freed, report)
    _date_axis(freed)
    figure.suptitle(TITLE, fontsize=15, fontweight="bold")
    storage.set_title(_subtitle(report.projection, width), fontsize=10)
    return figure


def _draw_storage(axes: Any, report: CapacityReport) -> None:
    days = [day for day in report.days if day.sample is not None]
    statuses = _statuses(days)
    if days and statuses:
        axes.stackplot(
            [_when(day) for day in days],
            *[[_status_gb(day, status) for day in days] for status in statuses],
            labels=[f"job data: {_label(status)}" for status in statuses],
            alpha=0.55,
        )
    points = report.results_filesystem
    if points:
        axes.plot(
            [point.taken_at for point in points],
            [point.used / GIB for point in points],
            color="black",
            linewidth=1.8,
            label="results filesystem: used",
        )
        size_gb = points[-1].size / GIB
        axes.axhline(
            size_gb,
            color="firebrick",
            linestyle=":",
            linewidth=1.5,
            label=f"results filesystem: size ({size_gb:,.0f} GB)",
        )
    _draw_projection(axes, report)
    _mark_now(axes, report.until)
    axes.set_ylabel("Storage (GB)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=9, framealpha=0.9)
    else:
        axes.text(0.5, 0.5, "no usage samples", ha="center", transform=axes.transAxes)


def _draw_projection(axes: Any, report: CapacityReport) -> None:
    """The projection, dashed: from the latest day's peak at the rate fitted to each day's
    peak (the legend says so: the line is an envelope, not through every sample)."""
    projection = report.projection
    points = report.results_filesystem
    if projection.growth_bytes_per_day is None or projection.used_at_until is None or not points:
        return
    start = projection.anchor_at or points[-1].taken_at
    end = _horizon(projection, report.until)
    axes.plot(
        [start, end],
        [_fitted_gb(projection, report.until, moment) for moment in (start, end)],
        color="tab:red",
        linestyle="--",
        linewidth=1.6,
        label="linear projection (fit to each day's highest used space)",
    )
    full_at = projection.full_at
    if projection.trend == "growing" and full_at is not None and full_at <= end:
        axes.axvline(full_at, color="tab:red", linestyle="--", alpha=0.4)
        axes.annotate(
            f"full {projection.full_on}",
            xy=(full_at, 0.02),
            xycoords=("data", "axes fraction"),
            xytext=(-4, 0),
            textcoords="offset points",
            ha="right",
            color="tab:red",
            fontsize=9,
        )


def _mark_now(axes: Any, until: datetime) -> None:
    """A thin line at the end of the window: history left of it, projection right."""
    axes.axvline(until, color="grey", linewidth=0.8, alpha=0.6)
    axes.annotate(
        "now",
        xy=(until, 0.98),
        xycoords=("data", "axes fraction"),
        xytext=(3, 0),
        textcoords="offset points",
        va="top",
        color="grey",
        fontsize=9,
    )


def _horizon(projection: Projection, until: datetime) -> datetime:
    latest = until + timedelta(days=MAX_AHEAD_DAYS)
    if projection.trend == "growing" and projection.full_at is not None:
        return max(until, min(projection.full_at, latest))
    return until + timedelta(days=DEFAULT_AHEAD_DAYS)


def _fitted_gb(projection: Projection, until: datetime, moment: datetime) -> float:
    assert projection.used_at_until is not None and projection.growth_bytes_per_day is not None
    days = (moment - until).total_seconds() / 86400
    return (projection.used_at_until + projection.growth_bytes_per_day * days) / GIB


def _draw_freed(axes: Any, report: CapacityReport) -> None:
    freed = report.freed_per_day
    axes.bar(
        [datetime.fromisoformat(entry.day).replace(hour=12, tzinfo=UTC) for entry in freed],
        [entry.bytes_freed / GIB for entry in freed],
        width=0.8,
        color="tab:green",
        label="freed by cleanups",
    )
    axes.axvline(report.until, color="grey", linewidth=0.8, alpha=0.6)
    axes.set_ylabel("Freed (GB/day)")
    axes.set_xlabel("Date (UTC)")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_ylim(bottom=0)
    if freed:
        axes.legend(loc="upper left", fontsize=9)
    else:
        axes.text(0.5, 0.5, "no cleanups in this window", ha="center", transform=axes.transAxes)


def _date_axis(axes: Any) -> None:
    import matplotlib.dates as mdates

    # matplotlib.dates is untyped: the locator and formatter are Any here.
    locator: Any = mdates.AutoDateLocator(minticks=4, maxticks=10, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    formatter: Any = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(formatter)


def _statuses(days: list[DayUsage]) -> list[str]:
    """Statuses that held data on some day, the largest at the bottom of the stack."""
    largest: dict[str, int] = {}
    for day in days:
        assert day.sample is not None
        for group in day.sample.by_status:
            largest[group.status] = max(largest.get(group.status, 0), group.bytes)
    return [status for status, most in sorted(largest.items(), key=lambda i: -i[1]) if most]


def _label(value: str) -> str:
    """A value from the database as legend text: escaped, and never read as mathtext."""
    from eemt_cleanup.report.escape import printable

    return printable(value).replace("$", r"\$")


def _status_gb(day: DayUsage, status: str) -> float:
    assert day.sample is not None
    return sum(g.bytes for g in day.sample.by_status if g.status == status) / GIB


def _when(day: DayUsage) -> datetime:
    assert day.sample is not None
    return day.sample.taken_at


def _subtitle(projection: Projection, width_px: int) -> str:
    """The projection's sentence, wrapped to the figure's width (at 10 pt a character is
    about 7 pixels wide; 8 leaves the margins)."""
    import textwrap

    sentence = projection.sentence
    return textwrap.fill(sentence[:1].upper() + sentence[1:], width=max(40, width_px // 8))


def _save(figure: Any, target: Path) -> None:
    """Write ``figure`` as PNG to ``target``: drawn in memory, then a new file created
    ``O_EXCL | O_NOFOLLOW`` in its directory, mode 0644 set on the open descriptor, renamed
    over ``target``. Nothing is ever done by path to a file others could swap (the
    directory may be a web server's), and a symlink at ``target`` is replaced, not followed.
    Raises ConfigError naming the path when it cannot be written."""
    import io

    from eemt_cleanup.fs.safe_open import UnsafeFileError, write_new_file

    if not target.parent.is_dir():
        raise ConfigError(f"--png {target}: directory {target.parent} does not exist")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    try:
        write_new_file(target, buffer.getvalue(), mode=0o644, replace=True)
    except UnsafeFileError as error:
        raise ConfigError(f"--png {target}: {error.strerror}") from None
    except OSError as error:
        raise ConfigError(f"--png {target}: cannot write there ({error.strerror})") from None


__all__ = [
    "DEFAULT_SIZE",
    "MISSING_HINT",
    "ChartUnavailable",
    "chart_png",
    "draw_chart",
    "load_matplotlib",
]

"""``report``: the capacity picture (storage over time, freed per day, the last 24 hours,
when the results filesystem is full at this rate) as tables, JSON, or a PNG.

Cheap to import: the core (pydantic models, the database) and matplotlib load only when
the command runs, matplotlib only for ``--png``.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from eemt_cleanup.cli.common import (
    ConfigOption,
    DbOption,
    DebugOption,
    JsonOption,
    examples,
    handle_errors,
    path_overrides,
)
from eemt_cleanup.errors import ConfigError

if TYPE_CHECKING:
    from eemt_cleanup.capacity import CapacityReport

REPORT_EPILOG = examples(
    "eemt-cleanup report                          # the last 30 days",
    "eemt-cleanup report --since 2w --json | jq .projection.sentence",
    "eemt-cleanup report --png /var/www/eemt/capacity.png --png-size 1600x900",
    after="Samples come from 'eemt-cleanup status' and, with usage.sample_after_run: true, "
    "from every real run.",
)

DEFAULT_SINCE = "30d"
# Patterns, not compiled ones: every command imports this module at start, and compiling
# costs more than the rest of it. re.fullmatch compiles on first use and caches.
_DURATION = r"(\d+(\.\d+)?\s*[smhdw]\s*)+"
_SIZE = r"(\d{2,5})[xX](\d{2,5})"
MIN_PIXELS, MAX_PIXELS = 200, 10000


def window_start(text: str, now: datetime) -> datetime:
    """``30d``, ``12h``, ``2w``, ``1d12h`` before ``now``, or an ISO date/time (local time
    when it has no offset). Raises ConfigError naming --since for anything else, or for a
    moment after ``now``."""
    from eemt_cleanup.config.schema import quote
    from eemt_cleanup.timeparse import parse_duration, parse_timestamp

    stripped = text.strip()
    if re.fullmatch(_DURATION, stripped, re.IGNORECASE):
        try:
            return now - timedelta(seconds=parse_duration(stripped))
        except (OverflowError, ValueError):
            raise ConfigError(
                f"--since: {quote(text)} reaches back before year 1; give a shorter duration"
            ) from None
    parsed = parse_timestamp(stripped) if not stripped.isdigit() else None
    if parsed is None:
        raise ConfigError(
            f"--since: expected a duration like 30d/12h/2w or an ISO date, got {quote(text)}"
        )
    if parsed > now:
        raise ConfigError(f"--since {quote(text)}: is in the future")
    return parsed


def png_size(text: str) -> tuple[int, int]:
    """``1200x700`` as (width, height) pixels. Raises ConfigError naming --png-size."""
    from eemt_cleanup.config.schema import quote

    match = re.fullmatch(_SIZE, text.strip())
    size = (int(match.group(1)), int(match.group(2))) if match else None
    if size is None or not all(MIN_PIXELS <= side <= MAX_PIXELS for side in size):
        raise ConfigError(
            f"--png-size: expected WIDTHxHEIGHT in pixels, each {MIN_PIXELS}-{MAX_PIXELS} "
            f"(like 1200x700), got {quote(text)}"
        )
    return size


@handle_errors(json_arg="json_output")
def report(
    since: Annotated[
        str,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Start of the window: 30d, 12h, 2w, or an ISO date/time (local if naive).",
        ),
    ] = DEFAULT_SINCE,
    config: ConfigOption = None,
    db_path: DbOption = None,
    json_output: JsonOption = False,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            metavar="FILE",
            show_default=False,
            help="Also draw the chart into this PNG file (needs the [charts] extra).",
        ),
    ] = None,
    png_dimensions: Annotated[
        str | None,
        typer.Option(
            "--png-size",
            metavar="WxH",
            show_default=False,
            help="Size of the PNG in pixels (default 1200x700).",
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Storage usage over time from the usage samples, per status and per root; what the
    cleanups freed per day; jobs cleaned in the last 24 h; and, from a linear fit of each
    day's highest used space of the results filesystem, the day it is full at this rate."""
    from eemt_cleanup.capacity import build_report
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.timeparse import utc_now

    if png_dimensions is not None and png is None:
        raise ConfigError("--png-size needs --png FILE")
    size = png_size(png_dimensions) if png_dimensions is not None else None
    if png is not None:
        from eemt_cleanup.report.chart import load_matplotlib

        # The missing extra is the whole answer: said before the database is read.
        load_matplotlib()
    now = utc_now()
    start = window_start(since, now)
    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    capacity = build_report(loaded, since=start, now=now)
    chart_line = _draw(capacity, png, size) if png is not None else []
    if json_output:
        from eemt_cleanup.report.json_out import dumps

        print(dumps(capacity.model_dump(mode="json")))
        return
    from eemt_cleanup.report.capacity_view import show_report
    from eemt_cleanup.report.logs import use_rich

    statuses = loaded.settings.jobs.statuses
    show_report(
        capacity,
        stream=sys.stdout,
        rich=use_rich(),
        order=[*statuses.successful, *statuses.failed, *statuses.active],
        extra=chart_line,
    )


def _draw(capacity: CapacityReport, target: Path, size: tuple[int, int] | None) -> list[str]:
    """Draw the chart (when there is anything to draw); the line that says what happened."""
    from eemt_cleanup.report.chart import DEFAULT_SIZE, draw_chart

    if capacity.samples == 0 and not capacity.freed_per_day:
        return [f"No chart written to {target}: nothing to draw in this window yet."]
    width, height = size or DEFAULT_SIZE
    draw_chart(capacity, target, size=(width, height))
    return [f"Chart written to {target} ({width}x{height} px)."]

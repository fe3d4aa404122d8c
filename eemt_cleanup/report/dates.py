"""One date style for people, in every command: ``2026-12-02 23:27 UTC``.

Tables and human lines show times in UTC to the minute (runs, audit rows and due times are
compared across hosts and with the database, which stores UTC); a relative phrase may follow
(``in 5 hours``). JSON keeps full ISO-8601 with its offset.
"""

from __future__ import annotations

from datetime import UTC, datetime

import humanize

from eemt_cleanup.timeparse import parse_timestamp

FORMAT = "%Y-%m-%d %H:%M UTC"


def moment(value: datetime | str | None) -> str:
    """``2026-12-02 23:27 UTC`` for a datetime or a stored timestamp (``-`` if none; a stored
    text that is not a time is shown as it is, for the caller to escape)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        parsed = parse_timestamp(value, UTC)
        if parsed is None:
            return value
        value = parsed
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(FORMAT)


def relative(value: datetime, now: datetime | None = None) -> str:
    """``in 5 hours`` / ``3 days ago``."""
    now = now or datetime.now(UTC)
    if value <= now:
        return f"{humanize.naturaldelta(now - value)} ago"
    return f"in {humanize.naturaldelta(value - now)}"


def moment_and_relative(value: datetime, now: datetime | None = None) -> str:
    """``2026-12-02 23:27 UTC (in 5 hours)``."""
    return f"{moment(value)} ({relative(value, now)})"

"""Parse the mixed timestamp formats found in job tables.

The EEMT web interface writes ``created_at`` with SQLite's ``CURRENT_TIMESTAMP`` (naive UTC)
and ``started_at``/``completed_at`` with ``datetime.now().isoformat()`` (naive *local* time);
other deployments store offsets (``+00:00``, ``Z``) or epoch seconds (or milliseconds). A
value we cannot parse is ``None``: the caller treats the job's age as unknown and never
cleans it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCAL = "local"

# Epoch values outside this range are not plausible job times (1990 .. 2200).
_EPOCH_MIN = 631_152_000
_EPOCH_MAX = 7_258_118_400


@lru_cache(maxsize=32)
def resolve_zone(name: str) -> tzinfo | None:
    """Return the zone named ``name`` ("local" gives ``None``: the machine's local zone).

    Raises ``ValueError`` for an unknown zone name.
    """
    if name.lower() == LOCAL:
        return None
    if name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:
        # OSError: a name such as "America" is a directory of zones, not a zone.
        raise ValueError(f"unknown time zone {name!r}") from error


def _attach_zone(naive: datetime, zone: tzinfo | None) -> datetime:
    if zone is None:
        # astimezone() on a naive value interprets it in the machine's local zone.
        return naive.astimezone(UTC)
    return naive.replace(tzinfo=zone).astimezone(UTC)


def _from_epoch(value: float) -> datetime | None:
    """Epoch seconds, or milliseconds, microseconds or nanoseconds (JavaScript's Date.now(),
    Java's currentTimeMillis(), time.time_ns()): told apart by magnitude, since the plausible
    ranges of the four units do not overlap."""
    if not math.isfinite(value):
        return None
    for scale in (1, 1_000, 1_000_000, 1_000_000_000):
        if _EPOCH_MIN * scale <= value <= _EPOCH_MAX * scale:
            return datetime.fromtimestamp(value / scale, tz=UTC)
    return None


def parse_timestamp(value: object, naive_zone: tzinfo | None = None) -> datetime | None:
    """Parse one stored timestamp into an aware UTC datetime.

    ``naive_zone`` is the zone for values without an offset (``None`` = local time).
    Returns ``None`` for NULL, empty and unparseable values; never raises.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return _from_epoch(float(text))
    return _parse_iso(text, naive_zone)


def _parse_iso(text: str, naive_zone: tzinfo | None) -> datetime | None:
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        if parsed.tzinfo is None:
            return _attach_zone(parsed, naive_zone)
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        # Values at the very edge of the calendar cannot be converted: age unknown.
        return None


def utc_now() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def format_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit offset, to the second: what we write to the DB."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``6h``, ``30m``, ``1d12h``, ``90s``, ``2w`` or a bare number of seconds, in seconds.

    Raises ``ValueError`` for anything else (a negative or empty duration included).
    """
    import re

    stripped = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        return float(stripped)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", stripped)
    if not parts or re.sub(r"\s*\d+(?:\.\d+)?\s*[smhdw]\s*", "", stripped):
        raise ValueError(f"not a duration: {text!r} (try 6h, 30m, 1d, 90s)")
    return sum(float(count) * _DURATION_UNITS[unit] for count, unit in parts)

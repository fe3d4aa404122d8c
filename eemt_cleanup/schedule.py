"""When scheduled runs happen: ``schedule.cron`` read in ``schedule.timezone``.

Cron expressions are parsed and iterated by cronsim, which gets daylight-saving time right
the way cron users expect: a daily ``0 2 * * *`` fires **once** on both transition days
(in the hour that repeats in autumn it fires the first time only; on the spring day whose
02:00 does not exist it fires at the first minute after the gap), where croniter and
APScheduler 3 fire twice in a repeated hour.

Everything here takes the current time as an argument (an injected clock), and returns
aware datetimes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eemt_cleanup.config.schema import Schedule


class ScheduleError(ValueError):
    """An expression or time zone that cannot make a schedule; the message says why."""


def local_zone() -> tzinfo:
    """This machine's time zone, as a zone with its daylight-saving rules (``TZ``, else
    ``/etc/localtime``), UTC when the machine says nothing."""
    import tzlocal

    try:
        return tzlocal.get_localzone()
    except Exception:  # noqa: BLE001 - an unreadable or odd /etc/localtime: UTC, said by name
        return UTC


def zone_named(name: str) -> tzinfo:
    """``local`` (the machine's zone), ``UTC`` or an IANA name such as ``Europe/Berlin``."""
    from eemt_cleanup.timeparse import resolve_zone

    try:
        zone = resolve_zone(name)
    except ValueError:
        raise ScheduleError(f"unknown time zone {name!r}") from None
    return local_zone() if zone is None else zone


def zone_label(zone: tzinfo) -> str:
    """A zone's name for people (``Europe/Berlin``, ``UTC``)."""
    key = getattr(zone, "key", None)
    return str(key) if key else str(zone)


def normalise(expression: str) -> str:
    """The expression with surrounding quotes and extra blanks removed (``"0 2 * * *"`` as
    pasted from the reference's compose file)."""
    return " ".join(expression.strip().strip("'\"").split())


def check_expression(expression: str) -> str:
    """The normalised expression; raises ScheduleError (saying why) unless it is five cron
    fields that can fire (cronsim refuses impossible dates such as ``0 0 30 2 *``, the 30th
    of February, when it parses them)."""
    text = normalise(expression)
    CronSchedule(text, UTC)
    return text


@dataclass(frozen=True)
class CronSchedule:
    """``expression`` fired in ``zone``."""

    expression: str
    zone: tzinfo = field(default=UTC)

    def __post_init__(self) -> None:
        why = problem(self.expression)
        if why is not None:
            raise ScheduleError(f"{self.expression!r}: {why}")

    @classmethod
    def of(cls, schedule: Schedule) -> CronSchedule:
        """The schedule of a config's ``schedule`` section."""
        return cls(normalise(schedule.cron), zone_named(schedule.timezone))

    def _iterate(self, start: datetime, reverse: bool = False) -> Iterator[datetime]:
        from cronsim import CronSim

        # cronsim steps through wall-clock time in the zone of the datetime it is given.
        return CronSim(self.expression, start.astimezone(self.zone), reverse=reverse)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware, in the schedule's zone)."""
        # cronsim steps in whole seconds and returns the first match strictly after them.
        return next(self._iterate(moment.replace(microsecond=0)))

    def previous_at_or_before(self, moment: datetime) -> datetime:
        """The last fire time at or before ``moment``."""
        # In reverse, cronsim returns the first match strictly before its start.
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        return next(self._iterate(start, reverse=True))

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``moment``."""
        fires: list[datetime] = []
        current = moment
        for _ in range(count):
            current = self.next_after(current)
            fires.append(current)
        return fires


def problem(expression: str) -> str | None:
    """Why ``expression`` (normalised) cannot make a schedule, or None when it can."""
    from cronsim import CronSim, CronSimError

    fields = expression.split()
    if len(fields) != 5:
        count = f"{len(fields)} field{'' if len(fields) == 1 else 's'}"
        return f"{count}; a cron expression has five (minute hour day-of-month month day-of-week)"
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as error:
        return _reason(fields, error)
    return None


def _reason(fields: list[str], error: Exception) -> str:
    from cronsim import CronSim, CronSimError

    text = str(error) or type(error).__name__
    if text == "Bad day-of-month":
        # Valid fields whose combination names no real date (the 30th of February).
        try:
            CronSim(" ".join([*fields[:3], "*", fields[4]]), datetime.now(UTC))
        except CronSimError:
            pass
        else:
            return f"never fires: no month in {fields[3]!r} has day {fields[2]!r}"
    if text.startswith("Bad "):
        return f"the {text[4:]} field is not valid"
    return text


def jitter_delay(jitter_seconds: float, rng: random.Random | None = None) -> float:
    """A random delay in ``[0, jitter_seconds]`` (systemd's ``RandomizedDelaySec``)."""
    if jitter_seconds <= 0:
        return 0.0
    return (rng or random.Random()).uniform(0.0, jitter_seconds)  # noqa: S311 - not a secret

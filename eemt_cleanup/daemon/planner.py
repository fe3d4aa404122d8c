"""Which scheduled slot is due, with catch-up and jitter; pure, on an injected clock.

A *slot* is a fire time of ``schedule.cron``. A slot is started at ``slot + delay`` where
the delay is drawn once per slot from ``[0, jitter]`` (systemd's ``RandomizedDelaySec``).

Catch-up works like systemd's ``Persistent=true``: when the daemon starts and the latest
slot at or before now is later than the latest slot recorded in the database, that one slot
runs at once — however many were missed, never a burst. A daemon that never recorded a
slot (its first start on this database) catches nothing up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from eemt_cleanup.schedule import CronSchedule, jitter_delay


@dataclass(frozen=True)
class Due:
    """A slot to run now."""

    slot: datetime
    catch_up: bool = False


class SlotPlanner:
    """Hands out each slot of ``schedule`` once, when its (jittered) time has come."""

    def __init__(
        self, schedule: CronSchedule, jitter_seconds: float = 0.0, rng: random.Random | None = None
    ) -> None:
        self.schedule = schedule
        self.jitter_seconds = jitter_seconds
        self.rng = rng or random.Random()  # noqa: S311 - a start delay, not a secret
        self.slot: datetime | None = None  # the next slot
        self.fire_at: datetime | None = None  # when it starts (slot + its delay)

    def start(self, now: datetime, last_recorded: datetime | None) -> Due | None:
        """Arm the next slot after ``now``; return the slot to catch up on, if any."""
        missed = self.schedule.previous_at_or_before(now)
        self._arm_after(now)
        if last_recorded is not None and missed > last_recorded:
            return Due(missed, catch_up=True)
        return None

    def _arm_after(self, moment: datetime) -> None:
        self.slot = self.schedule.next_after(moment)
        self.fire_at = self.slot + timedelta(seconds=jitter_delay(self.jitter_seconds, self.rng))

    def due(self, now: datetime) -> Due | None:
        """The slot whose time has come, once, and the next one armed after it. When the
        clock jumped past several (a suspended machine), the latest of them: one run, not a
        burst."""
        if self.fire_at is None or self.slot is None or now < self.fire_at:
            return None
        # The latest slot that has passed: after a jump over several, that one (the slot
        # recorded, so a restart right after catches nothing up again).
        slot = max(self.slot, self.schedule.previous_at_or_before(now))
        self._arm_after(slot)
        return Due(slot)

    def seconds_until_fire(self, now: datetime) -> float | None:
        if self.fire_at is None:
            return None
        return max(0.0, (self.fire_at - now).total_seconds())

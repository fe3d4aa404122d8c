"""Disk pressure: measured by ``statvfs``, judged with hysteresis and a cooldown.

The filesystems of the roots and of the database are measured (each filesystem once, by
device); the one with the least free space decides. Below ``min_free_percent`` an early run
is due, unless one ran less than ``cooldown`` ago, or the last one has not been followed by
free space back above ``min_free_percent + hysteresis_percent`` (a run that could not free
enough does not start another and another: it waits for the disk to recover first).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path

from eemt_cleanup.config.schema import DiskPressure


@dataclass(frozen=True)
class Reading:
    """One filesystem's free space."""

    path: Path  # the first of our paths on it
    free_bytes: int
    size_bytes: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free_bytes / self.size_bytes if self.size_bytes else 100.0


def measure(paths: Iterable[Path]) -> list[Reading]:
    """Free space on each filesystem holding one of ``paths`` (unreadable paths skipped)."""
    seen: dict[int, Reading] = {}
    for path in paths:
        try:
            device = os.stat(path).st_dev
            figures = os.statvfs(path)
        except OSError:
            continue
        if device in seen:
            continue
        # f_bavail: what an unprivileged writer (the web application) can still use.
        seen[device] = Reading(
            path, figures.f_bavail * figures.f_frsize, figures.f_blocks * figures.f_frsize
        )
    return list(seen.values())


def lowest(readings: Iterable[Reading]) -> Reading | None:
    found = sorted(readings, key=lambda reading: reading.free_percent)
    return found[0] if found else None


class Verdict(Enum):
    OK = "ok"
    RUN = "run"  # below the threshold: start a pressure run
    COOLING = "cooling"  # below, but the last pressure run was too recent
    WAITING = "waiting"  # below, but not re-armed since the last pressure run
    REARMED = "rearmed"  # back above the threshold plus the hysteresis


class PressureGate:
    """The hysteresis and cooldown state between readings."""

    def __init__(self, settings: DiskPressure) -> None:
        self.settings = settings
        self.armed = True
        self.last_run_at: datetime | None = None

    @property
    def rearm_percent(self) -> float:
        return min(100.0, self.settings.min_free_percent + self.settings.hysteresis_percent)

    def judge(self, now: datetime, reading: Reading) -> Verdict:
        """What ``reading`` means now; changes nothing but the re-arming."""
        free = reading.free_percent
        if free >= self.rearm_percent and not self.armed:
            self.armed = True
            return Verdict.REARMED
        if free >= self.settings.min_free_percent:
            return Verdict.OK
        if not self.armed:
            return Verdict.WAITING
        if self.last_run_at is not None and now - self.last_run_at < timedelta(
            seconds=self.settings.cooldown_seconds
        ):
            return Verdict.COOLING
        return Verdict.RUN

    def started(self, now: datetime) -> None:
        """A pressure run started: the cooldown begins, and the next one waits for the disk
        to recover above the hysteresis."""
        self.last_run_at = now
        self.armed = False

    def cooldown_left(self, now: datetime) -> float:
        if self.last_run_at is None:
            return 0.0
        left = self.last_run_at + timedelta(seconds=self.settings.cooldown_seconds) - now
        return max(0.0, left.total_seconds())

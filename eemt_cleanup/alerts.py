"""Disk alerts (the reference's best practice 1, "Regular Monitoring"): checked against a
usage sample on every run and ``status``.

- ``alerts.max_results_bytes``: the not-yet-cleaned job data in ``paths.results`` is larger.
- ``alerts.min_free_percent``: a root's filesystem has less free space than this. Roots on
  one filesystem raise one alert, naming them all.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel

from eemt_cleanup.config.schema import Alerts
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.store.usage import UsageSample


class AlertKind(enum.StrEnum):
    MAX_RESULTS_BYTES = "max_results_bytes"
    MIN_FREE_PERCENT = "min_free_percent"


class Alert(BaseModel):
    """One threshold crossed: what, where, the value and the threshold, and a line for people."""

    kind: AlertKind
    roots: list[str]  # the roots it concerns (several when they share a filesystem)
    value: float  # bytes (max_results_bytes) or percent free (min_free_percent)
    threshold: float
    message: str


def check_alerts(alerts: Alerts, sample: UsageSample | None) -> list[Alert]:
    """The thresholds of ``alerts`` that ``sample`` crosses (none without a sample)."""
    if sample is None or not alerts.enabled:
        return []
    found: list[Alert] = []
    limit = alerts.results_limit
    results = sample.root("results")
    if limit is not None and results is not None and results.bytes > limit:
        found.append(
            Alert(
                kind=AlertKind.MAX_RESULTS_BYTES,
                roots=["results"],
                value=results.bytes,
                threshold=limit,
                message=(
                    f"results holds {human_size(results.bytes)} of job data, over the "
                    f"alert threshold of {human_size(limit)} (alerts.max_results_bytes)"
                ),
            )
        )
    if alerts.min_free_percent is not None:
        filesystems: dict[object, list[str]] = {}
        percent: dict[object, float] = {}
        free_bytes: dict[object, int] = {}
        for usage in sample.by_root:
            free = usage.free_percent
            if free is None or free >= alerts.min_free_percent:
                continue
            # Roots on one filesystem (one device) make one alert.
            key: object = usage.fs_id if usage.fs_id is not None else (usage.fs_size, usage.root)
            filesystems.setdefault(key, []).append(usage.root)
            percent[key] = min(free, percent.get(key, free))
            free_bytes[key] = usage.fs_free or 0
        for key, roots in filesystems.items():
            found.append(
                Alert(
                    kind=AlertKind.MIN_FREE_PERCENT,
                    roots=roots,
                    value=round(percent[key], 2),
                    threshold=alerts.min_free_percent,
                    message=(
                        f"the filesystem of {', '.join(roots)} has {percent[key]:.1f}% free "
                        f"({human_size(free_bytes[key])}), under the alert threshold of "
                        f"{alerts.min_free_percent:g}% (alerts.min_free_percent)"
                    ),
                )
            )
    return found


__all__ = ["Alert", "AlertKind", "check_alerts"]

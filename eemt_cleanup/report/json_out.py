"""The ``--json`` object of SPEC §5, exactly that shape (``models.RunSummary``)."""

from __future__ import annotations

import json
import sys
from typing import Any

from eemt_cleanup.models import RunReport

# What a run without reports going out (none configured, or a dry run) adds to its object.
NO_REPORTS: dict[str, Any] = {
    "alerts": [],
    "notifications": [],
    "metrics": None,
    "usage": None,
    "report_problems": [],
}


def report_to_dict(report: RunReport, reports: Any = None) -> dict[str, Any]:
    """The run as the SPEC's JSON object (a dry run describes what would happen), with
    what went out after it (``outlets.ReportsOut``: alerts, notices, metrics, usage)."""
    data: dict[str, Any] = report.summary().model_dump(mode="json")
    data.update(reports.json_keys() if reports is not None else NO_REPORTS)
    return data


def dumps(data: Any) -> str:
    """Stable, ASCII-safe JSON (hostile names stay escaped, never raw bytes): indented for a
    person at a terminal, one line for a program (the C encoder only writes it unindented,
    and is several times faster for a run with thousands of jobs)."""
    indent = 2 if sys.stdout.isatty() else None
    return json.dumps(data, indent=indent, ensure_ascii=True, default=str)


def event_line(event: Any) -> str:
    """One event as one line of JSON (``run --events jsonl``): ASCII-safe, like ``--json``."""
    line: str = event.to_json()
    return line

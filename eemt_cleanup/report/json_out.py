"""The ``--json`` object of SPEC §5, exactly that shape."""

from __future__ import annotations

import json
import sys
from typing import Any

from eemt_cleanup.engine import RunReport
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.policy import FAILED, SUCCESSFUL
from eemt_cleanup.timeparse import format_utc


def report_to_dict(report: RunReport) -> dict[str, Any]:
    """The run as the SPEC's JSON object (a dry run describes what would happen)."""
    return {
        "success": report.exit_code == 0,
        "dry_run": report.dry_run,
        "run_id": report.run_id,
        "started_at": format_utc(report.started_at),
        "finished_at": format_utc(report.finished_at) if report.finished_at else None,
        "cleaned_jobs": {
            "successful": report.cleaned(SUCCESSFUL),
            "failed": report.cleaned(FAILED),
        },
        "space_freed": {
            "bytes": report.bytes_freed,
            "human_readable": human_size(report.bytes_freed),
        },
        "files_deleted": report.files_deleted,
        "details": [
            {
                "job_id": job.job_id,
                "status": job.status,
                "age_days": job.age_days,
                "bytes_freed": job.bytes_freed,
                "space_freed": human_size(job.bytes_freed),
                "files_deleted": job.files_deleted,
                "paths": job.paths,
                "kept": job.kept,
                "errors": job.errors,
            }
            for job in report.jobs
        ],
        "skipped": [
            {
                "job_id": skip.job_id,
                "reason": f"{skip.path}: {skip.reason}" if skip.path else skip.reason,
            }
            for skip in report.skipped
        ],
        "errors": report.errors,
        # Beyond the SPEC's keys: a dry run forced by the environment, the rows this run
        # will not clean (counts and a few examples; skipped lists the same examples), and
        # the jobs recorded now that an earlier run deleted without recording them.
        "dry_run_forced_by": report.forced_by,
        "never_cleaned": {
            kind: {
                "count": kept.count,
                "examples": [
                    {"job_id": skip.job_id, "reason": skip.reason} for skip in kept.examples
                ],
            }
            for kind, kept in report.kept.items()
        },
        "recorded_late": [
            {
                "job_id": job.job_id,
                "deleted_by_run": job.recovered_run,
                "bytes_freed": job.recovered_bytes,
                "files_deleted": job.recovered_files,
            }
            for job in report.recovered
        ],
    }


def dumps(data: Any) -> str:
    """Stable, ASCII-safe JSON (hostile names stay escaped, never raw bytes): indented for a
    person at a terminal, one line for a program (the C encoder only writes it unindented,
    and is several times faster for a run with thousands of jobs)."""
    indent = 2 if sys.stdout.isatty() else None
    return json.dumps(data, indent=indent, ensure_ascii=True, default=str)

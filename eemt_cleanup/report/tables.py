"""How a run talks to people on a terminal: a Rich progress bar and tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import humanize
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import RunReport
from eemt_cleanup.report.escape import printable


def cell(value: object, style: str = "") -> Text:
    """A table cell from any value: escaped, and never parsed as Rich markup or emoji."""
    return Text(printable(value), style=style)


class ProgressEvents:
    """A Rich progress bar over the jobs being cleaned (terminal only): an event subscriber
    that moves per job, with the bytes freed so far."""

    def __init__(self, progress: Progress, dry_run: bool) -> None:
        self.progress = progress
        label = "Measuring" if dry_run else "Cleaning"
        self.task = progress.add_task(label, total=None, freed="")

    def __call__(self, event: object) -> None:
        if getattr(event, "kind", None) != "job_finished":
            return
        self.progress.update(
            self.task,
            total=event.jobs_planned,  # type: ignore[attr-defined]
            completed=event.jobs_done,  # type: ignore[attr-defined]
            freed=human_size(event.bytes_so_far),  # type: ignore[attr-defined]
        )


@contextmanager
def progress_bar(console: Console, dry_run: bool) -> Iterator[ProgressEvents]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs"),
        TextColumn("{task.fields[freed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield ProgressEvents(progress, dry_run)


def status_table(report: RunReport) -> Table:
    """Per status: jobs, files, space freed."""
    title = "Would be freed (dry run)" if report.dry_run else "Space freed"
    table = Table(title=title)
    for header in ("Status", "Jobs", "Files", "Space freed"):
        table.add_column(header, justify="left" if header == "Status" else "right")
    totals: dict[str, list[int]] = {}
    for job in report.jobs:
        row = totals.setdefault(job.status, [0, 0, 0])
        row[0] += 1
        row[1] += job.files_deleted
        row[2] += job.bytes_freed
    for status, (jobs, files, size) in sorted(totals.items()):
        table.add_row(cell(status), str(jobs), str(files), human_size(size))
    table.add_section()
    table.add_row(
        "total",
        str(len(report.jobs)),
        str(report.files_deleted),
        human_size(report.bytes_freed),
        style="bold",
    )
    return table


# Below this terminal width a job id (a uuid4, 36 characters) folds onto two lines of 18,
# at its middle dash, instead of squeezing every other column into "Stat…".
WIDE_JOBS_TABLE = 120
FOLDED_ID = 18


def jobs_table(report: RunReport, width: int = WIDE_JOBS_TABLE) -> Table:
    """Per job: id, status, age in days, paths, size, outcome (``width``: the terminal's)."""
    table = Table(title="Jobs")
    table.add_column("Job", overflow="fold", width=FOLDED_ID if width < WIDE_JOBS_TABLE else None)
    for header in ("Status", "Days", "Paths", "Size", "Result"):
        table.add_column(
            header,
            justify="right" if header in ("Days", "Size") else "left",
            no_wrap=header in ("Status", "Days", "Size"),
        )
    for job in report.jobs:
        outcome = "errors" if job.errors else ("would clean" if report.dry_run else "cleaned")
        if job.kept:
            outcome += f", kept {len(job.kept)}"
        table.add_row(
            cell(job.job_id),
            cell(job.status),
            str(job.age_days),
            cell(" ".join(_short_path(path, job.job_id) for path in job.paths) or "-"),
            human_size(job.bytes_freed),
            outcome,
        )
    return table


def _short_path(path: str, job_id: str) -> str:
    """``results/<id>/`` → ``results/``; the archive → ``archive``; an upload → ``upload``."""
    if path.startswith("uploads/"):
        return "upload"
    if path.endswith("_results.zip"):
        return "archive"
    return path.replace(f"/{job_id}/", "/")


def skipped_table(report: RunReport) -> Table:
    table = Table(title="Skipped")
    table.add_column("Job")
    table.add_column("Reason")
    for skip in report.skipped:
        reason = f"{skip.path}: {skip.reason}" if skip.path else skip.reason
        table.add_row(
            cell(skip.job_id), cell(reason), style="red" if skip.needs_attention else None
        )
    return table


def render_report(console: Console, report: RunReport, *, verbose: bool) -> None:
    """The tables a person reads after a run on a terminal."""
    if report.jobs or not report.skipped:
        console.print(status_table(report))
    if report.jobs and (verbose or report.dry_run):
        console.print(jobs_table(report, console.width))
    if report.skipped:
        console.print(skipped_table(report))
    for error in report.errors:
        console.print(cell(f"error: {error}", "red"))
    # Rows never cleaned and a forced dry run were already said above, as warnings.
    verb = "Would free" if report.dry_run else "Freed"
    line = (
        f"{verb} {human_size(report.bytes_freed)} from {len(report.jobs)} jobs "
        f"({report.files_deleted} files); {report.retained} jobs within retention"
    )
    if report.next_due_at is not None:
        line += f"; next due {describe_moment(report.next_due_at)}"
    console.print(cell(line))


def describe_moment(moment: datetime) -> str:
    """``in 5 hours (2026-11-22 12:57 local)`` for people reading a table."""
    delta = moment - datetime.now(UTC)
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"{humanize.naturaltime(-delta)} ({local})"

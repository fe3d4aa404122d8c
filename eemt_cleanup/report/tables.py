"""How a run talks to people on a terminal: a Rich progress bar and tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
from eemt_cleanup.models import JobResult, RunReport, Skip, SkipReason, job_word
from eemt_cleanup.report.dates import moment_and_relative
from eemt_cleanup.report.escape import printable
from eemt_cleanup.report.log_lines import cleaned_words


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
    for header in ("Status", "Jobs", "Files", "Freed"):
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


# A job id (a uuid4: 36 characters) is never cut or folded: people copy it. Below this
# terminal width the jobs are listed one block each instead of as table rows.
WIDE_JOBS_TABLE = 110
ID_WIDTH = 36


def _outcome(job: JobResult, dry_run: bool) -> str:
    outcome = "errors" if job.errors else ("would clean" if dry_run else "cleaned")
    if job.kept:
        outcome += f", kept {len(job.kept)}"
    return outcome


def jobs_table(report: RunReport, width: int = WIDE_JOBS_TABLE) -> Table:
    """Per job: id, status, age in days, paths, size, outcome (``width``: the terminal's).
    Narrower than WIDE_JOBS_TABLE: one block per job (the id on its own line)."""
    if width < WIDE_JOBS_TABLE:
        return _jobs_blocks(report)
    table = Table(title="Jobs")
    table.add_column("Job", no_wrap=True, min_width=ID_WIDTH)
    for header in ("Status", "Days", "Paths", "Size", "Result"):
        table.add_column(
            header,
            justify="right" if header in ("Days", "Size") else "left",
            no_wrap=header in ("Status", "Days", "Size"),
        )
    for job in report.jobs:
        table.add_row(
            cell(job.job_id),
            cell(job.status),
            str(job.age_days),
            cell(" ".join(_short_path(path, job.job_id) for path in job.paths) or "-"),
            human_size(job.bytes_freed),
            _outcome(job, report.dry_run),
        )
    return table


def _jobs_blocks(report: RunReport) -> Table:
    """The vertical layout: per job its id, then its figures and paths on indented lines."""
    table = Table(title="Jobs", show_header=False, box=None, padding=(0, 1))
    table.add_column("Field", no_wrap=True, style="dim")
    table.add_column("Value", min_width=ID_WIDTH)
    for index, job in enumerate(report.jobs):
        if index:
            table.add_row("", "")
        table.add_row("Job", cell(job.job_id, "bold"))
        table.add_row(
            "",
            cell(
                f"{job.status}, {job.age_days} days, {human_size(job.bytes_freed)}, "
                f"{job_word(job.files_deleted, 'file')}: {_outcome(job, report.dry_run)}"
            ),
        )
        paths = " ".join(_short_path(path, job.job_id) for path in job.paths) or "-"
        table.add_row("", cell(paths))
    return table


def _short_path(path: str, job_id: str) -> str:
    """``results/<id>/`` → ``results/``; the archive → ``archive``; an upload → ``upload``."""
    if path.startswith("uploads/"):
        return "upload"
    if path.endswith("_results.zip"):
        return "archive"
    return path.replace(f"/{job_id}/", "/")


def shown_skips(report: RunReport) -> list[Skip]:
    """The skips a person reads under "Skipped": not the shared upload kept by a job that
    was cleaned (that job is listed with its kept paths, not as skipped)."""
    cleaned = {job.job_id for job in report.jobs}
    return [
        skip
        for skip in report.skipped
        if not (skip.code is SkipReason.UPLOAD_KEPT and skip.job_id in cleaned)
    ]


def skipped_table(report: RunReport) -> Table:
    table = Table(title="Skipped")
    table.add_column("Job", no_wrap=True, min_width=ID_WIDTH)
    table.add_column("Reason")
    for skip in shown_skips(report):
        table.add_row(
            cell(skip.job_id), cell(skip.text), style="red" if skip.needs_attention else None
        )
    return table


def render_report(console: Console, report: RunReport, *, verbose: bool) -> None:
    """The tables a person reads after a run on a terminal."""
    skipped = shown_skips(report)
    if report.jobs or not skipped:
        console.print(status_table(report))
    if report.jobs and (verbose or report.dry_run):
        console.print(jobs_table(report, console.width))
    if skipped:
        console.print(skipped_table(report))
    for error in report.errors:
        console.print(cell(f"error: {error}", "red"))
    # Rows never cleaned and a forced dry run were already said above, as warnings.
    waiting = f"{job_word(report.retained)} within retention"
    if report.next_due_at is not None:
        waiting += f"; next due {moment_and_relative(report.next_due_at)}"
    console.print(cell(waiting))
    # The last line says what was freed (what a person reads first, and copies).
    files = job_word(report.files_deleted, "file")
    if report.dry_run:
        line = f"Would free {human_size(report.bytes_freed)} from {job_word(len(report.jobs))}"
    else:
        cleaned = cleaned_words(report.summary().cleaned_jobs)
        line = f"Freed {human_size(report.bytes_freed)}: {cleaned} cleaned"
    console.print(cell(f"{line} ({files})"))

"""``status``, ``history`` and ``audit``: read what is on disk and what was done."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from eemt_cleanup.cli.common import (
    ConfigOption,
    DbOption,
    DebugOption,
    JsonOption,
    ResultsOption,
    TempOption,
    UploadsOption,
    examples,
    handle_errors,
    path_overrides,
)
from eemt_cleanup.errors import ConfigError

STATUS_EPILOG = examples(
    "eemt-cleanup status                 # measure per status, store data_size_mb",
    "eemt-cleanup status --no-measure    # counts and due dates only (fast)",
    "eemt-cleanup status --json | jq .due_now",
)

HISTORY_EPILOG = examples(
    "eemt-cleanup history                # the last 20 runs",
    "eemt-cleanup history --limit 5 --json",
)

AUDIT_EPILOG = examples(
    "eemt-cleanup audit --job 3f2a9c1e-...            # everything done to one job",
    "eemt-cleanup audit --since 7d --action refused   # refusals of the last week",
    "eemt-cleanup audit --since 2026-11-01 --json",
)


def _render(rows: list[dict[str, Any]], title: str, columns: list[str], json_output: bool) -> None:
    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.report.json_out import dumps
    from eemt_cleanup.report.logs import use_rich

    if json_output:
        print(dumps(rows))
        return
    if not use_rich():
        # Tab-separated; a tab or newline inside a value is escaped, so a row is a line.
        print("\t".join(columns))
        for row in rows:
            print("\t".join(printable("" if row.get(c) is None else row.get(c)) for c in columns))
        return
    from rich.console import Console
    from rich.table import Table

    from eemt_cleanup.report.tables import cell

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(cell("" if row.get(c) is None else row.get(c)) for c in columns))
    Console().print(table)


@handle_errors(json_arg="json_output")
def status(
    config: ConfigOption = None,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    no_measure: Annotated[
        bool,
        typer.Option("--no-measure", help="Skip measuring disk use (and storing data_size_mb)."),
    ] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Disk used by the data of not-yet-cleaned jobs per status, what is due now, when the
    next job becomes due, and the last run. Measured sizes are stored in data_size_mb."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.humanize_size import human_size
    from eemt_cleanup.inventory import take_inventory
    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.report.json_out import dumps

    loaded = load_config(
        config_path=config, overrides=path_overrides(db_path, uploads_dir, results_dir, temp_dir)
    )
    inventory = take_inventory(loaded, measure=not no_measure, store_sizes=not no_measure)
    groups = sorted(inventory.groups.values(), key=lambda g: g.status)
    running = inventory.running
    if json_output:
        print(
            dumps(
                {
                    "by_status": [
                        {
                            "status": g.status,
                            "jobs": g.jobs,
                            "bytes": g.bytes_used,
                            "human_readable": human_size(g.bytes_used),
                            "due_now": g.due_now,
                            "due_bytes": g.due_bytes,
                        }
                        for g in groups
                    ],
                    "measured": inventory.measured,
                    "sizes_stored": inventory.sizes_stored,
                    "due_now": inventory.due_now,
                    "due_bytes": inventory.due_bytes,
                    "next_due_at": inventory.next_due_at.isoformat()
                    if inventory.next_due_at
                    else None,
                    "next_due_job": inventory.next_due_job,
                    "last_run": inventory.last_run,
                    "running": running.__dict__ if running else None,
                    "never_cleaned": {
                        kind: {
                            "count": kept.count,
                            "examples": [
                                {"job_id": skip.job_id, "reason": skip.reason}
                                for skip in kept.examples
                            ],
                        }
                        for kind, kept in inventory.kept.items()
                    },
                    "problems": inventory.problems,
                    "notes": inventory.notes,
                }
            )
        )
        return

    def size(value: int) -> str:
        return human_size(value) if inventory.measured else "-"

    rows = [
        {
            "status": g.status,
            "jobs": g.jobs,
            "disk used": size(g.bytes_used),
            "due now": g.due_now,
            "due size": size(g.due_bytes),
        }
        for g in groups
    ]
    _render(
        rows, "Jobs not yet cleaned", ["status", "jobs", "disk used", "due now", "due size"], False
    )
    next_due = (
        f"{inventory.next_due_at.isoformat(timespec='minutes')} (job {inventory.next_due_job})"
        if inventory.next_due_at
        else "none"
    )
    lines = [
        f"Due now: {inventory.due_now} jobs, {size(inventory.due_bytes)}",
        f"Next job becomes due: {next_due}",
    ]
    if running is not None:
        lines.append(f"Run in progress: {running.describe()}")
    lines.append("Last run: " + _describe_run(inventory.last_run, running))
    lines.extend(f"Attention: {problem}" for problem in inventory.problems)
    lines.extend(f"Note: {note}" for note in inventory.notes)
    for line in lines:
        print(printable(line))


def _describe_run(last: dict[str, Any] | None, running: Any) -> str:
    """The latest run-log row in words (no Python None: a row without an exit code is the
    run in progress, or one that was killed)."""
    from eemt_cleanup.humanize_size import human_size

    if not last:
        return "never"
    started = last.get("started_at") or "?"
    counts = (
        f"{last.get('jobs_successful') or 0} successful + {last.get('jobs_failed') or 0} "
        f"failed jobs, {human_size(last.get('bytes_freed') or 0)} freed"
    )
    if last.get("exit_code") is not None:
        finished = f", finished {last['finished_at']}" if last.get("finished_at") else ""
        return f"{started}{finished}, exit {last['exit_code']}: {counts}"
    if running is not None and running.run_id == last.get("run_id"):
        return f"{started}, still running: {counts} so far"
    return f"{started}, did not finish (killed, or still running elsewhere): {counts}"


@handle_errors(json_arg="json_output")
def history(
    config: ConfigOption = None,
    db_path: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Past runs, newest first (from the cleanup_log table). A run whose exit code is empty
    is still running or was killed."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.store.audit import recent_runs
    from eemt_cleanup.store.db import connect

    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    conn = connect(loaded.roots.database, readonly=True)
    try:
        rows = recent_runs(conn, limit)
    finally:
        conn.close()
    _render(
        rows,
        "Runs",
        [
            "run_id",
            "started_at",
            "finished_at",
            "trigger",
            "user",
            "dry_run",
            "dry_run_forced_by",
            "jobs_successful",
            "jobs_failed",
            "bytes_freed",
            "files_deleted",
            "errors",
            "exit_code",
        ],
        json_output,
    )


def parse_since(text: str) -> str:
    """``7d``, ``12h``, ``30m``, ``2w`` ago, or an ISO date/time, as the audit's UTC text form.

    Raises ConfigError naming --since when ``text`` is neither, or reaches outside the
    calendar (before year 1).
    """
    from eemt_cleanup.config.schema import quote
    from eemt_cleanup.timeparse import format_utc, parse_timestamp, utc_now

    units = {"d": "days", "h": "hours", "m": "minutes", "w": "weeks"}
    stripped = text.strip()
    count = stripped[:-1]
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if count.isascii() and count.isdigit() and stripped[-1:] in units:
        try:
            return format_utc(utc_now() - timedelta(**{units[stripped[-1]]: int(count)}))
        except (OverflowError, ValueError):
            raise ConfigError(
                f"--since: {quote(text)} reaches back before year 1; give a shorter duration"
            ) from None
    parsed = parse_timestamp(stripped)
    if parsed is None:
        raise ConfigError(
            f"--since: expected a duration like 7d/12h or an ISO date, got {quote(text)}"
        )
    return format_utc(parsed)


@handle_errors(json_arg="json_output")
def audit(
    config: ConfigOption = None,
    db_path: DbOption = None,
    job: Annotated[
        str | None, typer.Option("--job", metavar="ID", help="Only rows of this job.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="WHEN", help="7d, 12h, 30m, or an ISO date/time (local if naive)."
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            metavar="ACTION",
            help="deleted_results, deleted_archive, deleted_temp, deleted_upload, kept_upload, "
            "kept_logs, refused or error.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many rows.")] = 100,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Audit rows: one per path deleted, kept or refused, newest first."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.store.audit import audit_rows
    from eemt_cleanup.store.db import connect

    since_text = parse_since(since) if since else None
    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    conn = connect(loaded.roots.database, readonly=True)
    try:
        rows = audit_rows(conn, job_id=job, since=since_text, action=action, limit=limit)
    finally:
        conn.close()
    _render(
        rows,
        "Audit",
        [
            "timestamp",
            "job_id",
            "action",
            "path",
            "bytes_freed",
            "files_deleted",
            "user",
            "run_id",
            "error",
        ],
        json_output,
    )

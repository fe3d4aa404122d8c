"""``status``, ``history`` and ``audit``: read what is on disk and what was done."""

from __future__ import annotations

import sys
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
    own_output_only,
    path_overrides,
)
from eemt_cleanup.errors import ConfigError
from eemt_cleanup.store.actions import AuditAction, parse_action

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
    "eemt-cleanup audit --job 3f2a9c1e                # everything done to one job",
    "eemt-cleanup audit --since 7d --action refused   # refusals of the last week",
    "eemt-cleanup audit --since 2026-11-01 --json",
)


def _print_json(value: Any) -> None:
    from eemt_cleanup.report.json_out import dumps

    print(dumps(value))


def _show(tables: list[Any], lines: list[str] | None = None) -> None:
    """Tables (and lines) for people on stdout: Rich on a terminal, tab-separated off one."""
    from eemt_cleanup.report.info_tables import show
    from eemt_cleanup.report.logs import use_rich

    show(tables, lines or [], stream=sys.stdout, rich=use_rich())


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
    from eemt_cleanup.report.json_out import dumps
    from eemt_cleanup.stocktake import take_inventory

    loaded = load_config(
        config_path=config, overrides=path_overrides(db_path, uploads_dir, results_dir, temp_dir)
    )
    inventory = take_inventory(loaded, measure=not no_measure, store_sizes=not no_measure)
    from eemt_cleanup.outlets import after_status

    own_output_only()  # a failed alert notice is a line of ours
    # The usage sample (stored for report and the metrics), alerts, textfile, alert notices.
    out = after_status(loaded, inventory)
    groups = sorted(inventory.groups.values(), key=lambda g: g.status)
    running = inventory.running
    from eemt_cleanup.daemon.state import schedule_lines, schedule_state

    schedule = schedule_state(loaded)
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
                    "schedule": schedule,
                    **out.json_keys(),
                }
            )
        )
        return

    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.report.info_tables import status_lines, status_table

    lines = status_lines(inventory) + schedule_lines(schedule)
    lines += [f"ALERT: {alert.message}" for alert in out.alerts]
    lines += [
        f"{result.channel}: alert notice {result.decision}"
        + (f" ({result.error})" if result.error else "")
        for result in out.notifications
    ]
    lines += [f"Note: {printable(problem)}" for problem in out.problems]
    _show([status_table(groups, inventory.measured)], lines)


@handle_errors(json_arg="json_output")
def history(
    config: ConfigOption = None,
    db_path: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many runs.")] = 20,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Past runs, newest first (from the cleanup_log table). A run without an exit code
    (Exit "-") is still running or was killed."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.store.audit import recent_runs
    from eemt_cleanup.store.db import connect

    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    conn = connect(loaded.roots.database, readonly=True)
    try:
        rows = recent_runs(conn, limit)
    finally:
        conn.close()
    if json_output:
        _print_json(rows)
        return
    from eemt_cleanup.report.info_tables import history_table

    _show([history_table(rows)])


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
        str | None,
        typer.Option(
            "--job",
            metavar="ID",
            show_default=False,
            help="Only rows of this job: its id, or enough of its first characters to name "
            "one job (e.g. 3f2a9c1e).",
        ),
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
            show_default=False,
            help=f"Only rows of this action: {', '.join(AuditAction)}.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many rows.")] = 100,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Audit rows: one per path deleted, kept or refused, newest first. --job takes a whole
    job id or its first characters (enough of them to name one job)."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.config.schema import quote
    from eemt_cleanup.store.audit import audit_rows
    from eemt_cleanup.store.db import connect

    if action is not None and parse_action(action) is None:
        raise ConfigError(
            f"--action {quote(action)}: not an audit action; one of {', '.join(AuditAction)}"
        )
    if job is not None and not job.strip():
        raise ConfigError("--job: must not be empty")
    since_text = parse_since(since) if since else None
    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    conn = connect(loaded.roots.database, readonly=True)
    try:
        job_id = None if job is None else resolve_job(conn, job)
        rows = audit_rows(conn, job_id=job_id, since=since_text, action=action, limit=limit)
    finally:
        conn.close()
    if json_output:
        _print_json(rows)
        return
    from eemt_cleanup.report.info_tables import audit_table

    _show([audit_table(rows)])


def resolve_job(conn: Any, given: str) -> Any:
    """The audited job ``given`` names: its whole id, or the first characters of exactly one.

    Raises ConfigError naming --job when no audited job matches, or when several do (how
    many, and the first few).
    """
    from eemt_cleanup.config.schema import quote
    from eemt_cleanup.models import job_word
    from eemt_cleanup.store.actions import match_audited_job

    match = match_audited_job(conn, given)
    if match.job_id is not None:
        return match.job_id
    if not match.count:
        raise ConfigError(f"--job {quote(given)}: no audited job has this id or starts with it")
    shown = ", ".join(quote(job_id) for job_id in match.examples)
    more = ", ..." if match.count > len(match.examples) else ""
    raise ConfigError(
        f"--job {quote(given)}: {job_word(match.count)} match ({shown}{more}); give more of the id"
    )

"""What status and schedule say about the daemon: the next slot and the last ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eemt_cleanup.config.loader import LoadedConfig


def last_runs(loaded: LoadedConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The last row of the run log and the last scheduled slot the daemon recorded (None
    when the database or its tables are not there yet)."""
    import sqlite3

    from eemt_cleanup.errors import CleanupError
    from eemt_cleanup.report.escape import printable
    from eemt_cleanup.store.db import connect
    from eemt_cleanup.store.migrations import LOG_TABLE
    from eemt_cleanup.store.schedule import SCHEDULED, last_record
    from eemt_cleanup.store.usage import has_table
    from eemt_cleanup.timeparse import format_utc

    try:
        conn = connect(loaded.roots.database, readonly=True)
    except (CleanupError, OSError, sqlite3.Error):
        return None, None
    try:
        run = None
        if has_table(conn, LOG_TABLE):
            row = conn.execute(
                f"SELECT run_id, started_at, finished_at, trigger, exit_code FROM {LOG_TABLE} "
                "ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
            if row is not None:
                run = {
                    "run_id": printable(row[0]),
                    "started_at": row[1],
                    "finished_at": row[2],
                    "trigger": printable(row[3]) if row[3] is not None else None,
                    "exit_code": row[4],
                }
        slot = last_record(conn, SCHEDULED)
        slot_info = (
            {
                "slot": format_utc(slot.slot) if slot.slot else None,
                "decision": slot.decision,
                "run_id": slot.run_id,
                "recorded_at": format_utc(slot.recorded_at),
            }
            if slot is not None
            else None
        )
        return run, slot_info
    except sqlite3.Error:
        return None, None
    finally:
        conn.close()


def schedule_state(loaded: LoadedConfig, now: datetime | None = None) -> dict[str, Any]:
    """The schedule for ``status``: on or off, the next slot (local and UTC), the last slot
    the daemon recorded."""
    from eemt_cleanup.schedule import CronSchedule, ScheduleError, zone_label

    settings = loaded.settings.schedule
    now = now or datetime.now(UTC)
    state: dict[str, Any] = {
        "enabled": settings.enabled,
        "cron": settings.cron,
        "timezone": settings.timezone,
        "next_run": None,
        "next_run_utc": None,
    }
    try:
        plan = CronSchedule.of(settings)
    except ScheduleError as error:
        state["problem"] = str(error)
        plan = None
    if plan is not None:
        state["zone"] = zone_label(plan.zone)
        if settings.enabled:
            following = plan.next_after(now)
            state["next_run"] = following.isoformat()
            state["next_run_utc"] = following.astimezone(UTC).isoformat()
    state["last_slot"] = last_runs(loaded)[1]
    return state


def schedule_lines(state: dict[str, Any], now: datetime | None = None) -> list[str]:
    from eemt_cleanup.report.dates import relative

    now = now or datetime.now(UTC)
    if not state["enabled"]:
        lines = ["Scheduled runs: off (schedule.enabled is false)"]
    elif state["next_run"]:
        following = datetime.fromisoformat(state["next_run"])
        zone = state.get("zone", state["timezone"])
        lines = [
            f"Next scheduled run (eemt-cleanup daemon): {following:%Y-%m-%d %H:%M %Z} "
            f"({relative(following, now)}; {state['cron']} in {zone})"
        ]
    else:
        lines = [f"Scheduled runs: {state.get('problem', 'unknown')}"]
    slot = state.get("last_slot")
    if slot:
        run = f", run {slot['run_id']}" if slot.get("run_id") else ""
        lines.append(f"Last scheduled slot: {slot['slot']} ({slot['decision']}{run})")
    return lines

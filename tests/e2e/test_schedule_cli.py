"""End-to-end: ``schedule`` (next fire times, local and UTC, and the last runs), ``health``
(the daemon's health file) and the schedule in ``status``, through the installed CLI."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import DemoBase, add_run_log_row, call, error_line, guarded_env

from eemt_cleanup.config.schema import Jobs
from eemt_cleanup.store.schedule import ScheduleRecord, ensure_schedule_table, record

pytestmark = pytest.mark.e2e

JSON_KEYS = {"expression", "timezone", "zone", "enabled", "next", "last_run", "last_slot"}
RUN_LINE = re.compile(
    r"^  (?P<weekday>\w{3}) (?P<local>\d{4}-\d\d-\d\d \d\d:\d\d) (?P<abbrev>[A-Z]{3,4})"
    r"\s+(?P<utc>\d{4}-\d\d-\d\d \d\d:\d\d) UTC\s+\S"
)


def write_config(directory: Path, body: str) -> Path:
    config = directory / "cleanup_config.yaml"
    config.write_text(body, encoding="utf-8")
    return config


def base_config(base: DemoBase, schedule: str = "") -> Path:
    """A config file pointing at the sample base, with an optional ``schedule`` section."""
    root = base.path
    return write_config(
        root.parent,
        "paths:\n"
        f"  database: {root / 'jobs.db'}\n"
        f"  uploads: {root / 'uploads'}\n"
        f"  results: {root / 'results'}\n"
        f"  temp: {root / 'temp'}\n" + schedule,
    )


# --- schedule: the next fire times ----------------------------------------------------------------


def test_schedule_prints_the_next_runs_in_local_time_and_utc(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    result = call(
        ["schedule", "--cron", "0 2 * * *", "--timezone", "Europe/Berlin", "-n", "3"],
        guarded_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "Schedule: 0 2 * * * in Europe/Berlin"
    assert lines[1] == "Next 3 runs:"
    runs = [RUN_LINE.match(line) for line in lines if " UTC " in line]
    assert len(runs) == 3, result.stdout
    berlin = ZoneInfo("Europe/Berlin")
    instants = []
    for found in runs:
        assert found is not None
        local = datetime.strptime(found["local"], "%Y-%m-%d %H:%M").replace(tzinfo=berlin)
        in_utc = datetime.strptime(found["utc"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert local.strftime("%H:%M") == "02:00"
        assert found["abbrev"] in ("CET", "CEST")
        assert found["weekday"] == local.strftime("%a")
        assert local.astimezone(UTC) == in_utc
        instants.append(in_utc)
    assert before < instants[0] <= before + timedelta(days=1, hours=1)
    assert instants == sorted(instants)
    assert len({instant.date() for instant in instants}) == 3
    assert lines[-1] == "Last run: none recorded"


def test_schedule_json_has_its_documented_shape(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    pasted = ["--cron", "'30 4 * * 1-5'", "--timezone", "America/New_York"]
    result = call(["schedule", *pasted, "-n", "4", "--json"], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 0, result.stderr
    data = result.json()
    assert set(data) == JSON_KEYS
    assert data["expression"] == "30 4 * * 1-5"  # the pasted quotes removed
    assert data["timezone"] == "America/New_York"
    assert data["zone"] == "America/New_York"
    assert data["enabled"] is True
    assert data["last_run"] is None
    assert data["last_slot"] is None
    assert len(data["next"]) == 4
    new_york = ZoneInfo("America/New_York")
    previous = before
    for fire in data["next"]:
        assert set(fire) == {"local", "utc"}
        local = datetime.fromisoformat(fire["local"])
        in_utc = datetime.fromisoformat(fire["utc"])
        assert in_utc.utcoffset() == timedelta(0)
        assert local == in_utc
        assert local.utcoffset() == local.astimezone(new_york).utcoffset()
        assert (local.hour, local.minute) == (4, 30)
        assert local.isoweekday() <= 5
        assert in_utc > previous
        previous = in_utc


def test_schedule_count_defaults_to_five(tmp_path: Path) -> None:
    result = call(
        ["schedule", "--cron", "*/15 * * * *", "--timezone", "UTC", "--json"],
        guarded_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 0, result.stderr
    fires = [datetime.fromisoformat(fire["utc"]) for fire in result.json()["next"]]
    assert len(fires) == 5
    assert {later - earlier for earlier, later in pairwise(fires)} == {timedelta(minutes=15)}


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
    ],
)
def test_schedule_that_never_fires_is_exit_2_with_one_line_saying_so(
    tmp_path: Path, expression: str, words: str
) -> None:
    result = call(
        ["schedule", "--cron", expression, "--timezone", "UTC"], guarded_env(tmp_path), cwd=tmp_path
    )
    assert result.code == 2
    assert result.stdout == ""
    line = error_line(result)
    assert words in line
    assert line.startswith("--cron: ")
    assert repr(expression) in line


def test_schedule_that_never_fires_in_json_reports_the_error(tmp_path: Path) -> None:
    result = call(
        ["schedule", "--cron", "0 0 30 2 *", "--json"], guarded_env(tmp_path), cwd=tmp_path
    )
    assert result.code == 2
    data = result.json()
    assert data["success"] is False
    assert len(data["errors"]) == 1
    assert "never fires" in data["errors"][0]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 2 * *", "4 fields"),
        ("0 2 * * * *", "6 fields"),
        ("61 * * * *", "minute field"),
    ],
)
def test_schedule_with_a_malformed_expression_is_exit_2_saying_why(
    tmp_path: Path, expression: str, words: str
) -> None:
    result = call(["schedule", "--cron", expression], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 2
    assert result.stdout == ""
    assert words in error_line(result)


def test_schedule_with_an_unknown_zone_is_exit_2_naming_it(tmp_path: Path) -> None:
    result = call(
        ["schedule", "--cron", "0 2 * * *", "--timezone", "Mars/Olympus"],
        guarded_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.code == 2
    assert result.stdout == ""
    line = error_line(result)
    assert "'Mars/Olympus'" in line
    assert "timezone" in line


def test_schedule_of_a_disabled_config_says_it_is_off(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'schedule:\n  enabled: false\n  cron: "15 4 * * 1"\n  timezone: America/New_York\n',
    )
    env = guarded_env(tmp_path)
    text = call(["schedule", "--config", str(config), "-n", "2"], env, cwd=tmp_path)
    assert text.code == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith("Schedule: 15 4 * * 1 in America/New_York")
    assert "schedule.enabled is false" in first
    assert len([line for line in text.stdout.splitlines() if " UTC " in line]) == 2
    data = call(["schedule", "--config", str(config), "--json"], env, cwd=tmp_path).json()
    assert data["enabled"] is False
    assert data["expression"] == "15 4 * * 1"
    assert len(data["next"]) == 5


def test_schedule_from_the_environment_and_local_zone_from_tz(tmp_path: Path) -> None:
    env = guarded_env(tmp_path, EEMT_CLEANUP_SCHEDULE='"45 3 * * *"', TZ="Europe/Berlin")
    data = call(["schedule", "--json", "-n", "1"], env, cwd=tmp_path).json()
    assert data["expression"] == "45 3 * * *"
    assert data["timezone"] == "local"
    assert data["zone"] == "Europe/Berlin"
    local = datetime.fromisoformat(data["next"][0]["local"])
    assert (local.hour, local.minute) == (3, 45)
    assert local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))


def test_schedule_shows_the_last_run_and_the_last_slot(tmp_path: Path, demo_base: DemoBase) -> None:
    config = base_config(demo_base, 'schedule:\n  cron: "0 2 * * *"\n  timezone: UTC\n')
    add_run_log_row(
        demo_base.db,
        run_id="run-scheduled-1",
        started_at="2026-11-30T02:00:05+00:00",
        finished_at="2026-11-30T02:00:09+00:00",
        trigger="schedule",
        exit_code=0,
        user="root",
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    conn = sqlite3.connect(demo_base.db, isolation_level=None)
    try:
        ensure_schedule_table(conn, Jobs())
        slot = datetime(2026, 11, 30, 2, tzinfo=UTC)
        record(conn, ScheduleRecord(slot, "schedule", "started", slot, run_id="run-scheduled-1"))
    finally:
        conn.close()
    env = guarded_env(tmp_path)
    data = call(["schedule", "--config", str(config), "--json"], env, cwd=tmp_path).json()
    assert data["last_run"]["run_id"] == "run-scheduled-1"
    assert data["last_run"]["trigger"] == "schedule"
    assert data["last_run"]["exit_code"] == 0
    assert data["last_slot"]["slot"] == "2026-11-30T02:00:00+00:00"
    assert data["last_slot"]["decision"] == "started"
    assert data["last_slot"]["run_id"] == "run-scheduled-1"
    text = call(["schedule", "--config", str(config)], env, cwd=tmp_path)
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert (
        "Last run: 2026-11-30T02:00:05+00:00, trigger schedule, exit 0 (run run-scheduled-1)"
        in lines
    )
    assert "Last scheduled slot: 2026-11-30T02:00:00+00:00 (started, run run-scheduled-1)" in lines


# --- health ---------------------------------------------------------------------------------------


def test_health_of_a_fresh_file_is_exit_0(tmp_path: Path) -> None:
    health = tmp_path / "health"
    health.touch()
    result = call(["health", "--file", str(health)], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 0
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1
    assert result.stdout.startswith("healthy: touched ")


def test_health_of_a_stale_file_is_exit_1_with_one_line(tmp_path: Path) -> None:
    health = tmp_path / "health"
    health.touch()
    an_hour_ago = time.time() - 3600
    os.utime(health, (an_hour_ago, an_hour_ago))
    result = call(["health", "--file", str(health)], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(
        rf"unhealthy: {re.escape(str(health))} last touched 36\d\d s ago \(max 120 s\)", line
    ), line
    # A longer allowance makes the same file healthy.
    relaxed = call(
        ["health", "--file", str(health), "--max-age", "7200"], guarded_env(tmp_path), cwd=tmp_path
    )
    assert relaxed.code == 0
    assert relaxed.stdout.startswith("healthy: touched 36")


def test_health_of_a_missing_file_is_exit_1_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "never-written"
    result = call(["health", "--file", str(missing)], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == f"unhealthy: {missing}: No such file or directory"


def test_health_without_a_path_is_a_usage_error(tmp_path: Path) -> None:
    result = call(["health", "--file", ""], guarded_env(tmp_path), cwd=tmp_path)
    assert result.code == 2
    assert "--file" in error_line(result)


# --- the schedule in status -----------------------------------------------------------------------


def test_status_json_has_the_next_scheduled_run(tmp_path: Path, demo_base: DemoBase) -> None:
    config = base_config(demo_base, 'schedule:\n  cron: "30 3 * * *"\n  timezone: Europe/Berlin\n')
    before = datetime.now(UTC)
    result = call(["status", "--config", str(config), "--json"], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    schedule = result.json()["schedule"]
    assert schedule["enabled"] is True
    assert schedule["cron"] == "30 3 * * *"
    assert schedule["timezone"] == "Europe/Berlin"
    assert schedule["zone"] == "Europe/Berlin"
    following = datetime.fromisoformat(schedule["next_run"])
    in_utc = datetime.fromisoformat(schedule["next_run_utc"])
    assert following == in_utc
    assert in_utc.utcoffset() == timedelta(0)
    assert (following.hour, following.minute) == (3, 30)
    assert following.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert before < following <= before + timedelta(days=1, hours=1)
    assert schedule["last_slot"] is None
    text = call(["status", "--config", str(config)], guarded_env(tmp_path))
    assert text.code == 0, text.stderr
    assert any(
        line.startswith("Next scheduled run (eemt-cleanup daemon): ")
        and "30 3 * * * in Europe/Berlin" in line
        for line in text.stdout.splitlines()
    ), text.stdout


def test_status_with_the_local_zone_follows_tz(tmp_path: Path, demo_base: DemoBase) -> None:
    config = base_config(demo_base)
    env = guarded_env(tmp_path, TZ="America/New_York")
    schedule = call(["status", "--config", str(config), "--json"], env).json()["schedule"]
    assert schedule["timezone"] == "local"
    assert schedule["zone"] == "America/New_York"
    following = datetime.fromisoformat(schedule["next_run"])
    assert (following.hour, following.minute) == (2, 0)  # the default 0 2 * * *
    assert following.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))


def test_status_json_of_a_disabled_schedule_has_no_next_run(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = base_config(demo_base, "schedule:\n  enabled: false\n")
    result = call(["status", "--config", str(config), "--json"], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    schedule = result.json()["schedule"]
    assert schedule["enabled"] is False
    assert schedule["next_run"] is None
    assert schedule["next_run_utc"] is None
    text = call(["status", "--config", str(config)], guarded_env(tmp_path))
    assert "Scheduled runs: off (schedule.enabled is false)" in text.stdout.splitlines()

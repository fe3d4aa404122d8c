"""End-to-end: help, version, ``status``, ``history``, ``audit`` and ``config`` commands."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    DemoBase,
    add_run_log_row,
    call,
    create_jobs_db,
    error_line,
    guarded_env,
    make_demo_base,
    path_args,
    snapshot,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
MEBIBYTE = 1024 * 1024
COMMANDS = [
    [],
    ["run"],
    ["status"],
    ["history"],
    ["audit"],
    ["config"],
    ["config", "show"],
    ["config", "validate"],
    ["config", "init"],
]
STATUS_KEYS = {
    "by_status",
    "measured",
    "due_now",
    "due_bytes",
    "next_due_at",
    "next_due_job",
    "last_run",
    "running",
    "never_cleaned",
    "problems",
    "notes",
    "sizes_stored",
    # What went out after it (issue #10): its usage sample, alerts, notices, metrics.
    "usage",
    "alerts",
    "notifications",
    "metrics",
    "report_problems",
    # The daemon's schedule (issue #11): next scheduled run, last slot.
    "schedule",
}


def tab_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if "\t" in line]


def install_config(demo: DemoBase) -> Path:
    target = demo.path / "cleanup_config.yaml"
    shutil.copyfile(SHIPPED_CONFIG, target)
    return target


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def allocated(path: Path) -> int:
    """Bytes allocated to ``path`` and everything below it (what deleting it frees)."""
    info = os.lstat(path)
    total = info.st_blocks * 512
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


# --------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "app" for c in COMMANDS])
def test_help_exits_0_and_shows_examples(tmp_path: Path, command: list[str], flag: str) -> None:
    result = call([*command, flag], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    assert "Usage: eemt-cleanup" in result.stdout
    assert "Examples" in result.stdout
    assert result.stderr == ""


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = call(["--version"], guarded_env(tmp_path))
    assert result.code == 0
    assert result.stdout == f"eemt-cleanup {version('eemt-cleanup')}\n"


# --------------------------------------------------------------------------- status


def expected_job_size(demo: DemoBase, job: dict[str, Any]) -> int:
    return sum(allocated(demo.path / path.rstrip("/")) for path in job["paths"])


def test_status_reports_jobs_per_status_and_stores_measured_sizes(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    manifest = demo_base.manifest
    sizes = {job["id"]: expected_job_size(demo_base, job) for job in manifest["jobs"]}
    result = call(["status", "--config", str(config)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[0] == ["Status", "Jobs", "Disk Used", "Due Now", "Due Size"]
    per_status = {row[0]: (int(row[1]), int(row[3])) for row in rows[1:]}
    jobs = Counter(job["status"] for job in manifest["jobs"])
    due = Counter(job["status"] for job in manifest["jobs"] if job["expect"] == "due")
    assert per_status == {status: (count, due[status]) for status, count in jobs.items()}
    due_count = sum(due.values())
    jobs_word = "job" if due_count == 1 else "jobs"
    assert re.search(rf"^Due now: {due_count} {jobs_word}, \d+(\.\d)? \w+$", result.stdout, re.M)
    assert "Next job becomes due: " in result.stdout
    assert "Last run: never" in result.stdout
    stored = {job_id: row["data_size_mb"] for job_id, row in demo_base.rows().items()}
    assert stored == {job_id: round(size / MEBIBYTE, 3) for job_id, size in sizes.items()}
    assert all(row["data_cleaned_at"] is None for row in demo_base.rows().values())


def test_status_json_has_the_keys_and_due_now_matches_the_manifest(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    manifest = demo_base.manifest
    result = call(["status", "--json", "--config", str(config)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == STATUS_KEYS
    due = [job for job in manifest["jobs"] if job["expect"] == "due"]
    assert data["due_now"] == len(due)
    assert data["measured"] is True
    assert data["last_run"] is None
    by_status = {group["status"]: group for group in data["by_status"]}
    assert {s: g["jobs"] for s, g in by_status.items()} == dict(
        Counter(job["status"] for job in manifest["jobs"])
    )
    assert sum(g["due_now"] for g in by_status.values()) == len(due)
    assert data["due_bytes"] == sum(g["due_bytes"] for g in by_status.values())
    # The retained job due soonest: the failed one 6 hours into its 12-hour retention.
    soonest = next(j for j in manifest["jobs"] if j["scenario"] == 9)
    assert data["next_due_job"] == soonest["id"]
    problems = " ".join(data["problems"])
    for job in manifest["jobs"]:
        if job["expect"] in ("unknown_status", "unparseable"):
            assert job["id"] in problems


def test_status_measures_big_trees_in_the_workers_exactly_and_changes_no_file(
    tmp_path: Path,
) -> None:
    # Directories with thousands of entries and a subdirectory are measured by the forked
    # workers (the demo's small trees are measured in-thread): same figures, nothing touched.
    base = tmp_path / "base"
    for sub in ("uploads", "results", "temp"):
        (base / sub).mkdir(parents=True)
    ids = ["big-a", "big-b", "big-c"]
    create_jobs_db(
        base / "jobs.db",
        [
            {"id": job_id, "status": "completed", "completed_at": "2020-01-01T00:00:00"}
            for job_id in ids
        ],
    )
    sizes = {}
    for number, job_id in enumerate(ids):
        top = base / "results" / job_id
        (top / "outputs").mkdir(parents=True)
        for index in range(1500 + 200 * number):
            (top / f"tile_{index:05d}.tif").write_bytes(b"x" * (100 + number))
        (top / "outputs" / "mosaic.tif").write_bytes(b"m" * 70_000)
        sizes[job_id] = allocated(top)
    before = snapshot(base / "results")
    result = call(["status", "--json", *path_args(base)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["by_status"] == [
        {
            "status": "completed",
            "jobs": 3,
            "bytes": sum(sizes.values()),
            "human_readable": data["by_status"][0]["human_readable"],
            "due_now": 3,
            "due_bytes": sum(sizes.values()),
        }
    ]
    with sqlite3.connect(base / "jobs.db") as conn:
        stored = dict(conn.execute("SELECT id, data_size_mb FROM jobs"))
    assert stored == {job_id: round(size / MEBIBYTE, 3) for job_id, size in sizes.items()}
    assert snapshot(base / "results") == before


def test_status_no_measure_shows_no_sizes_and_writes_nothing(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    before = snapshot(demo_base.path)
    result = call(["status", "--no-measure", "--config", str(config)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[1:]
    assert all(row[2] == "-" and row[4] == "-" for row in rows[1:])
    due_count = sum(1 for job in demo_base.manifest["jobs"] if job["expect"] == "due")
    assert f"Due now: {due_count} {'job' if due_count == 1 else 'jobs'}, -" in result.stdout
    assert snapshot(demo_base.path) == before


def test_status_while_a_run_holds_the_lock_names_it_and_prints_no_python_none(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    # A run in progress has a run-log row without an exit code or finish time yet.
    config = install_config(demo_base)
    add_run_log_row(
        demo_base.db,
        run_id="run-in-progress",
        started_at="2026-12-01T02:00:00+00:00",
        trigger="cron",
        user="root",
        host=socket.gethostname(),
        pid=os.getpid(),
        jobs_successful=2,
        jobs_failed=0,
        bytes_freed=4096,
        files_deleted=10,
    )
    fd = os.open(demo_base.db, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = call(["status", "--config", str(config)], guarded_env(tmp_path))
        as_json = call(["status", "--json", "--config", str(config)], guarded_env(tmp_path))
    finally:
        os.close(fd)

    assert result.code == 0, result.stderr
    assert "None" not in result.stdout
    assert f"Run in progress: pid {os.getpid()}, on {socket.gethostname()}" in result.stdout
    assert (
        "Last run: run-in-progress, started 2026-12-01 02:00 UTC, still running: 2 jobs cleaned"
        " (2 successful, 0 failed), 10 files, 4.0 KB freed so far" in result.stdout
    )
    running = json.loads(as_json.stdout)["running"]
    assert running["pid"] == os.getpid() and running["run_id"] == "run-in-progress"


def test_status_after_a_killed_run_says_it_did_not_finish(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    add_run_log_row(demo_base.db, run_id="killed", started_at="2026-12-01", pid=1)

    result = call(["status", "--config", str(config)], guarded_env(tmp_path))

    assert result.code == 0, result.stderr
    assert "None" not in result.stdout
    assert "Run in progress" not in result.stdout
    assert (
        "Last run: killed, started 2026-12-01 00:00 UTC, did not finish (killed, or still running"
        " elsewhere): 0 jobs cleaned (0 successful, 0 failed), 0 files, 0 Bytes freed"
    ) in result.stdout


def test_status_on_a_read_only_database_measures_and_says_sizes_were_not_stored(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    install_config(demo_base)  # paths relative to the file: they follow it under readonly/
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if subprocess.run(
        ["mount", "--bind", str(demo_base.path), str(readonly)], capture_output=True
    ).returncode:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(readonly)], capture_output=True
        ).returncode:
            pytest.skip("cannot remount read-only here")
        before = snapshot(demo_base.path)
        result = call(
            ["status", "--config", str(readonly / "cleanup_config.yaml")], guarded_env(tmp_path)
        )
        as_json = call(
            ["status", "--json", "--config", str(readonly / "cleanup_config.yaml")],
            guarded_env(tmp_path),
        )
    finally:
        subprocess.run(["umount", str(readonly)], capture_output=True)

    assert result.code == 0, result.stderr
    assert tab_rows(result.stdout)[1:], "the table is shown"
    notes = [line for line in result.stdout.splitlines() if line.startswith("Note: ")]
    assert notes == [
        "Note: sizes not stored in data_size_mb: attempt to write a readonly database",
        "Note: the usage sample could not be stored: attempt to write a readonly database",
    ], result.stdout
    data = json.loads(as_json.stdout)
    assert data["sizes_stored"] is False and data["measured"] is True
    assert data["report_problems"] == [notes[1].removeprefix("Note: ")]
    assert snapshot(demo_base.path) == before


# --------------------------------------------------------------------------- history, audit


@dataclass
class CleanedBase:
    demo: DemoBase
    config: Path
    env: dict[str, str]
    report: dict[str, Any]


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> CleanedBase:
    root = tmp_path_factory.mktemp("cleaned")
    env = guarded_env(root)
    demo = make_demo_base(root / "base")
    config = install_config(demo)
    result = call(["run", "--json", "--config", str(config)], env)
    assert result.code == 0, result.stderr
    return CleanedBase(demo, config, env, json.loads(result.stdout))


def audit_table(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM cleanup_audit")]
    finally:
        conn.close()


def test_history_after_a_run_shows_that_run(cleaned: CleanedBase) -> None:
    result = call(["history", "--config", str(cleaned.config)], cleaned.env)
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[0][0] == "Run"
    assert rows[0][-1] == "Exit"
    assert [row[0] for row in rows[1:]] == [cleaned.report["run_id"]]
    assert rows[1][-1] == "0"


def test_history_json_lists_the_run_with_its_counts(cleaned: CleanedBase) -> None:
    result = call(["history", "--json", "--config", str(cleaned.config)], cleaned.env)
    assert result.code == 0, result.stderr
    runs = json.loads(result.stdout)
    assert len(runs) == 1
    run = runs[0]
    assert run["run_id"] == cleaned.report["run_id"]
    assert run["exit_code"] == 0
    assert run["jobs_successful"] == cleaned.report["cleaned_jobs"]["successful"]
    assert run["jobs_failed"] == cleaned.report["cleaned_jobs"]["failed"]
    assert run["bytes_freed"] == cleaned.report["space_freed"]["bytes"]


def test_audit_job_filter_shows_only_that_jobs_rows(cleaned: CleanedBase) -> None:
    job_id = cleaned.report["details"][0]["job_id"]
    result = call(
        ["audit", "--json", "--job", job_id, "--config", str(cleaned.config)], cleaned.env
    )
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    expected = [row for row in audit_table(cleaned.demo.db) if row["job_id"] == job_id]
    assert rows
    assert sorted(row["id"] for row in rows) == sorted(row["id"] for row in expected)
    plain = call(["audit", "--job", job_id, "--config", str(cleaned.config)], cleaned.env)
    assert plain.code == 0
    assert len(tab_rows(plain.stdout)) == len(expected) + 1
    assert all(row[1] == job_id for row in tab_rows(plain.stdout)[1:])


def test_audit_action_filter_shows_only_deleted_uploads(cleaned: CleanedBase) -> None:
    result = call(
        ["audit", "--json", "--action", "deleted_upload", "--config", str(cleaned.config)],
        cleaned.env,
    )
    assert result.code == 0, result.stderr
    rows = json.loads(result.stdout)
    deleted = [p for p, fate in cleaned.demo.manifest["uploads"].items() if fate == "deleted"]
    assert sorted(row["path"] for row in rows) == sorted(f"uploads/{p}" for p in deleted)
    assert {row["action"] for row in rows} == {"deleted_upload"}


def test_audit_since_filter_keeps_recent_rows_and_drops_older_ones(cleaned: CleanedBase) -> None:
    recent = call(
        ["audit", "--json", "--since", "1h", "--config", str(cleaned.config)], cleaned.env
    )
    assert recent.code == 0, recent.stderr
    assert len(json.loads(recent.stdout)) == len(audit_table(cleaned.demo.db))
    future = call(
        ["audit", "--json", "--since", "2999-01-01", "--config", str(cleaned.config)],
        cleaned.env,
    )
    assert future.code == 0, future.stderr
    assert json.loads(future.stdout) == []


def test_audit_with_an_unparseable_since_exits_2_naming_the_flag(cleaned: CleanedBase) -> None:
    result = call(
        ["audit", "--since", "last tuesday", "--config", str(cleaned.config)], cleaned.env
    )
    assert result.code == 2
    message = error_line(result)
    assert message.startswith("--since: ")
    assert "'last tuesday'" in message
    assert result.stdout == ""


# --------------------------------------------------------------------------- config


def test_config_show_lists_every_key_with_its_source(tmp_path: Path, demo_base: DemoBase) -> None:
    config = demo_base.path / "partial.yaml"
    config.write_text("paths:\n  uploads: ./uploads\n  results: ./results\n  temp: ./temp\n")
    env = guarded_env(tmp_path, EEMT_FAILED_RETENTION_HOURS="24")
    args = ["config", "show", "--config", str(config), "--db-path", str(demo_base.db)]
    result = call(args, env)
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[0] == ["Key", "Value", "Source"]
    shown = {row[0]: (row[1], row[2]) for row in rows[1:]}
    every_key = set(flatten(yaml.safe_load(SHIPPED_CONFIG.read_text())))
    assert set(shown) - every_key == {"config file"}
    assert every_key <= set(shown)
    assert shown["retention.successful_jobs.hours"][1] == "default"
    assert shown["retention.failed_jobs.hours"] == ("24.0", "env EEMT_FAILED_RETENTION_HOURS")
    # Values from the file say "file": the file is named once, in its own row.
    assert shown["config file"] == (str(config), "discovery")
    assert shown["paths.uploads"] == (str(demo_base.path / "uploads"), "file")
    assert shown["paths.database"] == (str(demo_base.db), "flag --db-path")
    assert shown["performance.max_workers"] == ("4", "default")
    as_json = call([*args, "--json"], env)
    assert as_json.code == 0, as_json.stderr
    items = {item["key"]: item for item in json.loads(as_json.stdout)}
    assert every_key <= set(items)
    assert items["retention.failed_jobs.hours"]["value"] == 24.0
    assert items["retention.failed_jobs.hours"]["source"] == "env EEMT_FAILED_RETENTION_HOURS"
    assert items["paths.database"]["source"] == "flag --db-path"
    assert items["retention.successful_jobs.hours"]["source"] == "default"
    assert items["paths.temp"]["source"] == f"file {config}"


def test_config_validate_accepts_the_shipped_file(tmp_path: Path, demo_base: DemoBase) -> None:
    config = install_config(demo_base)
    result = call(["config", "validate", str(config)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    assert result.stdout == f"{config}: valid\n"


def test_config_validate_rejects_a_bad_file_naming_the_key(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = demo_base.path / "bad.yaml"
    config.write_text("retention:\n  failed_jobs:\n    hours: -5\n")
    result = call(["config", "validate", str(config)], guarded_env(tmp_path))
    assert result.code == 2
    message = error_line(result)
    assert "retention.failed_jobs.hours" in message
    assert "-5" in message
    assert result.stdout == ""


def test_config_init_writes_the_shipped_file_and_only_overwrites_with_force(
    tmp_path: Path,
) -> None:
    env = guarded_env(tmp_path)
    target = tmp_path / "etc" / "cleanup_config.yaml"
    written = call(["config", "init", str(target)], env)
    assert written.code == 0, written.stderr
    assert target.read_text() == SHIPPED_CONFIG.read_text()
    target.write_text("# edited by the operator\n")
    refused = call(["config", "init", str(target)], env)
    assert refused.code == 2
    message = error_line(refused)
    assert str(target) in message
    assert "--force" in message
    assert target.read_text() == "# edited by the operator\n"
    forced = call(["config", "init", str(target), "--force"], env)
    assert forced.code == 0, forced.stderr
    assert target.read_text() == SHIPPED_CONFIG.read_text()

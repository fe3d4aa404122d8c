"""End-to-end: ``eemt-cleanup run`` on a realistic base directory, through the installed CLI.

Every run starts from ``/`` (as cron does) unless a test says why not, and is judged by its
exit code, its ``--json`` object, the files left on disk and the rows left in the database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ANSI,
    CliResult,
    DemoBase,
    call,
    guarded_env,
    make_demo_base,
    snapshot,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
MEBIBYTE = 1024 * 1024
LOG_NAMES = ("workflow.log", "task_output.log", "sys.err", "container.log")
# What a real run may add or change in the base directory besides deleting job data.
# What a real run writes besides deleting (the lock is a flock on jobs.db: no file of its
# own; the journal of unrecorded deletions is removed once everything is recorded).
BOOKKEEPING = {"jobs.db", "logs", "logs/cleanup.log"}

UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG): ")
WOULD_CLEAN = re.compile(
    r"^\[DRY RUN\] Would clean job (\S+) \(status: (completed|failed), age: \d+\.\d days\)$",
    re.MULTILINE,
)
SUMMARY = re.compile(
    r"^\[DRY RUN\] Summary: Would clean (\d+) jobs, freeing ~(\d+(?:\.\d)? \w+)$", re.MULTILINE
)

TOP_KEYS = {
    "success",
    "dry_run",
    "run_id",
    "started_at",
    "finished_at",
    "cleaned_jobs",
    "space_freed",
    "files_deleted",
    "details",
    "skipped",
    "errors",
    # Beyond the SPEC's keys (issue #8): a forced dry run, rows never cleaned, late records.
    "dry_run_forced_by",
    "never_cleaned",
    "recorded_late",
    # What went out after the run (issue #10): empty when nothing is configured.
    "alerts",
    "notifications",
    "metrics",
    "usage",
    "report_problems",
}
DETAIL_KEYS = {
    "job_id",
    "status",
    "age_days",
    "bytes_freed",
    "space_freed",
    "files_deleted",
    "paths",
    "kept",
    "errors",
}

Snapshot = dict[str, tuple[str, int, bytes | str]]
Cli = Callable[..., CliResult]


# --------------------------------------------------------------------------- helpers


def one_json_object(result: CliResult) -> dict[str, Any]:
    data = json.loads(result.stdout)  # fails on anything before or after the object
    assert isinstance(data, dict)
    return data


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def due_jobs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [job for job in manifest["jobs"] if job["expect"] == "due"]


def due_ids(manifest: dict[str, Any]) -> set[str]:
    return {job["id"] for job in due_jobs(manifest)}


def job_of_scenario(manifest: dict[str, Any], number: int) -> dict[str, Any]:
    return next(job for job in manifest["jobs"] if job["scenario"] == number)


def upload_fate(manifest: dict[str, Any], path: str) -> str:
    return str(manifest["uploads"][path.removeprefix("uploads/")])


def removed_paths(manifest: dict[str, Any]) -> set[str]:
    """Every artifact a default run deletes: the due jobs' paths, uploads only if 'deleted'."""
    paths = set()
    for job in due_jobs(manifest):
        for path in job["paths"]:
            if not path.startswith("uploads/") or upload_fate(manifest, path) == "deleted":
                paths.add(path)
    return paths


def shared_deleted_uploads(manifest: dict[str, Any]) -> set[str]:
    """Deleted uploads used by several due jobs: any one of them may be the one deleting it."""
    uses = Counter(path for job in due_jobs(manifest) for path in job["paths"])
    return {
        path
        for path, count in uses.items()
        if path.startswith("uploads/") and count > 1 and upload_fate(manifest, path) == "deleted"
    }


def kept_error_logs(manifest: dict[str, Any], before: Snapshot) -> set[str]:
    """Failed jobs keep their log files by default (retention.failed_jobs.keep_error_logs)."""
    kept = set()
    for job in due_jobs(manifest):
        if job["status"] == "failed":
            kept.add(f"results/{job['id']}")
            kept |= {f"results/{job['id']}/{n}" for n in LOG_NAMES} & set(before)
    return kept


def inside(rel: str, path: str) -> bool:
    return rel == path.rstrip("/") or (path.endswith("/") and rel.startswith(path))


def expected_after_run(before: Snapshot, manifest: dict[str, Any]) -> Snapshot:
    gone = removed_paths(manifest)
    kept = kept_error_logs(manifest, before)
    return {
        rel: entry
        for rel, entry in before.items()
        if rel in kept or not any(inside(rel, path) for path in gone)
    }


def without_bookkeeping(entries: Snapshot) -> Snapshot:
    return {rel: entry for rel, entry in entries.items() if rel not in BOOKKEEPING}


def assert_same_tree(actual: Snapshot, expected: Snapshot) -> None:
    assert sorted(actual) == sorted(expected)
    assert actual == expected


def install_config(demo: DemoBase) -> Path:
    """The shipped config (relative paths) in the base dir; ``config init`` writes the same."""
    target = demo.path / "cleanup_config.yaml"
    shutil.copyfile(SHIPPED_CONFIG, target)
    return target


def assert_exactly_due_jobs_cleaned(demo: DemoBase) -> None:
    """Rows: all kept, data_cleaned_at on exactly the due jobs; files: theirs gone (failed
    jobs keep only their error logs), everything else still there."""
    rows = demo.rows()
    assert set(rows) == {job["id"] for job in demo.manifest["jobs"]}
    marked = {job_id for job_id, row in rows.items() if row["data_cleaned_at"] is not None}
    assert marked == due_ids(demo.manifest)
    failed_results = {
        f"results/{j['id']}/" for j in due_jobs(demo.manifest) if j["status"] == "failed"
    }
    for path in removed_paths(demo.manifest):
        if path in failed_results:
            assert sorted(os.listdir(demo.path / path)) == sorted(LOG_NAMES), path
        else:
            assert not os.path.lexists(demo.path / path), path
    for job in demo.manifest["jobs"]:
        if job["expect"] != "due":
            for path in job["paths"]:
                assert os.path.lexists(demo.path / path), path
    for path in demo.manifest["untouched"]:
        assert (demo.path / path).is_file(), path


# --------------------------------------------------------------------------- the lifecycle


@dataclass
class Lifecycle:
    """One base dir taken through dry run, run and second run, from ``/`` with --config."""

    demo: DemoBase
    config: Path
    before: Snapshot
    rows_before: dict[str, dict[str, Any]]
    dry_plain: CliResult
    dry_json: CliResult
    after_dry: Snapshot
    rows_after_dry: dict[str, dict[str, Any]]
    real: CliResult
    after_real: Snapshot
    rows_after_real: dict[str, dict[str, Any]]
    audit: list[dict[str, Any]]
    runs_after_real: list[dict[str, Any]]
    log_text: str
    second: CliResult
    after_second: Snapshot
    rows_after_second: dict[str, dict[str, Any]]
    audit_after_second: list[dict[str, Any]]
    runs_after_second: list[dict[str, Any]]

    @property
    def manifest(self) -> dict[str, Any]:
        return self.demo.manifest


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    root = tmp_path_factory.mktemp("lifecycle")
    env = guarded_env(root)
    demo = make_demo_base(root / "base")
    config = demo.path / "cleanup_config.yaml"
    init = call(["config", "init", str(config)], env)
    assert init.code == 0, init.stderr
    before = snapshot(demo.path)
    rows_before = demo.rows()
    dry_plain = call(["run", "--dry-run", "--config", str(config)], env)
    dry_json = call(["run", "--dry-run", "--json", "--config", str(config)], env)
    after_dry = snapshot(demo.path)
    rows_after_dry = demo.rows()
    real = call(["run", "--json", "--config", str(config)], env)
    after_real = snapshot(demo.path)
    rows_after_real = demo.rows()
    audit = query(demo.db, "SELECT * FROM cleanup_audit ORDER BY id")
    runs_after_real = query(demo.db, "SELECT * FROM cleanup_log ORDER BY id")
    log_file = demo.path / "logs" / "cleanup.log"
    log_text = log_file.read_text() if log_file.exists() else ""
    second = call(["run", "--json", "--config", str(config)], env)
    return Lifecycle(
        demo=demo,
        config=config,
        before=before,
        rows_before=rows_before,
        dry_plain=dry_plain,
        dry_json=dry_json,
        after_dry=after_dry,
        rows_after_dry=rows_after_dry,
        real=real,
        after_real=after_real,
        rows_after_real=rows_after_real,
        audit=audit,
        runs_after_real=runs_after_real,
        log_text=log_text,
        second=second,
        after_second=snapshot(demo.path),
        rows_after_second=demo.rows(),
        audit_after_second=query(demo.db, "SELECT * FROM cleanup_audit ORDER BY id"),
        runs_after_second=query(demo.db, "SELECT * FROM cleanup_log ORDER BY id"),
    )


def test_demo_base_has_due_retained_and_never_jobs(lifecycle: Lifecycle) -> None:
    expects = Counter(job["expect"] for job in lifecycle.manifest["jobs"])
    assert expects["due"] >= 5
    assert expects["retained"] >= 1
    assert expects["never"] >= 1
    assert shared_deleted_uploads(lifecycle.manifest)
    assert "kept" in lifecycle.manifest["uploads"].values()


def test_dry_runs_exit_0_and_change_no_file_and_no_row(lifecycle: Lifecycle) -> None:
    assert lifecycle.dry_plain.code == 0, lifecycle.dry_plain.stderr
    assert lifecycle.dry_json.code == 0, lifecycle.dry_json.stderr
    assert_same_tree(lifecycle.after_dry, lifecycle.before)
    assert lifecycle.rows_after_dry == lifecycle.rows_before


def test_plain_dry_run_lists_exactly_the_due_jobs_in_dry_run_lines(lifecycle: Lifecycle) -> None:
    out = lifecycle.dry_plain.stdout
    listed = WOULD_CLEAN.findall(out)
    statuses = {job["id"]: job["status"] for job in due_jobs(lifecycle.manifest)}
    assert sorted(job_id for job_id, _status in listed) == sorted(statuses)
    assert dict(listed) == statuses
    logs = ", ".join(sorted(LOG_NAMES))
    for job_id, status in statuses.items():
        # A failed job's results directory keeps its error logs: it is emptied, not deleted.
        line = (
            rf"^\[DRY RUN\] Would empty results/{job_id}/ \(\d+(\.\d)? \w+; would keep {logs}\)$"
            if status == "failed"
            else rf"^\[DRY RUN\] Would delete: results/{job_id}/ \(\d+(\.\d)? \w+\)$"
        )
        assert re.search(line, out, re.MULTILINE), job_id
    summary = SUMMARY.findall(out)
    assert summary == [
        (str(len(statuses)), lifecycle.dry_json.json()["space_freed"]["human_readable"])
    ]
    assert lifecycle.dry_plain.stderr == ""


def test_json_output_is_one_object_with_exactly_the_spec_keys(lifecycle: Lifecycle) -> None:
    for result, dry_run in (
        (lifecycle.dry_json, True),
        (lifecycle.real, False),
        (lifecycle.second, False),
    ):
        data = one_json_object(result)
        # Captured stdout is a pipe, not a terminal: the object is written on one line.
        assert result.stdout.count("\n") == 1 and result.stdout.endswith("}\n")
        assert set(data) == TOP_KEYS
        assert data["success"] is True
        assert data["dry_run"] is dry_run
        assert set(data["cleaned_jobs"]) == {"successful", "failed"}
        assert set(data["space_freed"]) == {"bytes", "human_readable"}
        assert UTC_STAMP.match(data["started_at"])
        assert UTC_STAMP.match(data["finished_at"])
        assert data["errors"] == []
        for detail in data["details"]:
            assert set(detail) == DETAIL_KEYS
            assert detail["errors"] == []
            assert isinstance(detail["age_days"], float)
        for skip in data["skipped"]:
            assert set(skip) == {"job_id", "reason"}
    assert lifecycle.dry_json.json()["run_id"] != lifecycle.real.json()["run_id"]


def test_json_counts_match_the_manifest_and_bytes_add_up(lifecycle: Lifecycle) -> None:
    statuses = Counter(job["status"] for job in due_jobs(lifecycle.manifest))
    for result in (lifecycle.dry_json, lifecycle.real):
        data = result.json()
        assert data["cleaned_jobs"] == {
            "successful": statuses["completed"],
            "failed": statuses["failed"],
        }
        assert {d["job_id"] for d in data["details"]} == due_ids(lifecycle.manifest)
        assert len(data["details"]) == len(due_jobs(lifecycle.manifest))
        assert data["space_freed"]["bytes"] == sum(d["bytes_freed"] for d in data["details"])
        assert data["files_deleted"] == sum(d["files_deleted"] for d in data["details"])
        assert data["space_freed"]["bytes"] > 0


def test_json_skipped_names_unknown_jobs_and_the_kept_shared_upload(lifecycle: Lifecycle) -> None:
    manifest = lifecycle.manifest
    sharer = next(j for j in due_jobs(manifest) if j["scenario"] == 14)
    holder = next(j for j in manifest["jobs"] if j["scenario"] == 14 and j["id"] != sharer["id"])
    unknown = {
        job["id"] for job in manifest["jobs"] if job["expect"] in ("unknown_status", "unparseable")
    }
    skipped = lifecycle.real.json()["skipped"]
    assert {skip["job_id"] for skip in skipped} == unknown | {sharer["id"]}
    reasons = [skip["reason"] for skip in skipped if skip["job_id"] == sharer["id"]]
    assert len(reasons) == 1
    assert f"upload still referenced by job {holder['id']} (completed, due " in reasons[0]


def test_dry_run_json_describes_the_same_jobs_as_the_real_run(lifecycle: Lifecycle) -> None:
    dry, real = lifecycle.dry_json.json(), lifecycle.real.json()
    shared = shared_deleted_uploads(lifecycle.manifest)

    def per_job(data: dict[str, Any]) -> dict[str, Any]:
        return {
            d["job_id"]: (d["status"], sorted(set(d["paths"]) - shared), sorted(d["kept"]))
            for d in data["details"]
        }

    def all_paths(data: dict[str, Any]) -> list[str]:
        return sorted(path for d in data["details"] for path in d["paths"])

    assert per_job(dry) == per_job(real)
    assert all_paths(dry) == all_paths(real)
    assert dry["cleaned_jobs"] == real["cleaned_jobs"]
    assert dry["space_freed"] == real["space_freed"]
    assert dry["files_deleted"] == real["files_deleted"]
    assert sorted(map(str, dry["skipped"])) == sorted(map(str, real["skipped"]))


def test_json_mode_sends_log_lines_to_stderr(lifecycle: Lifecycle) -> None:
    for job_id in due_ids(lifecycle.manifest):
        assert f"[DRY RUN] Would clean job {job_id} " in lifecycle.dry_json.stderr
        assert f"Cleaning job {job_id} (" in lifecycle.real.stderr
    for result in (lifecycle.dry_json, lifecycle.real):
        assert "Would clean job" not in result.stdout
        assert "Cleaning job" not in result.stdout
        one_json_object(result)


def test_run_removes_exactly_the_due_jobs_artifacts(lifecycle: Lifecycle) -> None:
    assert lifecycle.real.code == 0, lifecycle.real.stderr
    expected = expected_after_run(lifecycle.before, lifecycle.manifest)
    assert_same_tree(without_bookkeeping(lifecycle.after_real), without_bookkeeping(expected))
    assert set(lifecycle.after_real) - set(lifecycle.before) <= BOOKKEEPING
    for path in lifecycle.manifest["untouched"]:
        assert lifecycle.after_real[path] == lifecycle.before[path]


def test_run_reports_the_paths_it_deleted_and_kept(lifecycle: Lifecycle) -> None:
    manifest = lifecycle.manifest
    details = {d["job_id"]: d for d in lifecycle.real.json()["details"]}
    assert sorted(p for d in details.values() for p in d["paths"]) == sorted(
        removed_paths(manifest)
    )
    for job in due_jobs(manifest):
        detail = details[job["id"]]
        assert set(detail["paths"]) <= set(job["paths"])
        expected_kept = {p for p in job["paths"] if p.startswith("uploads/")} - removed_paths(
            manifest
        )
        if job["status"] == "failed":
            expected_kept |= {f"results/{job['id']}/{name}" for name in LOG_NAMES}
        assert set(detail["kept"]) == expected_kept, job["id"]


def test_run_keeps_every_row_and_marks_exactly_the_due_jobs(lifecycle: Lifecycle) -> None:
    before, after = lifecycle.rows_before, lifecycle.rows_after_real
    assert set(after) == set(before)
    details = {d["job_id"]: d for d in lifecycle.real.json()["details"]}
    for job_id, row in after.items():
        assert {key: row[key] for key in before[job_id]} == before[job_id]
        if job_id in due_ids(lifecycle.manifest):
            assert UTC_STAMP.match(row["data_cleaned_at"]), row
            assert row["data_size_mb"] == round(details[job_id]["bytes_freed"] / MEBIBYTE, 3)
        else:
            assert row["data_cleaned_at"] is None, row


def test_run_writes_one_audit_row_per_path_acted_on(lifecycle: Lifecycle) -> None:
    manifest = lifecycle.manifest
    real = lifecycle.real.json()
    actions = {"results/": "deleted_results", "temp/": "deleted_temp"}
    expected = []
    for job in due_jobs(manifest):
        for path in job["paths"]:
            if path.endswith("_results.zip"):
                expected.append((job["id"], "deleted_archive", path))
            elif path.endswith("/"):
                expected.append((job["id"], actions[path.split("/")[0] + "/"], path))
            elif upload_fate(manifest, path) == "kept":
                expected.append((job["id"], "kept_upload", path))
        if job["status"] == "failed":
            expected.extend(
                (job["id"], "kept_logs", f"results/{job['id']}/{name}")
                for name in ("workflow.log", "task_output.log", "sys.err", "container.log")
            )
    rows = lifecycle.audit
    not_deleted_uploads = [
        (row["job_id"], row["action"], row["path"])
        for row in rows
        if row["action"] != "deleted_upload"
    ]
    assert sorted(not_deleted_uploads) == sorted(expected)
    deleted_uploads = [row for row in rows if row["action"] == "deleted_upload"]
    assert sorted(row["path"] for row in deleted_uploads) == sorted(
        path for path in removed_paths(manifest) if path.startswith("uploads/")
    )
    for row in deleted_uploads:
        users = {job["id"] for job in due_jobs(manifest) if row["path"] in job["paths"]}
        assert row["job_id"] in users
    for row in rows:
        assert row["run_id"] == real["run_id"]
        assert UTC_STAMP.match(row["timestamp"])
        assert row["user"]
        assert row["error"] is None or row["action"] in ("kept_upload", "kept_logs")
    assert sum(row["bytes_freed"] for row in rows) == real["space_freed"]["bytes"]
    assert sum(row["files_deleted"] for row in rows) == real["files_deleted"]


def test_run_writes_one_run_log_row_with_exit_code_0_and_the_counts(
    lifecycle: Lifecycle,
) -> None:
    real = lifecycle.real.json()
    assert len(lifecycle.runs_after_real) == 1  # the dry runs wrote none
    row = lifecycle.runs_after_real[0]
    assert row["run_id"] == real["run_id"]
    assert row["exit_code"] == 0
    assert row["dry_run"] == 0
    assert row["trigger"] == "cli"
    assert row["jobs_successful"] == real["cleaned_jobs"]["successful"]
    assert row["jobs_failed"] == real["cleaned_jobs"]["failed"]
    assert row["bytes_freed"] == real["space_freed"]["bytes"]
    assert row["files_deleted"] == real["files_deleted"]
    assert row["errors"] == 0
    assert UTC_STAMP.match(row["started_at"])
    assert UTC_STAMP.match(row["finished_at"])
    assert row["user"]
    assert row["host"]
    assert isinstance(row["pid"], int)


def test_run_log_file_has_one_timestamped_line_per_event(lifecycle: Lifecycle) -> None:
    lines = lifecycle.log_text.splitlines()
    assert lines
    for line in lines:
        assert LOG_LINE.match(line), line
    for job in due_jobs(lifecycle.manifest):
        pattern = rf" INFO: Cleaning job {job['id']} \({job['status']}, \d+\.\d days old\)$"
        assert sum(1 for line in lines if re.search(pattern, line)) == 1, job["id"]


def test_second_run_cleans_nothing_and_changes_no_file(lifecycle: Lifecycle) -> None:
    assert lifecycle.second.code == 0, lifecycle.second.stderr
    data = lifecycle.second.json()
    assert data["cleaned_jobs"] == {"successful": 0, "failed": 0}
    assert data["details"] == []
    assert data["space_freed"]["bytes"] == 0
    assert data["files_deleted"] == 0
    assert_same_tree(
        without_bookkeeping(lifecycle.after_second), without_bookkeeping(lifecycle.after_real)
    )
    assert lifecycle.rows_after_second == lifecycle.rows_after_real
    assert lifecycle.audit_after_second == lifecycle.audit
    assert len(lifecycle.runs_after_second) == 2
    last = lifecycle.runs_after_second[-1]
    assert (last["exit_code"], last["jobs_successful"], last["jobs_failed"]) == (0, 0, 0)


# --------------------------------------------------------------------------- other ways in


def test_path_flags_clean_exactly_the_due_jobs(tmp_path: Path, demo_base: DemoBase) -> None:
    # Not from "/": without a config file the default paths.logs (./logs) resolves against
    # the working directory, so from "/" this run would write /logs/cleanup.log.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = call(["run", "--json", *demo_base.path_args()], guarded_env(tmp_path), elsewhere)
    assert result.code == 0, result.stderr
    assert {d["job_id"] for d in result.json()["details"]} == due_ids(demo_base.manifest)
    assert_exactly_due_jobs_cleaned(demo_base)


def test_environment_paths_clean_exactly_the_due_jobs(tmp_path: Path, demo_base: DemoBase) -> None:
    elsewhere = tmp_path / "elsewhere"  # not "/": see test_path_flags_clean_exactly_the_due_jobs
    elsewhere.mkdir()
    env = guarded_env(
        tmp_path,
        EEMT_DB_PATH=str(demo_base.db),
        EEMT_UPLOADS_DIR=str(demo_base.path / "uploads"),
        EEMT_RESULTS_DIR=str(demo_base.path / "results"),
        EEMT_TEMP_DIR=str(demo_base.path / "temp"),
    )
    result = call(["run", "--json"], env, elsewhere)
    assert result.code == 0, result.stderr
    assert {d["job_id"] for d in result.json()["details"]} == due_ids(demo_base.manifest)
    assert_exactly_due_jobs_cleaned(demo_base)


def test_quiet_successful_run_prints_only_what_is_kept_forever(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    # The demo has one job whose age cannot be parsed and one with an unknown status: cron
    # must tell the operator that their data is kept forever (issue #8); nothing else.
    config = install_config(demo_base)
    result = call(["run", "--quiet", "--config", str(config)], guarded_env(tmp_path))
    assert result.code == 0
    (line,) = result.stdout.splitlines()
    assert line.startswith(
        "WARNING: Never cleaned until fixed: 1 job with an unknown age (e.g. job "
    )
    assert "; 1 job with an unknown status (e.g. job " in line
    assert result.stderr == ""
    assert_exactly_due_jobs_cleaned(demo_base)
    again = call(
        [
            "run",
            "--quiet",
            "--job",
            next(iter(due_ids(demo_base.manifest))),
            "--config",
            str(config),
        ],
        guarded_env(tmp_path),
    )
    assert (again.code, again.stdout, again.stderr) == (0, "", ""), "silent with nothing to say"


def test_quiet_run_with_a_mount_point_in_a_job_prints_the_failure_and_exits_1(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    victim = job_of_scenario(demo_base.manifest, 1)
    mount_point = demo_base.path / "results" / victim["id"] / "outputs" / "scratch"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "none", str(mount_point)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (mount_point / "other_filesystem.txt").write_text("must survive\n")
        result = call(["run", "--quiet", "--config", str(config)], guarded_env(tmp_path))
        assert result.code == 1
        output = result.stdout + result.stderr
        assert output.strip()
        assert f"results/{victim['id']}/outputs/scratch/: a mount point: not crossed" in output
        assert (mount_point / "other_filesystem.txt").read_text() == "must survive\n"
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)
    rows = demo_base.rows()
    assert rows[victim["id"]]["data_cleaned_at"] is None
    others = due_ids(demo_base.manifest) - {victim["id"]}
    assert all(rows[job_id]["data_cleaned_at"] for job_id in others)


def test_forced_dry_run_environment_deletes_nothing(tmp_path: Path, demo_base: DemoBase) -> None:
    config = install_config(demo_base)
    before, rows_before = snapshot(demo_base.path), demo_base.rows()
    env = guarded_env(tmp_path, EEMT_CLEANUP_DRY_RUN="true")
    result = call(["run", "--json", "--config", str(config)], env)
    assert result.code == 0, result.stderr
    data = one_json_object(result)
    assert data["dry_run"] is True
    assert data["dry_run_forced_by"] == "env EEMT_CLEANUP_DRY_RUN"
    assert {d["job_id"] for d in data["details"]} == due_ids(demo_base.manifest)
    # Only its history row is written (tests/safety/test_forced_dry_run.py).
    assert_same_tree(without_bookkeeping(snapshot(demo_base.path)), without_bookkeeping(before))
    assert {job_id: row["data_cleaned_at"] for job_id, row in demo_base.rows().items()} == {
        job_id: None for job_id in rows_before
    }


def test_no_color_environment_output_has_no_ansi_codes(tmp_path: Path, demo_base: DemoBase) -> None:
    config = install_config(demo_base)
    env = guarded_env(tmp_path, NO_COLOR="1")
    dry = call(["run", "--dry-run", "--verbose", "--config", str(config)], env)
    status = call(["status", "--config", str(config)], env)
    for result in (dry, status):
        assert result.code == 0, result.stderr
        assert result.stdout
        assert ANSI not in result.stdout + result.stderr


def test_job_option_cleans_only_that_job(tmp_path: Path, demo_base: DemoBase) -> None:
    config = install_config(demo_base)
    chosen = job_of_scenario(demo_base.manifest, 1)  # results, archive, temp and own upload
    before = snapshot(demo_base.path)
    result = call(
        ["run", "--json", "--job", chosen["id"], "--config", str(config)], guarded_env(tmp_path)
    )
    assert result.code == 0, result.stderr
    details = result.json()["details"]
    assert [d["job_id"] for d in details] == [chosen["id"]]
    assert sorted(details[0]["paths"]) == sorted(chosen["paths"])
    after = snapshot(demo_base.path)
    expected = {
        rel: entry
        for rel, entry in before.items()
        if not any(inside(rel, path) for path in chosen["paths"])
    }
    assert_same_tree(without_bookkeeping(after), without_bookkeeping(expected))
    marked = {i for i, row in demo_base.rows().items() if row["data_cleaned_at"] is not None}
    assert marked == {chosen["id"]}


def test_job_option_keeps_an_upload_shared_with_a_due_job_outside_the_run(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    chosen = job_of_scenario(demo_base.manifest, 15)  # shares its upload with another due job
    upload = next(p for p in chosen["paths"] if p.startswith("uploads/"))
    result = call(
        ["run", "--json", "--job", chosen["id"], "--config", str(config)], guarded_env(tmp_path)
    )
    assert result.code == 0, result.stderr
    detail = result.json()["details"][0]
    assert detail["kept"] == [upload]
    assert upload not in detail["paths"]
    assert (demo_base.path / upload).is_file()
    assert not (demo_base.path / "results" / chosen["id"]).exists()


def test_limit_1_cleans_only_the_longest_overdue_job(tmp_path: Path, demo_base: DemoBase) -> None:
    config = install_config(demo_base)
    # Scenario 5 completed 20 days ago: 13 days past its 7-day retention, the most overdue.
    oldest = job_of_scenario(demo_base.manifest, 5)
    result = call(["run", "--json", "--limit", "1", "--config", str(config)], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    data = result.json()
    assert [d["job_id"] for d in data["details"]] == [oldest["id"]]
    assert data["cleaned_jobs"] == {"successful": 1, "failed": 0}
    marked = {i for i, row in demo_base.rows().items() if row["data_cleaned_at"] is not None}
    assert marked == {oldest["id"]}
    assert not (demo_base.path / "results" / oldest["id"]).exists()


def test_python_m_eemt_cleanup_help_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eemt_cleanup", "--help"],
        cwd="/",
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout
    for command in ("run", "status", "history", "audit", "config"):
        assert re.search(rf"^\W*{command}\s", done.stdout, re.MULTILINE), command
    assert ANSI not in done.stdout + done.stderr

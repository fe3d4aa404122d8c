"""End-to-end: bad input gives exit 2 and one clear message, a held lock gives exit 75;
in every case nothing is deleted and no traceback is shown."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    JOBS_SCHEMA,
    DemoBase,
    add_run_log_row,
    call,
    cli_executable,
    error_line,
    guarded_env,
    make_demo_base,
    snapshot,
)

from eemt_cleanup.lock import find_holder

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
UNKNOWN_JOB = "00000000-0000-4000-8000-000000000000"


def tree_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(rel for rel in set(before) & set(after) if before[rel] != after[rel]),
    }


def assert_nothing_changed(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert tree_changes(before, after) == {"added": [], "removed": [], "changed": []}


def assert_nothing_deleted_or_changed(before: dict[str, Any], after: dict[str, Any]) -> None:
    changes = tree_changes(before, after)
    assert (changes["removed"], changes["changed"]) == ([], [])


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    args: list[str]
    needles: list[str]
    env: dict[str, str] = field(default_factory=dict)


def config_path(demo: DemoBase) -> Path:
    return demo.path / "cleanup_config.yaml"


def write_config(demo: DemoBase, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The shipped config (relative paths, resolved against the base dir), changed."""
    data = yaml.safe_load(SHIPPED_CONFIG.read_text())
    if change is not None:
        change(data)
    target = config_path(demo)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def with_config(
    demo: DemoBase, change: Callable[[dict[str, Any]], None] | None = None
) -> list[str]:
    return ["--config", str(write_config(demo, change))]


def set_key(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, leaf = dotted.split(".")
        node = data
        for name in parents:
            node = node[name]
        node[leaf] = value

    return change


def missing_database(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("paths.database", "./missing.db"))
    return Case(args, ["database not found", str(demo.path / "missing.db")])


def database_is_a_directory(demo: DemoBase) -> Case:
    (demo.path / "dbdir").mkdir()
    args = with_config(demo, set_key("paths.database", "./dbdir"))
    return Case(args, ["database path is not a file", str(demo.path / "dbdir")])


def corrupt_database(demo: DemoBase) -> Case:
    demo.db.write_bytes(os.urandom(16384))
    return Case(with_config(demo), [str(demo.db), "not a usable SQLite database"])


def foreign_database(demo: DemoBase) -> Case:
    demo.db.unlink()
    conn = sqlite3.connect(demo.db)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    return Case(with_config(demo), [str(demo.db), "no table 'jobs'", "(tables: orders, users)"])


def jobs_table_without_completed_at(demo: DemoBase) -> Case:
    demo.db.unlink()
    conn = sqlite3.connect(demo.db)
    schema = JOBS_SCHEMA.replace("completed_at TIMESTAMP,", "")
    assert schema != JOBS_SCHEMA
    conn.execute(schema)
    conn.commit()
    conn.close()
    return Case(with_config(demo), [str(demo.db), "lacks required column: completed_at"])


def unknown_key(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("retention.successful_jobs.hourz", 12))
    return Case(args, ["retention.successful_jobs.hourz", "unknown key"])


def wrong_type(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("retention.failed_jobs.hours", "twelve"))
    return Case(args, ["retention.failed_jobs.hours", "'twelve'"])


def negative_hours(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("retention.successful_jobs.hours", -5))
    return Case(args, ["retention.successful_jobs.hours", "-5"])


def zero_workers(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("performance.max_workers", 0))
    return Case(args, ["performance.max_workers", "got 0"])


def yaml_syntax_error(demo: DemoBase) -> Case:
    path = config_path(demo)
    path.write_text("retention:\n  failed_jobs: {hours: 12\npaths: [\n")
    return Case(["--config", str(path)], [str(path), "not valid YAML", "line "])


def overlapping_roots(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("paths.uploads", "./results/uploads"))
    return Case(args, ["paths.uploads and paths.results overlap"])


def root_is_slash(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("paths.results", "/"))
    return Case(args, ["paths.results", "refusing a system directory as a deletion root: /"])


def database_inside_results_root(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("paths.database", "./results/jobs.db"))
    return Case(
        args,
        [f"paths.database: {demo.path / 'results' / 'jobs.db'}", "deletion root paths.results"],
    )


def negative_failed_hours_from_environment(demo: DemoBase) -> Case:
    return Case(
        with_config(demo),
        ["retention.failed_jobs.hours", "EEMT_FAILED_RETENTION_HOURS", "-5"],
        {"EEMT_FAILED_RETENTION_HOURS": "-5"},
    )


def workers_not_a_number_from_environment(demo: DemoBase) -> Case:
    return Case(
        with_config(demo),
        ["EEMT_CLEANUP_WORKERS", "'abc'", "whole number"],
        {"EEMT_CLEANUP_WORKERS": "abc"},
    )


def missing_config_file(demo: DemoBase) -> Case:
    path = demo.path / "no_such_config.yaml"
    return Case(["--config", str(path)], [f"--config: no such file: {path}"])


def missing_results_root(demo: DemoBase) -> Case:
    args = with_config(demo, set_key("paths.results", "./no_such_results"))
    return Case(
        args, [f"paths.results: not an existing directory: {demo.path / 'no_such_results'}"]
    )


def unknown_job(demo: DemoBase) -> Case:
    return Case([*with_config(demo), "--job", UNKNOWN_JOB], [f"--job {UNKNOWN_JOB}", "no such job"])


def quiet_and_verbose(demo: DemoBase) -> Case:
    return Case([*with_config(demo), "--quiet", "--verbose"], ["--quiet", "--verbose"])


CASES = [
    missing_database,
    database_is_a_directory,
    corrupt_database,
    foreign_database,
    jobs_table_without_completed_at,
    unknown_key,
    wrong_type,
    negative_hours,
    zero_workers,
    yaml_syntax_error,
    overlapping_roots,
    root_is_slash,
    database_inside_results_root,
    negative_failed_hours_from_environment,
    workers_not_a_number_from_environment,
    missing_config_file,
    missing_results_root,
    unknown_job,
    quiet_and_verbose,
]


@pytest.mark.parametrize("make_case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_exits_2_with_one_message_and_changes_nothing(
    tmp_path: Path, demo_base: DemoBase, make_case: Callable[[DemoBase], Case]
) -> None:
    case = make_case(demo_base)
    before = snapshot(demo_base.path)
    result = call(["run", *case.args], guarded_env(tmp_path, **case.env))
    assert result.code == 2
    message = error_line(result)
    for needle in case.needles:
        assert needle in message
    assert result.stdout == ""
    assert_nothing_changed(before, snapshot(demo_base.path))


@pytest.mark.parametrize("make_case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_with_json_prints_one_error_object_on_stdout(
    tmp_path: Path, demo_base: DemoBase, make_case: Callable[[DemoBase], Case]
) -> None:
    case = make_case(demo_base)
    before = snapshot(demo_base.path)
    result = call(["run", "--json", *case.args], guarded_env(tmp_path, **case.env))
    assert result.code == 2
    message = error_line(result)
    assert json.loads(result.stdout) == {"success": False, "errors": [message]}
    assert_nothing_deleted_or_changed(before, snapshot(demo_base.path))


def test_bad_flag_syntax_exits_2_with_the_usage_error(tmp_path: Path, demo_base: DemoBase) -> None:
    args = with_config(demo_base)
    before = snapshot(demo_base.path)
    result = call(["run", *args, "--workers", "abc"], guarded_env(tmp_path))
    assert result.code == 2
    assert "Invalid value for '--workers'" in result.stderr
    assert result.stdout == ""
    assert_nothing_changed(before, snapshot(demo_base.path))


# --------------------------------------------------------------------------- the lock


def test_run_while_the_lock_is_held_exits_75_naming_the_holder(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    # The lock is a flock on the database itself; the holder's run-log row names it.
    args = with_config(demo_base)
    add_run_log_row(
        demo_base.db,
        run_id="held-by-the-test",
        started_at="2026-01-01T02:00:00+00:00",
        trigger="cron",
        user="tester",
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    fd = os.open(demo_base.db, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before, rows_before = snapshot(demo_base.path), demo_base.rows()
        result = call(["run", *args], guarded_env(tmp_path))
        as_json = call(["run", "--json", *args], guarded_env(tmp_path))
        after = snapshot(demo_base.path)
    finally:
        os.close(fd)
    assert result.code == 75
    message = error_line(result)
    assert message.startswith(f"another eemt-cleanup run holds the lock on {demo_base.db}")
    assert f"pid {os.getpid()}" in message
    assert "run held-by-the-test" in message
    assert as_json.code == 75
    assert json.loads(as_json.stdout) == {"success": False, "errors": [error_line(as_json)]}
    assert_nothing_deleted_or_changed(before, after)
    assert demo_base.rows() == rows_before


def make_big_tree(directory: Path, files: int, per_directory: int = 300) -> None:
    for start in range(0, files, per_directory):
        sub = directory / f"part_{start // per_directory:04d}"
        sub.mkdir(parents=True)
        for index in range(min(per_directory, files - start)):
            os.close(os.open(sub / f"tile_{index:04d}.dat", os.O_WRONLY | os.O_CREAT, 0o644))


def test_second_run_while_the_first_is_deleting_exits_75_and_the_first_finishes_with_0(
    tmp_path: Path,
) -> None:
    demo = make_demo_base(tmp_path / "base")
    args = with_config(demo)
    big = next(j for j in demo.manifest["jobs"] if j["expect"] == "due" and j["scenario"] == 1)
    make_big_tree(demo.path / "results" / big["id"] / "outputs" / "many", 30_000)
    env = guarded_env(tmp_path)
    first = subprocess.Popen(
        [cli_executable(), "run", *args],
        cwd="/",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (holder := find_holder(demo.db)) is None or holder.pid != first.pid:
            assert first.poll() is None, "the first run ended before it was seen holding the lock"
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.002)
        # Freeze it while it holds the lock, so the second run cannot start after it ended.
        os.kill(first.pid, signal.SIGSTOP)
        try:
            assert find_holder(demo.db) is not None, "the first run ended before it was frozen"
            second = call(["run", *args], env)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        first_out, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.code == 75
    message = error_line(second)
    assert "another eemt-cleanup run holds the lock" in message
    assert f"pid {first.pid}" in message
    assert second.stdout == ""
    assert first.returncode == 0, first_out + first_err
    assert "Traceback" not in first_out + first_err
    assert not (demo.path / "results" / big["id"]).exists()
    assert demo.rows()[big["id"]]["data_cleaned_at"] is not None

"""Tests for scripts/make_demo_base.py, the demo base-directory generator."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_demo_base.py"
NOW = "2026-11-22T12:00:00+00:00"

# Verbatim from SPEC section 2.
SPEC_DDL = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,            -- a uuid4 string
    workflow_type TEXT NOT NULL,    -- 'eemt' | 'sol' | ...
    status TEXT NOT NULL,           -- 'pending' | 'running' | 'completed' | 'failed'
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    parameters TEXT,                -- JSON
    dem_filename TEXT,              -- name of the upload inside uploads/
    error_message TEXT,
    progress INTEGER DEFAULT 0
);
"""

LOG_NAMES = ("workflow.log", "task_output.log", "sys.err", "container.log")
CREATED_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
LOCAL_ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")

Demo = tuple[Path, dict[str, Any]]  # (base dir, manifest) of the shared demo


def run_script(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=120,
    )


def generate(base: Path, *extra: str) -> dict[str, Any]:
    result = run_script(base, "--now", NOW, "--quiet", *extra)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    manifest: dict[str, Any] = json.loads((base / "demo_manifest.json").read_text())
    return manifest


def normalise_sql(sql: str) -> str:
    return " ".join(sql.replace("(", " ( ").replace(")", " ) ").split()).rstrip(" ;")


def file_sizes(base: Path) -> dict[str, int]:
    sizes = {}
    for root, _dirs, files in os.walk(base):
        for name in files:
            path = Path(root, name)
            sizes[path.relative_to(base).as_posix()] = path.stat().st_size
    return sizes


def rows(base: Path) -> dict[str, sqlite3.Row]:
    with closing(sqlite3.connect(base / "jobs.db")) as conn:
        conn.row_factory = sqlite3.Row
        return {row["id"]: row for row in conn.execute("SELECT * FROM jobs")}


def parse_ts(value: object) -> datetime | None:
    """Reference parser for the formats the generator writes (naive = local time)."""
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.astimezone(UTC)  # naive values are taken as local time


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    base = tmp_path_factory.mktemp("demo") / "base"
    return base, generate(base)


def test_jobs_table_schema_is_verbatim_spec_and_only_table(demo: Demo) -> None:
    base, _ = demo
    with closing(sqlite3.connect(base / "jobs.db")) as conn:
        objects = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    # The web interface has one table; the primary key's autoindex is SQLite's own.
    assert [(t, n) for t, n, _ in objects if t != "index"] == [("table", "jobs")]
    assert all(n.startswith("sqlite_autoindex_jobs") for t, n, _ in objects if t == "index")
    sql = next(s for t, _, s in objects if t == "table")
    assert normalise_sql(sql) == normalise_sql(SPEC_DDL)
    assert "-- a uuid4 string" in sql  # comments are kept verbatim


def test_every_manifest_path_exists_and_all_job_data_is_listed(demo: Demo) -> None:
    base, manifest = demo
    for sub in ("uploads", "results", "temp", "cache", "shared"):
        assert (base / sub).is_dir()
    listed = [p for job in manifest["jobs"] for p in job["paths"]]
    listed += [f"uploads/{name}" for name in manifest["uploads"]] + manifest["untouched"]
    for rel in listed:
        path = base / rel
        if rel.endswith("/"):
            assert path.is_dir(), rel
        else:
            assert path.is_file(), rel
        assert not path.is_symlink(), rel
    # Every job-data entry on disk is claimed by a job or listed as an upload.
    on_disk = {
        f"results/{e.name}/" if e.is_dir() else f"results/{e.name}"
        for e in (base / "results").iterdir()
    }
    on_disk |= {f"temp/{e.name}/" for e in (base / "temp").iterdir()}
    claimed = {p for job in manifest["jobs"] for p in job["paths"]}
    assert on_disk == {p for p in claimed if not p.startswith("uploads/")}
    assert {e.name for e in (base / "uploads").iterdir()} == set(manifest["uploads"])


def test_manifest_jobs_match_database_rows(demo: Demo) -> None:
    base, manifest = demo
    db = rows(base)
    assert manifest["now"] == NOW
    assert manifest["seed"] == 42
    assert [j["id"] for j in manifest["jobs"]] == list(db)
    assert {j["scenario"] for j in manifest["jobs"]} == set(range(1, 18)) - {16}
    for job in manifest["jobs"]:
        row = db[job["id"]]
        assert row["status"] == job["status"]
        assert row["dem_filename"] == job["upload"]
        assert CREATED_RE.match(row["created_at"]), row["created_at"]
        json.loads(row["parameters"])
        assert row["workflow_type"] in {"eemt", "sol"}
        if job["status"] == "completed":
            assert row["progress"] == 100
        results = base / "results" / job["id"]
        if results.is_dir():  # the four logs the web interface writes
            assert {p.name for p in results.iterdir() if p.is_file()} == set(LOG_NAMES)


def test_timestamps_use_web_interface_and_other_deployment_formats(demo: Demo) -> None:
    base, manifest = demo
    db = rows(base)
    with closing(sqlite3.connect(base / "jobs.db")) as conn:
        types = dict(conn.execute("SELECT id, typeof(completed_at) FROM jobs").fetchall())
    by_scenario = {j["scenario"]: j["id"] for j in manifest["jobs"]}
    assert LOCAL_ISO_RE.match(db[by_scenario[1]]["completed_at"])
    assert LOCAL_ISO_RE.match(db[by_scenario[7]]["started_at"])
    assert db[by_scenario[3]]["completed_at"].endswith("Z")
    assert db[by_scenario[4]]["completed_at"].endswith("+00:00")
    assert types[by_scenario[5]] == "integer"
    assert types[by_scenario[6]] == "null"
    assert db[by_scenario[13]]["completed_at"] == "not a date"
    assert db[by_scenario[8]]["error_message"] == "Job cancelled by user"
    assert db[by_scenario[10]]["started_at"] is None


def test_expected_outcomes_agree_with_stored_timestamps(demo: Demo) -> None:
    """Re-derive the default-policy outcome from the rows: labels and data must agree."""
    base, manifest = demo
    db = rows(base)
    now = datetime.fromisoformat(NOW)
    retention = {"completed": timedelta(hours=168), "failed": timedelta(hours=12)}
    for job in manifest["jobs"]:
        row = db[job["id"]]
        if row["status"] not in retention:
            expected = "never" if row["status"] in {"pending", "running"} else "unknown_status"
        else:
            since: datetime | None
            if row["completed_at"] is None:
                created = datetime.fromisoformat(row["created_at"]).replace(tzinfo=UTC)
                started = parse_ts(row["started_at"])
                since = max(filter(None, (started, created)))
            else:
                since = parse_ts(row["completed_at"])
            if since is None:
                expected = "unparseable"
            else:
                due = now - since > retention[row["status"]]
                expected = "due" if due else "retained"
        assert job["expect"] == expected, job["label"]
    users: dict[str, list[str]] = {}
    for job in manifest["jobs"]:
        if job["upload"] in manifest["uploads"]:
            users.setdefault(job["upload"], []).append(job["expect"])
    for name, fate in manifest["uploads"].items():
        expects = users.get(name, [])
        assert fate == ("deleted" if expects and set(expects) == {"due"} else "kept"), name


def test_same_seed_and_now_give_same_manifest_and_file_sizes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a")
    second = generate(tmp_path / "b", "--seed", "42")
    assert first == second
    assert file_sizes(tmp_path / "a") == file_sizes(tmp_path / "b")
    assert (tmp_path / "a" / "jobs.db").read_bytes() == (tmp_path / "b" / "jobs.db").read_bytes()
    other = generate(tmp_path / "c", "--seed", "7")
    assert [j["id"] for j in other["jobs"]] != [j["id"] for j in first["jobs"]]


def test_scale_one_stays_under_20_mb_and_scale_adds_files(tmp_path: Path) -> None:
    generate(tmp_path / "one")
    generate(tmp_path / "two", "--scale", "2")
    one, two = file_sizes(tmp_path / "one"), file_sizes(tmp_path / "two")
    assert sum(one.values()) < 20_000_000
    assert len(two) > len(one)


def test_non_empty_foreign_directory_is_refused_even_with_force(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "precious.txt").write_text("keep me")
    for extra in ((), ("--force",)):
        result = run_script(base, "--now", NOW, *extra)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in base.iterdir()) == ["precious.txt"]
    assert (base / "precious.txt").read_text() == "keep me"


def test_force_replaces_previous_demo_without_following_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    base = tmp_path / "base"
    generate(base)
    (base / "stray.txt").write_text("left over")
    (base / "link_out").symlink_to(tmp_path)
    refused = run_script(base, "--now", NOW, "--quiet")
    assert refused.returncode == 2
    assert (base / "stray.txt").exists()
    manifest = generate(base, "--force")
    assert not (base / "stray.txt").exists()
    assert not (base / "link_out").exists()
    assert outside.read_text() == "outside"
    assert all((base / p).exists() for j in manifest["jobs"] for p in j["paths"])


def test_bad_arguments_exit_2_and_relative_base_prints_summary(tmp_path: Path) -> None:
    bad = run_script(tmp_path / "x", "--now", "2026-11-22T12:00:00")  # naive: refused
    assert bad.returncode == 2
    assert not (tmp_path / "x").exists()
    assert run_script(tmp_path / "y", "--scale", "0").returncode == 2
    ok = run_script("rel/base", "--now", NOW, cwd=tmp_path)  # relative to the cwd
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "rel" / "base" / "jobs.db").is_file()
    assert "completed" in ok.stdout
    assert "due" in ok.stdout

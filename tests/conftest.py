"""Shared fixtures: the deletion guard, sample base directories, and the installed CLI."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

GUARD_DIR = Path(__file__).parent / "guard"
sys.path.insert(0, str(GUARD_DIR))

import deletion_guard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "scripts" / "make_demo_base.py"

# The web interface's exact jobs table: one verbatim copy, the demo generator's.
sys.path.insert(0, str(GENERATOR.parent))
from make_demo_base import JOBS_DDL as JOBS_SCHEMA  # noqa: E402


@pytest.fixture(autouse=True)
def deletion_guard_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs with unlink/rmdir refused outside its own tmp_path: in this process,
    and (through the environment) in every process it starts, such as deletion workers."""
    monkeypatch.setenv(deletion_guard.ENV_ALLOWED, str(tmp_path))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
    )
    deletion_guard.install([str(tmp_path)])
    try:
        yield
    finally:
        deletion_guard.uninstall()


def cli_executable() -> str:
    """The installed console script (next to the interpreter running the tests)."""
    found = Path(sys.executable).parent / "eemt-cleanup"
    if found.exists():
        return str(found)
    located = shutil.which("eemt-cleanup")
    if located is None:
        pytest.fail("eemt-cleanup is not installed: run 'make test'")
    return located


def guarded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for CLI subprocesses: the guard loaded, no EEMT_* leaking in, no colour."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EEMT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), env.get("PYTHONPATH")]))
    env[deletion_guard.ENV_ALLOWED] = str(tmp_path)
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


ANSI = "\x1b["
PREFIX = "eemt-cleanup: error: "


def call(args: list[str], env: dict[str, str], cwd: Path | str = "/") -> CliResult:
    """Run the installed CLI; whatever happens, no traceback and no ANSI codes (not a TTY)."""
    done = subprocess.run(
        [cli_executable(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = CliResult(done.returncode, done.stdout, done.stderr)
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert ANSI not in stream
    return result


def error_line(result: CliResult) -> str:
    """The single stderr line of a failed command, without its prefix."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(PREFIX), lines[0]
    return lines[0].removeprefix(PREFIX)


@pytest.fixture
def run_cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the installed ``eemt-cleanup`` with the guard, from ``cwd`` (default ``/``)."""

    def run(
        *args: str, cwd: Path | str = "/", env: dict[str, str] | None = None, timeout: float = 120
    ) -> CliResult:
        completed = subprocess.run(
            [cli_executable(), *args],
            cwd=cwd,
            env=env or guarded_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    return run


def path_args(base: Path) -> list[str]:
    """The CLI flags that point a command at the base directory ``base`` (jobs.db inside)."""
    return [
        "--db-path",
        str(base / "jobs.db"),
        "--uploads-dir",
        str(base / "uploads"),
        "--results-dir",
        str(base / "results"),
        "--temp-dir",
        str(base / "temp"),
    ]


@dataclass
class DemoBase:
    path: Path
    manifest: dict[str, Any]

    @property
    def db(self) -> Path:
        return self.path / "jobs.db"

    def path_args(self) -> list[str]:
        return path_args(self.path)

    def jobs(self, expect: str) -> list[dict[str, Any]]:
        return [job for job in self.manifest["jobs"] if job["expect"] == expect]

    def rows(self) -> dict[str, dict[str, Any]]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        try:
            return {row["id"]: dict(row) for row in conn.execute("SELECT * FROM jobs")}
        finally:
            conn.close()


def make_demo_base(target: Path, now: datetime | None = None) -> DemoBase:
    """Build the demo generator's realistic base directory at ``target``."""
    moment = (now or datetime.now(UTC)).isoformat()
    subprocess.run(
        [sys.executable, str(GENERATOR), str(target), "--now", moment, "--quiet"], check=True
    )
    manifest = json.loads((target / "demo_manifest.json").read_text())
    return DemoBase(target, manifest)


@pytest.fixture
def demo_base(tmp_path: Path) -> DemoBase:
    return make_demo_base(tmp_path / "base")


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under ``root``: kind, size and content (files) or link target."""
    entries: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                entries[rel] = ("link", 0, os.readlink(full))
            elif full.is_dir():
                entries[rel] = ("dir", 0, "")
            else:
                entries[rel] = ("file", full.stat().st_size, full.read_bytes())
    return entries


def create_jobs_db(path: Path, rows: list[dict[str, Any]]) -> None:
    """A database exactly as the web interface creates it, with ``rows`` inserted."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(JOBS_SCHEMA)
        for row in rows:
            full = {"workflow_type": "eemt", **row}
            columns = ", ".join(full)
            marks = ", ".join("?" * len(full))
            conn.execute(f"INSERT INTO jobs ({columns}) VALUES ({marks})", list(full.values()))
        conn.commit()
    finally:
        conn.close()


def add_run_log_row(db: Path, **values: Any) -> None:
    """Migrate ``db`` as a run would, then insert a ``cleanup_log`` row with ``values``
    (a run in progress, or one that was killed: no exit code)."""
    from eemt_cleanup.store.migrations import migrate

    conn = sqlite3.connect(db)
    try:
        with conn:
            migrate(conn, "jobs", "status", "dem_filename")
            columns = ", ".join(values)
            marks = ", ".join("?" * len(values))
            conn.execute(
                f"INSERT INTO cleanup_log ({columns}) VALUES ({marks})", list(values.values())
            )
    finally:
        conn.close()

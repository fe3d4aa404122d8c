"""End-to-end: ``scripts/cleanup_jobs.py``, run as the old cron line did
(``cd /path && python scripts/cleanup_jobs.py ...``): same engine, same results."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import CliResult, DemoBase, cli_executable, guarded_env, snapshot

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cleanup_jobs.py"
ANSI = "\x1b["
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG): ")
UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
LOG_NAMES = ("workflow.log", "task_output.log", "sys.err", "container.log")
NOT_INSTALLED = "cleanup_jobs.py: error: eemt-cleanup is not installed for "
# pyproject.toml's distribution names whose top-level module is named otherwise.
MODULE_OF = {"pyyaml": "yaml", "sqlite-utils": "sqlite_utils"}


def assert_plain(result: CliResult) -> None:
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert ANSI not in stream


def script(demo: DemoBase, tmp_path: Path, *args: str) -> CliResult:
    """The compatibility script, from the base dir as working directory."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=demo.path,
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result = CliResult(done.returncode, done.stdout, done.stderr)
    assert_plain(result)
    return result


def due_jobs(demo: DemoBase) -> list[dict[str, Any]]:
    return [job for job in demo.manifest["jobs"] if job["expect"] == "due"]


def due_ids(demo: DemoBase) -> set[str]:
    return {job["id"] for job in due_jobs(demo)}


def marked(demo: DemoBase) -> set[str]:
    return {job_id for job_id, row in demo.rows().items() if row["data_cleaned_at"] is not None}


def allocated(path: Path) -> int:
    info = os.lstat(path)
    total = info.st_blocks * 512
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def assert_job_data_gone(demo: DemoBase, job: dict[str, Any]) -> None:
    for path in job["paths"]:
        if path.startswith("uploads/"):
            continue  # shared uploads are judged by the manifest's fates, below
        if job["status"] == "failed" and path == f"results/{job['id']}/":
            assert sorted(os.listdir(demo.path / path)) == sorted(LOG_NAMES)
        else:
            assert not os.path.lexists(demo.path / path), path


def test_dry_run_verbose_deletes_nothing_and_prints_dry_run_lines(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    before, rows_before = snapshot(demo_base.path), demo_base.rows()
    result = script(demo_base, tmp_path, "--dry-run", "--verbose")
    assert result.code == 0, result.stderr
    assert snapshot(demo_base.path) == before
    assert demo_base.rows() == rows_before
    listed = re.findall(
        r"^\[DRY RUN\] Would clean job (\S+) \(status: \w+, age: \d+\.\d days\)$",
        result.stdout,
        re.MULTILINE,
    )
    assert sorted(listed) == sorted(due_ids(demo_base))
    for job in due_jobs(demo_base):
        results = f"results/{job['id']}/"
        lines = [f"[DRY RUN] Would delete: {results} ("]
        if job["status"] == "failed":  # its error logs stay: the directory is only emptied
            lines.append(f"[DRY RUN] Would empty {results} (")
        assert any(line in result.stdout for line in lines), job["id"]
    assert re.search(
        rf"^\[DRY RUN\] Summary: Would clean {len(listed)} jobs, freeing ~", result.stdout, re.M
    )


def test_real_run_cleans_the_same_jobs_as_eemt_cleanup_run_and_writes_the_log(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    preview = subprocess.run(
        [cli_executable(), "run", "--dry-run", "--json", *demo_base.path_args()],
        cwd=demo_base.path,
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert preview.returncode == 0, preview.stderr
    would_clean = {d["job_id"] for d in json.loads(preview.stdout)["details"]}
    assert would_clean == due_ids(demo_base)
    result = script(demo_base, tmp_path)  # ./jobs.db, ./uploads, ./results, ./temp
    assert result.code == 0, result.stderr
    assert marked(demo_base) == would_clean
    for job in due_jobs(demo_base):
        assert_job_data_gone(demo_base, job)
        assert UTC_STAMP.match(demo_base.rows()[job["id"]]["data_cleaned_at"])
    for name, fate in demo_base.manifest["uploads"].items():
        assert (demo_base.path / "uploads" / name).exists() == (fate == "kept"), name
    log_lines = (demo_base.path / "logs" / "cleanup.log").read_text().splitlines()
    assert log_lines
    assert all(LOG_LINE.match(line) for line in log_lines)
    for job in due_jobs(demo_base):
        pattern = rf" INFO: Cleaning job {job['id']} \({job['status']}, \d+\.\d days old\)$"
        assert any(re.search(pattern, line) for line in log_lines), job["id"]
    conn = sqlite3.connect(demo_base.db)
    try:
        trigger, exit_code = conn.execute("SELECT trigger, exit_code FROM cleanup_log").fetchone()
    finally:
        conn.close()
    assert (trigger, exit_code) == ("cleanup_jobs.py", 0)


def test_parallel_run_with_two_workers_and_batches_of_one_cleans_every_due_job(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    result = script(
        demo_base,
        tmp_path,
        *demo_base.path_args(),
        "--parallel",
        "--workers",
        "2",
        "--batch-size",
        "1",
    )
    assert result.code == 0, result.stderr
    assert marked(demo_base) == due_ids(demo_base)
    for job in due_jobs(demo_base):
        assert_job_data_gone(demo_base, job)
    assert "Cleanup completed successfully" in result.stdout


def test_skip_large_defers_jobs_above_the_threshold_and_leaves_them_untouched(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    kept_uploads = {
        f"uploads/{name}" for name, fate in demo_base.manifest["uploads"].items() if fate == "kept"
    }
    # A job's size with and without the shared uploads that stay (still referenced by a
    # retained job): the threshold is chosen so that either way of counting them defers the
    # same jobs.
    bounds: dict[str, tuple[int, int]] = {}
    for job in due_jobs(demo_base):
        sizes = {p: allocated(demo_base.path / p.rstrip("/")) for p in job["paths"]}
        freed = sum(size for p, size in sizes.items() if p not in kept_uploads)
        bounds[job["id"]] = (freed, sum(sizes.values()))
    ends = sorted({end for pair in bounds.values() for end in pair})
    candidates = [
        (low + high) // 2 // 1024 for low, high in itertools.pairwise(ends) if high - low > 2048
    ]

    def splits_cleanly(kib: int) -> bool:
        limit = kib * 1024
        return all(not low <= limit < high for low, high in bounds.values())

    usable = [kib for kib in candidates if splits_cleanly(kib)]
    assert usable, bounds
    threshold_kib = usable[len(usable) // 2]  # some due jobs go and some are deferred
    large = {job_id for job_id, (low, _high) in bounds.items() if low > threshold_kib * 1024}
    small = set(bounds) - large
    assert large
    assert small
    result = script(demo_base, tmp_path, "--skip-large", "--size-threshold", f"{threshold_kib}K")
    assert result.code == 0, result.stderr
    for job_id in large:
        assert re.search(
            rf"Skipped job {job_id}: deferred: .* is larger than the size threshold ", result.stdout
        ), job_id
    assert marked(demo_base) == small
    for job in due_jobs(demo_base):
        if job["id"] in large:
            for path in job["paths"]:
                assert os.path.lexists(demo_base.path / path), f"{job['id']} lost {path}"
        else:
            assert_job_data_gone(demo_base, job)


def test_unparseable_size_threshold_exits_2_and_changes_nothing(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    before = snapshot(demo_base.path)
    result = script(demo_base, tmp_path, "--size-threshold", "10Q")
    assert result.code == 2
    assert "--size-threshold" in result.stderr
    assert "'10Q'" in result.stderr
    assert result.stdout == ""
    assert snapshot(demo_base.path) == before


# --------------------------------------------------------------------------- without the install


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python without the package's dependencies (and without pip): a fresh venv."""
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import typer"], capture_output=True, check=False)
    assert probe.returncode != 0, "the bare venv can import typer"
    return python


def bare_env(tmp_path: Path, path: str = "/usr/bin:/bin", **extra: str) -> dict[str, str]:
    """The guarded environment with a PATH that holds no installed eemt-cleanup."""
    return guarded_env(tmp_path, PATH=path, **extra)


def run_bare(python: Path, tmp_path: Path, env: dict[str, str], *args: str) -> CliResult:
    done = subprocess.run(
        [str(python), str(SCRIPT), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_one_line_exit_2(result: CliResult) -> str:
    """Exit 2, nothing on stdout, no traceback, exactly one line on stderr: that line."""
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(NOT_INSTALLED), lines[0]
    return lines[0]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cleanup_jobs_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args", [(), ("--dry-run", "--verbose"), ("--help",)], ids=repr)
def test_python_without_the_dependencies_prints_one_line_naming_the_missing_module(
    tmp_path: Path, bare_python: Path, args: tuple[str, ...]
) -> None:
    """The checkout is put on sys.path, so the package is found, but typer is not."""
    base = tmp_path / "base"
    base.mkdir()
    before = snapshot(tmp_path)
    line = assert_one_line_exit_2(run_bare(bare_python, tmp_path, bare_env(tmp_path), *args))
    assert line.startswith(f"{NOT_INSTALLED}{bare_python} (no module named 'typer'): ")
    assert f"e.g. /opt/eemt-cleanup/bin/python {SCRIPT}, or install it" in line
    assert f"/opt/eemt-cleanup/bin/pip install {REPO}" in line
    assert "Installing for production" in line
    assert snapshot(tmp_path) == before  # no log file, no database, nothing


def test_a_dependency_only_imported_later_in_a_run_is_named_before_it_starts(
    tmp_path: Path, bare_python: Path
) -> None:
    """Every dependency but PyYAML (which the loader imports only when there is a file to
    read): the line names yaml, rather than a run failing half-way with exit 1."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    partial = tmp_path / "partial-site"
    partial.mkdir()
    for entry in site.iterdir():
        if entry.name.lower().startswith(("yaml", "_yaml", "pyyaml")) or entry.suffix == ".pth":
            continue
        (partial / entry.name).symlink_to(entry)
    env = bare_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(partial)])
    line = assert_one_line_exit_2(run_bare(bare_python, tmp_path, env, "--dry-run"))
    assert "(no module named 'yaml')" in line


def test_a_dependency_that_is_found_but_does_not_import_is_one_line_too(
    tmp_path: Path, bare_python: Path
) -> None:
    stubs = tmp_path / "stubs"
    script = load_script()
    for name in script.DEPENDENCY_MODULES:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text("")
    env = bare_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(stubs)])
    line = assert_one_line_exit_2(run_bare(bare_python, tmp_path, env, "--dry-run"))
    assert re.search(r"\(cannot import [\w.]+: .+\): run this script with ", line), line


def test_an_installed_program_on_path_names_its_own_python_to_run_the_script_with(
    tmp_path: Path, bare_python: Path
) -> None:
    """pipx's console scripts read ``#!/opt/pipx/venvs/eemt-cleanup/bin/python -E``; one whose
    interpreter is gone is not suggested."""
    install = tmp_path / "pipx" / "venvs" / "eemt-cleanup" / "bin"
    install.mkdir(parents=True)
    (install / "python").write_text("")
    (install / "python").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "eemt-cleanup"
    program.write_text(f"#!{install / 'python'} -E\nimport sys\n")
    program.chmod(0o755)
    env = bare_env(tmp_path, path=f"{bin_dir}:/usr/bin:/bin")
    line = assert_one_line_exit_2(run_bare(bare_python, tmp_path, env))
    assert line.endswith(
        f"run this script with the Python of the install: {install / 'python'} {SCRIPT}"
    ), line
    (install / "python").unlink()
    line = assert_one_line_exit_2(run_bare(bare_python, tmp_path, env))
    assert f"e.g. /opt/eemt-cleanup/bin/python {SCRIPT}, or install it" in line


def test_a_too_old_python_is_told_the_version_it_needs() -> None:
    script = load_script()
    script.MINIMUM_PYTHON = (99, 0)
    reason = script.missing_requirement()
    found = ".".join(map(str, sys.version_info[:3]))
    assert reason == f"it needs Python 99.0 or later, this is {found}"


def test_the_script_checks_every_dependency_pyproject_declares() -> None:
    """A dependency added to pyproject.toml but not to the script's list fails here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [
        re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()
        for requirement in project["dependencies"]
    ]
    modules = [MODULE_OF.get(name, name.replace("-", "_")) for name in declared]
    script = load_script()
    assert list(script.DEPENDENCY_MODULES) == modules
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(int(part) for part in minimum.split(".")) == script.MINIMUM_PYTHON

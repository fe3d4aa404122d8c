"""Config files are small, plain YAML; every config or input problem is exit 2 with one
line (issue 8, item 11; SPEC §4, §5).

Refused with the line named: aliases (a 1 KB "billion laughs" file fails in milliseconds
instead of expanding into gigabytes), merge keys, duplicate keys, nesting deeper than any
config needs. Refused before reading: a config path that is not a regular file (a FIFO would
block the janitor forever, a device would never end) and a file over the size cap (read at
most one byte past it). Values quoted in messages are cut to about 60 characters. The
working directory is only needed by relative paths: when it has been removed, a run whose
paths are all absolute works, and one that needs it says so (exit 2, not a crash).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    CliResult,
    call,
    cli_executable,
    error_line,
    guarded_env,
    make_demo_base,
    path_args,
    snapshot,
)

from eemt_cleanup.config.loader import MAX_CONFIG_BYTES, SYSTEM_CONFIG, read_config_file
from eemt_cleanup.errors import ConfigError

from .conftest import safe_snapshot

pytestmark = pytest.mark.e2e

CONFIG_NAME = "cleanup_config.yaml"
CONFIG_TEXT = """\
paths:
  database: ./jobs.db
  uploads: ./uploads
  results: ./results
  temp: ./temp
  logs: ./logs
"""
# Nine levels of nine: 9**9 (387 million) strings once expanded, from under 1 KB of text.
LAUGHS = ", ".join(['"lol"'] * 9)
BOMB = (
    f"a: &a [{LAUGHS}]\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "retention:\n  failed_jobs:\n    hours: *i\n"
)
BOMB_FIRST_ALIAS = "(line 2, column 8): aliases are not allowed in a config file (*a)"
# A run or a read that the fixes make instant; only a regression ever waits this long.
FAST_SECONDS = 2.0
BLOCKED_SECONDS = 10.0
SUBPROCESS_SECONDS = 60
# The address space a CLI process may use while it reads a bomb: plenty for the tool (it
# needs well under 256 MiB), far too little for an expansion, which then fails instead of
# taking the machine's memory.
MEMORY_LIMIT = 1024**3
GONE_WRAPPER = (
    "import os, sys\n"
    "os.chdir(sys.argv[1])\n"
    "os.rmdir(sys.argv[1])\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
ALIASES_NOT_ALLOWED = "aliases are not allowed in a config file"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = make_demo_base(tmp_path_factory.mktemp("template") / "base").path
    (base / CONFIG_NAME).write_text(CONFIG_TEXT)
    return base


@pytest.fixture
def base(tmp_path: Path, template: Path) -> Path:
    """A demo base (due jobs in every root) with a valid config using relative paths."""
    copy = tmp_path / "base"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def bounded_call(
    args: list[str], tmp_path: Path, cwd: Path | str = "/", env: dict[str, str] | None = None
) -> CliResult:
    """The CLI with a memory limit and a deadline, so a regression fails instead of hanging."""
    done = subprocess.run(
        [cli_executable(), *args],
        cwd=cwd,
        env=guarded_env(tmp_path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
        preexec_fn=limited_memory,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def cut_repr(text: str) -> str:
    """How a message quotes a long string: its head and tail around "...", 60 characters."""
    return f"'{text[:27]}...{text[-28:]}'"


def assert_one_line_exit_2(result: CliResult, *, json_output: bool) -> str:
    assert "Traceback" not in result.stderr
    assert result.code == 2, result.stderr
    message = error_line(result)
    if json_output:
        assert json.loads(result.stdout) == {"success": False, "errors": [message]}
    else:
        assert result.stdout == ""
    return message


def assert_due_jobs_cleaned(base: Path) -> None:
    """Every due job of the demo base is marked cleaned and its outputs are gone."""
    manifest = json.loads((base / "demo_manifest.json").read_text())
    due = [job for job in manifest["jobs"] if job["expect"] == "due"]
    conn = sqlite3.connect(base / "jobs.db")
    try:
        marked = {
            job_id
            for (job_id,) in conn.execute("SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")
        }
    finally:
        conn.close()
    assert {job["id"] for job in due} <= marked
    for job in due:
        if job["status"] == "completed":  # failed jobs keep their error logs
            assert not os.path.lexists(base / "results" / job["id"])


# --------------------------------------------------------------------------- aliases


# Run in a child with a deadline and a memory limit: a regression must fail the test, never
# take the machine's memory or the test run's time.
READ_BOMB = """\
import json, sys, time
from pathlib import Path
from eemt_cleanup.config.loader import read_config_file
from eemt_cleanup.errors import ConfigError

started = time.monotonic()
try:
    read_config_file(Path(sys.argv[1]))
    error = None
except ConfigError as refused:
    error = str(refused)
print(json.dumps({"elapsed": time.monotonic() - started, "error": error}))
"""


def test_alias_bomb_is_refused_in_milliseconds_naming_the_line(tmp_path: Path) -> None:
    bomb = write(tmp_path / CONFIG_NAME, BOMB)
    assert len(BOMB.encode()) < 1024
    done = subprocess.run(
        [sys.executable, "-c", READ_BOMB, str(bomb)],
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=True,
        preexec_fn=limited_memory,
    )
    outcome = json.loads(done.stdout)
    assert outcome["error"] == f"{bomb} {BOMB_FIRST_ALIAS}: write the value out"
    assert outcome["elapsed"] < FAST_SECONDS


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
def test_alias_bomb_config_fails_fast_with_exit_2_and_deletes_nothing(
    tmp_path: Path, base: Path, json_output: bool
) -> None:
    config = write(base / CONFIG_NAME, CONFIG_TEXT + BOMB)
    before = snapshot(base)
    started = time.monotonic()
    result = bounded_call(
        ["run", *(["--json"] if json_output else []), "--config", str(config)], tmp_path
    )
    elapsed = time.monotonic() - started
    message = assert_one_line_exit_2(result, json_output=json_output)
    assert (
        message == f"{config} (line 8, column 8): {ALIASES_NOT_ALLOWED} (*a): write the value out"
    )
    assert snapshot(base) == before
    assert elapsed < SUBPROCESS_SECONDS / 2


def test_alias_bomb_is_refused_by_config_validate(tmp_path: Path) -> None:
    bomb = write(tmp_path / CONFIG_NAME, BOMB)
    result = bounded_call(["config", "validate", str(bomb)], tmp_path)
    message = assert_one_line_exit_2(result, json_output=False)
    assert message == f"{bomb} {BOMB_FIRST_ALIAS}: write the value out"


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    """A config or input problem: the arguments after ``run`` and the exact message."""

    args: list[str]
    message: str
    env: dict[str, str] = field(default_factory=dict)


def alias_of_a_path(base: Path) -> Case:
    config = write(
        base / CONFIG_NAME,
        "paths:\n  database: &db ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: *db\n",
    )
    return Case(
        ["--config", str(config)],
        f"{config} (line 6, column 9): {ALIASES_NOT_ALLOWED} (*db): write the value out",
    )


def merge_key_with_alias(base: Path) -> Case:
    config = write(
        base / CONFIG_NAME,
        CONFIG_TEXT + "defaults: &keep {hours: 1}\nretention:\n  failed_jobs:\n    <<: *keep\n",
    )
    return Case(
        ["--config", str(config)],
        f"{config} (line 10, column 9): {ALIASES_NOT_ALLOWED} (*keep): write the value out",
    )


def merge_key(base: Path) -> Case:
    config = write(base / CONFIG_NAME, CONFIG_TEXT + "retention:\n  <<: {failed_jobs: {}}\n")
    return Case(
        ["--config", str(config)],
        f"{config} (line 8, column 3): merge keys (<<) are not allowed in a config file:"
        " write the keys out",
    )


def duplicate_path_key(base: Path) -> Case:
    # PyYAML alone keeps the last value silently: here, a deletion root elsewhere.
    config = write(base / CONFIG_NAME, CONFIG_TEXT + "  results: ./cache\n")
    return Case(
        ["--config", str(config)],
        f"{config} (line 7, column 3): duplicate key paths.results (first at line 4)",
    )


def duplicate_section(base: Path) -> Case:
    config = write(
        base / CONFIG_NAME,
        "retention:\n  failed_jobs: {hours: 1000}\n" + CONFIG_TEXT + "retention: {}\n",
    )
    return Case(
        ["--config", str(config)],
        f"{config} (line 9, column 1): duplicate key retention (first at line 1)",
    )


def nested_too_deeply(base: Path) -> Case:
    config = write(base / CONFIG_NAME, "x: " + "[" * 50_000 + "]" * 50_000 + "\n")
    return Case(
        ["--config", str(config)],
        f"{config} (line 1, column 35): nested more than 32 levels deep: refused",
    )


def value_no_constructor_can_build(base: Path) -> Case:
    config = write(base / CONFIG_NAME, CONFIG_TEXT + "performance:\n  max_workers: !!int four\n")
    return Case(
        ["--config", str(config)],
        f"{config} (line 8, column 16): not valid YAML: cannot read 'four' as"
        " tag:yaml.org,2002:int: invalid literal for int() with base 10: 'four'",
    )


def null_database(base: Path) -> Case:
    config = write(base / CONFIG_NAME, CONFIG_TEXT.replace("./jobs.db", "~"))
    return Case(
        ["--config", str(config)],
        f"invalid configuration: paths.database: must not be empty (from file {config})",
    )


def section_not_a_mapping(base: Path) -> Case:
    config = write(base / CONFIG_NAME, "paths: 5\n")
    return Case(
        ["--config", str(config)],
        f"invalid configuration: paths: must be a section (a mapping of keys), got 5"
        f" (from file {config})",
        {"EEMT_DB_PATH": str(base / "jobs.db")},
    )


def file_over_the_size_cap(base: Path) -> Case:
    # Sparse: 64 MiB that cost no disk; read whole it would be parsed as 64 MiB of NULs.
    config = base / CONFIG_NAME
    with config.open("r+b") as handle:
        handle.truncate(64 * 1024 * 1024)
    return Case(
        ["--config", str(config)],
        f"{config}: config file is larger than {MAX_CONFIG_BYTES // 1024} KiB: refused"
        " (a config file is small, plain YAML)",
    )


def config_is_a_device(base: Path) -> Case:
    return Case(
        ["--config", "/dev/zero"], "--config: /dev/zero is a character device, not a regular file"
    )


def config_is_a_fifo(base: Path) -> Case:
    fifo = base / "fifo.yaml"
    os.mkfifo(fifo)
    return Case(["--config", str(fifo)], f"--config: {fifo} is a FIFO, not a regular file")


def config_variable_names_a_fifo(base: Path) -> Case:
    fifo = base / "fifo.yaml"
    os.mkfifo(fifo)
    return Case(
        [],
        f"EEMT_CLEANUP_CONFIG: {fifo} is a FIFO, not a regular file",
        {"EEMT_CLEANUP_CONFIG": str(fifo)},
    )


def long_value_in_the_file(base: Path) -> Case:
    config = write(base / CONFIG_NAME, CONFIG_TEXT + f"schedule:\n  cron: '{'x' * 100_000}'\n")
    return Case(
        ["--config", str(config)],
        "invalid configuration: schedule.cron: must be a five-field cron expression, got"
        f" {cut_repr('x' * 100_000)} (from file {config})",
    )


def long_value_in_the_environment(base: Path) -> Case:
    return Case(
        ["--config", str(base / CONFIG_NAME)],
        f"EEMT_CLEANUP_BATCH_SIZE: must be a whole number, got {cut_repr('lots' * 20_000)}",
        {"EEMT_CLEANUP_BATCH_SIZE": "lots" * 20_000},
    )


def long_config_flag(base: Path) -> Case:
    name = "c" * 3000 + ".yaml"
    shown = f"{base}/{name}"
    half = (240 - 3) // 2
    return Case(
        ["--config", str(base / name)],
        f"--config: cannot read {shown[:half]}...{shown[-half:]}: File name too long",
    )


CASES: list[Callable[[Path], Case]] = [
    alias_of_a_path,
    merge_key_with_alias,
    merge_key,
    duplicate_path_key,
    duplicate_section,
    nested_too_deeply,
    value_no_constructor_can_build,
    null_database,
    section_not_a_mapping,
    file_over_the_size_cap,
    config_is_a_device,
    config_is_a_fifo,
    config_variable_names_a_fifo,
    long_value_in_the_file,
    long_value_in_the_environment,
    long_config_flag,
]


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("make_case", CASES, ids=[case.__name__ for case in CASES])
def test_config_problem_exits_2_with_one_line_and_deletes_nothing(
    tmp_path: Path, base: Path, make_case: Callable[[Path], Case], json_output: bool
) -> None:
    case = make_case(base)
    before = safe_snapshot(base)
    args = ["run", *(["--json"] if json_output else []), *case.args]
    result = bounded_call(args, tmp_path, env=case.env)
    assert assert_one_line_exit_2(result, json_output=json_output) == case.message
    assert safe_snapshot(base) == before


@pytest.mark.parametrize("make_case", [duplicate_path_key, null_database, merge_key])
def test_config_validate_reports_the_same_problem_with_exit_2(
    tmp_path: Path, base: Path, make_case: Callable[[Path], Case]
) -> None:
    case = make_case(base)
    result = call(["config", "validate", case.args[1]], guarded_env(tmp_path))
    assert assert_one_line_exit_2(result, json_output=False) == case.message


# --------------------------------------------------------------------------- FIFOs


def test_reading_a_fifo_as_config_file_is_refused_without_blocking(tmp_path: Path) -> None:
    # Called directly, past the discovery check: as if a FIFO was swapped in after it.
    fifo = tmp_path / CONFIG_NAME
    os.mkfifo(fifo)
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(read_config_file(fifo))
        except ConfigError as error:
            outcome.append(str(error))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(BLOCKED_SECONDS)
    if thread.is_alive():
        # Release the blocked open: a writer that comes and goes gives the reader an EOF.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(BLOCKED_SECONDS)
        pytest.fail("reading a FIFO as the config file blocked until a writer came")
    assert outcome == [f"{fifo}: config file is a FIFO, not a regular file"]


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
def test_fifo_as_the_discovered_local_config_is_refused_not_skipped(
    tmp_path: Path, base: Path, json_output: bool
) -> None:
    # Skipping it would fall back to defaults (or /etc) and clean with the wrong policy.
    here = tmp_path / "cwd"
    here.mkdir()
    os.mkfifo(here / CONFIG_NAME)
    before = snapshot(base)
    result = bounded_call(
        ["run", *(["--json"] if json_output else []), *path_args(base)], tmp_path, cwd=here
    )
    message = assert_one_line_exit_2(result, json_output=json_output)
    assert message == f"./{CONFIG_NAME}: {here / CONFIG_NAME} is a FIFO, not a regular file"
    assert snapshot(base) == before


# --------------------------------------------------------------------------- --since


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("since", ["99999999d", "99999999999999999999w"])
def test_audit_since_beyond_the_calendar_exits_2_naming_since(
    tmp_path: Path, base: Path, since: str, json_output: bool
) -> None:
    args = ["audit", *(["--json"] if json_output else []), "--since", since]
    result = call([*args, "--config", str(base / CONFIG_NAME)], guarded_env(tmp_path))
    message = assert_one_line_exit_2(result, json_output=json_output)
    assert message == f"--since: {since!r} reaches back before year 1; give a shorter duration"


def test_audit_since_with_a_long_value_is_cut_in_the_message(tmp_path: Path, base: Path) -> None:
    args = ["audit", "--since", "y" * 10_000, "--config", str(base / CONFIG_NAME)]
    message = assert_one_line_exit_2(call(args, guarded_env(tmp_path)), json_output=False)
    assert message == (
        f"--since: expected a duration like 7d/12h or an ISO date, got {cut_repr('y' * 10_000)}"
    )


# --------------------------------------------------------------------------- working directory


def from_removed_directory(
    tmp_path: Path, args: list[str], env: dict[str, str] | None = None
) -> CliResult:
    """The CLI started in a working directory that was removed just before."""
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", GONE_WRAPPER, str(gone), cli_executable(), *args],
        cwd=tmp_path,
        env=guarded_env(tmp_path, **(env or {})),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    assert not gone.exists()
    result = CliResult(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.stderr
    return result


def needs_working_directory(named: str, value: str, origin: str = "") -> str:
    return (
        f"{named}: {value!r}{origin} is relative, but the working directory is unavailable"
        " (No such file or directory: was it removed?); give an absolute path or run from an"
        " existing directory"
    )


@pytest.fixture
def no_system_config() -> None:
    if SYSTEM_CONFIG.exists():
        pytest.skip(f"{SYSTEM_CONFIG} exists on this machine")


@pytest.mark.parametrize("json_output", [False, True], ids=["plain", "json"])
def test_removed_working_directory_with_an_absolute_config_runs_normally(
    tmp_path: Path, base: Path, json_output: bool
) -> None:
    args = ["run", "--json", "--config", str(base / CONFIG_NAME)]
    if not json_output:
        args.remove("--json")
    result = from_removed_directory(tmp_path, args)
    assert result.code == 0, result.stderr
    if json_output:
        assert result.json()["success"] is True
    assert_due_jobs_cleaned(base)


@pytest.mark.usefixtures("no_system_config")
def test_removed_working_directory_with_absolute_flags_runs_normally(
    tmp_path: Path, base: Path
) -> None:
    result = from_removed_directory(tmp_path, ["run", "--json", *path_args(base)])
    assert result.code == 0, result.stderr
    assert result.json()["success"] is True
    assert_due_jobs_cleaned(base)
    assert (base / "logs" / "cleanup.log").is_file()


@pytest.mark.usefixtures("no_system_config")
def test_removed_working_directory_needed_by_a_default_path_exits_2(
    tmp_path: Path, base: Path
) -> None:
    before = snapshot(base)
    result = from_removed_directory(tmp_path, ["run", "--json"])
    message = assert_one_line_exit_2(result, json_output=True)
    assert message == needs_working_directory("paths.database", "./jobs.db", " (default)")
    assert snapshot(base) == before


@pytest.mark.parametrize(
    ("args", "env", "named", "value"),
    [
        (["--db-path", "jobs.db"], {}, "--db-path", "jobs.db"),
        (["--config", CONFIG_NAME], {}, "--config", CONFIG_NAME),
        ([], {"EEMT_RESULTS_DIR": "./results"}, "EEMT_RESULTS_DIR", "./results"),
        ([], {"EEMT_CLEANUP_CONFIG": CONFIG_NAME}, "EEMT_CLEANUP_CONFIG", CONFIG_NAME),
    ],
    ids=["flag", "config-flag", "variable", "config-variable"],
)
def test_removed_working_directory_needed_by_a_relative_path_exits_2_naming_it(
    tmp_path: Path,
    base: Path,
    args: list[str],
    env: dict[str, str],
    named: str,
    value: str,
) -> None:
    before = snapshot(base)
    names_the_file = named in ("--config", "EEMT_CLEANUP_CONFIG")
    config = [] if names_the_file else ["--config", str(base / CONFIG_NAME)]
    result = from_removed_directory(tmp_path, ["run", "--json", *config, *args], env)
    message = assert_one_line_exit_2(result, json_output=True)
    assert message == needs_working_directory(named, value)
    assert snapshot(base) == before

"""Item 14: a dry run forced by the environment (EEMT_CLEANUP_DRY_RUN) says so in every
output mode, --quiet included, and is recorded in ``history``.

An operator who left EEMT_CLEANUP_DRY_RUN=true in a unit file or a container would
otherwise watch the disk fill while cron reports success.
"""

from __future__ import annotations

import json

import pytest
from conftest import cli_executable, guarded_env

from .conftest import Harness
from .test_output_injection import read_terminal

FORCED = "Dry run forced by env EEMT_CLEANUP_DRY_RUN"


def forced_env(harness: Harness) -> dict[str, str]:
    return guarded_env(harness.tmp, EEMT_CLEANUP_DRY_RUN="true")


def history(harness: Harness) -> list[dict[str, object]]:
    result = harness._cli("history", "--json", "--config", str(harness.config_file))
    assert result.code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


@pytest.mark.parametrize(
    "flags", [[], ["--quiet"], ["--verbose"], ["--json"]], ids=["plain", "quiet", "verbose", "json"]
)
def test_a_forced_dry_run_says_so_deletes_nothing_and_is_recorded_in_history(
    harness: Harness, flags: list[str]
) -> None:
    harness.arm()

    result = harness._cli(
        "run", *flags, "--config", str(harness.config_file), env=forced_env(harness)
    )

    assert result.code == 0, result.stderr
    said = result.stderr if "--json" in flags else result.stdout
    assert FORCED in said, said
    if "--quiet" in flags:
        assert all("DRY RUN" in line for line in result.stdout.splitlines()), result.stdout
    if "--json" in flags:
        data = json.loads(result.stdout)
        assert data["dry_run"] is True
        assert data["dry_run_forced_by"] == "env EEMT_CLEANUP_DRY_RUN"
    harness.assert_untouched(database_bytes=False)
    (row,) = history(harness)
    assert row["dry_run"] == 1
    assert row["dry_run_forced_by"] == "env EEMT_CLEANUP_DRY_RUN"
    assert row["exit_code"] == 0
    assert row["jobs_successful"] == 0 and row["bytes_freed"] == 0


def test_a_forced_dry_run_says_so_on_a_terminal(harness: Harness) -> None:
    harness.arm()
    env = forced_env(harness) | {"TERM": "xterm", "COLUMNS": "120"}

    output = read_terminal([cli_executable(), "run", "--config", str(harness.config_file)], env)

    assert b"Dry run forced by env EEMT_CLEANUP_DRY_RUN" in output
    harness.assert_untouched(database_bytes=False)


def test_an_explicit_dry_run_is_not_called_forced_and_writes_nothing(harness: Harness) -> None:
    harness.arm()

    result = harness._cli("run", "--dry-run", "--json", "--config", str(harness.config_file))

    assert result.code == 0
    assert json.loads(result.stdout)["dry_run_forced_by"] is None
    assert "forced" not in result.stderr
    harness.assert_untouched()  # not even the database's bytes

"""Empty, blank and null paths (issue 8, item 3; SPEC §4).

A path key, path flag or path variable that is empty, blank or null is a configuration
error naming it: exit 2, one line, nothing touched. It is never read as "the directory it
is relative to" (the working directory, or the config file's) and never silently ignored.

Every case runs from a working directory that is itself a plausible base directory (a
``jobs.db``, roots full of due jobs and a ``cleanup_config.yaml``): if an empty value were
taken as the working directory, or ignored so that discovery or a default took over, that
base would be cleaned. Both it and the configured base must stay byte-identical.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CliResult, call, error_line, guarded_env, make_demo_base, snapshot

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cleanup_jobs.py"
CONFIG_NAME = "cleanup_config.yaml"
PATH_NAMES = ("database", "uploads", "results", "temp", "logs")
VALID_PATHS = {
    "database": "./jobs.db",
    "uploads": "./uploads",
    "results": "./results",
    "temp": "./temp",
    "logs": "./logs",
}
# How a YAML file says "nothing": an empty string, white space, null, a key with no value.
FILE_FORMS = {"empty": '""', "blank": '"   "', "tilde": "~", "no value": ""}
FLAGS = ("--db-path", "--uploads-dir", "--results-dir", "--temp-dir", "--config")
VARIABLES = ("EEMT_DB_PATH", "EEMT_UPLOADS_DIR", "EEMT_RESULTS_DIR", "EEMT_TEMP_DIR")
CONFIG_VARIABLE = "EEMT_CLEANUP_CONFIG"
EMPTY_VALUES = {"empty": "", "blank": "   "}


def config_text(empty_key: str | None = None, form: str = "") -> str:
    lines = ["paths:"]
    for name, path in VALID_PATHS.items():
        lines.append(f"  {name}: {form}".rstrip() if name == empty_key else f"  {name}: {path}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo base (due jobs in every root) with a valid config, copied by each test."""
    base = make_demo_base(tmp_path_factory.mktemp("template") / "base").path
    (base / CONFIG_NAME).write_text(config_text())
    return base


@dataclass
class Bases:
    """The configured base and the base that is the working directory; both must survive."""

    base: Path
    cwd: Path
    before: dict[str, object]

    @property
    def config(self) -> Path:
        return self.base / CONFIG_NAME

    def assert_untouched(self) -> None:
        assert {"base": snapshot(self.base), "cwd": snapshot(self.cwd)} == self.before


@pytest.fixture
def bases(tmp_path: Path, template: Path) -> Bases:
    base = tmp_path / "base"
    cwd = tmp_path / "cwd-looks-like-a-base"
    shutil.copytree(template, base, symlinks=True)
    shutil.copytree(template, cwd, symlinks=True)
    return Bases(base, cwd, {})


def arm(bases: Bases) -> None:
    bases.before = {"base": snapshot(bases.base), "cwd": snapshot(bases.cwd)}


def assert_refused(result: CliResult, message: str, *, json_output: bool = False) -> None:
    """Exit 2, exactly one stderr line saying ``message``; with --json one error object."""
    assert result.code == 2, result.stderr
    assert error_line(result) == message
    if json_output:
        assert json.loads(result.stdout) == {"success": False, "errors": [message]}
    else:
        assert result.stdout == ""


def run_all_ways(
    bases: Bases, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """``run`` and ``run --json`` with ``args``, from the look-alike working directory."""
    environment = guarded_env(tmp_path, **env)
    plain = call(["run", *args], environment, cwd=bases.cwd)
    assert_refused(plain, message)
    as_json = call(["run", "--json", *args], environment, cwd=bases.cwd)
    assert_refused(as_json, message, json_output=True)


# --------------------------------------------------------------------------- config file


@pytest.mark.parametrize("form", list(FILE_FORMS.values()), ids=list(FILE_FORMS))
@pytest.mark.parametrize("name", PATH_NAMES)
def test_empty_or_null_path_key_in_file_exits_2_naming_the_key_and_touches_nothing(
    tmp_path: Path, bases: Bases, name: str, form: str
) -> None:
    bases.config.write_text(config_text(name, form))
    arm(bases)
    message = f"invalid configuration: paths.{name}: must not be empty (from file {bases.config})"
    run_all_ways(bases, tmp_path, ["--config", str(bases.config)], {}, message)
    validated = call(["config", "validate", str(bases.config)], guarded_env(tmp_path), bases.cwd)
    assert_refused(validated, message)
    bases.assert_untouched()


def test_empty_path_key_in_a_discovered_file_exits_2_and_touches_nothing(
    tmp_path: Path, bases: Bases
) -> None:
    (bases.cwd / CONFIG_NAME).write_text(config_text("uploads", '""'))
    arm(bases)
    message = (
        "invalid configuration: paths.uploads: must not be empty"
        f" (from file {bases.cwd / CONFIG_NAME})"
    )
    run_all_ways(bases, tmp_path, [], {}, message)
    validated = call(["config", "validate"], guarded_env(tmp_path), bases.cwd)
    assert_refused(validated, message)
    bases.assert_untouched()


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("value", list(EMPTY_VALUES.values()), ids=list(EMPTY_VALUES))
@pytest.mark.parametrize("flag", FLAGS)
def test_empty_path_flag_exits_2_naming_the_flag_and_touches_nothing(
    tmp_path: Path, bases: Bases, flag: str, value: str
) -> None:
    arm(bases)
    args = [flag, value] if flag == "--config" else ["--config", str(bases.config), flag, value]
    run_all_ways(bases, tmp_path, args, {}, f"{flag}: must not be empty")
    bases.assert_untouched()


@pytest.mark.parametrize("value", list(EMPTY_VALUES.values()), ids=list(EMPTY_VALUES))
@pytest.mark.parametrize("flag", FLAGS)
def test_empty_path_flag_of_the_compatibility_script_exits_2_naming_the_flag(
    tmp_path: Path, bases: Bases, flag: str, value: str
) -> None:
    arm(bases)
    args = [flag, value] if flag == "--config" else ["--config", str(bases.config), flag, value]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=bases.cwd,
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"cleanup_jobs.py: error: {flag}: must not be empty"]
    bases.assert_untouched()


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize("value", list(EMPTY_VALUES.values()), ids=list(EMPTY_VALUES))
@pytest.mark.parametrize("variable", VARIABLES)
def test_empty_path_variable_exits_2_naming_it_and_touches_nothing(
    tmp_path: Path, bases: Bases, variable: str, value: str
) -> None:
    arm(bases)
    message = f"{variable}: is set but empty (unset it or give a path)"
    run_all_ways(bases, tmp_path, ["--config", str(bases.config)], {variable: value}, message)
    bases.assert_untouched()


@pytest.mark.parametrize("value", list(EMPTY_VALUES.values()), ids=list(EMPTY_VALUES))
def test_empty_config_variable_exits_2_instead_of_discovering_the_local_file(
    tmp_path: Path, bases: Bases, value: str
) -> None:
    # The working directory holds a valid cleanup_config.yaml: ignoring the empty variable
    # would clean the look-alike base.
    arm(bases)
    message = f"{CONFIG_VARIABLE}: is set but empty (unset it or give a path)"
    run_all_ways(bases, tmp_path, [], {CONFIG_VARIABLE: value}, message)
    validated = call(
        ["config", "validate"], guarded_env(tmp_path, **{CONFIG_VARIABLE: value}), bases.cwd
    )
    assert_refused(validated, message)
    bases.assert_untouched()


def test_valid_configuration_of_the_same_bases_runs_and_leaves_the_working_directory_alone(
    tmp_path: Path, bases: Bases
) -> None:
    # The control case: the same setup with nothing empty cleans the configured base only.
    arm(bases)
    result = call(
        ["run", "--json", "--config", str(bases.config)], guarded_env(tmp_path), bases.cwd
    )
    assert result.code == 0, result.stderr
    assert result.json()["success"] is True
    assert snapshot(bases.cwd) == bases.before["cwd"]
    assert snapshot(bases.base) != bases.before["base"]

"""Unit tests of eemt_cleanup.config.loader: precedence, sources, discovery, errors, roots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eemt_cleanup.config.loader import (
    MAX_CONFIG_BYTES,
    MAX_NESTING,
    MAX_PROBLEMS,
    SYSTEM_CONFIG,
    LoadedConfig,
    load_config,
    read_config_file,
)
from eemt_cleanup.config.schema import Settings, quote
from eemt_cleanup.errors import ConfigError

HOURS = "retention.successful_jobs.hours"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def value(loaded: LoadedConfig, dotted: str) -> Any:
    node: Any = loaded.settings.model_dump()
    for part in dotted.split("."):
        node = node[part]
    return node


def load(tmp_path: Path, **kwargs: Any) -> LoadedConfig:
    """load_config isolated from the real environment, relative to tmp_path."""
    kwargs.setdefault("environ", {})
    kwargs.setdefault("cwd", tmp_path)
    return load_config(**kwargs)


def config_error(tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, **kwargs)
    return str(raised.value)


def real(path: Path) -> str:
    return os.path.realpath(path)


@pytest.fixture
def no_system_config() -> None:
    if SYSTEM_CONFIG.exists():
        pytest.skip(f"{SYSTEM_CONFIG} exists on this machine")


# --- precedence and sources ----------------------------------------------------------------


@pytest.mark.usefixtures("no_system_config")
def test_defaults_apply_when_nothing_is_given(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.config_file is None
    assert loaded.force_dry_run is False
    assert loaded.force_dry_run_source is None
    assert value(loaded, HOURS) == 168
    assert value(loaded, "retention.failed_jobs.hours") == 12
    assert loaded.sources.pop("paths.logs") == "default (beside paths.database)"
    assert set(loaded.sources.values()) == {"default"}
    assert loaded.sources[HOURS] == "default"


@pytest.mark.usefixtures("no_system_config")
def test_default_logs_directory_is_beside_the_database_not_the_working_directory(
    tmp_path: Path,
) -> None:
    data = tmp_path / "srv"
    data.mkdir()
    loaded = load(tmp_path, overrides={"paths.database": (str(data / "jobs.db"), "--db-path")})
    assert loaded.settings.paths.logs == str(data / "logs")
    assert loaded.roots.logs == data / "logs"


@pytest.mark.usefixtures("no_system_config")
def test_logs_directory_given_explicitly_is_used_as_given(tmp_path: Path) -> None:
    environ = {"EEMT_DB_PATH": str(tmp_path / "srv" / "jobs.db")}
    loaded = load(
        tmp_path,
        environ=environ,
        overrides={"paths.logs": (str(tmp_path / "var-log"), "--logs-dir")},
    )
    assert loaded.roots.logs == tmp_path / "var-log"
    assert loaded.sources["paths.logs"] == "flag --logs-dir"


@pytest.mark.usefixtures("no_system_config")
def test_default_relative_paths_resolve_against_cwd(tmp_path: Path) -> None:
    paths = load(tmp_path).settings.paths
    assert paths.database == str(tmp_path / "jobs.db")
    assert paths.uploads == str(tmp_path / "uploads")
    assert paths.results == str(tmp_path / "results")
    assert paths.temp == str(tmp_path / "temp")
    assert paths.logs == str(tmp_path / "logs")


def test_file_overrides_default(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  successful_jobs:\n    hours: 100\n")
    loaded = load(tmp_path, config_path=config)
    assert value(loaded, HOURS) == 100
    assert loaded.sources[HOURS] == f"file {config}"
    assert loaded.sources["retention.failed_jobs.hours"] == "default"
    assert loaded.config_file == config


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  successful_jobs:\n    hours: 100\n")
    loaded = load(tmp_path, config_path=config, environ={"EEMT_SUCCESS_RETENTION_HOURS": "50"})
    assert value(loaded, HOURS) == 50
    assert loaded.sources[HOURS] == "env EEMT_SUCCESS_RETENTION_HOURS"


def test_flag_overrides_environment_and_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  successful_jobs:\n    hours: 100\n")
    loaded = load(
        tmp_path,
        config_path=config,
        environ={"EEMT_SUCCESS_RETENTION_HOURS": "50"},
        overrides={HOURS: (25, "--success-retention")},
    )
    assert value(loaded, HOURS) == 25
    assert loaded.sources[HOURS] == "flag --success-retention"


def test_flag_with_value_none_is_ignored(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        environ={"EEMT_SUCCESS_RETENTION_HOURS": "50"},
        overrides={HOURS: (None, "--success-retention")},
    )
    assert value(loaded, HOURS) == 50
    assert loaded.sources[HOURS] == "env EEMT_SUCCESS_RETENTION_HOURS"


def test_each_layer_keeps_its_own_source_per_key(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        "performance:\n  batch_size: 10\n  max_workers: 2\nschedule:\n  enabled: false\n",
    )
    loaded = load(
        tmp_path,
        config_path=config,
        environ={"EEMT_CLEANUP_WORKERS": "3"},
        overrides={"performance.parallel_delete": (False, "--no-parallel")},
    )
    performance = loaded.settings.performance
    assert (performance.batch_size, performance.max_workers) == (10, 3)
    assert performance.parallel_delete is False
    assert loaded.settings.schedule.enabled is False
    assert loaded.sources["performance.batch_size"] == f"file {config}"
    assert loaded.sources["performance.max_workers"] == "env EEMT_CLEANUP_WORKERS"
    assert loaded.sources["performance.parallel_delete"] == "flag --no-parallel"
    assert loaded.sources["schedule.enabled"] == f"file {config}"
    assert loaded.sources["schedule.cron"] == "default"


def test_file_list_value_is_one_source(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "jobs:\n  statuses:\n    successful: [done, success]\n")
    loaded = load(tmp_path, config_path=config)
    assert loaded.settings.jobs.statuses.successful == ["done", "success"]
    assert loaded.sources["jobs.statuses.successful"] == f"file {config}"
    assert loaded.sources["jobs.statuses.failed"] == "default"


@pytest.mark.usefixtures("no_system_config")
def test_empty_config_file_gives_defaults(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "")
    loaded = load(tmp_path, config_path=config)
    assert loaded.config_file == config
    assert loaded.settings == load(tmp_path).settings


# --- discovery -------------------------------------------------------------------------------


def hours_file(path: Path, hours: int) -> Path:
    return write(path, f"retention:\n  failed_jobs:\n    hours: {hours}\n")


def test_explicit_config_wins_over_environment_and_cwd(tmp_path: Path) -> None:
    explicit = hours_file(tmp_path / "explicit" / "c.yaml", 1)
    named = hours_file(tmp_path / "named" / "c.yaml", 2)
    hours_file(tmp_path / "cleanup_config.yaml", 3)
    loaded = load(tmp_path, config_path=explicit, environ={"EEMT_CLEANUP_CONFIG": str(named)})
    assert loaded.config_file == explicit
    assert value(loaded, "retention.failed_jobs.hours") == 1


def test_environment_config_wins_over_cwd(tmp_path: Path) -> None:
    named = hours_file(tmp_path / "named" / "c.yaml", 2)
    hours_file(tmp_path / "cleanup_config.yaml", 3)
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_CONFIG": str(named)})
    assert loaded.config_file == named
    assert value(loaded, "retention.failed_jobs.hours") == 2
    assert loaded.sources["retention.failed_jobs.hours"] == f"file {named}"


def test_cleanup_config_in_cwd_is_found(tmp_path: Path) -> None:
    found = hours_file(tmp_path / "cleanup_config.yaml", 3)
    loaded = load(tmp_path)
    assert loaded.config_file == found
    assert value(loaded, "retention.failed_jobs.hours") == 3


def test_relative_explicit_config_resolves_against_cwd(tmp_path: Path) -> None:
    config = hours_file(tmp_path / "conf" / "c.yaml", 4)
    loaded = load(tmp_path, config_path="conf/c.yaml")
    assert loaded.config_file == config


def test_relative_environment_config_resolves_against_cwd(tmp_path: Path) -> None:
    config = hours_file(tmp_path / "conf" / "c.yaml", 4)
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_CONFIG": "conf/c.yaml"})
    assert loaded.config_file == config


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert config_error(tmp_path, config_path=missing) == f"--config: no such file: {missing}"


def test_explicit_config_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    message = config_error(tmp_path, config_path=tmp_path / "dir.yaml")
    assert message == f"--config: {tmp_path / 'dir.yaml'} is a directory, not a regular file"


def test_missing_environment_config_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = config_error(tmp_path, environ={"EEMT_CLEANUP_CONFIG": str(missing)})
    assert message == f"EEMT_CLEANUP_CONFIG: no such file: {missing}"


# --- relative paths --------------------------------------------------------------------------


def test_relative_paths_in_file_resolve_against_file_directory(tmp_path: Path) -> None:
    config = write(
        tmp_path / "etc" / "c.yaml",
        "paths:\n"
        "  database: ./data/jobs.db\n"
        "  uploads: ../base/uploads\n"
        "  results: results\n"
        "  temp: ./temp\n"
        "  logs: logs\n",
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    paths = load(tmp_path, config_path=config, cwd=cwd).settings.paths
    assert paths.database == str(tmp_path / "etc" / "data" / "jobs.db")
    assert paths.uploads == str(tmp_path / "base" / "uploads")
    assert paths.results == str(tmp_path / "etc" / "results")
    assert paths.temp == str(tmp_path / "etc" / "temp")
    assert paths.logs == str(tmp_path / "etc" / "logs")


def test_absolute_paths_in_file_are_kept(tmp_path: Path) -> None:
    config = write(tmp_path / "etc" / "c.yaml", f"paths:\n  uploads: {tmp_path / 'up'}\n")
    paths = load(tmp_path, config_path=config).settings.paths
    assert paths.uploads == str(tmp_path / "up")


def test_relative_environment_paths_resolve_against_cwd(tmp_path: Path) -> None:
    config = write(tmp_path / "etc" / "c.yaml", "")
    loaded = load(
        tmp_path,
        config_path=config,
        environ={"EEMT_DB_PATH": "db/jobs.db", "EEMT_UPLOADS_DIR": "./up"},
    )
    assert loaded.settings.paths.database == str(tmp_path / "db" / "jobs.db")
    assert loaded.settings.paths.uploads == str(tmp_path / "up")


def test_relative_flag_paths_resolve_against_cwd(tmp_path: Path) -> None:
    config = write(tmp_path / "etc" / "c.yaml", "paths:\n  results: from-file\n")
    loaded = load(
        tmp_path,
        config_path=config,
        overrides={
            "paths.results": ("out/results", "--results-dir"),
            "paths.database": ("../x/jobs.db", "--db-path"),
        },
    )
    assert loaded.settings.paths.results == str(tmp_path / "out" / "results")
    assert loaded.settings.paths.database == str(tmp_path.parent / "x" / "jobs.db")
    assert loaded.sources["paths.results"] == "flag --results-dir"
    assert loaded.sources["paths.database"] == "flag --db-path"


# --- environment variables (SPEC §4) ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "key", "expected"),
    [
        ("EEMT_SUCCESS_RETENTION_HOURS", "72", HOURS, 72.0),
        ("EEMT_SUCCESS_RETENTION_HOURS", "0.5", HOURS, 0.5),
        ("EEMT_SUCCESS_RETENTION_DAYS", "3", HOURS, 72.0),
        ("EEMT_SUCCESS_RETENTION_DAYS", "0.5", HOURS, 12.0),
        ("EEMT_SUCCESS_RETENTION_DAYS", "14", HOURS, 336.0),
        ("EEMT_FAILED_RETENTION_HOURS", "6", "retention.failed_jobs.hours", 6.0),
        ("EEMT_FAILED_RETENTION_HOURS", "0", "retention.failed_jobs.hours", 0.0),
        ("EEMT_ENABLE_AUTO_CLEANUP", "false", "schedule.enabled", False),
        ("EEMT_ENABLE_AUTO_CLEANUP", "0", "schedule.enabled", False),
        ("EEMT_ENABLE_AUTO_CLEANUP", "no", "schedule.enabled", False),
        ("EEMT_ENABLE_AUTO_CLEANUP", "OFF", "schedule.enabled", False),
        ("EEMT_ENABLE_AUTO_CLEANUP", "true", "schedule.enabled", True),
        ("EEMT_ENABLE_AUTO_CLEANUP", "1", "schedule.enabled", True),
        ("EEMT_ENABLE_AUTO_CLEANUP", "Yes", "schedule.enabled", True),
        ("EEMT_CLEANUP_SCHEDULE", "0 3 * * *", "schedule.cron", "0 3 * * *"),
        ("EEMT_CLEANUP_SCHEDULE", '"0 3 * * *"', "schedule.cron", "0 3 * * *"),
        ("EEMT_CLEANUP_SCHEDULE", "'0 3 * * *'", "schedule.cron", "0 3 * * *"),
        ("EEMT_CLEANUP_SCHEDULE", " '*/15  *  * * 1-5' ", "schedule.cron", "*/15 * * * 1-5"),
        ("EEMT_CLEANUP_LOG_LEVEL", "DEBUG", "logging.level", "DEBUG"),
        ("EEMT_CLEANUP_LOG_LEVEL", "warning", "logging.level", "WARNING"),
        ("EEMT_CLEANUP_BATCH_SIZE", "50", "performance.batch_size", 50),
        ("EEMT_CLEANUP_WORKERS", "8", "performance.max_workers", 8),
        ("EEMT_CLEANUP_WORKERS", " 2 ", "performance.max_workers", 2),
    ],
)
def test_environment_variable_sets_its_key(
    tmp_path: Path, name: str, raw: str, key: str, expected: Any
) -> None:
    loaded = load(tmp_path, environ={name: raw})
    assert value(loaded, key) == expected
    assert loaded.sources[key] == f"env {name}"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("EEMT_DB_PATH", "paths.database"),
        ("EEMT_UPLOADS_DIR", "paths.uploads"),
        ("EEMT_RESULTS_DIR", "paths.results"),
        ("EEMT_TEMP_DIR", "paths.temp"),
    ],
)
def test_environment_path_variable_sets_its_key(tmp_path: Path, name: str, key: str) -> None:
    target = tmp_path / "custom" / name.lower()
    loaded = load(tmp_path, environ={name: str(target)})
    assert value(loaded, key) == str(target)
    assert loaded.sources[key] == f"env {name}"


def test_environment_path_variable_with_quotes_is_unquoted(tmp_path: Path) -> None:
    loaded = load(tmp_path, environ={"EEMT_DB_PATH": f'"{tmp_path}/db/jobs.db"'})
    assert loaded.settings.paths.database == str(tmp_path / "db" / "jobs.db")


def test_hours_variable_wins_over_days_variable(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        environ={"EEMT_SUCCESS_RETENTION_DAYS": "3", "EEMT_SUCCESS_RETENTION_HOURS": "10"},
    )
    assert value(loaded, HOURS) == 10.0
    assert loaded.sources[HOURS] == "env EEMT_SUCCESS_RETENTION_HOURS"


def test_blank_non_path_environment_variable_is_ignored(tmp_path: Path) -> None:
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_WORKERS": "  ", "EEMT_CLEANUP_SCHEDULE": ""})
    assert loaded.settings.performance.max_workers == 4
    assert loaded.sources["performance.max_workers"] == "default"
    assert loaded.sources["schedule.cron"] == "default"


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", "y", "'true'"])
def test_dry_run_variable_forces_dry_run(tmp_path: Path, raw: str) -> None:
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_DRY_RUN": raw})
    assert loaded.force_dry_run is True
    assert loaded.force_dry_run_source == "env EEMT_CLEANUP_DRY_RUN"


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", "n", ""])
def test_dry_run_variable_false_does_not_force_dry_run(tmp_path: Path, raw: str) -> None:
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_DRY_RUN": raw})
    assert loaded.force_dry_run is False


def test_config_variable_picks_the_file(tmp_path: Path) -> None:
    config = hours_file(tmp_path / "conf" / "x.yaml", 7)
    loaded = load(tmp_path, environ={"EEMT_CLEANUP_CONFIG": str(config)})
    assert loaded.config_file == config
    assert value(loaded, "retention.failed_jobs.hours") == 7


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bogus: 1\n", "bogus: unknown key"),
        ("bogus:\n  nested: 1\n", "bogus: unknown key"),
        (
            "retention:\n  successful_jobs:\n    hourz: 5\n",
            "retention.successful_jobs.hourz: unknown key",
        ),
        ("paths:\n  uploads_dir: ./u\n", "paths.uploads_dir: unknown key"),
        (
            "retention:\n  failed_jobs:\n    hours: '12'\n",
            "retention.failed_jobs.hours: must be a number, got '12'",
        ),
        (
            "retention:\n  failed_jobs:\n    hours: true\n",
            "retention.failed_jobs.hours: must be a number, got True",
        ),
        (
            "retention:\n  failed_jobs:\n    hours: -5\n",
            "retention.failed_jobs.hours: must be >= 0, got -5",
        ),
        (
            "retention:\n  successful_jobs:\n    keep_logs: 'no'\n",
            "retention.successful_jobs.keep_logs: must be true or false, got 'no'",
        ),
        (
            "performance:\n  max_workers: 2.5\n",
            "performance.max_workers: must be a whole number, got 2.5",
        ),
        (
            "performance:\n  parallel_delete: 'yes'\n",
            "performance.parallel_delete: must be true or false, got 'yes'",
        ),
        (
            "performance:\n  max_workers: 0\n",
            "performance.max_workers: must be >= 1, got 0",
        ),
        (
            "performance:\n  batch_size: 0\n",
            "performance.batch_size: must be >= 1, got 0",
        ),
        (
            "logging:\n  level: LOUD\n",
            "logging.level: must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL',"
            " got 'LOUD'",
        ),
        (
            "schedule:\n  cron: '0 2 * *'\n",
            "schedule.cron: must be a five-field cron expression, got '0 2 * *'",
        ),
        (
            "schedule:\n  cron: 'every day at two'\n",
            "schedule.cron: must be a five-field cron expression, got 'every day at two'",
        ),
        (
            "jobs:\n  timezone: Mars/Olympus\n",
            "jobs.timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "jobs:\n  created_at_timezone: Nowhere\n",
            "jobs.created_at_timezone: unknown time zone 'Nowhere'",
        ),
        (
            "jobs:\n  columns:\n    id: 'id; DROP TABLE jobs'\n",
            "jobs.columns.id: must be a plain SQL identifier, got 'id; DROP TABLE jobs'",
        ),
        (
            "jobs:\n  columns:\n    status: '\"status\"'\n",
            "jobs.columns.status: must be a plain SQL identifier, got '\"status\"'",
        ),
        (
            "jobs:\n  table: 'jobs x'\n",
            "jobs.table: must be a plain SQL identifier, got 'jobs x'",
        ),
        (
            "jobs:\n  statuses:\n    failed: [failed, completed]\n",
            "jobs: status 'completed' is in both statuses.successful and statuses.failed",
        ),
        (
            "retention:\n  log_files: ['../etc/passwd']\n",
            "retention.log_files: must be a plain file name, got '../etc/passwd'",
        ),
        (
            "retention: 5\n",
            "retention: must be a section (a mapping of keys), got 5",
        ),
    ],
)
def test_invalid_file_value_is_config_error_naming_key_value_and_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    message = config_error(tmp_path, config_path=config)
    assert message == f"invalid configuration: {problem} (from file {config})"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "notifications:\n  email:\n    recipients: [5]\n",
            "notifications.email.recipients.0: must be text, got 5",
        ),
        (
            "jobs:\n  statuses:\n    successful: [done, 7]\n",
            "jobs.statuses.successful.1: must be text, got 7",
        ),
    ],
)
def test_invalid_list_item_is_config_error_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    message = config_error(tmp_path, config_path=config)
    assert message == f"invalid configuration: {problem} (from file {config})"


@pytest.mark.parametrize(
    "cron", ["61 2 * * *", "0 25 * * *", "0 2 32 * *", "0 2 * 13 *", "a b c d e"]
)
def test_impossible_cron_expression_is_config_error(tmp_path: Path, cron: str) -> None:
    config = write(tmp_path / "c.yaml", f"schedule:\n  cron: '{cron}'\n")
    message = config_error(tmp_path, config_path=config)
    assert message.startswith("invalid configuration: schedule.cron: ")
    assert repr(cron) in message
    assert message.endswith(f"(from file {config})")


def test_default_cron_is_valid_for_cronsim() -> None:
    # The validator accepts the default without cronsim (it is checked here instead).
    from eemt_cleanup.config.schema import DEFAULT_CRON
    from eemt_cleanup.schedule import check_expression

    assert check_expression(DEFAULT_CRON) == DEFAULT_CRON
    assert Settings().schedule.cron == DEFAULT_CRON


def test_flags_only_run_loads_neither_yaml_nor_cronsim(tmp_path: Path) -> None:
    # Start-up cost: a run configured by defaults, environment and flags imports neither.
    if SYSTEM_CONFIG.exists():
        pytest.skip(f"{SYSTEM_CONFIG} exists on this machine")
    code = (
        "import sys\n"
        "from eemt_cleanup.config.loader import load_config\n"
        "load_config(environ={'EEMT_CLEANUP_SCHEDULE': '0 2 * * *'})\n"
        "print(sorted(m for m in ('yaml', 'cronsim') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("zone", ["America", "Europe"])
def test_timezone_naming_a_zone_directory_is_config_error(tmp_path: Path, zone: str) -> None:
    config = write(tmp_path / "c.yaml", f"jobs:\n  timezone: {zone}\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (
        f"invalid configuration: jobs.timezone: unknown time zone {zone!r} (from file {config})"
    )


def test_several_invalid_values_are_all_reported(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "performance:\n  max_workers: 0\n  batch_size: 0\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (
        "invalid configuration: "
        f"performance.batch_size: must be >= 1, got 0"
        f" (from file {config}); "
        f"performance.max_workers: must be >= 1, got 0"
        f" (from file {config})"
    )


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  successful_jobs:\n    hours: [1, 2\n")
    message = config_error(tmp_path, config_path=config)
    assert message.startswith(f"{config} (line 4, column 1): not valid YAML: ")
    assert "expected ',' or ']'" in message


def test_yaml_bad_indentation_names_its_line(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "schedule:\n  enabled: true\n cron: x\n")
    message = config_error(tmp_path, config_path=config)
    assert message.startswith(f"{config} (line 3, column 2): not valid YAML: ")


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")]
)
def test_top_level_not_a_mapping_is_config_error(tmp_path: Path, text: str, kind: str) -> None:
    config = write(tmp_path / "c.yaml", text)
    message = config_error(tmp_path, config_path=config)
    assert message == f"{config}: the top level must be a mapping of sections, got {kind}"


def test_config_file_not_utf8_is_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"schedule:\n  cron: '\xff'\n")
    message = config_error(tmp_path, config_path=config)
    assert message.startswith(f"{config}: cannot read config file: ")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"EEMT_CLEANUP_WORKERS": "abc"},
            "EEMT_CLEANUP_WORKERS: must be a whole number, got 'abc'",
        ),
        (
            {"EEMT_CLEANUP_WORKERS": "2.5"},
            "EEMT_CLEANUP_WORKERS: must be a whole number, got '2.5'",
        ),
        (
            {"EEMT_CLEANUP_BATCH_SIZE": "lots"},
            "EEMT_CLEANUP_BATCH_SIZE: must be a whole number, got 'lots'",
        ),
        (
            {"EEMT_SUCCESS_RETENTION_HOURS": "a week"},
            "EEMT_SUCCESS_RETENTION_HOURS: must be a number, got 'a week'",
        ),
        (
            {"EEMT_SUCCESS_RETENTION_DAYS": "7d"},
            "EEMT_SUCCESS_RETENTION_DAYS: must be a number, got '7d'",
        ),
        (
            {"EEMT_CLEANUP_DRY_RUN": "maybe"},
            "EEMT_CLEANUP_DRY_RUN: must be true or false, got 'maybe'",
        ),
        (
            {"EEMT_ENABLE_AUTO_CLEANUP": "sometimes"},
            "EEMT_ENABLE_AUTO_CLEANUP: must be true or false, got 'sometimes'",
        ),
        (
            {"EEMT_FAILED_RETENTION_HOURS": "-5"},
            "invalid configuration: retention.failed_jobs.hours: must be >= 0, got -5.0"
            " (from env EEMT_FAILED_RETENTION_HOURS)",
        ),
        (
            {"EEMT_SUCCESS_RETENTION_HOURS": "nan"},
            "invalid configuration: retention.successful_jobs.hours: must be a finite number,"
            " got nan (from env EEMT_SUCCESS_RETENTION_HOURS)",
        ),
        (
            {"EEMT_CLEANUP_WORKERS": "0"},
            "invalid configuration: performance.max_workers: must be >= 1, got 0"
            " (from env EEMT_CLEANUP_WORKERS)",
        ),
        (
            {"EEMT_CLEANUP_LOG_LEVEL": "loud"},
            "invalid configuration: logging.level: must be one of 'DEBUG', 'INFO', 'WARNING',"
            " 'ERROR' or 'CRITICAL', got 'LOUD' (from env EEMT_CLEANUP_LOG_LEVEL)",
        ),
        (
            {"EEMT_CLEANUP_SCHEDULE": "daily"},
            "invalid configuration: schedule.cron: must be a five-field cron expression, got"
            " 'daily' (from env EEMT_CLEANUP_SCHEDULE)",
        ),
    ],
)
def test_invalid_environment_value_is_config_error_naming_variable(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    assert config_error(tmp_path, environ=environ) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"performance.max_workers": (0, "--workers")},
            "invalid configuration: performance.max_workers: must be >= 1, got 0"
            " (from flag --workers)",
        ),
        (
            {"retention.failed_jobs.hours": (-1.0, "--failed-retention")},
            "invalid configuration: retention.failed_jobs.hours: must be >= 0, got -1.0"
            " (from flag --failed-retention)",
        ),
    ],
)
def test_invalid_flag_value_is_config_error_naming_flag(
    tmp_path: Path, overrides: dict[str, tuple[Any, str]], message: str
) -> None:
    assert config_error(tmp_path, overrides=overrides) == message


# --- unsafe roots --------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["/", "/usr", "/tmp", "/etc", "/var", "/home", "/usr/../"])
@pytest.mark.parametrize(
    ("key", "flag"),
    [
        ("paths.uploads", "--uploads-dir"),
        ("paths.results", "--results-dir"),
        ("paths.temp", "--temp-dir"),
    ],
)
def test_system_directory_as_root_is_refused_naming_key(
    tmp_path: Path, directory: str, key: str, flag: str
) -> None:
    message = config_error(tmp_path, overrides={key: (directory, flag)})
    resolved = os.path.realpath(directory)
    assert message == (
        f"{key}: refusing a system directory as a deletion root: {resolved} (from flag {flag})"
    )


def test_system_directory_root_from_file_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "paths:\n  temp: /tmp\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (
        f"paths.temp: refusing a system directory as a deletion root: /tmp (from file {config})"
    )


def test_symlink_to_system_directory_as_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "innocent").symlink_to("/")
    message = config_error(tmp_path, overrides={"paths.uploads": ("innocent", "--uploads-dir")})
    assert message == (
        "paths.uploads: refusing a system directory as a deletion root: / (from flag --uploads-dir)"
    )


def test_two_equal_roots_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    message = config_error(
        tmp_path,
        overrides={
            "paths.uploads": (str(data), "--uploads-dir"),
            "paths.results": (str(data), "--results-dir"),
        },
    )
    assert message == (
        f"paths.uploads and paths.results overlap ({real(data)} and {real(data)}):"
        " each root must be separate"
    )


def test_root_inside_another_root_is_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    nested = results / "temp"
    message = config_error(tmp_path, overrides={"paths.temp": (str(nested), "--temp-dir")})
    assert message == (
        f"paths.results and paths.temp overlap ({real(results)} and {real(nested)}):"
        " each root must be separate"
    )


def test_root_containing_another_root_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, overrides={"paths.uploads": (str(tmp_path), "--uploads-dir")})
    assert message == (
        f"paths.uploads and paths.results overlap ({real(tmp_path)} and"
        f" {real(tmp_path / 'results')}): each root must be separate"
    )


def test_roots_overlapping_through_symlink_are_refused(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "results")
    message = config_error(tmp_path, overrides={"paths.temp": ("alias", "--temp-dir")})
    assert message.startswith("paths.results and paths.temp overlap (")


@pytest.mark.parametrize(
    ("root_key", "inside"),
    [("paths.uploads", "uploads"), ("paths.results", "results"), ("paths.temp", "temp")],
)
def test_database_inside_a_root_is_refused(tmp_path: Path, root_key: str, inside: str) -> None:
    database = tmp_path / inside / "jobs.db"
    message = config_error(tmp_path, overrides={"paths.database": (str(database), "--db-path")})
    assert message == (
        f"paths.database: {real(database)} must not be inside the deletion root {root_key}"
        f" ({real(tmp_path / inside)})"
    )


def test_database_equal_to_a_root_is_refused(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, overrides={"paths.database": (str(tmp_path / "temp"), "--db-path")}
    )
    assert message.startswith(f"paths.database: {real(tmp_path / 'temp')} must not be inside")


def test_database_inside_a_root_through_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "db-dir").symlink_to(tmp_path / "results")
    message = config_error(tmp_path, environ={"EEMT_DB_PATH": str(tmp_path / "db-dir" / "jobs.db")})
    assert message == (
        f"paths.database: {real(tmp_path / 'results')}/jobs.db must not be inside the deletion"
        f" root paths.results ({real(tmp_path / 'results')})"
    )


def test_logs_inside_a_root_are_refused(tmp_path: Path) -> None:
    logs = tmp_path / "temp" / "logs"
    config = write(tmp_path / "c.yaml", "paths:\n  logs: ./temp/logs\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (
        f"paths.logs: {real(logs)} must not be inside the deletion root paths.temp"
        f" ({real(tmp_path / 'temp')})"
    )


def test_config_file_inside_a_root_is_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    config = write(results / "cleanup_config.yaml", "paths:\n  results: .\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (
        f"config file: {real(config)} must not be inside the deletion root paths.results"
        f" ({real(results)})"
    )


def test_symlinked_root_is_resolved_into_roots(tmp_path: Path) -> None:
    real_uploads = tmp_path / "storage" / "uploads"
    real_uploads.mkdir(parents=True)
    (tmp_path / "uploads-link").symlink_to(real_uploads)
    loaded = load(tmp_path, overrides={"paths.uploads": ("uploads-link", "--uploads-dir")})
    assert loaded.settings.paths.uploads == str(tmp_path / "uploads-link")
    assert loaded.roots.uploads == Path(real(real_uploads))


@pytest.mark.usefixtures("no_system_config")
def test_roots_are_absolute_and_resolved(tmp_path: Path) -> None:
    roots = load(tmp_path).roots
    assert roots.database == Path(real(tmp_path / "jobs.db"))
    assert roots.uploads == Path(real(tmp_path / "uploads"))
    assert roots.results == Path(real(tmp_path / "results"))
    assert roots.temp == Path(real(tmp_path / "temp"))
    assert roots.logs == Path(real(tmp_path / "logs"))


def test_base_directory_layout_with_db_beside_roots_is_accepted(tmp_path: Path) -> None:
    config = write(
        tmp_path / "base" / "cleanup_config.yaml",
        "paths:\n  database: ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: ./logs\n",
    )
    loaded = load(tmp_path, config_path=config, cwd=Path("/"))
    assert loaded.roots.results == Path(real(tmp_path / "base" / "results"))
    assert isinstance(loaded.settings, Settings)


# --- empty and null paths (issue 8, item 3) ---------------------------------------------

PATH_NAMES = ("database", "uploads", "results", "temp", "logs")
NULL_OR_EMPTY = {"empty": '""', "blank": "'   '", "tilde": "~", "null": "null", "no value": ""}


@pytest.mark.parametrize("form", list(NULL_OR_EMPTY.values()), ids=list(NULL_OR_EMPTY))
@pytest.mark.parametrize("name", PATH_NAMES)
def test_empty_or_null_path_in_file_is_config_error_naming_key_and_file(
    tmp_path: Path, name: str, form: str
) -> None:
    config = write(tmp_path / "c.yaml", f"paths:\n  {name}: {form}\n")
    message = config_error(tmp_path, config_path=config)
    assert message == f"invalid configuration: paths.{name}: must not be empty (from file {config})"


def test_empty_path_in_file_is_refused_even_when_a_flag_overrides_it(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "paths:\n  database: ''\n")
    message = config_error(
        tmp_path,
        config_path=config,
        overrides={"paths.database": (str(tmp_path / "jobs.db"), "--db-path")},
    )
    assert (
        message == f"invalid configuration: paths.database: must not be empty (from file {config})"
    )


@pytest.mark.parametrize("raw", ["", "   ", '""', "' '"])
@pytest.mark.parametrize(
    "name", ["EEMT_DB_PATH", "EEMT_UPLOADS_DIR", "EEMT_RESULTS_DIR", "EEMT_TEMP_DIR"]
)
def test_empty_path_environment_variable_is_config_error_naming_it(
    tmp_path: Path, name: str, raw: str
) -> None:
    message = config_error(tmp_path, environ={name: raw})
    assert message == f"{name}: is set but empty (unset it or give a path)"


@pytest.mark.parametrize("raw", ["", "  "])
def test_empty_config_variable_is_config_error_not_discovery(tmp_path: Path, raw: str) -> None:
    hours_file(tmp_path / "cleanup_config.yaml", 3)
    message = config_error(tmp_path, environ={"EEMT_CLEANUP_CONFIG": raw})
    assert message == "EEMT_CLEANUP_CONFIG: is set but empty (unset it or give a path)"


@pytest.mark.parametrize("raw", ["", "   "])
@pytest.mark.parametrize(
    ("key", "flag"),
    [
        ("paths.database", "--db-path"),
        ("paths.uploads", "--uploads-dir"),
        ("paths.results", "--results-dir"),
        ("paths.temp", "--temp-dir"),
        ("paths.logs", "--logs-dir"),
    ],
)
def test_empty_path_flag_is_config_error_naming_the_flag(
    tmp_path: Path, key: str, flag: str, raw: str
) -> None:
    assert config_error(tmp_path, overrides={key: (raw, flag)}) == f"{flag}: must not be empty"


@pytest.mark.parametrize("raw", ["", "  "])
def test_empty_config_flag_is_config_error_not_the_working_directory(
    tmp_path: Path, raw: str
) -> None:
    hours_file(tmp_path / "cleanup_config.yaml", 3)
    assert config_error(tmp_path, config_path=raw) == "--config: must not be empty"


def test_path_with_nul_in_file_is_config_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", 'paths:\n  temp: "./te\\0mp"\n')
    message = config_error(tmp_path, config_path=config)
    assert message.startswith(
        "invalid configuration: paths.temp: must not contain a NUL character, got '"
    )
    assert message.endswith(f"te\\x00mp' (from file {config})")


def test_path_that_is_not_text_is_config_error_naming_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "paths:\n  database: 5\n")
    message = config_error(tmp_path, config_path=config)
    assert (
        message
        == f"invalid configuration: paths.database: must be text, got 5 (from file {config})"
    )


@pytest.mark.parametrize("section", ["paths", "retention", "notifications"])
@pytest.mark.parametrize("given", ["5", "[a, b]", "~", "text"])
def test_section_that_is_not_a_mapping_is_config_error_even_with_overrides(
    tmp_path: Path, section: str, given: str
) -> None:
    config = write(tmp_path / "c.yaml", f"{section}: {given}\n")
    shown = {"5": "5", "[a, b]": "['a', 'b']", "~": "null", "text": "'text'"}[given]
    message = config_error(
        tmp_path,
        config_path=config,
        environ={"EEMT_DB_PATH": str(tmp_path / "jobs.db")},
        overrides={"paths.temp": (str(tmp_path / "temp"), "--temp-dir")},
    )
    assert message == (
        f"invalid configuration: {section}: must be a section (a mapping of keys), got {shown}"
        f" (from file {config})"
    )


# --- the working directory, looked up only when needed -----------------------------------


@pytest.fixture
def removed_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's working directory is a directory that has since been removed."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError):
        os.getcwd()
    return gone


def absolute_base_config(tmp_path: Path) -> Path:
    return write(
        tmp_path / "base" / "cleanup_config.yaml",
        "paths:\n  database: ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: ./logs\n",
    )


def test_removed_working_directory_is_not_needed_when_every_path_is_absolute(
    tmp_path: Path, removed_cwd: Path
) -> None:
    config = absolute_base_config(tmp_path)
    loaded = load_config(
        config_path=config,
        environ={"EEMT_TEMP_DIR": str(tmp_path / "t")},
        overrides={"paths.results": (str(tmp_path / "r"), "--results-dir")},
    )
    assert loaded.config_file == config
    assert loaded.roots.database == Path(real(tmp_path / "base" / "jobs.db"))
    assert loaded.roots.temp == Path(real(tmp_path / "t"))
    assert loaded.roots.results == Path(real(tmp_path / "r"))


@pytest.mark.usefixtures("no_system_config")
def test_removed_working_directory_skips_discovery_of_the_local_file(
    tmp_path: Path, removed_cwd: Path
) -> None:
    overrides = {
        key: (str(tmp_path / key.removeprefix("paths.")), flag)
        for key, flag in (
            ("paths.database", "--db-path"),
            ("paths.uploads", "--uploads-dir"),
            ("paths.results", "--results-dir"),
            ("paths.temp", "--temp-dir"),
        )
    }
    loaded = load_config(environ={}, overrides=overrides)
    assert loaded.config_file is None
    assert loaded.roots.logs == Path(real(tmp_path / "logs"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"overrides": {"paths.database": ("jobs.db", "--db-path")}},
            "--db-path: 'jobs.db' is relative",
        ),
        ({"environ": {"EEMT_UPLOADS_DIR": "./up"}}, "EEMT_UPLOADS_DIR: './up' is relative"),
        ({"config_path": "c.yaml"}, "--config: 'c.yaml' is relative"),
        (
            {"environ": {"EEMT_CLEANUP_CONFIG": "c.yaml"}},
            "EEMT_CLEANUP_CONFIG: 'c.yaml' is relative",
        ),
    ],
)
def test_removed_working_directory_is_config_error_naming_the_relative_path(
    tmp_path: Path, removed_cwd: Path, kwargs: dict[str, Any], message: str
) -> None:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as raised:
        load_config(**kwargs)
    assert str(raised.value) == (
        f"{message}, but the working directory is unavailable (No such file or directory:"
        " was it removed?); give an absolute path or run from an existing directory"
    )


@pytest.mark.usefixtures("no_system_config")
def test_removed_working_directory_is_config_error_for_a_relative_default(
    tmp_path: Path, removed_cwd: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ={}, overrides={"paths.database": (str(tmp_path / "j.db"), "--db-path")})
    assert str(raised.value).startswith(
        "paths.uploads: './uploads' (default) is relative, but the working directory is unavailable"
    )


# --- reading a config file (issue 8, item 11) -------------------------------------------


def read_error(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        read_config_file(path)
    return str(raised.value)


def test_file_of_exactly_the_size_cap_is_read(tmp_path: Path) -> None:
    body = "retention:\n  failed_jobs:\n    hours: 5\n"
    padding = MAX_CONFIG_BYTES - len(body) - 1
    config = write(tmp_path / "c.yaml", body + "#" * padding + "\n")
    assert config.stat().st_size == MAX_CONFIG_BYTES
    assert read_config_file(config) == {"retention": {"failed_jobs": {"hours": 5}}}


def test_file_one_byte_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "#" * MAX_CONFIG_BYTES + "\n")
    assert read_error(config) == (
        f"{config}: config file is larger than 256 KiB: refused (a config file is small,"
        " plain YAML)"
    )


def test_symlink_to_a_regular_config_file_is_read(tmp_path: Path) -> None:
    target = hours_file(tmp_path / "real.yaml", 9)
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert value(load(tmp_path, config_path=link), "retention.failed_jobs.hours") == 9


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ("a: &x 1\nb: *x\n", 2, 4, "aliases are not allowed in a config file (*x)"),
        ("a: &x [1]\nb:\n  - *x\n", 3, 5, "aliases are not allowed in a config file (*x)"),
        ("a: &x {k: 1}\nb:\n  <<: *x\n", 3, 7, "aliases are not allowed in a config file (*x)"),
    ],
)
def test_alias_is_refused_naming_its_line(
    tmp_path: Path, text: str, line: int, column: int, problem: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    assert read_error(config) == (
        f"{config} (line {line}, column {column}): {problem}: write the value out"
    )


def test_anchor_without_alias_is_plain_yaml(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention: &r\n  failed_jobs: {hours: 5}\n")
    assert read_config_file(config) == {"retention": {"failed_jobs": {"hours": 5}}}


def test_merge_key_without_alias_is_refused_naming_its_line(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  failed_jobs:\n    <<: {hours: 5}\n")
    assert read_error(config) == (
        f"{config} (line 3, column 5): merge keys (<<) are not allowed in a config file:"
        " write the keys out"
    )


def test_quoted_merge_key_is_an_ordinary_unknown_key(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "retention:\n  '<<': 5\n")
    assert config_error(tmp_path, config_path=config) == (
        f"invalid configuration: retention.<<: unknown key (from file {config})"
    )


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("retention: {}\nschedule: {}\nretention: {}\n", "retention", 3, 1),
        ("paths:\n  database: a\n  temp: t\n  database: b\n", "paths.database", 4, 2),
        ("jobs:\n  statuses:\n    failed: [x]\n    failed: [y]\n", "jobs.statuses.failed", 4, 3),
        ("a:\n  - k: 1\n    k: 2\n", "a.0.k", 3, 2),
        ("{x: 1, x: 2}\n", "x", 1, 1),
    ],
)
def test_duplicate_key_is_refused_naming_key_and_both_lines(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    config = write(tmp_path / "c.yaml", text)
    message = read_error(config)
    assert message.startswith(f"{config} (line {line}, column ")
    assert message.endswith(f"): duplicate key {key} (first at line {first})")


def test_same_key_text_with_different_types_is_not_a_duplicate(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "x:\n  1: a\n  '1': b\n")
    assert read_config_file(config) == {"x": {1: "a", "1": "b"}}


def test_nesting_deeper_than_the_limit_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "[" * 100_000 + "]" * 100_000 + "\n")
    assert read_error(config) == (
        f"{config} (line 1, column {MAX_NESTING + 1}): nested more than {MAX_NESTING}"
        " levels deep: refused"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: !!int abc\n", "cannot read 'abc' as tag:yaml.org,2002:int: invalid literal"),
        ("a: !!timestamp 2024-13-45\n", "cannot read '2024-13-45' as tag:yaml.org,2002:timestamp"),
    ],
)
def test_value_its_tag_cannot_build_is_invalid_yaml_naming_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    config = write(tmp_path / "c.yaml", text)
    assert read_error(config).startswith(f"{config} (line 1, column 4): not valid YAML: {problem}")


def test_python_tag_is_refused_as_invalid_yaml(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "a: !!python/object/apply:os.system ['true']\n")
    assert read_error(config).startswith(f"{config} (line 1, column 4): not valid YAML: ")


def test_yaml_problem_text_is_cut_and_escaped(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "a: !" + "t" * 500 + "\x1b x\n")
    message = read_error(config)
    assert "\x1b" not in message
    assert len(message) < len(str(config)) + 150


# --- values quoted in messages -----------------------------------------------------------


def test_long_value_from_the_file_is_cut_to_about_60_characters(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", f"schedule:\n  cron: '{'x' * 5000}'\n")
    message = config_error(tmp_path, config_path=config)
    shown = "'" + "x" * 27 + "..." + "x" * 28 + "'"
    assert message == (
        f"invalid configuration: schedule.cron: must be a five-field cron expression, got"
        f" {shown} (from file {config})"
    )


def test_long_unknown_key_is_cut_to_60_characters(tmp_path: Path) -> None:
    # An explicit key ("? "): YAML limits implicit keys to 1024 characters.
    config = write(tmp_path / "c.yaml", f"? {'k' * 5000}\n: 1\n")
    message = config_error(tmp_path, config_path=config)
    assert message == (f"invalid configuration: {'k' * 57}...: unknown key (from file {config})")


def test_key_with_control_characters_is_escaped_in_the_message(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", '"evil\\nINFO: forged\\x1b[31m": 1\n')
    message = config_error(tmp_path, config_path=config)
    assert message == (
        f"invalid configuration: evil\\nINFO: forged\\x1b[31m: unknown key (from file {config})"
    )


def test_huge_nested_value_is_quoted_without_being_walked() -> None:
    # One list shared 1000 times: ten million items that a plain repr would walk (a few
    # seconds and ~70 MB if the cut is lost: bounded, so a regression fails, never hangs).
    level: list[Any] = [["lol"] * 10_000] * 1000
    started = time.monotonic()
    shown = quote(level)
    assert time.monotonic() - started < 0.5
    assert len(shown) <= 60
    assert shown.startswith("[['lol', ")


def test_long_environment_value_is_cut_in_the_message(tmp_path: Path) -> None:
    message = config_error(tmp_path, environ={"EEMT_CLEANUP_WORKERS": "many" * 1000})
    shown = message.removeprefix("EEMT_CLEANUP_WORKERS: must be a whole number, got ")
    assert len(shown) == 60
    assert shown.startswith("'manymany")
    assert "..." in shown


@pytest.mark.parametrize(
    ("given", "shown"),
    [(None, "null"), ("abc", "'abc'"), (5, "5"), (True, "True"), ("a\nb", "'a\\nb'")],
)
def test_quote_shows_short_values_as_their_repr(given: Any, shown: str) -> None:
    assert quote(given) == shown


def test_many_problems_are_listed_up_to_a_limit(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "".join(f"unknown_{n}: 1\n" for n in range(40)))
    message = config_error(tmp_path, config_path=config)
    assert message.count("unknown key") == MAX_PROBLEMS
    assert message.endswith(f"; and {40 - MAX_PROBLEMS} more")

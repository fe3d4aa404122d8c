"""Unit tests of eemt_cleanup.config.template: the documented default config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eemt_cleanup.config.loader import load_config
from eemt_cleanup.config.schema import Settings
from eemt_cleanup.config.template import render_default_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "cleanup_config.yaml"

# The shipped file of SPEC §4, key by key, with its values.
SPEC_SHIPPED = {
    "retention.successful_jobs.hours": 168,
    "retention.successful_jobs.keep_metadata": True,
    "retention.successful_jobs.keep_logs": False,
    "retention.failed_jobs.hours": 12,
    "retention.failed_jobs.keep_metadata": True,
    "retention.failed_jobs.keep_error_logs": True,
    "schedule.enabled": True,
    "schedule.cron": "0 2 * * *",
    "paths.database": "./jobs.db",
    "paths.uploads": "./uploads",
    "paths.results": "./results",
    "paths.temp": "./temp",
    "paths.logs": "./logs",
    "performance.batch_size": 100,
    "performance.parallel_delete": True,
    "performance.max_workers": 4,
    "notifications.email.enabled": False,
    "notifications.email.smtp_server": "localhost",
    "notifications.email.recipients": [],
    "notifications.slack.enabled": False,
    "notifications.slack.webhook_url": "",
}


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(leaves(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_default_config()


def test_rendered_default_config_parses_as_a_yaml_mapping(rendered: str) -> None:
    assert isinstance(yaml.safe_load(rendered), dict)


def test_rendered_default_config_has_every_key_of_the_schema(rendered: str) -> None:
    assert set(leaves(yaml.safe_load(rendered))) == set(leaves(Settings().model_dump()))


def test_rendered_default_config_values_equal_the_defaults(rendered: str) -> None:
    assert leaves(yaml.safe_load(rendered)) == leaves(Settings().model_dump())


def test_rendered_default_config_has_every_key_of_the_spec_shipped_file(rendered: str) -> None:
    flat = leaves(yaml.safe_load(rendered))
    assert {key: flat.get(key) for key in SPEC_SHIPPED} == SPEC_SHIPPED


def test_rendered_default_config_documents_every_section(rendered: str) -> None:
    lines = rendered.splitlines()
    assert lines[0].startswith("# eemt-cleanup configuration.")
    for section in Settings.model_fields:
        index = lines.index(f"{section}:")
        assert lines[index - 1].startswith("# "), section


def test_rendered_default_config_lines_fit_in_100_columns(rendered: str) -> None:
    assert max(len(line) for line in rendered.splitlines()) <= 100


def test_rendered_default_config_ends_with_one_newline(rendered: str) -> None:
    assert rendered.endswith("\n")
    assert not rendered.endswith("\n\n")


def test_rendered_default_config_loads_back_to_exactly_the_defaults(
    tmp_path: Path, rendered: str
) -> None:
    config = tmp_path / "cleanup_config.yaml"
    config.write_text(rendered, encoding="utf-8")
    from_file = load_config(config_path=config, environ={}, cwd=tmp_path)
    # Relative default paths resolve against the file's directory, i.e. tmp_path.
    expected = Settings.model_validate(
        {
            **Settings().model_dump(),
            "paths": {
                "database": str(tmp_path / "jobs.db"),
                "uploads": str(tmp_path / "uploads"),
                "results": str(tmp_path / "results"),
                "temp": str(tmp_path / "temp"),
                "logs": str(tmp_path / "logs"),
            },
        }
    )
    assert from_file.settings == expected
    assert from_file.settings.model_dump(exclude={"paths"}) == (
        Settings().model_dump(exclude={"paths"})
    )
    assert set(from_file.sources.values()) == {f"file {config}"}


def test_shipped_config_file_equals_rendered_default_byte_for_byte(rendered: str) -> None:
    assert SHIPPED.read_bytes() == rendered.encode("utf-8")


def test_render_default_config_is_deterministic() -> None:
    assert render_default_config() == render_default_config()

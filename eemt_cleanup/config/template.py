"""Render the documented default config file from the schema (``config init``)."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from eemt_cleanup.config.schema import Settings

HEADER = """\
# eemt-cleanup configuration. Every key is present with its default value.
#
# Precedence, lowest to highest: built-in defaults < this file < environment variables
# (EEMT_SUCCESS_RETENTION_HOURS, EEMT_DB_PATH, ...) < command-line flags.
# Relative paths resolve against the directory of this file.
# Check a file with:   eemt-cleanup config validate cleanup_config.yaml
# See every value and where it came from:   eemt-cleanup config show
"""


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        return json.dumps(value)
    dumped = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return dumped.replace("\n...", "").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 88 - len(indent))]


def _render(model: BaseModel, depth: int) -> list[str]:
    lines: list[str] = []
    indent = "  " * depth
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if info.description:
            lines.extend(_comment(info.description, indent))
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines.extend(_render(value, depth + 1))
            if depth == 0:
                lines.append("")
        else:
            # Quoted where YAML 1.1 would read the bare key as a boolean (`on`); our loader
            # takes either, other YAML tools need the quotes.
            key = f'"{name}"' if name in ("on", "off", "yes", "no") else name
            lines.append(f"{indent}{key}: {_scalar(value)}")
    return lines


def render_default_config() -> str:
    """The documented default configuration file, every key present."""
    return HEADER + "\n" + "\n".join(_render(Settings(), 0)).rstrip() + "\n"

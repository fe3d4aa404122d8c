"""``config show | validate | init``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from eemt_cleanup.cli.common import (
    ConfigOption,
    DbOption,
    DebugOption,
    JsonOption,
    ResultsOption,
    TempOption,
    UploadsOption,
    examples,
    fail,
    handle_errors,
    path_overrides,
)
from eemt_cleanup.errors import EXIT_USAGE

# Readable by everyone, like other files under /etc: it holds no secret by default.
CONFIG_FILE_MODE = 0o644

config_app = typer.Typer(
    help="Show, check or write the configuration.",
    no_args_is_help=True,
    epilog=examples(
        "eemt-cleanup config show",
        "eemt-cleanup config validate /etc/eemt-cleanup/cleanup_config.yaml",
        "eemt-cleanup config init /srv/eemt/cleanup_config.yaml",
    ),
    rich_markup_mode=None,
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@config_app.command(
    "show",
    epilog=examples(
        "eemt-cleanup config show",
        "EEMT_FAILED_RETENTION_HOURS=24 eemt-cleanup config show --json",
    ),
)
@handle_errors(json_arg="json_output")
def show(
    config: ConfigOption = None,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """The effective value of every key and where it came from (default, file, env, flag)."""
    from eemt_cleanup.cli.info_cmds import _render
    from eemt_cleanup.config.loader import load_config

    loaded = load_config(
        config_path=config, overrides=path_overrides(db_path, uploads_dir, results_dir, temp_dir)
    )
    values = _flatten(loaded.settings.model_dump())
    rows = [
        {
            "key": key,
            "value": value if json_output or isinstance(value, str) else json.dumps(value),
            "source": loaded.sources.get(key, "default"),
        }
        for key, value in values.items()
    ]
    if loaded.force_dry_run_source:
        rows.append(
            {
                "key": "dry_run (forced)",
                "value": loaded.force_dry_run,
                "source": loaded.force_dry_run_source,
            }
        )
    rows.append(
        {"key": "config file", "value": str(loaded.config_file or "none"), "source": "discovery"}
    )
    _render(rows, "Effective configuration", ["key", "value", "source"], json_output)


@config_app.command(
    "validate",
    epilog=examples(
        "eemt-cleanup config validate",
        "eemt-cleanup config validate ./cleanup_config.yaml",
    ),
)
@handle_errors()
def validate(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE",
            show_default=False,
            help="The file to check (default: the one discovery picks).",
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Check a config file: unknown keys, wrong types, impossible values, unsafe roots.
    Exit 0 when valid, 2 with one message naming the key otherwise. The environment is
    not applied, so the file is judged on its own."""
    from eemt_cleanup.config.loader import WorkingDirectory, find_config_file, load_config
    from eemt_cleanup.config.schema import shown_path

    path, _how = find_config_file(file, os.environ, WorkingDirectory(), explicit_name="FILE")
    if path is None:
        raise fail("no config file to validate (give a path, or see 'config init')", EXIT_USAGE)
    loaded = load_config(config_path=path, environ={})
    print(f"{shown_path(path)}: valid")
    for key in ("database", "uploads", "results", "temp"):
        value = getattr(loaded.roots, key)
        exists = value.is_file() if key == "database" else value.is_dir()
        if not exists:
            print(f"warning: paths.{key}: {shown_path(value)} does not exist (yet)")


@config_app.command(
    "init",
    epilog=examples(
        "eemt-cleanup config init",
        "eemt-cleanup config init /etc/eemt-cleanup/cleanup_config.yaml --force",
    ),
)
@handle_errors()
def init(
    path: Annotated[str, typer.Argument(metavar="PATH", help="Where to write it.")] = (
        "cleanup_config.yaml"
    ),
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace an existing file (a symlink is replaced, not followed)."
        ),
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Write the documented default config file (every key, with comments).

    What is at PATH is never opened: the file is written beside it and linked in (or, with
    --force, renamed over it), so a symlink there, dangling or not, is never written
    through and another name of a hard-linked file keeps its content."""
    from eemt_cleanup.config.loader import WorkingDirectory
    from eemt_cleanup.config.schema import shown_path
    from eemt_cleanup.config.template import render_default_config
    from eemt_cleanup.fs.safe_open import UnsafeFileError, write_new_file

    if not path.strip():
        raise fail("PATH: must not be empty", EXIT_USAGE)
    target = Path(path)
    if not target.is_absolute():
        target = WorkingDirectory().require(path, "PATH") / target
    shown = shown_path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise fail(
            f"cannot create the directory of {shown}: {error.strerror}", EXIT_USAGE
        ) from None
    data = render_default_config().encode("utf-8")
    try:
        write_new_file(target, data, mode=CONFIG_FILE_MODE, replace=force)
    except FileExistsError:
        raise fail(f"{shown} exists; not overwriting it without --force", EXIT_USAGE) from None
    except UnsafeFileError as error:
        raise fail(f"{shown} {error.reason}: not writing there", EXIT_USAGE) from None
    except OSError as error:
        raise fail(f"cannot write {shown}: {error.strerror}", EXIT_USAGE) from None
    print(f"wrote {shown}")

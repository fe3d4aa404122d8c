"""Load the effective configuration: defaults < config file < environment < flags.

Every leaf value remembers where it came from, for ``config show`` and for error messages.
Relative paths from a config file resolve against the file's directory (cron runs from
``/``); relative paths from the environment, flags and defaults resolve against the working
directory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from eemt_cleanup.config.schema import Settings, default_tree
from eemt_cleanup.errors import ConfigError

CONFIG_FILE_NAME = "cleanup_config.yaml"
SYSTEM_CONFIG = Path("/etc/eemt-cleanup") / CONFIG_FILE_NAME
PATH_KEYS = ("paths.database", "paths.uploads", "paths.results", "paths.temp", "paths.logs")
ROOT_KEYS = ("paths.uploads", "paths.results", "paths.temp")

# Directories that must never be a deletion root, whatever the config says.
SYSTEM_DIRECTORIES = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/bin",
        "/usr/lib",
        "/usr/local",
        "/usr/sbin",
        "/usr/share",
        "/var",
        "/var/cache",
        "/var/lib",
        "/var/log",
        "/var/mail",
        "/var/run",
        "/var/spool",
        "/var/tmp",
        "/dev/shm",
    }
)

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", ""})

DEFAULT_SOURCE = "default"


def parse_bool(text: str, name: str) -> bool:
    """Read an environment boolean (true/false, yes/no, on/off, 1/0); else raise ConfigError."""
    word = text.strip().strip("'\"").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: must be true or false, got {text!r}")


def _parse_number(text: str, name: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text.strip().strip("'\""))
    except ValueError:
        label = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}: must be {label}, got {text!r}") from None


def _unquote(text: str, _name: str) -> str:
    return text.strip().strip("'\"")


# Environment variable -> (dotted key, parser). EEMT_CLEANUP_CONFIG and EEMT_CLEANUP_DRY_RUN
# are not keys: they choose the file and force a dry run.
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "EEMT_SUCCESS_RETENTION_DAYS": (
        "retention.successful_jobs.hours",
        lambda t, n: _parse_number(t, n, float) * 24,
    ),
    "EEMT_SUCCESS_RETENTION_HOURS": (
        "retention.successful_jobs.hours",
        lambda t, n: _parse_number(t, n, float),
    ),
    "EEMT_FAILED_RETENTION_HOURS": (
        "retention.failed_jobs.hours",
        lambda t, n: _parse_number(t, n, float),
    ),
    "EEMT_ENABLE_AUTO_CLEANUP": ("schedule.enabled", parse_bool),
    "EEMT_CLEANUP_SCHEDULE": ("schedule.cron", _unquote),
    "EEMT_CLEANUP_LOG_LEVEL": ("logging.level", lambda t, n: _unquote(t, n).upper()),
    "EEMT_CLEANUP_BATCH_SIZE": ("performance.batch_size", lambda t, n: _parse_number(t, n, int)),
    "EEMT_CLEANUP_WORKERS": ("performance.max_workers", lambda t, n: _parse_number(t, n, int)),
    "EEMT_DB_PATH": ("paths.database", _unquote),
    "EEMT_UPLOADS_DIR": ("paths.uploads", _unquote),
    "EEMT_RESULTS_DIR": ("paths.results", _unquote),
    "EEMT_TEMP_DIR": ("paths.temp", _unquote),
}
CONFIG_ENV = "EEMT_CLEANUP_CONFIG"
DRY_RUN_ENV = "EEMT_CLEANUP_DRY_RUN"


@dataclass(frozen=True)
class Roots:
    """The deletion roots and protected paths, resolved once (symlinks followed) at start."""

    database: Path
    uploads: Path
    results: Path
    temp: Path
    logs: Path


@dataclass
class LoadedConfig:
    """The effective settings, where each value came from, and the resolved roots."""

    settings: Settings
    sources: dict[str, str]
    config_file: Path | None
    roots: Roots
    force_dry_run: bool = False
    force_dry_run_source: str | None = None
    notes: list[str] = field(default_factory=list)


def find_config_file(
    explicit: str | Path | None, environ: Mapping[str, str], cwd: Path
) -> tuple[Path | None, str]:
    """Pick the config file: --config, else $EEMT_CLEANUP_CONFIG, else ./, else /etc.

    Returns the path (or None: defaults only) and how it was chosen. Raises ConfigError when a
    file named explicitly does not exist.
    """
    if explicit is not None:
        path = _absolute(Path(explicit), cwd)
        if not path.is_file():
            raise ConfigError(f"--config: no such file: {path}")
        return path, "--config"
    named = environ.get(CONFIG_ENV, "").strip()
    if named:
        path = _absolute(Path(named), cwd)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}: no such file: {path}")
        return path, CONFIG_ENV
    for candidate, how in (
        (cwd / CONFIG_FILE_NAME, "./" + CONFIG_FILE_NAME),
        (SYSTEM_CONFIG, str(SYSTEM_CONFIG)),
    ):
        if candidate.is_file():
            return candidate, how
    return None, "none"


def _absolute(path: Path, base: Path) -> Path:
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML config file into a mapping; raise ConfigError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    import yaml  # only when there is a file to read: a flags-only run never loads it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested sections into dotted keys (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_leaves(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _merge_file(
    tree: dict[str, Any],
    data: Mapping[str, Any],
    sources: dict[str, str],
    path: Path,
    prefix: str = "",
) -> None:
    """Overlay the file's values; unknown keys are kept so validation can name them."""
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        current = tree.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge_file(current, value, sources, path, dotted + ".")
            continue
        if dotted in PATH_KEYS and isinstance(value, str) and value.strip():
            value = str(_absolute(Path(value), path.parent))
        tree[key] = copy.deepcopy(value)
        for leaf in _leaves({key: value}, prefix) if isinstance(value, Mapping) else [dotted]:
            sources[leaf] = f"file {path}"


def load_config(
    *,
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, tuple[Any, str]] | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Build the effective configuration.

    ``overrides`` maps dotted keys to ``(value, flag name)`` from the command line.
    Raises ConfigError (naming the key, the bad value and its source) on any invalid input.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    tree = default_tree()
    sources = dict.fromkeys(_leaves(tree), DEFAULT_SOURCE)
    for key in PATH_KEYS:
        _set(tree, key, str(_absolute(Path(_leaves(tree)[key]), cwd)))

    config_file, _how = find_config_file(config_path, environ, cwd)
    if config_file is not None:
        _merge_file(tree, read_config_file(config_file), sources, config_file)

    _apply_environment(tree, sources, environ, cwd)
    for key, (value, flag) in (overrides or {}).items():
        if value is None:
            continue
        if key in PATH_KEYS:
            value = str(_absolute(Path(value), cwd))
        _set(tree, key, value)
        sources[key] = f"flag {flag}"

    if sources["paths.logs"] == DEFAULT_SOURCE:
        # With no logs path given anywhere, log beside the data, not in whatever directory
        # cron happens to start in.
        _set(tree, "paths.logs", os.path.join(os.path.dirname(tree["paths"]["database"]), "logs"))
        sources["paths.logs"] = "default (beside paths.database)"
    settings = _validate(tree, sources)
    roots = resolve_roots(settings, sources, config_file)
    force, force_source = _forced_dry_run(environ)
    return LoadedConfig(
        settings=settings,
        sources=sources,
        config_file=config_file,
        roots=roots,
        force_dry_run=force,
        force_dry_run_source=force_source,
    )


def _apply_environment(
    tree: dict[str, Any], sources: dict[str, str], environ: Mapping[str, str], cwd: Path
) -> None:
    # HOURS is listed after DAYS, so it wins when an old deployment sets both.
    for name, (key, parse) in ENVIRONMENT.items():
        raw = environ.get(name)
        if raw is None or raw.strip() == "":
            continue
        value = parse(raw, name)
        if key in PATH_KEYS:
            value = str(_absolute(Path(value), cwd))
        _set(tree, key, value)
        sources[key] = f"env {name}"


def _forced_dry_run(environ: Mapping[str, str]) -> tuple[bool, str | None]:
    raw = environ.get(DRY_RUN_ENV)
    if raw is None:
        return False, None
    return parse_bool(raw, DRY_RUN_ENV), f"env {DRY_RUN_ENV}"


def _validate(tree: dict[str, Any], sources: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(_describe(error, sources)) from None


def _describe(error: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"])
        # A bad list item ("recipients.0") takes the source of its list.
        named = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
        message = _plain_message(problem)
        source = sources.get(named) or _nearest_source(named, sources)
        lines.append(f"{key}: {message}" + (f" (from {source})" if source else ""))
    return "invalid configuration: " + "; ".join(lines)


_TYPE_WORDS = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "model_type": "must be a section (a mapping of keys)",
    "dict_type": "must be a section (a mapping of keys)",
    "finite_number": "must be a finite number",
}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _plain_message(problem: Any) -> str:
    """Pydantic's error in an operator's words: ``must be >= 0, got -5``."""
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "value_error":
        return str(problem["msg"]).removeprefix("Value error, ")
    if kind == "greater_than_equal":
        message = f"must be >= {_number(context.get('ge'))}"
    elif kind == "less_than_equal":
        message = f"must be <= {_number(context.get('le'))}"
    elif kind == "literal_error":
        message = f"must be one of {context.get('expected')}"
    else:
        message = _TYPE_WORDS.get(kind, str(problem["msg"]))
    return f"{message}, got {problem.get('input')!r}"


def _nearest_source(key: str, sources: Mapping[str, str]) -> str | None:
    for dotted, source in sources.items():
        if dotted.startswith(key + ".") and source != DEFAULT_SOURCE:
            return source
    return None


def resolve_roots(
    settings: Settings, sources: Mapping[str, str], config_file: Path | None
) -> Roots:
    """Resolve the roots once (following symlinks) and refuse unsafe layouts.

    Raises ConfigError naming the key when a root is ``/`` or a system directory, when two
    roots overlap, or when the database, the logs or the config file lie inside a root.
    """
    paths = settings.paths
    roots = Roots(
        database=Path(os.path.realpath(paths.database)),
        uploads=Path(os.path.realpath(paths.uploads)),
        results=Path(os.path.realpath(paths.results)),
        temp=Path(os.path.realpath(paths.temp)),
        logs=Path(os.path.realpath(paths.logs)),
    )
    named = {
        "paths.uploads": roots.uploads,
        "paths.results": roots.results,
        "paths.temp": roots.temp,
    }
    for key, root in named.items():
        if str(root) in SYSTEM_DIRECTORIES:
            raise ConfigError(
                f"{key}: refusing a system directory as a deletion root: {root}"
                f" (from {sources.get(key, DEFAULT_SOURCE)})"
            )
    keys = list(named)
    for index, first in enumerate(keys):
        for second in keys[index + 1 :]:
            if _overlap(named[first], named[second]):
                raise ConfigError(
                    f"{first} and {second} overlap ({named[first]} and "
                    f"{named[second]}): each root must be separate"
                )
    protected = {"paths.database": roots.database, "paths.logs": roots.logs}
    if config_file is not None:
        protected["config file"] = Path(os.path.realpath(config_file))
    for key, path in protected.items():
        for root_key, root in named.items():
            if path == root or root in path.parents:
                raise ConfigError(
                    f"{key}: {path} must not be inside the deletion root {root_key} ({root})"
                )
    return roots


def _overlap(first: Path, second: Path) -> bool:
    return first == second or first in second.parents or second in first.parents

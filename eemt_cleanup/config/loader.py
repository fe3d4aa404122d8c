"""Load the effective configuration: defaults < config file < environment < flags.

Every leaf value remembers where it came from, for ``config show`` and for error messages.
Relative paths from a config file resolve against the file's directory (cron runs from
``/``); relative paths from the environment, flags and defaults resolve against the working
directory, which is only looked up when such a path needs it (it may have been removed).

A config file is small, plain YAML: it is read (at most ``MAX_CONFIG_BYTES``) only when it
is a regular file, and aliases, merge keys, duplicate keys and deep nesting are refused
with their line, so no file can make the loader expand, block or recurse without bound.
"""

from __future__ import annotations

import copy
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from eemt_cleanup.config.schema import (
    SECRET_KEYS,
    Settings,
    cut,
    default_tree,
    quote,
    redact,
    shorten,
    shown_path,
)
from eemt_cleanup.errors import ConfigError
from eemt_cleanup.fs.safe_open import describe_kind

if TYPE_CHECKING:
    import yaml

CONFIG_FILE_NAME = "cleanup_config.yaml"
SYSTEM_CONFIG = Path("/etc/eemt-cleanup") / CONFIG_FILE_NAME
PATH_KEYS = ("paths.database", "paths.uploads", "paths.results", "paths.temp", "paths.logs")
# Optional file paths (empty = off) that, given in a config file, resolve against its directory.
OPTIONAL_PATH_KEYS = ("metrics.textfile", "notifications.email.password_file")

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

# A generated file with every key and comment is about 7 KiB; anything near this cap is not
# a hand-written config, and reading stops one byte past it (a huge file or a device is
# never read whole).
MAX_CONFIG_BYTES = 256 * 1024
# The schema is four levels deep; a file nested far deeper is refused before the composer's
# recursion could exhaust the stack.
MAX_NESTING = 32
# How many validation problems one message lists before "and N more".
MAX_PROBLEMS = 5
MERGE_TAG = "tag:yaml.org,2002:merge"
BOOL_TAG = "tag:yaml.org,2002:bool"
STR_TAG = "tag:yaml.org,2002:str"
KEY_WORDS = frozenset({"on"})
EMPTY_VARIABLE = "is set but empty (unset it or give a path)"


def parse_bool(text: str, name: str) -> bool:
    """Read an environment boolean (true/false, yes/no, on/off, 1/0); else raise ConfigError."""
    word = text.strip().strip("'\"").lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}: must be true or false, got {quote(text)}")


def _parse_number(text: str, name: str, kind: Callable[[str], Any]) -> Any:
    try:
        return kind(text.strip().strip("'\""))
    except ValueError:
        label = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{name}: must be {label}, got {quote(text)}") from None


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


class WorkingDirectory:
    """The working directory, looked up only when something needs it.

    Given a path, that path is used; else the process's working directory is asked for on
    first use. Cron, systemd or a shell may start us in a directory that has since been
    removed: that is only an error for a relative path, never for a run whose paths are all
    absolute.
    """

    def __init__(self, given: Path | None = None) -> None:
        self._path = given
        self._looked = given is not None
        self._reason = ""

    def get(self) -> Path | None:
        """The working directory, or None when it cannot be determined."""
        if not self._looked:
            self._looked = True
            try:
                self._path = Path(os.getcwd())
            except OSError as error:
                self._reason = error.strerror or str(error)
        return self._path

    def absolute(self, path: str | Path, named: str, origin: str = "") -> Path:
        """``path`` made absolute (normalised) against the working directory.

        ``named`` (a key, flag or variable) and ``origin`` (e.g. `` (default)``) are for the
        message. Raises ConfigError when ``path`` is relative and the working directory is
        unavailable.
        """
        if os.path.isabs(path):
            return Path(os.path.normpath(path))
        return Path(os.path.normpath(self.require(path, named, origin) / path))

    def require(self, path: str | Path, named: str, origin: str = "") -> Path:
        """The working directory, which the relative ``path`` (of ``named``) needs.

        Raises ConfigError naming ``named`` when it is unavailable.
        """
        base = self.get()
        if base is None:
            raise ConfigError(
                f"{named}: {quote(str(path))}{origin} is relative, but the working directory"
                f" is unavailable ({self._reason}: was it removed?); give an absolute path or"
                " run from an existing directory"
            )
        return base


def find_config_file(
    explicit: str | Path | None,
    environ: Mapping[str, str],
    cwd: Path | WorkingDirectory | None = None,
    *,
    explicit_name: str = "--config",
) -> tuple[Path | None, str]:
    """Pick the config file: ``explicit`` (--config), else $EEMT_CLEANUP_CONFIG, else ./,
    else /etc. The ``./`` step is skipped when the working directory is gone.

    Returns the path (or None: defaults only) and how it was chosen. Raises ConfigError
    (naming ``explicit_name`` or the variable) when a name is empty, when a file named
    explicitly does not exist, or when the chosen path is not a regular file.
    """
    working = cwd if isinstance(cwd, WorkingDirectory) else WorkingDirectory(cwd)
    if explicit is not None:
        text = os.fspath(explicit)
        if not text.strip():
            raise ConfigError(f"{explicit_name}: must not be empty")
        path = working.absolute(text, explicit_name)
        _require_regular_file(path, explicit_name, required=True)
        return path, explicit_name
    named = environ.get(CONFIG_ENV)
    if named is not None:
        if not named.strip():
            raise ConfigError(f"{CONFIG_ENV}: {EMPTY_VARIABLE}")
        path = working.absolute(named.strip(), CONFIG_ENV)
        _require_regular_file(path, CONFIG_ENV, required=True)
        return path, CONFIG_ENV
    here = working.get()
    candidates = [] if here is None else [(here / CONFIG_FILE_NAME, "./" + CONFIG_FILE_NAME)]
    candidates.append((SYSTEM_CONFIG, str(SYSTEM_CONFIG)))
    for candidate, how in candidates:
        if _require_regular_file(candidate, how, required=False):
            return candidate, how
    return None, "none"


def _require_regular_file(path: Path, named: str, *, required: bool) -> bool:
    """Whether ``path`` is a regular file (symlinks followed).

    Raises ConfigError naming ``named`` when it exists but is something else (a directory,
    a FIFO that would block the read, a device), and, when ``required``, when it is
    missing or cannot be looked at.
    """
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if required:
            raise ConfigError(f"{named}: no such file: {shown_path(path)}") from None
        return False
    except (OSError, ValueError) as error:
        if required:
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise ConfigError(f"{named}: cannot read {shown_path(path)}: {reason}") from None
        return False  # as before: an unreadable candidate is not ours to use
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"{named}: {shown_path(path)} is {describe_kind(info.st_mode)}, not a regular file"
        )
    return True


def _absolute(path: Path, base: Path) -> Path:
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _blank(value: object) -> bool:
    """Whether a path value is missing: null, empty or only white space."""
    return value is None or (isinstance(value, str) and not value.strip())


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML config file into a mapping.

    Raises ConfigError naming the file (and the line, where there is one) when it is not a
    regular file, is larger than MAX_CONFIG_BYTES, is not UTF-8, is not valid YAML, uses
    aliases or merge keys, repeats a key, nests too deeply or is not a mapping.
    """
    shown = shown_path(path)
    raw = _read_bounded(path, shown)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{shown}: cannot read config file: {error}") from None
    data = _parse_plain_yaml(text, shown)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{shown}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _read_bounded(path: Path, shown: str) -> bytes:
    """At most MAX_CONFIG_BYTES of the regular file ``path``; ConfigError otherwise."""
    try:
        # O_NONBLOCK: a FIFO swapped in after discovery opens without waiting for a writer,
        # and fstat then refuses it; O_NOCTTY: a terminal never becomes ours.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read config file: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{shown}: config file is {describe_kind(info.st_mode)}, not a regular file"
            )
        chunks: list[bytes] = []
        total = 0
        while total <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as error:
        raise ConfigError(f"{shown}: cannot read config file: {error.strerror}") from None
    finally:
        os.close(fd)
    if total > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{shown}: config file is larger than {MAX_CONFIG_BYTES // 1024} KiB: refused"
            " (a config file is small, plain YAML)"
        )
    return b"".join(chunks)


class _Refused(Exception):
    """A construct a config file may not use, with where it is."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def _where(mark: Any) -> str:
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _parse_plain_yaml(text: str, shown: str) -> Any:
    """The document in ``text``, refusing what a plain config file never needs."""
    import yaml  # only when there is a file to read: a flags-only run never loads it

    loader: yaml.SafeLoader | None = None
    try:
        loader = _plain_loader()(text)  # the reader checks every character here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_plain(node, "")
        return loader.construct_document(node)
    except _Refused as refused:
        raise ConfigError(f"{shown}{_where(refused.mark)}: {refused.message}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(
            f"{shown}{_where(mark)}: not valid YAML: {shorten(problem, 100)}"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


_LOADER: type[yaml.SafeLoader] | None = None


def _plain_loader() -> type[yaml.SafeLoader]:
    """A SafeLoader whose composer refuses aliases and deep nesting (built on first use,
    so that yaml is imported only when a file is read)."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class PlainLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            # Refused here, before anything is built: an alias shares a node, and sharing
            # is what lets a 1 KB "billion laughs" file expand into gigabytes in whatever
            # walks the result (validation, messages).
            if self.check_event(yaml.AliasEvent):
                event = self.current_event  # what check_event just peeked at
                raise _Refused(
                    f"aliases are not allowed in a config file (*{shorten(event.anchor)}):"
                    " write the value out",
                    event.start_mark,
                )
            self.depth += 1
            try:
                if self.depth > MAX_NESTING and self.check_event():
                    raise _Refused(
                        f"nested more than {MAX_NESTING} levels deep: refused",
                        self.current_event.start_mark,
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (ValueError, TypeError, OverflowError) as error:
                # e.g. "!!int abc" or "!!timestamp 2024-13-45": the constructors raise
                # plain errors without a position.
                raise _Refused(
                    f"not valid YAML: cannot read {quote(node.value)} as {shorten(node.tag)}:"
                    f" {shorten(error)}",
                    node.start_mark,
                ) from None

    _LOADER = PlainLoader
    return PlainLoader


def _check_plain(node: Any, prefix: str, visited: set[int] | None = None) -> None:
    """Refuse merge keys and duplicate keys anywhere in the composed document.

    Aliases were refused by the composer, so this is a tree at most MAX_NESTING deep; each
    node is still visited once only, so that even a graph of shared nodes costs its size,
    not its expansion.
    """
    import yaml

    visited = set() if visited is None else visited
    if id(node) in visited:
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                raise _Refused(
                    "merge keys (<<) are not allowed in a config file: write the keys out",
                    key_node.start_mark,
                )
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.tag == BOOL_TAG
                and key_node.value.lower() in KEY_WORDS
            ):
                # YAML 1.1 reads a bare `on:` key as the boolean true; in a config file it
                # is the key "on" (notifications.<channel>.on).
                key_node.tag = STR_TAG
            dotted = f"{prefix}{key_node.value}" if isinstance(key_node, yaml.ScalarNode) else ""
            if isinstance(key_node, yaml.ScalarNode):
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise _Refused(
                        f"duplicate key {shorten(dotted)} (first at line"
                        f" {seen[identity].line + 1})",
                        key_node.start_mark,
                    )
                seen[identity] = key_node.start_mark
            _check_plain(value_node, f"{dotted or prefix + '?'}.", visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_plain(item, f"{prefix}{index}.", visited)


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
    """Overlay the file's values; unknown keys are kept so validation can name them.

    Raises ConfigError when a section is given as something other than a mapping, or a
    path is null, empty or blank (later layers must not hide a broken file).
    """
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        current = tree.get(key)
        if isinstance(current, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"invalid configuration: {shorten(dotted)}: must be a section (a mapping"
                    f" of keys), got {quote(value)} (from file {shown_path(path)})"
                )
            _merge_file(current, value, sources, path, dotted + ".")
            continue
        if dotted in PATH_KEYS:
            if _blank(value):
                raise ConfigError(
                    f"invalid configuration: {dotted}: must not be empty"
                    f" (from file {shown_path(path)})"
                )
            if isinstance(value, str):
                value = str(_absolute(Path(value), path.parent))
        elif dotted in OPTIONAL_PATH_KEYS and isinstance(value, str) and value.strip():
            value = str(_absolute(Path(value.strip()), path.parent))
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
    ``cwd`` is the directory relative paths from defaults, the environment and flags
    resolve against (default: the process's, looked up only if one is relative).
    Raises ConfigError (naming the key, the bad value and its source) on any invalid input,
    including a path that is empty, blank or null wherever it comes from.
    """
    environ = os.environ if environ is None else environ
    working = WorkingDirectory(cwd)
    tree = default_tree()
    sources = dict.fromkeys(_leaves(tree), DEFAULT_SOURCE)

    config_file, _how = find_config_file(config_path, environ, working)
    if config_file is not None:
        _merge_file(tree, read_config_file(config_file), sources, config_file)

    _apply_environment(tree, sources, environ, working)
    for key, (value, flag) in (overrides or {}).items():
        if value is None:
            continue
        if key in PATH_KEYS:
            value = _flag_path(value, flag, working)
        _set(tree, key, value)
        sources[key] = f"flag {flag}"

    _resolve_default_paths(tree, sources, working)
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


def _flag_path(value: Any, flag: str, working: WorkingDirectory) -> Any:
    """A path flag's value made absolute; ConfigError naming the flag when it is blank."""
    if not isinstance(value, str | os.PathLike):
        return value  # not a path at all: validation names the key and the value
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{flag}: must not be empty")
    return str(working.absolute(text, flag))


def _resolve_default_paths(
    tree: dict[str, Any], sources: dict[str, str], working: WorkingDirectory
) -> None:
    """Make the paths nobody gave absolute: against the working directory, and the logs
    beside the database (not in whatever directory cron happens to start in)."""
    paths = tree["paths"]
    for key in PATH_KEYS:
        name = key.removeprefix("paths.")
        if sources[key] == DEFAULT_SOURCE and name != "logs":
            paths[name] = str(working.absolute(paths[name], key, " (default)"))
    database = paths["database"]
    if sources["paths.logs"] == DEFAULT_SOURCE and isinstance(database, str):
        paths["logs"] = os.path.join(os.path.dirname(database), "logs")
        sources["paths.logs"] = "default (beside paths.database)"


def _apply_environment(
    tree: dict[str, Any],
    sources: dict[str, str],
    environ: Mapping[str, str],
    working: WorkingDirectory,
) -> None:
    # HOURS is listed after DAYS, so it wins when an old deployment sets both.
    for name, (key, parse) in ENVIRONMENT.items():
        raw = environ.get(name)
        if raw is None:
            continue
        if key in PATH_KEYS:
            # A path variable set to nothing is a mistake (a template left unfilled), not a
            # request for the working directory and not to be skipped silently.
            text = _unquote(raw, name)
            if not text.strip():
                raise ConfigError(f"{name}: {EMPTY_VARIABLE}")
            value: Any = str(working.absolute(text, name))
        elif raw.strip() == "":
            continue
        else:
            value = parse(raw, name)
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
    """One line naming each problem's key, value and source (the first MAX_PROBLEMS)."""
    problems = error.errors()
    lines = []
    for problem in problems[:MAX_PROBLEMS]:
        key = shorten(".".join(str(part) for part in problem["loc"]))
        # A bad list item ("recipients.0") takes the source of its list.
        named = ".".join(str(part) for part in problem["loc"] if not isinstance(part, int))
        if named in SECRET_KEYS:
            # A webhook or apprise URL is a credential: never echoed, even when it is wrong.
            problem = {**problem, "input": _redacted(named, problem.get("input"))}
        message = _plain_message(problem)
        source = sources.get(named) or _nearest_source(named, sources)
        shown = f" (from {_shown_source(source)})" if source else ""
        lines.append(f"{key}: {message}{shown}")
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"and {len(problems) - MAX_PROBLEMS} more")
    return "invalid configuration: " + "; ".join(lines)


def _redacted(key: str, value: Any) -> Any:
    if isinstance(value, str | list):
        return redact(key, value)
    return "***"


def _shown_source(source: str) -> str:
    kind, _, where = source.partition(" ")
    return f"file {shown_path(where)}" if kind == "file" else source


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
        # Our validators quote the value themselves (schema.quote: escaped and cut).
        return cut(str(problem["msg"]).removeprefix("Value error, "), 200)
    if kind == "greater_than_equal":
        message = f"must be >= {_number(context.get('ge'))}"
    elif kind == "greater_than":
        message = f"must be > {_number(context.get('gt'))}"
    elif kind == "less_than_equal":
        message = f"must be <= {_number(context.get('le'))}"
    elif kind == "less_than":
        message = f"must be < {_number(context.get('lt'))}"
    elif kind == "literal_error":
        message = f"must be one of {context.get('expected')}"
    else:
        message = _TYPE_WORDS.get(kind, str(problem["msg"]))
    return f"{message}, got {quote(problem.get('input'))}"


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
                f"{key}: refusing a system directory as a deletion root: {shown_path(root)}"
                f" (from {_shown_source(sources.get(key, DEFAULT_SOURCE))})"
            )
    keys = list(named)
    for index, first in enumerate(keys):
        for second in keys[index + 1 :]:
            if _overlap(named[first], named[second]):
                raise ConfigError(
                    f"{first} and {second} overlap ({shown_path(named[first])} and "
                    f"{shown_path(named[second])}): each root must be separate"
                )
    protected = {"paths.database": roots.database, "paths.logs": roots.logs}
    if config_file is not None:
        protected["config file"] = Path(os.path.realpath(config_file))
    for key, path in protected.items():
        for root_key, root in named.items():
            if path == root or root in path.parents:
                raise ConfigError(
                    f"{key}: {shown_path(path)} must not be inside the deletion root"
                    f" {root_key} ({shown_path(root)})"
                )
    return roots


def _overlap(first: Path, second: Path) -> bool:
    return first == second or first in second.parents or second in first.parents

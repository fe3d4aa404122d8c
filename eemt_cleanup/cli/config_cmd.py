"""``config show | validate | init``."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from eemt_cleanup.cli.common import (
    BatchSizeOption,
    ConfigOption,
    DbOption,
    DebugOption,
    DryRunOption,
    EventsOption,
    FailedRetentionOption,
    JobsOption,
    JsonOption,
    QuietOption,
    ReportsOption,
    ResultsOption,
    RunLimitOption,
    SuccessRetentionOption,
    TempOption,
    TriggerOption,
    UploadsOption,
    VerboseOption,
    WorkersOption,
    check_run_flags,
    examples,
    fail,
    handle_errors,
    run_overrides,
)
from eemt_cleanup.errors import EXIT_USAGE, ConfigError

# What ``run`` records as its trigger when --trigger is not given.
DEFAULT_TRIGGER = "cli"
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


@config_app.command(
    "show",
    epilog=examples(
        "eemt-cleanup config show",
        "EEMT_FAILED_RETENTION_HOURS=24 eemt-cleanup config show --json",
        "eemt-cleanup config show --workers 8 --dry-run   # a run's flags, pasted",
    ),
)
@handle_errors(json_arg="json_output")
def show(
    dry_run: DryRunOption = False,
    config: ConfigOption = None,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    success_retention: SuccessRetentionOption = None,
    failed_retention: FailedRetentionOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    job: JobsOption = None,
    limit: RunLimitOption = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
    events: EventsOption = None,
    trigger: TriggerOption = DEFAULT_TRIGGER,
    reports: ReportsOption = True,
) -> None:
    """The effective value of every key and where it came from (default, file, env, flag).

    Every flag of 'run' is accepted, so a run's command line can be pasted: the flags that
    set a key show as that key's source (--workers 8: performance.max_workers 8, flag
    --workers); the others, when given, are listed under Run Options as what the run would
    do with them (run.dry_run, run.jobs, run.limit, ...)."""
    from eemt_cleanup.config.loader import _leaves, load_config
    from eemt_cleanup.config.schema import redact
    from eemt_cleanup.report.info_tables import config_tables

    check_run_flags(quiet=quiet, verbose=verbose, events=events)
    loaded = load_config(
        config_path=config,
        overrides=run_overrides(
            db_path,
            uploads_dir,
            results_dir,
            temp_dir,
            success_retention,
            failed_retention,
            workers,
            batch_size,
        ),
    )
    rows: list[dict[str, Any]] = [
        # Secrets (webhook and apprise URLs) keep only their scheme and host.
        {"key": key, "value": redact(key, value), "source": loaded.sources.get(key, "default")}
        for key, value in _leaves(loaded.settings.model_dump()).items()
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
    given = {
        "run.dry_run": (dry_run or None, "--dry-run"),
        "run.jobs": (list(job) if job else None, "--job"),
        "run.limit": (limit, "--limit"),
        "run.verbose": (verbose or None, "--verbose"),
        "run.quiet": (quiet or None, "--quiet"),
        "run.events": (events, "--events"),
        "run.trigger": (None if trigger == DEFAULT_TRIGGER else trigger, "--trigger"),
        "run.reports": (None if reports else False, "--no-reports"),
    }
    run_options = [
        {"key": key, "value": value, "source": f"flag {flag}"}
        for key, (value, flag) in given.items()
        if value is not None
    ]
    if json_output:
        from eemt_cleanup.report.json_out import dumps

        print(dumps([*rows, *run_options]))
        return
    from eemt_cleanup.report.info_tables import show as show_tables
    from eemt_cleanup.report.logs import use_rich

    tables = config_tables(rows, run_options, config_file=loaded.config_file, ids={"run.jobs"})
    show_tables(tables, stream=sys.stdout, rich=use_rich())


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
    """Check a config file: unknown keys, wrong types, impossible values, unsafe roots, and
    roots that 'run' would refuse (missing, not a directory, cannot be opened). Exit 0 when
    valid; 2 otherwise, with a line naming the key of each problem. The environment is not
    applied, so the file is judged on its own."""
    from eemt_cleanup.config.loader import WorkingDirectory, find_config_file, load_config
    from eemt_cleanup.config.schema import shown_path

    path, _how = find_config_file(file, os.environ, WorkingDirectory(), explicit_name="FILE")
    if path is None:
        raise fail("no config file to validate (give a path, or see 'config init')", EXIT_USAGE)
    loaded = load_config(config_path=path, environ={})
    problems = root_problems(loaded)
    if problems:
        for problem in problems[:-1]:
            fail(problem, EXIT_USAGE)
        raise fail(problems[-1], EXIT_USAGE)
    print(f"{shown_path(path)}: valid")
    if not loaded.roots.database.is_file():
        print(f"warning: paths.database: {shown_path(loaded.roots.database)} does not exist (yet)")


def root_problems(loaded: Any) -> list[str]:
    """What 'run' would refuse about each deletion root of ``loaded``, one line per root
    named by its key: missing, not a directory, or not opened without following a symlink
    (the way 'run' opens it)."""
    from eemt_cleanup.config.schema import shown_path
    from eemt_cleanup.fs.safe_open import describe_kind
    from eemt_cleanup.models import Root
    from eemt_cleanup.site import open_roots

    problems = []
    for root in Root:
        key = f"paths.{root}"
        path = getattr(loaded.roots, root)
        origin = f" (from {loaded.sources.get(key, 'default')})"
        try:
            info = os.stat(path)
        except OSError as error:
            reason = "does not exist" if error.errno == errno.ENOENT else error.strerror
            problems.append(f"{key}: {shown_path(path)} {reason}{origin}")
            continue
        if not stat.S_ISDIR(info.st_mode):
            kind = "a regular file" if stat.S_ISREG(info.st_mode) else describe_kind(info.st_mode)
            problems.append(f"{key}: {shown_path(path)} is {kind}, not a directory{origin}")
            continue
        try:
            descriptors = open_roots({root: path})
        except ConfigError as error:
            problems.append(f"{error}{origin}")
            continue
        for descriptor in descriptors.values():
            os.close(descriptor)
    return problems


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

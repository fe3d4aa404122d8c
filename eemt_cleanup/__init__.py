"""eemt-cleanup: a safe, fast, honest janitor for EEMT web-interface job data.

The Python API (the CLI, the daemon and the HTTP API are its callers)::

    import eemt_cleanup

    config = eemt_cleanup.load_config("/srv/eemt/cleanup_config.yaml", failed_retention=24)
    report = eemt_cleanup.run_cleanup(config, on_event=print)
    print(report.summary().to_json())

Everything is imported on first use, so ``import eemt_cleanup.fs.worker`` (what a deletion
worker process runs) and ``eemt-cleanup --help`` stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from eemt_cleanup.config.loader import LoadedConfig
    from eemt_cleanup.engine import RunOptions
    from eemt_cleanup.models import RunReport
    from eemt_cleanup.stocktake import Inventory

# Keyword overrides of load_config(): the command line's flags, by their Python names.
FLAG_KEYS = {
    "db_path": ("paths.database", "--db-path"),
    "uploads_dir": ("paths.uploads", "--uploads-dir"),
    "results_dir": ("paths.results", "--results-dir"),
    "temp_dir": ("paths.temp", "--temp-dir"),
    "success_retention": ("retention.successful_jobs.hours", "--success-retention"),
    "failed_retention": ("retention.failed_jobs.hours", "--failed-retention"),
    "workers": ("performance.max_workers", "--workers"),
    "batch_size": ("performance.batch_size", "--batch-size"),
}


def load_config(path: str | Path | None = None, **overrides: Any) -> LoadedConfig:
    """The effective configuration, with the CLI's precedence: defaults < config file
    (``path``, else ``$EEMT_CLEANUP_CONFIG``, ``./cleanup_config.yaml``,
    ``/etc/eemt-cleanup/cleanup_config.yaml``) < environment < ``overrides``.

    ``overrides`` are the command line's flags by their Python names (``db_path=``,
    ``uploads_dir=``, ``results_dir=``, ``temp_dir=``, ``success_retention=`` and
    ``failed_retention=`` in hours, ``workers=``, ``batch_size=``), or any key with ``__``
    for its dots (``performance__busy_timeout_seconds=10``). Raises ConfigError naming the
    key on any invalid value."""
    from eemt_cleanup.config.loader import load_config as load

    flags: dict[str, tuple[Any, str]] = {}
    for name, value in overrides.items():
        key = FLAG_KEYS[name][0] if name in FLAG_KEYS else name.replace("__", ".")
        flags[key] = (value, f"load_config({name}=)")
        if name == "workers" and value is not None and value > 1:
            flags["performance.parallel_delete"] = (True, "load_config(workers=)")
    return load(config_path=path, overrides=flags)


def run_cleanup(
    config: LoadedConfig,
    options: RunOptions | None = None,
    on_event: Callable[[Any], None] | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Run one cleanup (see :func:`eemt_cleanup.engine.run_cleanup`)."""
    from eemt_cleanup.engine import RunOptions as Options
    from eemt_cleanup.engine import run_cleanup as run

    return run(config, options or Options(trigger="api"), on_event, stop)


def plan(
    config: LoadedConfig,
    options: RunOptions | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> RunReport:
    """What a run would do, changing nothing: a dry run (``options.dry_run`` is forced)."""
    import dataclasses

    from eemt_cleanup.engine import RunOptions as Options
    from eemt_cleanup.engine import run_cleanup as run

    options = dataclasses.replace(options or Options(trigger="api"), dry_run=True)
    return run(config, options, on_event)


def inventory(
    config: LoadedConfig, *, measure: bool = True, store_sizes: bool = False
) -> Inventory:
    """What ``status`` shows: disk used per status, what is due now (what :func:`plan`
    would free), when the next job becomes due, the last run and one in progress.
    ``store_sizes`` writes the measured sizes to ``data_size_mb`` (as ``status`` does)."""
    from eemt_cleanup.stocktake import take_inventory

    return take_inventory(config, measure=measure, store_sizes=store_sizes)


def __getattr__(name: str) -> Any:
    # The API's types, imported on first use: eemt_cleanup.RunOptions, eemt_cleanup.events.
    if name in ("RunOptions", "StopFlag"):
        from eemt_cleanup import engine

        return getattr(engine, name)
    if name in ("RunReport", "RunSummary", "JobDetail", "Skip", "Outcome", "SkipReason"):
        from eemt_cleanup import models

        return getattr(models, name)
    raise AttributeError(f"module 'eemt_cleanup' has no attribute {name!r}")


__all__ = [
    "RunOptions",
    "RunReport",
    "StopFlag",
    "inventory",
    "load_config",
    "plan",
    "run_cleanup",
]

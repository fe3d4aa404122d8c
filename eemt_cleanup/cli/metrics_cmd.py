"""``metrics``: the Prometheus exposition, on stdout or written for node_exporter.

Cheap to import (the CLI imports it at start): prometheus_client and the store are loaded
only when the command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from eemt_cleanup.cli.common import ConfigOption, DbOption, DebugOption, examples, handle_errors
from eemt_cleanup.errors import ConfigError

if TYPE_CHECKING:
    from eemt_cleanup.config.loader import LoadedConfig

TEXTFILE_EXAMPLE = "/var/lib/node_exporter/textfile_collector/eemt_cleanup.prom"

METRICS_EPILOG = examples(
    "eemt-cleanup metrics                          # the exposition on stdout",
    "eemt-cleanup metrics | grep '^eemt_jobs_cleaned_total'",
    f"eemt-cleanup metrics --textfile {TEXTFILE_EXAMPLE}",
    "eemt-cleanup metrics -c /srv/eemt/cleanup_config.yaml --db-path /srv/eemt/jobs.db",
    after="Set metrics.textfile in cleanup_config.yaml to have every run and status write "
    "the file themselves. Counters (runs, jobs cleaned, bytes freed, files deleted) are sums "
    "over the database's run log, so they never reset between cron runs. Exit codes: 0 "
    "done, 2 no such database or the file cannot be written.",
)

TextfileOption = Annotated[
    str | None,
    typer.Option(
        "--textfile",
        metavar="PATH",
        show_default=False,
        help="Write the metrics to PATH (ending in .prom) instead of stdout, atomically: a "
        "temporary file in the same directory, then a rename, so node_exporter never reads "
        "half a file. It is mode 0644 whatever the umask (node_exporter runs as its own user); "
        "a symlink at PATH is replaced, never written through.",
    ),
]


@handle_errors()
def metrics(
    config: ConfigOption = None,
    db_path: DbOption = None,
    textfile: TextfileOption = None,
    debug: DebugOption = False,
) -> None:
    """Print the Prometheus metrics of the cleanup (runs, jobs cleaned per status, bytes
    freed, run durations, last success and exit code, storage use per status and root, free
    space, what is due, disk alerts), read from the jobs database.

    Prometheus cannot scrape a cron job that has already exited. node_exporter's textfile
    collector fills the gap: node_exporter serves every *.prom file in the directory named
    by its --collector.textfile.directory flag along with its own metrics, so Prometheus
    scrapes them from there. Write the file there with --textfile, e.g.:

    \b
      eemt-cleanup metrics --textfile /var/lib/node_exporter/textfile_collector/eemt_cleanup.prom

    or set metrics.textfile in the config to have every run and status write it. Storage
    gauges come from the latest usage sample, stored by each 'eemt-cleanup status' and, when
    metrics, alerts or notices are configured, by each run.
    """
    from eemt_cleanup.cli.common import path_overrides
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.metrics import render

    if textfile is not None and not textfile.endswith(".prom"):
        from eemt_cleanup.report.escape import printable

        raise ConfigError(
            f"--textfile {printable(textfile)}: must end in .prom (node_exporter reads only those)"
        )
    loaded = load_config(config_path=config, overrides=path_overrides(db_path, None, None, None))
    if textfile is None:
        print(render(loaded).decode("utf-8"), end="")
        return
    _write(loaded, textfile)


def _write(loaded: LoadedConfig, textfile: str) -> None:
    """Write the textfile; print ``wrote PATH``. Raises ConfigError naming the path when
    it cannot be written (exit 2)."""
    from eemt_cleanup.metrics import write_textfile
    from eemt_cleanup.report.escape import printable

    try:
        write_textfile(loaded, textfile)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"--textfile: cannot write the metrics to {printable(textfile)}: {reason}"
        ) from None
    print(f"wrote {printable(textfile)}")

"""``eemt-cleanup daemon``, ``schedule`` and ``health``: the cleanup running by itself."""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from eemt_cleanup.cli.common import (
    BatchSizeOption,
    ConfigOption,
    DbOption,
    FailedRetentionOption,
    JsonOption,
    ResultsOption,
    SuccessRetentionOption,
    TempOption,
    UploadsOption,
    VerboseOption,
    WorkersOption,
    examples,
    fail,
    handle_errors,
    run_overrides,
)
from eemt_cleanup.errors import EXIT_USAGE, ConfigError

DAEMON_HELP = (
    "Run the cleanup by itself: on schedule.cron (in schedule.timezone), and early when disk "
    "space runs low (triggers.disk_pressure).\n\n"
    "Each run is a child process (eemt-cleanup run --events jsonl --trigger schedule or "
    "disk_pressure) holding the same lock as cron and the CLI: a slot that comes while any "
    "run is active is skipped and logged. A slot missed while the daemon was down runs once "
    "at start. The daemon sends the metrics textfile, usage samples and notices of each run. "
    "SIGHUP, or a change of the config file, reloads the config (one that does not validate "
    "is refused, the old one stays). SIGTERM or SIGINT: no new runs; the running one "
    "finishes the job in hand (at most --stop-timeout), then exit 0. Logs one line per "
    "decision on stderr and in the log file."
)
DAEMON_EPILOG = examples(
    "eemt-cleanup daemon -c /srv/eemt/cleanup_config.yaml",
    "eemt-cleanup daemon --cron '30 3 * * *' --timezone Europe/Berlin --jitter 10m",
    "EEMT_ENABLE_AUTO_CLEANUP=true EEMT_CLEANUP_SCHEDULE='0 2 * * *' eemt-cleanup daemon",
    "eemt-cleanup daemon --health-file /tmp/eemt-cleanup.health   # for HEALTHCHECK",
    "kill -HUP $(pidof -s eemt-cleanup)    # reload the config",
    after="Check an expression first with: eemt-cleanup schedule --cron '...'",
)
SCHEDULE_EPILOG = examples(
    "eemt-cleanup schedule                       # the config's schedule: next 5 runs",
    "eemt-cleanup schedule --cron '0 2 * * 1-5' --timezone America/New_York -n 10",
    "eemt-cleanup schedule --json",
    after="Exit codes: 0 the schedule fires, 2 an expression or zone that cannot fire.",
)
HEALTH_EPILOG = examples(
    "eemt-cleanup health --file /tmp/eemt-cleanup.health       # Docker HEALTHCHECK",
    "eemt-cleanup health --file /run/eemt-cleanup/health --max-age 60",
    after="Exit codes: 0 touched recently, 1 stale or missing, 2 bad input.",
)

CronOption = Annotated[
    str | None,
    typer.Option(
        "--cron",
        metavar="EXPR",
        show_default=False,
        help="Cron expression, five fields (schedule.cron; EEMT_CLEANUP_SCHEDULE).",
    ),
]
ZoneOption = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        metavar="ZONE",
        show_default=False,
        help="Zone the expression is read in: local, UTC, Europe/Berlin... (schedule.timezone).",
    ),
]


def schedule_overrides(
    cron: str | None, timezone: str | None, jitter: str | None = None, enable: bool | None = None
) -> dict[str, tuple[Any, str]]:
    return {
        "schedule.cron": (cron, "--cron"),
        "schedule.timezone": (timezone, "--timezone"),
        "schedule.jitter": (jitter, "--jitter"),
        "schedule.enabled": (enable, "--enable/--disable"),
    }


@handle_errors()
def daemon(
    config: ConfigOption = None,
    health_file: Annotated[
        str | None,
        typer.Option(
            "--health-file",
            metavar="PATH",
            show_default=False,
            help="Touch PATH every loop (at least every 15 s), for a container HEALTHCHECK: "
            "eemt-cleanup health --file PATH.",
        ),
    ] = None,
    cron: CronOption = None,
    timezone: ZoneOption = None,
    jitter: Annotated[
        str | None,
        typer.Option(
            "--jitter",
            metavar="DURATION",
            show_default=False,
            help="Random delay of up to this after each slot: 30s, 10m (schedule.jitter).",
        ),
    ] = None,
    enable: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable",
            show_default=False,
            help="Scheduled runs on or off (schedule.enabled; EEMT_ENABLE_AUTO_CLEANUP).",
        ),
    ] = None,
    stop_timeout: Annotated[
        float,
        typer.Option(
            "--stop-timeout",
            metavar="SECONDS",
            min=1,
            help="On SIGTERM, how long the running cleanup may take to finish the job in hand.",
        ),
    ] = 60.0,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    success_retention: SuccessRetentionOption = None,
    failed_retention: FailedRetentionOption = None,
    workers: WorkersOption = None,
    batch_size: BatchSizeOption = None,
    verbose: VerboseOption = False,
) -> None:
    from eemt_cleanup.config.loader import LoadedConfig, load_config
    from eemt_cleanup.daemon.loop import Daemon
    from eemt_cleanup.report.logs import OutputMode, close_logging, configure_logging

    overrides = run_overrides(
        db_path,
        uploads_dir,
        results_dir,
        temp_dir,
        success_retention,
        failed_retention,
        workers,
        batch_size,
    )
    overrides.update(schedule_overrides(cron, timezone, jitter, enable))

    def load() -> LoadedConfig:
        return load_config(config_path=config, overrides=overrides)

    def set_up_logging(loaded: LoadedConfig) -> None:
        settings = loaded.settings
        mode = OutputMode(rich=False, json=True, verbose=verbose, level=settings.logging.level)
        log_file = (
            None if loaded.force_dry_run else Path(settings.paths.logs) / settings.logging.file
        )
        close_logging()  # a reload may name another log file or level
        configure_logging(mode, log_file)

    # The handlers come first: a signal during start-up is kept and acted on once the
    # daemon exists (they only set flags, never take a lock).
    engines: list[Any] = []
    early: list[int] = []

    def on_stop(number: int, _frame: FrameType | None) -> None:
        if engines:
            engines[0].request_stop()
        else:
            early.append(number)

    def on_hup(_number: int, _frame: FrameType | None) -> None:
        if engines:
            engines[0].request_reload()

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, on_stop),
        signal.SIGINT: signal.signal(signal.SIGINT, on_stop),
        signal.SIGHUP: signal.signal(signal.SIGHUP, on_hup),
    }
    try:
        first = load()
        set_up_logging(first)
        configs = iter([first])

        def load_again() -> LoadedConfig:
            return next(configs, None) or load()

        engine = Daemon(
            load_again,
            health_file=Path(health_file) if health_file else None,
            stop_timeout=stop_timeout,
            on_reload=set_up_logging,
        )
        engines.append(engine)
        if early:
            engine.request_stop()
        code = engine.run_forever()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        close_logging()
    raise typer.Exit(code)


@handle_errors(json_arg="json_output")
def schedule(
    config: ConfigOption = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="How many fire times to show.")
    ] = 5,
    cron: CronOption = None,
    timezone: ZoneOption = None,
    json_output: JsonOption = False,
) -> None:
    """The next fire times of the schedule (local and UTC) and the last runs: check an
    expression before trusting it. An expression that can never fire is an error."""
    from eemt_cleanup.config.loader import load_config
    from eemt_cleanup.daemon.state import last_runs
    from eemt_cleanup.schedule import CronSchedule, ScheduleError, normalise, zone_named

    loaded = load_config(config_path=config, overrides=schedule_overrides(None, timezone))
    settings = loaded.settings.schedule
    expression = normalise(cron) if cron is not None else settings.cron
    try:
        plan = CronSchedule(expression, zone_named(settings.timezone))
    except ScheduleError as error:
        raise ConfigError(f"--cron: {error}" if cron is not None else str(error)) from None
    now = datetime.now(UTC)
    fires = plan.upcoming(now, count)
    last_run, last_slot = last_runs(loaded)
    if json_output:
        from eemt_cleanup.report.json_out import dumps

        print(
            dumps(
                {
                    "expression": expression,
                    "timezone": settings.timezone,
                    "zone": _zone_name(plan.zone),
                    "enabled": loaded.settings.schedule.enabled,
                    "next": [
                        {"local": fire.isoformat(), "utc": fire.astimezone(UTC).isoformat()}
                        for fire in fires
                    ],
                    "last_run": last_run,
                    "last_slot": last_slot,
                }
            )
        )
        return
    from eemt_cleanup.report.dates import relative

    state = (
        ""
        if loaded.settings.schedule.enabled
        else "  (schedule.enabled is false: the daemon does not run it)"
    )
    print(f"Schedule: {expression} in {_zone_name(plan.zone)}{state}")
    print(f"Next {len(fires)} runs:")
    for fire in fires:
        print(
            f"  {fire:%a %Y-%m-%d %H:%M %Z}   {fire.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            f"   {relative(fire, now)}"
        )
    print(f"Last run: {_describe_run(last_run)}")
    if last_slot:
        print(
            f"Last scheduled slot: {last_slot['slot']} ({last_slot['decision']}"
            + (f", run {last_slot['run_id']}" if last_slot.get("run_id") else "")
            + ")"
        )


def _zone_name(zone: Any) -> str:
    from eemt_cleanup.schedule import zone_label

    return zone_label(zone)


def _describe_run(run: dict[str, Any] | None) -> str:
    if run is None:
        return "none recorded"
    parts = [str(run.get("started_at")), f"trigger {run.get('trigger')}"]
    if run.get("exit_code") is not None:
        parts.append(f"exit {run.get('exit_code')}")
    return ", ".join(parts) + f" (run {run.get('run_id')})"


def health(
    file: Annotated[
        str,
        typer.Option("--file", metavar="PATH", help="The daemon's --health-file."),
    ],
    max_age: Annotated[
        float,
        typer.Option(
            "--max-age",
            metavar="SECONDS",
            min=1,
            help="Healthy when touched within this many seconds (the daemon touches it "
            "at least every 15 s).",
        ),
    ] = 120.0,
) -> None:
    """Exit 0 when the daemon touched its health file recently, else 1 with one line
    saying why (for a container HEALTHCHECK or a Kubernetes liveness probe)."""
    from eemt_cleanup.daemon.loop import health_age

    if not file:
        raise fail("--file: give the daemon's --health-file path", EXIT_USAGE)
    try:
        age = health_age(Path(file)).total_seconds()
    except OSError as error:
        print(f"unhealthy: {file}: {error.strerror or error}", file=sys.stderr)
        raise typer.Exit(1) from None
    if age > max_age:
        print(
            f"unhealthy: {file} last touched {age:.0f} s ago (max {max_age:.0f} s)", file=sys.stderr
        )
        raise typer.Exit(1)
    print(f"healthy: touched {max(age, 0):.0f} s ago")

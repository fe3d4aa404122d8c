"""Reports going out after a run or ``status``: the usage sample, the disk alerts, the
Prometheus textfile and the notices — as a subscriber of the engine's events, so that the
CLI, the daemon and the HTTP API get them by subscribing.

Each part is optional and off by default. A part that fails is logged and listed in the
result (the run's JSON shows it); it never changes what was cleaned or the exit code. A dry
run sends nothing and stores nothing: it changes nothing, reports included.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from eemt_cleanup.alerts import Alert, check_alerts
from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import CleanupError
from eemt_cleanup.report.escape import printable
from eemt_cleanup.store.usage import UsageSample

if TYPE_CHECKING:
    from eemt_cleanup.notify import NoticeResult
    from eemt_cleanup.stocktake import Inventory

log = logging.getLogger("eemt_cleanup")


class MetricsOutcome(BaseModel):
    textfile: str
    written: bool
    error: str | None = None


class ReportsOut(BaseModel):
    """What went out after one run (or ``status``): the JSON's ``usage``, ``alerts``,
    ``notifications`` and ``metrics``, and the problems met on the way."""

    usage: UsageSample | None = None
    alerts: list[Alert] = Field(default_factory=list)
    notifications: list[Any] = Field(default_factory=list)  # notify.NoticeResult
    metrics: MetricsOutcome | None = None
    problems: list[str] = Field(default_factory=list)

    def json_keys(self) -> dict[str, Any]:
        """The keys this adds to a ``--json`` object."""
        data = self.model_dump(mode="json")
        data["notifications"] = [result.model_dump(mode="json") for result in self.notifications]
        return {
            "alerts": data["alerts"],
            "notifications": data["notifications"],
            "metrics": data["metrics"],
            "usage": data["usage"],
            "report_problems": data["problems"],
        }


class Outlets:
    """The event subscriber: on a real run's ``run_finished`` (told once the run lock is
    released), measures and stores a usage sample, checks the alerts, writes the metrics
    textfile and sends the notices. ``stop`` (the run's stop flag): once set, the usage
    sample is skipped and the notices go out without retries.

    ``result`` holds what went out (None until a real run finished)."""

    def __init__(self, config: LoadedConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop
        self.trigger: str | None = None
        self.result: ReportsOut | None = None

    def __call__(self, event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind == "run_started":
            self.trigger = event.trigger
        elif kind == "run_finished" and not event.report.dry_run:
            self.result = after_run(self.config, event, trigger=self.trigger, stop=self.stop)

    def after_error(self, message: str, exit_code: int) -> ReportsOut:
        """A run that could not start (a configuration or database error: exit 2, nothing
        cleaned) is a failure too: its notice says why."""
        out = ReportsOut()
        _part(
            out,
            "notices",
            lambda: _notify(
                self.config,
                out,
                {"failure"},
                exit_code=exit_code,
                trigger=self.trigger,
                error=message,
                stop=self.stop,
            ),
        )
        self.result = out
        return out


def after_run(
    config: LoadedConfig,
    finished: Any,
    *,
    trigger: str | None = None,
    stop: threading.Event | None = None,
) -> ReportsOut:
    """Everything that goes out after the real run whose ``run_finished`` event is
    ``finished``. Never raises: a part that fails is a line of ``problems`` and the parts
    after it still run (the notices above all)."""
    from eemt_cleanup.cli.exit_codes import outcome_exit_code

    out = ReportsOut()
    if stop is not None and stop.is_set():
        out.problems.append("usage not measured: the run was asked to stop")
    else:
        _part(out, "the usage sample", lambda: _sample(config, out, finished.run_id))
    _part(out, "the alerts", lambda: _alerts(config, out))
    _part(out, "the metrics textfile", lambda: _metrics(config, out))
    code = outcome_exit_code(finished.outcome, _signal_number(finished.stopped_by))
    kinds = {"success" if code == 0 else "failure"} | ({"alert"} if out.alerts else set())
    _part(
        out,
        "the notices",
        lambda: _notify(
            config, out, kinds, run=finished.report, exit_code=code, trigger=trigger, stop=stop
        ),
    )
    return out


def after_status(config: LoadedConfig, inventory: Inventory) -> ReportsOut:
    """What goes out after ``status`` measured ``inventory``: its usage sample (stored),
    the alerts (an alert notice when one is crossed) and the metrics textfile. The alerts
    and problems are not logged: ``status`` shows them in its own output."""
    from eemt_cleanup.sampling import sample_from, store_sample

    out = ReportsOut()

    def sample() -> None:
        out.usage = sample_from(config, inventory, source="status")
        _note(out, store_sample(config, out.usage), logged=False)

    if inventory.measured:
        _part(out, "the usage sample", sample, logged=False)
    _part(out, "the alerts", lambda: _alerts(config, out, logged=False), logged=False)
    _part(out, "the metrics textfile", lambda: _metrics(config, out, logged=False), logged=False)
    if out.alerts:
        _part(
            out,
            "the notices",
            lambda: _notify(config, out, {"alert"}, trigger="status"),
            logged=False,
        )
    return out


def _part(out: ReportsOut, what: str, step: Callable[[], None], *, logged: bool = True) -> None:
    """Run one part; an error it did not foresee is a problem of the reports, never of
    the run (its outcome and exit code stay)."""
    try:
        step()
    except Exception as error:
        _note(out, f"{what} failed: {type(error).__name__}: {printable(str(error))}", logged=logged)
        log.debug("report part traceback", exc_info=True)


def _sample(config: LoadedConfig, out: ReportsOut, run_id: str) -> None:
    from eemt_cleanup.sampling import store_sample, take_sample

    try:
        out.usage = take_sample(config, source="run", run_id=run_id)
    except CleanupError as error:
        _note(out, f"usage not measured: {error}")
        return
    _note(out, store_sample(config, out.usage))


def _note(out: ReportsOut, problem: str | None, *, logged: bool = True) -> None:
    if problem is not None:
        out.problems.append(problem)
        if logged:
            log.warning("%s", problem)


def _alerts(config: LoadedConfig, out: ReportsOut, *, logged: bool = True) -> None:
    out.alerts = check_alerts(config.settings.alerts, out.usage)
    for alert in out.alerts if logged else ():
        # Shown under --quiet too: an alert is what cron should mail.
        log.warning("ALERT: %s", alert.message, extra={"always": True})


def _metrics(config: LoadedConfig, out: ReportsOut, *, logged: bool = True) -> None:
    path = config.settings.metrics.textfile
    if not path:
        return
    from eemt_cleanup.metrics import write_textfile

    try:
        write_textfile(config, path)
    except (OSError, CleanupError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        out.metrics = MetricsOutcome(textfile=path, written=False, error=reason)
        _note(out, f"metrics textfile {path} not written: {reason}", logged=logged)
        return
    out.metrics = MetricsOutcome(textfile=path, written=True)


def _notify(
    config: LoadedConfig,
    out: ReportsOut,
    kinds: set[str],
    *,
    run: Any = None,
    exit_code: int | None = None,
    trigger: str | None = None,
    error: str | None = None,
    stop: threading.Event | None = None,
) -> None:
    if not config.settings.notifications.any_enabled:
        return
    from eemt_cleanup.notify import Notice, send_notices

    notice = Notice(
        kinds=frozenset(kinds),
        run=run,
        exit_code=exit_code,
        trigger=trigger,
        alerts=tuple(out.alerts),
        usage=out.usage,
        error=error,
    )
    results: list[NoticeResult] = send_notices(config, notice, stop=stop)
    out.notifications = list(results)
    for result in results:
        if result.decision == "failed":
            out.problems.append(f"{result.channel} notice failed: {result.error}")
    notes = {result.note for result in results if result.note}
    out.problems.extend(sorted(notes))


def _signal_number(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


__all__ = [
    "MetricsOutcome",
    "Outlets",
    "ReportsOut",
    "after_run",
    "after_status",
]

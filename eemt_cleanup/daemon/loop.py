"""The daemon's loop: schedule, disk pressure, reload, health, one child run at a time.

Every decision is one log line: the next run, a slot skipped because a run holds the lock,
pressure detected, a config reloaded or refused. The clock, the random source and the way
a child is started are injected (tests drive :meth:`Daemon.step` with a fake clock).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.daemon.child import (
    ChildResult,
    ChildRun,
    RunRequest,
    child_argv,
    child_environment,
    snapshot_settings,
)
from eemt_cleanup.daemon.planner import Due, SlotPlanner
from eemt_cleanup.daemon.pressure import PressureGate, Reading, Verdict, lowest, measure
from eemt_cleanup.errors import CleanupError
from eemt_cleanup.report.escape import printable
from eemt_cleanup.schedule import CronSchedule, zone_label
from eemt_cleanup.store.schedule import PRESSURE, SCHEDULED, ScheduleRecord

log = logging.getLogger("eemt_cleanup.daemon")

# The loop wakes at least this often (health file, config check), whatever else it waits for.
HEARTBEAT_SECONDS = 15.0
# SIGTERM: how long the running child gets to finish the job in hand and write its books.
STOP_TIMEOUT_SECONDS = 60.0
# File events wake a free-space check at most this often.
HINT_MIN_SECONDS = 1.0
# The longest the loop waits without looking at the flags its signal handlers set.
SIGNAL_POLL_SECONDS = 1.0
EXIT_LOCKED = 75


class Clock(Protocol):
    def now(self) -> datetime: ...

    def wait(self, event: threading.Event, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> None:
        event.wait(max(0.0, seconds))


Spawn = Callable[[list[str], Callable[[Any], None], Callable[[str], None], dict[str, str]], Any]


def _spawn_child(
    argv: list[str],
    on_event: Callable[[Any], None],
    on_line: Callable[[str], None],
    env: dict[str, str],
) -> ChildRun:
    return ChildRun(argv, on_event, on_line, env)


@dataclass
class ActiveRun:
    request: RunRequest
    child: Any
    thread: threading.Thread
    started_at: datetime
    snapshot: Path
    result: ChildResult | None = None


def local_text(moment: datetime, zone: Any) -> str:
    """``2026-12-04 02:00:00 CET (01:00:00 UTC)``; UTC alone when the zone is UTC."""
    here = moment.astimezone(zone)
    if here.utcoffset() == timedelta(0) and here.tzname() in ("UTC", "GMT", "Z"):
        return f"{here:%Y-%m-%d %H:%M:%S} UTC"
    return f"{here:%Y-%m-%d %H:%M:%S %Z} ({moment.astimezone(UTC):%H:%M:%S} UTC)"


class Daemon:
    """``load()`` gives the configuration (again on reload; raises CleanupError when it
    does not validate)."""

    def __init__(
        self,
        load: Callable[[], LoadedConfig],
        *,
        clock: Clock | None = None,
        rng: Any = None,
        spawn: Spawn | None = None,
        health_file: Path | None = None,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
        relay: Callable[[str], None] | None = None,
        on_reload: Callable[[LoadedConfig], None] | None = None,
        measure_disks: Callable[[list[Path]], list[Reading]] = measure,
        work_dir: Path | None = None,
    ) -> None:
        self.load = load
        self.measure_disks = measure_disks
        self.clock = clock or SystemClock()
        self.rng = rng
        self.spawn = spawn or _spawn_child
        self.health_file = health_file
        self.stop_timeout = stop_timeout
        self.relay = relay or _write_stderr
        self.on_reload = on_reload
        self.config = self._load()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.reload_requested = False
        self._stop_signals = 0
        self._config_hint = threading.Event()
        self._disk_hint = threading.Event()
        self._digest = self._config_digest(self.config)
        self._refused_digest: str | None = None
        self.active: ActiveRun | None = None
        self.last_finished: ActiveRun | None = None
        # Private (0700): the children's config snapshots.
        self._private = Path(tempfile.mkdtemp(prefix="eemt-cleanup-daemon-", dir=work_dir))
        self._last_pressure_check: datetime | None = None
        self._last_config_check: datetime | None = None
        self._pressure_said: Verdict | None = None
        self._health_warned = False
        self._record_warned = False
        self._hints: Any = None
        self._shut_down = False
        self.planner: SlotPlanner | None = None
        self.gate: PressureGate | None = None
        self._configure(self.config)

    # -- configuration ---------------------------------------------------------------------

    def _load(self) -> LoadedConfig:
        """The configuration, checked as a run would check it before deleting anything:
        the roots are directories, the database is a file (raises CleanupError). A daemon
        that starts on a wrong path says so at once, not at 02:00."""
        from eemt_cleanup.site import check_roots
        from eemt_cleanup.store.db import check_database_path

        config = self.load()
        check_roots(config)
        check_database_path(config.roots.database)
        return config

    def _configure(self, config: LoadedConfig) -> bool:
        """Apply ``config``; True when the schedule changed (a new planner, to be armed)."""
        settings = config.settings
        replaced = False
        if settings.schedule.enabled:
            schedule = CronSchedule.of(settings.schedule)
            jitter = settings.schedule.jitter_seconds
            kept = self.planner
            if kept is None or (kept.schedule, kept.jitter_seconds) != (schedule, jitter):
                # Same schedule: the armed slot (and its drawn delay) stays, even when a
                # reload comes between a slot and its jittered start.
                self.planner = SlotPlanner(schedule, jitter, self.rng)
                replaced = True
        else:
            self.planner = None
        pressure = settings.triggers.disk_pressure
        if not pressure.enabled:
            self.gate = None
        elif self.gate is None:
            self.gate = PressureGate(pressure)
        else:
            self.gate.settings = pressure  # keep the cooldown and hysteresis state
        return replaced

    def _watched(self, config: LoadedConfig) -> tuple[list[Path], list[Path]]:
        roots = config.roots
        disk = [roots.uploads, roots.results, roots.temp, roots.database.parent]
        config_dirs = []
        if config.config_file is not None:
            config_dirs.append(config.config_file.parent)
            with contextlib.suppress(OSError):
                real = config.config_file.resolve()
                if real.parent != config.config_file.parent:
                    config_dirs.append(real.parent)
        wanted = disk if config.settings.triggers.disk_pressure.enabled else []
        return wanted, config_dirs

    def _start_hints(self) -> None:
        from eemt_cleanup.daemon.watch import Hints

        if self._hints is not None:
            self._hints.stop()
        disk, config_dirs = self._watched(self.config)
        self._hints = Hints(disk, config_dirs, self._on_disk_hint, self._on_config_hint)
        self._hints.start()

    def _on_disk_hint(self) -> None:
        if not self._disk_hint.is_set():
            self._disk_hint.set()
            self.wake.set()

    def _on_config_hint(self) -> None:
        self._config_hint.set()
        self.wake.set()

    @staticmethod
    def _config_digest(config: LoadedConfig) -> str | None:
        """A fingerprint of the config file's content, read like the loader reads it: a
        regular file only (a FIFO planted there must not block the loop), bounded."""
        import stat

        from eemt_cleanup.config.loader import MAX_CONFIG_BYTES

        if config.config_file is None:
            return None
        try:
            fd = os.open(config.config_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "not a regular file"
            data = os.read(fd, MAX_CONFIG_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        return hashlib.sha256(data).hexdigest()

    def request_reload(self) -> None:
        """SIGHUP (from a signal handler: a plain assignment): read the config again, even
        if it looks unchanged."""
        self.reload_requested = True

    def _maybe_reload(self, now: datetime) -> None:
        forced = self.reload_requested
        self.reload_requested = False
        self._config_hint.clear()
        self._last_config_check = now
        current = self._config_digest(self.config)
        if not forced and (current == self._digest or current == self._refused_digest):
            return
        try:
            new = self._load()
        except CleanupError as error:
            self._refused_digest = current
            log.error(
                "config reload refused, the previous configuration stays in force: %s",
                printable(str(error), backslashes=False),
            )
            return
        self._refused_digest = None
        # The content judged before loading: an edit made meanwhile is seen at the next
        # check (at worst one reload too many, never one lost).
        self._digest = current
        before = self._watched(self.config)
        self.config = new
        if self._configure(new) and self.planner is not None:
            self.planner.start(now, None)  # a reload never catches up
        if self.on_reload is not None:
            self.on_reload(new)
        where = new.config_file or "defaults and environment"
        log.info("reloaded the configuration from %s%s", where, "" if not forced else " (SIGHUP)")
        self._say_plan(now)
        if self._watched(new) != before and self._hints is not None:
            self._start_hints()

    # -- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        """Announce the plan, catch up a missed slot, start watching."""
        now = self.clock.now()
        if self.config.force_dry_run:
            log.warning(
                "%s forces every run to be a dry run: nothing will be deleted",
                self.config.force_dry_run_source,
            )
        catch_up = None
        if self.planner is not None:
            last = self._last_slot()
            catch_up = self.planner.start(now, last)
        self._say_plan(now)
        if self.planner is None and self.gate is None:
            log.warning(
                "nothing to do: schedule.enabled is false (EEMT_ENABLE_AUTO_CLEANUP) and "
                "triggers.disk_pressure.enabled is false; waiting for a config change"
            )
        self._start_hints()
        if catch_up is not None:
            log.info(
                "catching up the slot of %s, missed while the daemon was not running",
                self._local(catch_up.slot),
            )
            self._handle_slot(catch_up, now)

    def _say_plan(self, now: datetime) -> None:
        settings = self.config.settings
        if self.planner is not None and self.planner.slot is not None:
            schedule = self.planner.schedule
            jitter = (
                f", started up to {settings.schedule.jitter} later"
                if self.planner.jitter_seconds
                else ""
            )
            assert self.planner.fire_at is not None
            log.info(
                "schedule %r in %s: next run at %s%s",
                schedule.expression,
                zone_label(schedule.zone),
                self._local(self.planner.slot),
                jitter,
            )
        else:
            log.info("scheduled runs are off (schedule.enabled is false)")
        if self.gate is not None:
            pressure = settings.triggers.disk_pressure
            log.info(
                "disk pressure: an early run below %.1f%% free (checked every %s)",
                pressure.min_free_percent,
                pressure.poll_interval,
            )

    def _local(self, moment: datetime) -> str:
        zone = self.planner.schedule.zone if self.planner is not None else UTC
        return local_text(moment, zone)

    def step(self) -> float:
        """One pass: health, reload, reap, schedule, pressure. Returns how long to sleep."""
        now = self.clock.now()
        self._touch_health()
        if (
            self.reload_requested
            or self._config_hint.is_set()
            or self._last_config_check is None
            or (now - self._last_config_check).total_seconds() >= HEARTBEAT_SECONDS
        ):
            self._maybe_reload(now)
        self._reap()
        if self.planner is not None and not self.stop.is_set():
            due = self.planner.due(now)
            if due is not None:
                self._handle_slot(due, now)
        if self.gate is not None and not self.stop.is_set():
            self._check_pressure(now)
        return self._sleep_for(now)

    def _sleep_for(self, now: datetime) -> float:
        waits = [HEARTBEAT_SECONDS]
        if self.planner is not None:
            until = self.planner.seconds_until_fire(now)
            if until is not None:
                waits.append(until)
        if self.gate is not None:
            poll = self.config.settings.triggers.disk_pressure.poll_seconds
            since = (
                poll
                if self._last_pressure_check is None
                else (now - self._last_pressure_check).total_seconds()
            )
            waits.append(max(0.0, poll - since))
        return max(0.0, min(waits))

    def run_forever(self) -> int:
        """Run until a stop is asked for; then stop the child in a bounded time. Returns 0.

        An unexpected error in one pass is logged and the loop goes on (a daemon that dies
        leaves its running child unwatched)."""
        try:
            self.start()
            while not self._stopping():
                # Cleared before the pass: a wake-up during it (a child that ended, a file
                # event) makes the next wait return at once instead of being lost.
                self.wake.clear()
                try:
                    seconds = self.step()
                except Exception:
                    log.exception("unexpected error in the daemon loop; carrying on")
                    seconds = HEARTBEAT_SECONDS
                if self._stopping():
                    break
                if not (self.reload_requested or self._config_hint.is_set()):
                    # Signal handlers only set flags (never an Event: its lock is not
                    # reentrant), so the wait is cut into short slices that look at them.
                    self.clock.wait(self.wake, min(seconds, SIGNAL_POLL_SECONDS))
        finally:
            self.shutdown()
        return 0

    def _stopping(self) -> bool:
        if self._stop_signals and not self.stop.is_set():
            self.stop.set()
        return self.stop.is_set()

    def request_stop(self) -> None:
        """From a signal handler: plain assignments only. A second request stops the
        running child at once (the next run finishes its books)."""
        self._stop_signals += 1
        if self._stop_signals > 1 and self.active is not None:
            self.active.child.kill()

    def shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        self.stop.set()  # the running notices go out without retries
        active = self.active
        if active is not None and active.thread.is_alive():
            log.info(
                "stopping: asking run %s to finish the job in hand (up to %.0f s)",
                active.child.result.run_id or "(starting)",
                self.stop_timeout,
            )
            active.child.terminate()
            active.thread.join(self.stop_timeout)
            if active.thread.is_alive():
                log.warning("run did not stop within %.0f s: killing it", self.stop_timeout)
                active.child.kill()
                active.thread.join(10)
        self._reap()
        if self._hints is not None:
            self._hints.stop()
        shutil.rmtree(self._private, ignore_errors=True)
        log.info("daemon stopped")

    # -- runs ------------------------------------------------------------------------------

    def _handle_slot(self, due: Due, now: datetime) -> None:
        request = RunRequest(
            trigger="schedule",
            slot=due.slot,
            catch_up=due.catch_up,
            reason=f"slot {self._local(due.slot)}",
        )
        decision = "caught_up" if due.catch_up else "started"
        if self.active is not None:
            detail = f"run {self.active.child.result.run_id or '(starting)'} is still running"
            log.info("skipped the slot of %s: %s", self._local(due.slot), detail)
            self._record(ScheduleRecord(now, SCHEDULED, "skipped", due.slot, detail=detail))
        else:
            refused = self._start(request, now, ScheduleRecord(now, SCHEDULED, decision, due.slot))
            if refused is not None:
                self._record(ScheduleRecord(now, SCHEDULED, "skipped", due.slot, detail=refused))
        if self.planner is not None and self.planner.slot is not None:
            log.info("next run at %s", self._local(self.planner.slot))

    def _holder(self) -> str | None:
        from eemt_cleanup.lock import find_holder

        holder = find_holder(self.config.roots.database)
        return holder.describe() if holder is not None else None

    def _start(self, request: RunRequest, now: datetime, start_row: ScheduleRecord) -> str | None:
        """Start the child for ``request`` (``start_row`` recorded first); None when it
        started, else why not."""
        holder = self._holder()
        if holder is not None:
            log.info(
                "skipped the %s run (%s): another run holds the lock (%s)",
                request.trigger,
                request.reason,
                holder,
            )
            return f"locked: {holder}"
        self._record(start_row)
        try:
            snapshot = snapshot_settings(self.config, self._private)
        except OSError as error:
            # The temporary directory's filesystem may be the full one.
            why = f"could not write the config snapshot: {error.strerror or error}"
            log.error("the %s run failed: %s", request.trigger, why)
            return why
        outlets = None
        if self.config.settings.reports_wanted and not self.config.force_dry_run:
            # Like run: a dry run sends nothing and writes no metrics.
            from eemt_cleanup.outlets import Outlets

            outlets = Outlets(self.config, self.stop)

        def on_event(event: Any) -> None:
            kind = getattr(event, "kind", None)
            if kind == "run_started":
                log.info(
                    "run %s started (trigger %s, %s)", event.run_id, request.trigger, request.reason
                )
            if outlets is not None:
                outlets(event)

        try:
            child = self.spawn(
                child_argv(snapshot, request), on_event, self.relay, child_environment()
            )
        except OSError as error:
            why = f"could not start the child: {error.strerror or error}"
            log.error("the %s run failed: %s", request.trigger, why)
            snapshot.unlink(missing_ok=True)
            return why
        holder_box: dict[str, ActiveRun] = {}

        def follow() -> None:
            try:
                result = child.read_events()
                active = holder_box["active"]
                active.result = result
                self._finished(active, result, outlets)
            except Exception:
                log.exception("following the %s run failed", request.trigger)
            finally:
                self.wake.set()

        thread = threading.Thread(target=follow, name="eemt-cleanup-run", daemon=True)
        active = ActiveRun(request, child, thread, now, snapshot)
        holder_box["active"] = active
        self.active = active
        thread.start()
        return None

    def _finished(self, active: ActiveRun, result: ChildResult, outlets: Any) -> None:
        request = active.request
        with contextlib.suppress(OSError):
            active.snapshot.unlink(missing_ok=True)
        code = result.exit_code
        trigger = SCHEDULED if request.trigger == SCHEDULED else PRESSURE
        if code == EXIT_LOCKED and result.finished is None:
            if request.trigger == PRESSURE and self.gate is not None:
                self.gate.armed, self.gate.last_run_at = True, None  # it never ran
            detail = result.last_error_line or "another run holds the lock"
            log.info("the %s run did not start: %s", request.trigger, detail)
            self._record(
                ScheduleRecord(self.clock.now(), trigger, "skipped", request.slot, detail=detail)
            )
            return
        if result.finished is not None:
            summary = result.finished.report
            from eemt_cleanup.humanize_size import human_size

            jobs = summary.cleaned_jobs.successful + summary.cleaned_jobs.failed
            log.info(
                "run %s (trigger %s) finished with exit code %d: %d jobs cleaned, %s freed",
                result.run_id,
                request.trigger,
                code,
                jobs,
                human_size(summary.space_freed.bytes),
            )
        else:
            why = result.last_error_line or f"exit code {code}, no report (see the log)"
            log.error("the %s run failed before finishing: %s", request.trigger, why)
            if request.trigger == PRESSURE and self.gate is not None:
                # It freed nothing: the next may try once the cooldown is over.
                self.gate.armed = True
            if outlets is not None:
                outlets.trigger = request.trigger
                outlets.after_error(why, code if code > 0 else 1)
        if outlets is not None and outlets.result is not None:
            for problem in outlets.result.problems:
                log.warning("%s", problem)
        self._record(
            ScheduleRecord(
                self.clock.now(),
                trigger,
                "finished",
                request.slot,
                run_id=result.run_id,
                exit_code=code,
            )
        )

    def _reap(self) -> None:
        active = self.active
        if active is not None and not active.thread.is_alive():
            self.active = None
            self.last_finished = active

    # -- disk pressure ---------------------------------------------------------------------

    def _check_pressure(self, now: datetime) -> None:
        assert self.gate is not None
        settings = self.config.settings.triggers.disk_pressure
        hinted = self._disk_hint.is_set()
        since = (
            None
            if self._last_pressure_check is None
            else (now - self._last_pressure_check).total_seconds()
        )
        if (
            since is not None
            and since < settings.poll_seconds
            and not (hinted and since >= HINT_MIN_SECONDS)
        ):
            return
        self._disk_hint.clear()
        self._last_pressure_check = now
        roots = self.config.roots
        reading = lowest(
            self.measure_disks([roots.uploads, roots.results, roots.temp, roots.database.parent])
        )
        if reading is None:
            return
        verdict = self.gate.judge(now, reading)
        where = f"{reading.path}: {reading.free_percent:.1f}% free"
        if verdict is Verdict.RUN:
            if self.active is not None:
                self._say_once(Verdict.RUN, "disk pressure (%s), but a run is active", where)
                return
            log.warning(
                "disk pressure: %s, below %.1f%%: starting an early run",
                where,
                settings.min_free_percent,
            )
            request = RunRequest(
                trigger=PRESSURE,
                successful_hours=settings.successful_hours,
                failed_hours=settings.failed_hours,
                reason=where,
            )
            # The gate closes before the child starts: a child that fails at once re-opens it
            # from its own thread, which must not be undone here afterwards.
            before = (self.gate.armed, self.gate.last_run_at)
            self.gate.started(now)
            row = ScheduleRecord(now, PRESSURE, "started", detail=where)
            if self._start(request, now, row) is None:
                self._pressure_said = None
            else:
                self.gate.armed, self.gate.last_run_at = before
        elif verdict is Verdict.COOLING:
            self._say_once(
                verdict,
                "disk pressure persists (%s); the next pressure run may start in %.0f min",
                where,
                self.gate.cooldown_left(now) / 60,
            )
        elif verdict is Verdict.WAITING:
            self._say_once(
                verdict,
                "disk pressure persists after the pressure run (%s): no other until free space "
                "is back above %.1f%% (hysteresis)",
                where,
                self.gate.rearm_percent,
            )
        elif verdict is Verdict.REARMED:
            log.info(
                "free space back above %.1f%% (%s): pressure runs re-armed",
                self.gate.rearm_percent,
                where,
            )
            self._pressure_said = None

    def _say_once(self, verdict: Verdict, message: str, *args: Any) -> None:
        if self._pressure_said is not verdict:
            self._pressure_said = verdict
            log.info(message, *args)

    # -- records and health ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        from eemt_cleanup.store.db import connect
        from eemt_cleanup.store.schedule import ensure_schedule_table

        settings = self.config.settings
        conn = connect(
            self.config.roots.database,
            readonly=False,
            timeout=settings.performance.busy_timeout_seconds,
        )
        try:
            ensure_schedule_table(conn, settings.jobs)
        except BaseException:
            conn.close()
            raise
        return conn

    def _record(self, row: ScheduleRecord) -> None:
        from eemt_cleanup.store.schedule import record

        try:
            conn = self._connection()
            try:
                record(conn, row)
            finally:
                conn.close()
        except (sqlite3.Error, CleanupError, OSError) as error:
            if not self._record_warned:
                self._record_warned = True
                log.warning("cannot record the schedule in the database: %s", error)

    def _last_slot(self) -> datetime | None:
        from eemt_cleanup.store.db import connect
        from eemt_cleanup.store.schedule import last_record

        try:
            conn = connect(self.config.roots.database, readonly=True)
        except (CleanupError, OSError, sqlite3.Error) as error:
            log.warning("cannot read the last scheduled slot: %s", error)
            return None
        try:
            found = last_record(conn, SCHEDULED)
        except sqlite3.Error:
            return None
        finally:
            conn.close()
        return found.slot if found is not None else None

    def _touch_health(self) -> None:
        if self.health_file is None:
            return
        try:
            touch(self.health_file)
        except OSError as error:
            if not self._health_warned:
                self._health_warned = True
                log.warning("cannot touch the health file %s: %s", self.health_file, error)
        else:
            self._health_warned = False


def touch(path: Path) -> None:
    """Create or touch ``path``, never through a symlink, never blocking on a FIFO."""
    import stat

    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.utime(fd)
    finally:
        os.close(fd)


_RELAY_LOCK = threading.Lock()


def _write_stderr(line: str) -> None:
    with _RELAY_LOCK, contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def health_age(path: Path, now: datetime | None = None) -> timedelta:
    """How long ago ``path`` was touched. Raises OSError."""
    info = os.lstat(path)
    touched = datetime.fromtimestamp(info.st_mtime, UTC)
    return (now or datetime.now(UTC)) - touched

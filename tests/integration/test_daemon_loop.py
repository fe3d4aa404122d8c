"""The daemon's loop on an injected clock: scheduled slots, catch-up, single flight, disk
pressure, reload good and bad, bounded stop; and one slot run by a real child process.

The child is replaced by a stand-in that records its command line in all but the last test
(what it runs is ``eemt-cleanup run``, tested everywhere else); the lock, the database, the
config files and the clock's decisions are real.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import DemoBase, make_demo_base
from servers import wait_for

from eemt_cleanup.config.loader import load_config
from eemt_cleanup.daemon.child import ChildResult, RunRequest, child_argv, snapshot_settings
from eemt_cleanup.daemon.loop import HEARTBEAT_SECONDS, Daemon
from eemt_cleanup.daemon.pressure import Reading
from eemt_cleanup.lock import RunLock
from eemt_cleanup.store.db import connect
from eemt_cleanup.store.schedule import SCHEDULED, ScheduleRecord, ensure_schedule_table, record

DAY1 = datetime(2026, 12, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def wait(self, event: threading.Event, seconds: float) -> None:
        event.wait(min(seconds, 0.05))

    def at(self, moment: datetime) -> None:
        self.current = moment


class StandInChild:
    """What ``spawn`` returns: finishes with ``code`` once ``release`` is set (at once by
    default); records terminate/kill."""

    def __init__(self, argv: list[str], code: int = 0, blocking: bool = False) -> None:
        self.argv = argv
        self.result = ChildResult(exit_code=-1, run_id=f"run-{id(self):x}")
        self.release = threading.Event()
        if not blocking:
            self.release.set()
        self.code = code
        self.terminated = False
        self.killed = False
        self.obey_terminate = True

    def read_events(self) -> ChildResult:
        self.release.wait(60)
        self.result.exit_code = self.code
        if self.code in (0, 1):  # a run that got as far as its report
            self.result.finished = SimpleNamespace(
                report=SimpleNamespace(
                    cleaned_jobs=SimpleNamespace(successful=1, failed=0),
                    space_freed=SimpleNamespace(bytes=4096),
                )
            )
        return self.result

    def terminate(self) -> None:
        self.terminated = True
        if self.obey_terminate:
            self.release.set()

    def kill(self) -> None:
        self.killed = True
        self.release.set()


class Spawner:
    def __init__(self) -> None:
        self.children: list[StandInChild] = []
        self.blocking = False
        self.code = 0

    def __call__(
        self,
        argv: list[str],
        on_event: Callable[[Any], None],
        on_line: Callable[[str], None],
        env: dict[str, str],
    ) -> StandInChild:
        child = StandInChild(argv, self.code, self.blocking)
        self.children.append(child)
        return child

    def triggers(self) -> list[str]:
        return [child.argv[child.argv.index("--trigger") + 1] for child in self.children]


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """The daemon's log lines (its logger may not propagate once the CLI configured it)."""
    found: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    logger = logging.getLogger("eemt_cleanup.daemon")
    handler = Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def base(tmp_path: Path) -> DemoBase:
    return make_demo_base(tmp_path / "base")


def write_config(base: DemoBase, text: str) -> Path:
    config = base.path / "cleanup_config.yaml"
    config.write_text(
        "paths:\n  database: ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: ./logs\n" + text
    )
    return config


def daemon_for(config: Path, clock: FakeClock, spawner: Spawner, **kwargs: Any) -> Daemon:
    return Daemon(
        lambda: load_config(config_path=config, environ={}),
        clock=clock,
        spawn=spawner,
        work_dir=config.parent,
        **kwargs,
    )


def schedule_rows(db: Path) -> list[tuple[str, str | None, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT trigger, slot, decision FROM cleanup_schedule ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def settle(daemon: Daemon) -> None:
    """Wait for the daemon's running child (a stand-in) to be reaped."""
    wait_for(lambda: daemon.active is None or not daemon.active.thread.is_alive(), timeout=30)
    daemon.step()


SCHEDULE_2AM = "schedule:\n  cron: '0 2 * * *'\n  timezone: UTC\n"


def test_a_slot_runs_once_on_time_as_a_scheduled_child(base: DemoBase) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1.replace(hour=1, minute=59, second=30))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        daemon.step()
        assert spawner.children == []
        clock.at(DAY1.replace(hour=2))
        daemon.step()
        assert spawner.triggers() == ["schedule"]
        argv = spawner.children[0].argv
        assert argv[argv.index("run") :][:1] == ["run"]
        assert {"--events", "jsonl", "--no-reports", "--config"} <= set(argv)
        settle(daemon)
        clock.at(DAY1.replace(hour=2, minute=0, second=40))
        daemon.step()
        assert len(spawner.children) == 1
    finally:
        daemon.shutdown()
    slot = "2026-12-01T02:00:00+00:00"
    assert schedule_rows(base.db) == [
        ("schedule", slot, "started"),
        ("schedule", slot, "finished"),
    ]


def test_a_missed_slot_is_caught_up_once_at_start_never_a_burst(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, SCHEDULE_2AM)
    conn = connect(base.db, readonly=False)
    try:
        ensure_schedule_table(conn, load_config(config_path=config, environ={}).settings.jobs)
        record(conn, ScheduleRecord(DAY1, SCHEDULED, "finished", DAY1.replace(hour=2)))
    finally:
        conn.close()
    # Down for three slots (the 2nd, 3rd and 4th at 02:00); back on the 4th at 10:00.
    clock = FakeClock(DAY1 + timedelta(days=3, hours=10))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        assert spawner.triggers() == ["schedule"]
        settle(daemon)
        for hours in (1, 5, 10):
            clock.at(DAY1 + timedelta(days=3, hours=10 + hours))
            daemon.step()
        assert len(spawner.children) == 1
    finally:
        daemon.shutdown()
    assert ("schedule", "2026-12-04T02:00:00+00:00", "caught_up") in schedule_rows(base.db)
    assert any("catching up the slot of 2026-12-04 02:00:00 UTC" in line for line in lines)


def test_a_first_start_catches_nothing_up(base: DemoBase) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1.replace(hour=10))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        daemon.step()
    finally:
        daemon.shutdown()
    assert spawner.children == []


def test_a_slot_is_skipped_while_another_run_holds_the_lock(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1.replace(hour=1))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        with RunLock(base.db):  # a cron run, the CLI, the API: anyone
            clock.at(DAY1.replace(hour=2))
            daemon.step()
        assert spawner.children == []
        assert any(
            "skipped the schedule run" in line and "another run holds the lock" in line
            for line in lines
        )
        # The next slot, with the lock free, runs.
        clock.at(DAY1 + timedelta(days=1, hours=2))
        daemon.step()
        assert spawner.triggers() == ["schedule"]
        settle(daemon)
    finally:
        daemon.shutdown()
    decisions = [decision for trigger, _slot, decision in schedule_rows(base.db)]
    assert decisions == ["skipped", "started", "finished"]


def test_a_slot_that_comes_while_our_own_run_is_active_is_skipped(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, "schedule:\n  cron: '*/5 * * * *'\n  timezone: UTC\n")
    clock = FakeClock(DAY1.replace(hour=1, minute=59))
    spawner = Spawner()
    spawner.blocking = True
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        clock.at(DAY1.replace(hour=2))
        daemon.step()
        clock.at(DAY1.replace(hour=2, minute=5))
        daemon.step()
        assert len(spawner.children) == 1
        assert any(
            "skipped the slot of 2026-12-01 02:05:00 UTC" in line and "still running" in line
            for line in lines
        )
        spawner.children[0].release.set()
        settle(daemon)
    finally:
        daemon.shutdown()


def test_jittered_slot_starts_within_its_window(base: DemoBase) -> None:
    import random

    config = write_config(base, SCHEDULE_2AM + "  jitter: 10m\n")
    clock = FakeClock(DAY1.replace(hour=1))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner, rng=random.Random(7))
    try:
        daemon.start()
        assert daemon.planner is not None and daemon.planner.fire_at is not None
        fire_at = daemon.planner.fire_at
        assert DAY1.replace(hour=2) <= fire_at <= DAY1.replace(hour=2, minute=10)
        clock.at(fire_at - timedelta(seconds=1))
        daemon.step()
        assert spawner.children == []
        clock.at(fire_at)
        daemon.step()
        assert spawner.triggers() == ["schedule"]
        settle(daemon)
    finally:
        daemon.shutdown()


class Disk:
    """Programmed free-space readings (the statvfs figures of a filesystem)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.free_percent = 50.0

    def __call__(self, paths: list[Path]) -> list[Reading]:
        return [Reading(self.path, int(self.free_percent * 10_000), 1_000_000)]


PRESSURE = (
    "schedule:\n  enabled: false\n"
    "triggers:\n  disk_pressure:\n    enabled: true\n    min_free_percent: 10\n"
    "    hysteresis_percent: 5\n    cooldown: 30m\n    poll_interval: 60s\n"
    "    successful_hours: 24\n    failed_hours: 1\n"
)


def test_pressure_starts_one_early_run_with_tighter_retention_then_waits(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, PRESSURE)
    clock = FakeClock(DAY1)
    spawner = Spawner()
    disk = Disk(base.path)
    daemon = daemon_for(config, clock, spawner, measure_disks=disk)
    try:
        daemon.start()
        daemon.step()
        assert spawner.children == []
        disk.free_percent = 4.0
        clock.at(DAY1 + timedelta(seconds=61))
        daemon.step()
        assert spawner.triggers() == ["disk_pressure"]
        argv = spawner.children[0].argv
        assert argv[argv.index("--success-retention") + 1] == "24.0"
        assert argv[argv.index("--failed-retention") + 1] == "1.0"
        settle(daemon)
        # Still low, after the cooldown too: no loop until free space recovers above 15%.
        for minutes in (2, 40, 90):
            clock.at(DAY1 + timedelta(minutes=minutes))
            daemon.step()
        assert len(spawner.children) == 1
        disk.free_percent = 12.0  # above the threshold, below the hysteresis
        clock.at(DAY1 + timedelta(minutes=100))
        daemon.step()
        disk.free_percent = 5.0
        clock.at(DAY1 + timedelta(minutes=110))
        daemon.step()
        assert len(spawner.children) == 1
        disk.free_percent = 16.0  # re-armed
        clock.at(DAY1 + timedelta(minutes=120))
        daemon.step()
        disk.free_percent = 5.0
        clock.at(DAY1 + timedelta(minutes=130))
        daemon.step()
        assert spawner.triggers() == ["disk_pressure", "disk_pressure"]
        settle(daemon)
    finally:
        daemon.shutdown()
    assert any("disk pressure: " in line and "starting an early run" in line for line in lines)
    assert any("hysteresis" in line for line in lines)
    assert any("re-armed" in line for line in lines)
    assert [row[0] for row in schedule_rows(base.db) if row[2] == "started"] == [
        "disk_pressure",
        "disk_pressure",
    ]


def test_a_pressure_run_that_could_not_start_is_retried_after_the_cooldown_only(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, PRESSURE)
    clock = FakeClock(DAY1)
    spawner = Spawner()
    spawner.code = 2  # e.g. the database is broken: nothing was freed
    disk = Disk(base.path)
    disk.free_percent = 5.0
    daemon = daemon_for(config, clock, spawner, measure_disks=disk)
    try:
        daemon.start()
        daemon.step()
        settle(daemon)
        assert any("failed before finishing" in line for line in lines)
        clock.at(DAY1 + timedelta(minutes=10))
        daemon.step()
        assert len(spawner.children) == 1  # within the cooldown
        clock.at(DAY1 + timedelta(minutes=31))
        daemon.step()
        assert len(spawner.children) == 2  # not left disarmed by a run that freed nothing
        settle(daemon)
    finally:
        daemon.shutdown()


def test_pressure_runs_are_at_least_a_cooldown_apart(base: DemoBase, lines: list[str]) -> None:
    config = write_config(base, PRESSURE.replace("hysteresis_percent: 5", "hysteresis_percent: 0"))
    clock = FakeClock(DAY1)
    spawner = Spawner()
    disk = Disk(base.path)
    disk.free_percent = 5.0
    daemon = daemon_for(config, clock, spawner, measure_disks=disk)
    try:
        daemon.start()
        daemon.step()
        assert len(spawner.children) == 1
        settle(daemon)
        disk.free_percent = 20.0
        clock.at(DAY1 + timedelta(minutes=2))
        daemon.step()  # re-armed
        disk.free_percent = 5.0
        clock.at(DAY1 + timedelta(minutes=4))
        daemon.step()
        assert len(spawner.children) == 1  # cooling down
        assert any("may start in 26 min" in line for line in lines)
        clock.at(DAY1 + timedelta(minutes=31))
        daemon.step()
        assert len(spawner.children) == 2
        settle(daemon)
    finally:
        daemon.shutdown()


def test_a_good_config_is_reloaded_and_a_bad_one_refused_naming_the_key(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1)
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner)
    try:
        daemon.start()
        assert daemon.planner is not None
        assert daemon.planner.schedule.expression == "0 2 * * *"
        config.write_text(config.read_text().replace("0 2 * * *", "30 3 * * *"))
        clock.at(DAY1 + timedelta(seconds=HEARTBEAT_SECONDS + 1))
        daemon.step()
        assert daemon.planner.schedule.expression == "30 3 * * *"
        assert any(line.startswith("reloaded the configuration from") for line in lines)
        config.write_text(config.read_text().replace("30 3 * * *", "0 0 30 2 *"))
        for seconds in (40, 80):
            clock.at(DAY1 + timedelta(seconds=seconds))
            daemon.step()
        refused = [line for line in lines if line.startswith("config reload refused")]
        assert len(refused) == 1, refused  # one line, not one per check
        assert "schedule.cron" in refused[0] and "never fires" in refused[0]
        assert daemon.planner.schedule.expression == "30 3 * * *"
        # SIGHUP reads it again even when unchanged (still bad: refused again).
        daemon.request_reload()
        daemon.step()
        assert len([line for line in lines if line.startswith("config reload refused")]) == 2
    finally:
        daemon.shutdown()


def test_a_configmap_style_symlink_swap_is_noticed_and_reloaded(
    base: DemoBase, lines: list[str]
) -> None:
    # Kubernetes mounts a ConfigMap as name -> ..data/name, ..data -> ..<timestamp>/, and
    # updates it by making a new timestamped directory and renaming a new ..data over.
    mount = base.path / "configmap"
    first = mount / "..2026_12_01"
    first.mkdir(parents=True)
    write_config(base, SCHEDULE_2AM)
    (base.path / "cleanup_config.yaml").rename(first / "cleanup_config.yaml")
    text = (first / "cleanup_config.yaml").read_text().replace("./", f"{base.path}/")
    (first / "cleanup_config.yaml").write_text(text)
    (mount / "..data").symlink_to(first.name)
    (mount / "cleanup_config.yaml").symlink_to("..data/cleanup_config.yaml")
    clock = FakeClock(DAY1)
    spawner = Spawner()
    daemon = daemon_for(mount / "cleanup_config.yaml", clock, spawner)
    try:
        daemon.start()
        second = mount / "..2026_12_02"
        second.mkdir()
        (second / "cleanup_config.yaml").write_text(text.replace("0 2 * * *", "15 4 * * *"))
        (mount / "..data_tmp").symlink_to(second.name)
        (mount / "..data_tmp").rename(mount / "..data")
        # The watch on the mount directory sees the rename and wakes the loop at once.
        wait_for(daemon._config_hint.is_set, timeout=30)
        daemon.step()
        assert daemon.planner is not None
        assert daemon.planner.schedule.expression == "15 4 * * *"
    finally:
        daemon.shutdown()


def test_stop_lets_the_child_finish_and_kills_it_only_past_the_bound(base: DemoBase) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1.replace(hour=2))
    spawner = Spawner()
    spawner.blocking = True
    daemon = daemon_for(config, clock, spawner, stop_timeout=0.5)
    daemon.start()
    clock.at(DAY1.replace(hour=2, minute=0, second=1))
    daemon.planner.fire_at = clock.current  # type: ignore[union-attr]
    daemon.step()
    child = spawner.children[0]
    child.obey_terminate = False  # a run stuck on a filesystem
    daemon.request_stop()
    daemon.shutdown()
    assert child.terminated and child.killed

    spawner2 = Spawner()
    spawner2.blocking = True
    daemon = daemon_for(config, FakeClock(DAY1.replace(hour=2)), spawner2, stop_timeout=30)
    daemon.start()
    daemon.planner.fire_at = DAY1.replace(hour=2)  # type: ignore[union-attr]
    daemon.step()
    daemon.request_stop()
    daemon.shutdown()
    assert spawner2.children[0].terminated and not spawner2.children[0].killed


def test_the_child_gets_a_snapshot_of_the_validated_config_without_secrets(
    base: DemoBase, tmp_path: Path
) -> None:
    config = write_config(
        base,
        SCHEDULE_2AM + "notifications:\n  slack:\n    enabled: true\n"
        "    webhook_url: https://hooks.example.org/T000/B000/SECRETSECRET\n",
    )
    loaded = load_config(config_path=config, environ={})
    private = tmp_path / "private"
    private.mkdir()
    snapshot = snapshot_settings(loaded, private)
    assert "SECRETSECRET" not in snapshot.read_text()
    again = load_config(config_path=snapshot, environ={})
    assert again.roots == loaded.roots
    assert again.settings.retention == loaded.settings.retention
    argv = child_argv(snapshot, RunRequest("disk_pressure", failed_hours=2))
    assert argv[-2:] == ["--failed-retention", "2.0"]


def test_a_real_child_cleans_on_schedule_and_records_its_trigger(
    base: DemoBase, lines: list[str]
) -> None:
    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(datetime.now(UTC))
    daemon = Daemon(
        lambda: load_config(config_path=config, environ={}), clock=clock, work_dir=base.path
    )
    try:
        daemon.start()
        assert daemon.planner is not None
        daemon.planner.fire_at = clock.current  # the slot is due now
        daemon.step()
        assert daemon.active is not None
        wait_for(lambda: not daemon.active.thread.is_alive(), timeout=120)  # type: ignore[union-attr]
        result = daemon.active.result  # type: ignore[union-attr]
        daemon.step()
    finally:
        daemon.shutdown()
    assert result is not None and result.exit_code == 0, result
    assert result.finished is not None and result.finished.report.cleaned_jobs.successful > 0
    conn = sqlite3.connect(base.db)
    try:
        triggers = [row[0] for row in conn.execute("SELECT trigger FROM cleanup_log")]
    finally:
        conn.close()
    assert triggers == ["schedule"]
    assert any("finished with exit code 0" in line for line in lines)
    assert not daemon._private.exists()  # the snapshots went with the daemon


def test_the_daemon_sends_the_notice_and_metrics_of_its_child_once(
    base: DemoBase, lines: list[str]
) -> None:
    from servers import http_receiver

    with http_receiver() as hook:
        config = write_config(
            base,
            SCHEDULE_2AM
            + f"notifications:\n  slack:\n    enabled: true\n    webhook_url: {hook.url}\n"
            "    on: [success, failure]\n"
            "metrics:\n  textfile: ./metrics/eemt.prom\n",
        )
        (base.path / "metrics").mkdir()
        clock = FakeClock(datetime.now(UTC))
        daemon = Daemon(
            lambda: load_config(config_path=config, environ={}), clock=clock, work_dir=base.path
        )
        try:
            daemon.start()
            assert daemon.planner is not None
            daemon.planner.fire_at = clock.current
            daemon.step()
            wait_for(lambda: not daemon.active.thread.is_alive(), timeout=120)  # type: ignore[union-attr]
            daemon.step()
        finally:
            daemon.shutdown()
        # The child ran with --no-reports: the one notice is the daemon's, from its events.
        assert len(hook.requests) == 1, hook.requests
        assert {"title": "Trigger", "value": "schedule", "short": True} in (
            hook.requests[0].body["attachments"][0]["fields"]
        )
    metrics = (base.path / "metrics" / "eemt.prom").read_text()
    assert "eemt_cleanup_runs_total 1.0" in metrics
    assert 'eemt_cleanup_runs_by_trigger_total{trigger="schedule"} 1.0' in metrics


def test_a_reload_between_a_slot_and_its_jittered_start_keeps_the_slot(base: DemoBase) -> None:
    import random

    config = write_config(base, SCHEDULE_2AM + "  jitter: 10m\n")
    clock = FakeClock(DAY1.replace(hour=1))
    spawner = Spawner()
    daemon = daemon_for(config, clock, spawner, rng=random.Random(3))
    try:
        daemon.start()
        assert daemon.planner is not None and daemon.planner.fire_at is not None
        fire_at = daemon.planner.fire_at
        assert fire_at > DAY1.replace(hour=2)
        clock.at(DAY1.replace(hour=2))  # the slot has come, its delay not yet
        config.write_text(config.read_text() + "performance:\n  batch_size: 50\n")
        daemon.request_reload()
        daemon.step()
        assert daemon.config.settings.performance.batch_size == 50
        assert daemon.planner.fire_at == fire_at  # same schedule: the same armed start
        clock.at(fire_at)
        daemon.step()
        assert spawner.triggers() == ["schedule"]
        settle(daemon)
    finally:
        daemon.shutdown()


def test_a_pressure_run_refused_by_the_lock_leaves_the_gate_open(base: DemoBase) -> None:
    config = write_config(base, PRESSURE)
    clock = FakeClock(DAY1)
    spawner = Spawner()
    spawner.code = 75  # cron took the lock between our look and the child's start
    disk = Disk(base.path)
    disk.free_percent = 5.0
    daemon = daemon_for(config, clock, spawner, measure_disks=disk)
    try:
        daemon.start()
        daemon.step()
        settle(daemon)
        spawner.code = 0
        clock.at(DAY1 + timedelta(minutes=2))
        daemon.step()  # it never ran: no cooldown, no hysteresis to wait for
        assert spawner.triggers() == ["disk_pressure", "disk_pressure"]
        settle(daemon)
    finally:
        daemon.shutdown()


def test_a_fifo_planted_as_the_config_file_never_blocks_the_loop(base: DemoBase) -> None:
    import os

    config = write_config(base, SCHEDULE_2AM)
    clock = FakeClock(DAY1)
    daemon = daemon_for(config, clock, Spawner())
    try:
        daemon.start()
        config.unlink()
        os.mkfifo(config)
        done = threading.Event()

        def check() -> None:
            clock.at(DAY1 + timedelta(seconds=HEARTBEAT_SECONDS + 1))
            daemon.step()
            done.set()

        threading.Thread(target=check, daemon=True).start()
        assert done.wait(30), "the loop blocked on a FIFO"
        assert daemon.planner is not None  # the previous configuration stays
    finally:
        daemon.shutdown()

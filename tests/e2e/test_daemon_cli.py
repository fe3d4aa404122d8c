"""The real daemon, end to end: a schedule due within the test's minute and a disk-pressure
threshold on a small tmpfs; both runs land in ``history`` with their triggers; SIGHUP
reloads, SIGTERM stops it with exit 0; the health file is touched."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import cli_executable, guarded_env, make_demo_base
from servers import wait_for


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (a filesystem of our own, that the demo base fills enough)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_percent(path: Path) -> float:
    figures = os.statvfs(path)
    return 100.0 * figures.f_bavail / figures.f_blocks


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def history_triggers(config: Path, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [cli_executable(), "history", "--json", "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        return []
    return [row["trigger"] for row in json.loads(done.stdout)]


def test_the_daemon_runs_on_schedule_and_under_disk_pressure_reloads_and_stops(
    tmp_path: Path, small_disk: Path
) -> None:
    base = make_demo_base(small_disk / "base")
    # Fill the disk until less than 40% is free; the threshold sits just above what is free.
    filler = small_disk / "filler.bin"
    with filler.open("wb") as out:
        while free_percent(small_disk) > 40:
            out.write(b"\0" * 256 * 1024)
            out.flush()
    threshold = min(95.0, free_percent(small_disk) + 5)
    now = datetime.now(UTC)
    # The next minute, or the one after when it is too close (so the pressure run, first,
    # is over when the slot comes).
    slot = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (slot - now).total_seconds() < 15:
        slot += timedelta(minutes=1)
    config = base.path / "cleanup_config.yaml"
    config.write_text(
        "paths:\n  database: ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: ./logs\n"
        "schedule:\n"
        f"  cron: '{slot.minute} * * * *'\n"
        "  timezone: UTC\n"
        "triggers:\n"
        "  disk_pressure:\n"
        "    enabled: true\n"
        f"    min_free_percent: {threshold:.1f}\n"
        "    poll_interval: 2s\n"
        "    successful_hours: 1\n"
    )
    health = tmp_path / "health"
    stderr_path = tmp_path / "daemon.err"
    env = guarded_env(tmp_path, TMPDIR=str(tmp_path))
    with stderr_path.open("wb") as stderr:
        daemon = subprocess.Popen(
            [cli_executable(), "daemon", "-c", str(config), "--health-file", str(health)],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "disk_pressure" in history_triggers(config, env), timeout=90)
        assert "starting an early run" in read(stderr_path)
        assert health.exists()
        wait_for(
            lambda: "schedule" in history_triggers(config, env),
            timeout=(slot - datetime.now(UTC)).total_seconds() + 90,
        )
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "(SIGHUP)" in read(stderr_path), timeout=60)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=90)
        stopped_in = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    text = read(stderr_path)
    assert code == 0, text
    assert stopped_in < 60
    assert "Traceback" not in text
    assert "daemon stopped" in text
    triggers = history_triggers(config, env)
    assert triggers.count("disk_pressure") >= 1 and triggers.count("schedule") == 1, triggers
    # The pressure run used its tighter retention (1 hour): it cleaned successful jobs
    # only hours old, which a normal run (7 days) keeps.
    assert "successful after 1h" in text, text
    health_check = subprocess.run(
        [cli_executable(), "health", "--file", str(health)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert health_check.returncode == 0, health_check.stderr
    with contextlib.suppress(OSError):
        filler.unlink()

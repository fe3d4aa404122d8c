"""Unit tests of eemt_cleanup.daemon.pressure: the gate's hysteresis and cooldown on injected
times and readings, measure() on real filesystems, and the validation of
triggers.disk_pressure through the config loader."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eemt_cleanup.config.loader import load_config
from eemt_cleanup.config.schema import DiskPressure
from eemt_cleanup.daemon.pressure import PressureGate, Reading, Verdict, lowest, measure
from eemt_cleanup.errors import ConfigError

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
SIZE = 1_000_000
SHM = Path("/dev/shm")


def free(percent: float, path: str = "/srv/eemt") -> Reading:
    """A filesystem of SIZE bytes with ``percent`` free."""
    return Reading(Path(path), round(SIZE * percent / 100), SIZE)


def minutes(count: float) -> datetime:
    return T0 + timedelta(minutes=count)


def gate(minimum: float = 10.0, hysteresis: float = 5.0, cooldown: str = "30m") -> PressureGate:
    return PressureGate(
        DiskPressure(
            enabled=True,
            min_free_percent=minimum,
            hysteresis_percent=hysteresis,
            cooldown=cooldown,
        )
    )


# --- Reading ---------------------------------------------------------------------------------


def test_reading_free_percent() -> None:
    assert free(12.5).free_percent == 12.5
    assert Reading(Path("/"), 0, SIZE).free_percent == 0.0
    assert Reading(Path("/"), 0, 0).free_percent == 100.0  # no size: nothing to judge


# --- the gate --------------------------------------------------------------------------------


def test_above_the_threshold_is_ok() -> None:
    judge = gate()
    assert judge.judge(T0, free(50)) is Verdict.OK
    assert judge.judge(T0, free(10)) is Verdict.OK  # at the threshold is not below it
    assert judge.armed is True


def test_below_the_threshold_is_a_run_until_one_starts() -> None:
    judge = gate()
    assert judge.judge(T0, free(9.9)) is Verdict.RUN
    # Judging changes nothing: until started() is called, it is still a run.
    assert judge.judge(minutes(1), free(5)) is Verdict.RUN
    assert judge.armed is True
    assert judge.cooldown_left(T0) == 0.0


def test_after_a_run_still_below_waits_even_after_the_cooldown() -> None:
    judge = gate()
    judge.started(T0)
    assert judge.judge(minutes(1), free(5)) is Verdict.WAITING
    assert judge.judge(minutes(31), free(5)) is Verdict.WAITING
    assert judge.judge(minutes(24 * 60), free(9.99)) is Verdict.WAITING
    assert judge.armed is False


@pytest.mark.parametrize("recovered", [10.0, 12.0, 14.99])
def test_recovering_below_the_hysteresis_keeps_it_disarmed(recovered: float) -> None:
    judge = gate()
    judge.started(T0)
    assert judge.judge(minutes(5), free(recovered)) is Verdict.OK
    assert judge.armed is False
    assert judge.judge(minutes(60), free(9)) is Verdict.WAITING


def test_recovering_above_the_hysteresis_rearms_once_then_ok() -> None:
    judge = gate()
    judge.started(T0)
    assert judge.judge(minutes(5), free(15)) is Verdict.REARMED  # min + hysteresis exactly
    assert judge.armed is True
    assert judge.judge(minutes(6), free(15)) is Verdict.OK
    assert judge.judge(minutes(7), free(80)) is Verdict.OK


def test_below_again_within_the_cooldown_is_cooling_then_a_run() -> None:
    judge = gate(cooldown="30m")
    judge.started(T0)
    assert judge.judge(minutes(5), free(40)) is Verdict.REARMED
    assert judge.judge(minutes(10), free(8)) is Verdict.COOLING
    assert judge.cooldown_left(minutes(10)) == 20 * 60
    assert judge.judge(minutes(29) + timedelta(seconds=59), free(8)) is Verdict.COOLING
    assert judge.judge(minutes(30), free(8)) is Verdict.RUN
    assert judge.cooldown_left(minutes(30)) == 0.0
    assert judge.judge(minutes(90), free(8)) is Verdict.RUN


def test_the_whole_cycle_twice() -> None:
    judge = gate(minimum=20, hysteresis=10, cooldown="1h")
    verdicts: list[Verdict] = []
    timeline = [
        (0, 50, False),
        (1, 15, True),  # RUN, and one starts
        (2, 16, False),  # WAITING: not re-armed
        (70, 18, False),  # WAITING after the cooldown too
        (71, 25, False),  # OK, recovering but below 30
        (72, 30, False),  # REARMED
        (73, 31, False),  # OK
        (100, 12, False),  # RUN: re-armed and the hour since 1 has passed
    ]
    for minute, percent, starts in timeline:
        verdict = judge.judge(minutes(minute), free(percent))
        verdicts.append(verdict)
        if starts:
            judge.started(minutes(minute))
    assert verdicts == [
        Verdict.OK,
        Verdict.RUN,
        Verdict.WAITING,
        Verdict.WAITING,
        Verdict.OK,
        Verdict.REARMED,
        Verdict.OK,
        Verdict.RUN,
    ]


def test_zero_hysteresis_rearms_at_the_threshold() -> None:
    judge = gate(hysteresis=0, cooldown="0")
    assert judge.rearm_percent == 10.0
    judge.started(T0)
    assert judge.judge(minutes(1), free(9.99)) is Verdict.WAITING
    assert judge.judge(minutes(2), free(10)) is Verdict.REARMED
    assert judge.judge(minutes(3), free(10)) is Verdict.OK
    assert judge.judge(minutes(3), free(9.99)) is Verdict.RUN  # no cooldown either


def test_zero_hysteresis_still_honours_the_cooldown() -> None:
    judge = gate(hysteresis=0, cooldown="10m")
    judge.started(T0)
    assert judge.judge(minutes(1), free(11)) is Verdict.REARMED
    assert judge.judge(minutes(2), free(9)) is Verdict.COOLING
    assert judge.judge(minutes(10), free(9)) is Verdict.RUN


def test_rearm_level_is_capped_at_a_full_disk() -> None:
    judge = gate(minimum=99, hysteresis=5)
    assert judge.rearm_percent == 100.0
    judge.started(T0)
    assert judge.judge(minutes(1), free(99.5)) is Verdict.OK
    assert judge.judge(minutes(2), free(100)) is Verdict.REARMED


def test_cooldown_left_counts_down() -> None:
    judge = gate(cooldown="30m")
    assert judge.cooldown_left(T0) == 0.0
    judge.started(T0)
    assert judge.cooldown_left(T0) == 1800
    assert judge.cooldown_left(minutes(29)) == 60
    assert judge.cooldown_left(minutes(45)) == 0.0


# --- measure() and lowest() on real filesystems ------------------------------------------------


def other_filesystem(tmp_path: Path) -> Path:
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not a separate filesystem here")
    return SHM


def test_two_filesystems_give_two_readings(tmp_path: Path) -> None:
    shm = other_filesystem(tmp_path)
    readings = measure([tmp_path, shm])
    assert [reading.path for reading in readings] == [tmp_path, shm]
    for reading in readings:
        figures = os.statvfs(reading.path)
        assert reading.size_bytes == figures.f_blocks * figures.f_frsize
        assert reading.size_bytes > 0
        assert 0 <= reading.free_bytes <= reading.size_bytes
        assert 0.0 <= reading.free_percent <= 100.0


def test_one_filesystem_named_twice_gives_one_reading(tmp_path: Path) -> None:
    (tmp_path / "uploads").mkdir()
    (tmp_path / "results").mkdir()
    readings = measure([tmp_path / "uploads", tmp_path / "results", tmp_path])
    assert len(readings) == 1
    assert readings[0].path == tmp_path / "uploads"  # the first of our paths on it


def test_a_missing_path_is_skipped(tmp_path: Path) -> None:
    readings = measure([tmp_path / "missing", tmp_path])
    assert [reading.path for reading in readings] == [tmp_path]
    assert measure([tmp_path / "missing", tmp_path / "also" / "missing"]) == []


def test_a_file_path_is_measured_like_its_directory(tmp_path: Path) -> None:
    database = tmp_path / "jobs.db"
    database.write_bytes(b"")
    readings = measure([database, tmp_path])
    assert [reading.path for reading in readings] == [database]


def test_lowest_is_the_least_free_filesystem(tmp_path: Path) -> None:
    assert lowest([]) is None
    readings = [free(40, "/a"), free(7.5, "/b"), free(12, "/c")]
    found = lowest(readings)
    assert found is not None
    assert found.path == Path("/b")
    assert lowest(iter(readings)) == found
    shm = other_filesystem(tmp_path)
    measured = measure([tmp_path, shm])
    least = lowest(measured)
    assert least is not None
    assert least.free_percent == min(reading.free_percent for reading in measured)


# --- triggers.disk_pressure in the config ----------------------------------------------------


def pressure_error(tmp_path: Path, line: str) -> str:
    config = tmp_path / "cleanup_config.yaml"
    config.write_text(f"triggers:\n  disk_pressure:\n    {line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(config_path=config, environ={}, cwd=tmp_path)
    return str(raised.value)


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ("min_free_percent: 0", "min_free_percent", "must be > 0, got 0"),
        ("min_free_percent: -5", "min_free_percent", "must be > 0, got -5"),
        ("min_free_percent: 100", "min_free_percent", "100"),
        ("min_free_percent: 250", "min_free_percent", "250"),
        ("min_free_percent: ten", "min_free_percent", "must be a number, got 'ten'"),
        ("min_free_percent: .nan", "min_free_percent", "must be a finite number"),
        ("hysteresis_percent: -1", "hysteresis_percent", "must be >= 0, got -1"),
        ("cooldown: soon", "cooldown", "must be a duration like 6h, 30m, 1d or 0, got 'soon'"),
        ("cooldown: -5m", "cooldown", "must be a duration"),
        ("cooldown: 400d", "cooldown", "must be at most 366 days, got '400d'"),
        ("poll_interval: fast", "poll_interval", "must be a duration"),
        ("poll_interval: 500ms", "poll_interval", "must be a duration"),
        ("poll_interval: 2d", "poll_interval", "must be at most 24h, got '2d'"),
        ("poll_interval: '0'", "poll_interval", "must be at least 1s, got '0'"),
        ("poll_interval: 0.5s", "poll_interval", "must be at least 1s, got '0.5s'"),
        ("failed_hours: -1", "failed_hours", "must be >= 0, got -1"),
        ("enabled: sometimes", "enabled", "must be true or false"),
        ("min_free: 10", "min_free", "unknown key"),
    ],
)
def test_bad_disk_pressure_setting_is_a_config_error_naming_the_key(
    tmp_path: Path, line: str, key: str, words: str
) -> None:
    message = pressure_error(tmp_path, line)
    assert f"triggers.disk_pressure.{key}: " in message
    assert words in message
    assert "cleanup_config.yaml" in message  # and where it came from


@pytest.mark.parametrize("key", ["min_free_percent", "hysteresis_percent"])
def test_percent_of_a_hundred_is_refused_in_operator_words(tmp_path: Path, key: str) -> None:
    message = pressure_error(tmp_path, f"{key}: 100")
    assert f"triggers.disk_pressure.{key}: must be < 100, got 100" in message


def test_good_disk_pressure_settings_load(tmp_path: Path) -> None:
    config = tmp_path / "cleanup_config.yaml"
    config.write_text(
        "triggers:\n"
        "  disk_pressure:\n"
        "    enabled: true\n"
        "    min_free_percent: 7.5\n"
        "    hysteresis_percent: 0\n"
        "    cooldown: 2h\n"
        "    poll_interval: 1s\n"
        "    failed_hours: 1\n",
        encoding="utf-8",
    )
    pressure = load_config(config_path=config, environ={}, cwd=tmp_path).settings.triggers
    settings = pressure.disk_pressure
    assert settings.enabled is True
    assert settings.min_free_percent == 7.5
    assert settings.hysteresis_percent == 0
    assert settings.cooldown_seconds == 7200
    assert settings.poll_seconds == 1
    assert settings.failed_hours == 1
    assert settings.successful_hours is None


def test_disk_pressure_defaults() -> None:
    settings = DiskPressure()
    assert settings.enabled is False
    assert settings.min_free_percent == 10.0
    assert settings.hysteresis_percent == 5.0
    assert settings.cooldown_seconds == 1800
    assert settings.poll_seconds == 60
    assert PressureGate(settings).rearm_percent == 15.0

"""The Prometheus exposition built from SQLite: counters from the run log and the cleaned
counts, gauges from the latest usage sample, alert series, escaping, the textfile."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import create_jobs_db
from prometheus_client.parser import text_string_to_metric_families

from eemt_cleanup import load_config
from eemt_cleanup.config.loader import LoadedConfig
from eemt_cleanup.errors import DatabaseError
from eemt_cleanup.metrics import render, write_textfile
from eemt_cleanup.store.migrations import migrate
from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample, write_sample

GIB = 1024**3
T0 = datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC)

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]

EVERY_FAMILY = {
    "eemt_cleanup_runs",
    "eemt_cleanup_runs_by_trigger",
    "eemt_jobs_cleaned",
    "eemt_space_freed_bytes",
    "eemt_cleanup_files_deleted",
    "eemt_cleanup_duration_seconds",
    "eemt_cleanup_last_success_timestamp_seconds",
    "eemt_cleanup_last_run_exit_code",
    "eemt_cleanup_last_sample_timestamp_seconds",
    "eemt_storage_usage_bytes",
    "eemt_storage_usage_root_bytes",
    "eemt_cleanup_jobs_due",
    "eemt_cleanup_filesystem_free_bytes",
    "eemt_cleanup_filesystem_size_bytes",
    "eemt_cleanup_alert",
}


def parse(text: bytes) -> Series:
    """Every sample of the exposition, parsed by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode("utf-8"))
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def named(series: Series, name: str, label: str) -> dict[str, float]:
    """``{label value: sample value}`` of every series of ``name``."""
    return {dict(labels)[label]: found for (key, labels), found in series.items() if key == name}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A base directory with the web interface's jobs.db (never cleaned) and its roots."""
    for root in ("uploads", "results", "temp"):
        (tmp_path / root).mkdir()
    (tmp_path / "cleanup_config.yaml").touch()
    create_jobs_db(tmp_path / "jobs.db", [])
    return tmp_path


def config_of(base: Path, **overrides: Any) -> LoadedConfig:
    # A config file of its own (empty: defaults), so no file of the working directory counts.
    return load_config(
        base / "cleanup_config.yaml",
        db_path=str(base / "jobs.db"),
        uploads_dir=str(base / "uploads"),
        results_dir=str(base / "results"),
        temp_dir=str(base / "temp"),
        **overrides,
    )


def migrated(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, "jobs", "status", "dem_filename")
    return conn


def add_run(conn: sqlite3.Connection, run_id: str, **values: Any) -> None:
    row = {"run_id": run_id, "dry_run": 0, **values}
    columns, marks = ", ".join(row), ", ".join("?" * len(row))
    conn.execute(f"INSERT INTO cleanup_log ({columns}) VALUES ({marks})", list(row.values()))


def add_counts(
    conn: sqlite3.Connection, status: str, kind: str, jobs: int, freed: int = 0, files: int = 0
) -> None:
    # What a batch writes with its marks (store.audit), one row per status.
    conn.execute(
        "INSERT INTO cleanup_counts (run_id, recorded_at, status, kind, jobs, bytes_freed,"
        " files_deleted) VALUES ('r', '2026-11-20T02:00:00+00:00', ?, ?, ?, ?, ?)",
        (status, kind, jobs, freed, files),
    )


def sample(
    taken_at: datetime = T0,
    by_status: dict[str, int] | None = None,
    roots: dict[str, tuple[int, int | None, int | None]] | None = None,
    due_jobs: int = 0,
) -> UsageSample:
    """A usage sample: ``roots`` maps a root to (bytes, filesystem size, free)."""
    return UsageSample(
        sample_id=f"s-{taken_at.isoformat()}",
        taken_at=taken_at,
        source="status",
        by_status=[
            StatusUsage(status=status, jobs=1, bytes=size)
            for status, size in (by_status or {}).items()
        ],
        by_root=[
            RootUsage(root=root, jobs=1, bytes=size, fs_size=fs_size, fs_free=fs_free)
            for root, (size, fs_size, fs_free) in (roots or {}).items()
        ],
        due_jobs=due_jobs,
    )


def test_a_database_without_our_tables_gives_zeros_and_stays_untouched(base: Path) -> None:
    before = (base / "jobs.db").read_bytes()

    text = render(config_of(base))

    series = parse(text)
    families = {family.name for family in text_string_to_metric_families(text.decode())}
    assert families == EVERY_FAMILY
    assert value(series, "eemt_cleanup_runs_total") == 0
    assert named(series, "eemt_jobs_cleaned_total", "status") == {"completed": 0, "failed": 0}
    assert value(series, "eemt_space_freed_bytes_total") == 0
    assert value(series, "eemt_cleanup_files_deleted_total") == 0
    assert value(series, "eemt_cleanup_duration_seconds_count") == 0
    assert value(series, "eemt_cleanup_duration_seconds_sum") == 0
    assert set(named(series, "eemt_cleanup_duration_seconds_bucket", "le").values()) == {0}
    assert value(series, "eemt_cleanup_last_success_timestamp_seconds") == 0
    assert value(series, "eemt_cleanup_last_sample_timestamp_seconds") == 0
    # Unknown is not zero: no exit code before a run, no usage before a sample, no alerts
    # when none is configured.
    for name in (
        "eemt_cleanup_last_run_exit_code",
        "eemt_cleanup_jobs_due",
        "eemt_storage_usage_bytes",
        "eemt_storage_usage_root_bytes",
        "eemt_cleanup_filesystem_free_bytes",
        "eemt_cleanup_alert",
    ):
        assert not [key for key in series if key[0] == name], name
    # Read-only: not even our tables were added.
    assert (base / "jobs.db").read_bytes() == before


def test_counters_sum_real_finished_runs_and_every_batch_count(base: Path) -> None:
    conn = migrated(base / "jobs.db")
    add_run(
        conn,
        "ok",
        started_at="2026-11-20T02:00:00+00:00",
        finished_at="2026-11-20T02:00:30+00:00",
        bytes_freed=1000,
        files_deleted=10,
        exit_code=0,
    )
    add_run(
        conn,
        "dry",
        dry_run=1,
        started_at="2026-11-21T02:00:00+00:00",
        finished_at="2026-11-21T02:00:01+00:00",
        bytes_freed=999_999,
        files_deleted=999,
        exit_code=0,
    )
    add_run(
        conn,
        "partial",
        started_at="2026-11-22T02:00:00+00:00",
        finished_at="2026-11-22T04:30:00+00:00",
        bytes_freed=500,
        files_deleted=5,
        exit_code=1,
    )
    add_run(conn, "killed", started_at="2026-11-23T02:00:00+00:00")
    add_counts(conn, "completed", "successful", 3, 600, 6)
    add_counts(conn, "failed", "failed", 1, 400, 4)
    add_counts(conn, "completed", "successful", 2, 500, 5)
    conn.close()

    series = parse(render(config_of(base)))

    assert value(series, "eemt_cleanup_runs_total") == 2
    assert named(series, "eemt_jobs_cleaned_total", "status") == {"completed": 5, "failed": 1}
    assert value(series, "eemt_space_freed_bytes_total") == 1500
    assert value(series, "eemt_cleanup_files_deleted_total") == 15
    # 30 s and 2 h 30 min: the second is over every finite bucket.
    assert named(series, "eemt_cleanup_duration_seconds_bucket", "le") == {
        "1.0": 0,
        "5.0": 0,
        "15.0": 0,
        "60.0": 1,
        "300.0": 1,
        "900.0": 1,
        "1800.0": 1,
        "3600.0": 1,
        "7200.0": 1,
        "+Inf": 2,
    }
    assert value(series, "eemt_cleanup_duration_seconds_count") == 2
    assert value(series, "eemt_cleanup_duration_seconds_sum") == 30 + 9000
    assert value(series, "eemt_cleanup_last_success_timestamp_seconds") == (
        datetime(2026, 11, 20, 2, 0, 30, tzinfo=UTC).timestamp()
    )
    assert value(series, "eemt_cleanup_last_run_exit_code") == 1


def test_a_status_configured_later_and_one_no_longer_configured_both_have_series(
    base: Path,
) -> None:
    conn = migrated(base / "jobs.db")
    add_counts(conn, "done", "successful", 4)
    conn.close()
    (base / "cleanup_config.yaml").write_text(
        "jobs:\n  statuses:\n    successful: [completed, finished]\n"
    )

    series = parse(render(config_of(base)))

    assert named(series, "eemt_jobs_cleaned_total", "status") == {
        "completed": 0,
        "finished": 0,
        "failed": 0,
        "done": 4,
    }


def test_gauges_come_from_the_latest_usage_sample(base: Path) -> None:
    conn = migrated(base / "jobs.db")
    write_sample(conn, sample(T0, {"completed": 1}, {"results": (1, 10, 9)}, due_jobs=9))
    newer = T0 + timedelta(hours=1)
    write_sample(
        conn,
        sample(
            newer,
            {"completed": 3 * GIB, "archived": 5},
            {
                "uploads": (2 * GIB, 100 * GIB, 40 * GIB),
                "results": (GIB, 100 * GIB, 40 * GIB),
                "temp": (7, None, None),
            },
            due_jobs=4,
        ),
    )
    conn.close()

    series = parse(render(config_of(base)))

    # Every configured status is measured by a sample: those it does not list hold 0 bytes.
    assert named(series, "eemt_storage_usage_bytes", "status") == {
        "completed": 3 * GIB,
        "failed": 0,
        "pending": 0,
        "running": 0,
        "archived": 5,
    }
    assert named(series, "eemt_storage_usage_root_bytes", "root") == {
        "uploads": 2 * GIB,
        "results": GIB,
        "temp": 7,
    }
    # temp's filesystem could not be asked: no series rather than a false 0.
    assert named(series, "eemt_cleanup_filesystem_free_bytes", "root") == {
        "uploads": 40 * GIB,
        "results": 40 * GIB,
    }
    assert named(series, "eemt_cleanup_filesystem_size_bytes", "root") == {
        "uploads": 100 * GIB,
        "results": 100 * GIB,
    }
    assert value(series, "eemt_cleanup_jobs_due") == 4
    assert value(series, "eemt_cleanup_last_sample_timestamp_seconds") == newer.timestamp()


def alert_series(base: Path, usage: UsageSample, **alerts: Any) -> dict[tuple[str, str], float]:
    conn = migrated(base / "jobs.db")
    write_sample(conn, usage)
    conn.close()
    overrides = {f"alerts__{key}": setting for key, setting in alerts.items()}
    series = parse(render(config_of(base, **overrides)))
    return {
        (dict(labels)["alert"], dict(labels)["root"]): found
        for (name, labels), found in series.items()
        if name == "eemt_cleanup_alert"
    }


def test_crossed_alerts_give_1_per_root_and_the_uncrossed_root_gives_0(base: Path) -> None:
    usage = sample(
        roots={
            "uploads": (GIB, 1000 * GIB, 50 * GIB),  # 5% free, the same filesystem as results
            "results": (200 * GIB, 1000 * GIB, 50 * GIB),
            "temp": (GIB, 100 * GIB, 50 * GIB),  # 50% free
        }
    )

    found = alert_series(base, usage, max_results_bytes="100G", min_free_percent=10)

    assert found == {
        ("max_results_bytes", "results"): 1,
        ("min_free_percent", "results"): 1,
        ("min_free_percent", "temp"): 0,
        ("min_free_percent", "uploads"): 1,
    }


def test_configured_thresholds_not_crossed_give_0_series(base: Path) -> None:
    usage = sample(
        roots={root: (GIB, 100 * GIB, 50 * GIB) for root in ("uploads", "results", "temp")}
    )

    found = alert_series(base, usage, max_results_bytes="100G", min_free_percent=10)

    assert found == {
        ("max_results_bytes", "results"): 0,
        ("min_free_percent", "results"): 0,
        ("min_free_percent", "temp"): 0,
        ("min_free_percent", "uploads"): 0,
    }


def test_only_the_configured_threshold_has_series(base: Path) -> None:
    usage = sample(roots={"results": (200 * GIB, 1000 * GIB, 10 * GIB)})

    found = alert_series(base, usage, max_results_bytes="100G")

    assert found == {("max_results_bytes", "results"): 1}


def test_label_values_from_the_database_are_escaped_by_the_text_format(base: Path) -> None:
    hostile = 'we"ird\\sta\ntus'
    conn = migrated(base / "jobs.db")
    add_counts(conn, hostile, "successful", 2)
    write_sample(conn, sample(by_status={hostile: 9}))
    conn.close()

    text = render(config_of(base))

    assert b'eemt_jobs_cleaned_total{status="we\\"ird\\\\sta\\ntus"} 2.0\n' in text
    assert b'eemt_storage_usage_bytes{status="we\\"ird\\\\sta\\ntus"} 9.0\n' in text
    series = parse(text)
    assert value(series, "eemt_jobs_cleaned_total", status=hostile) == 2
    assert value(series, "eemt_storage_usage_bytes", status=hostile) == 9


def test_control_characters_and_bytes_not_utf8_become_escapes_and_alike_values_merge(
    base: Path,
) -> None:
    conn = migrated(base / "jobs.db")
    add_counts(conn, "bad\x1b[31m", "successful", 1)
    add_counts(conn, "bad\\x1b[31m", "successful", 2)  # already the escape, literally
    conn.execute(
        "INSERT INTO cleanup_counts (status, kind, jobs) VALUES (CAST(X'6ae97421' AS TEXT),"
        " 'failed', 5)"
    )
    conn.close()

    text = render(config_of(base))

    assert b"\x1b" not in text
    text.decode("utf-8")  # a label value must be UTF-8: the stray byte is an escape
    # Two series with one label set would make Prometheus refuse the whole file.
    assert named(parse(text), "eemt_jobs_cleaned_total", "status") == {
        "completed": 0,
        "failed": 0,
        "bad\\x1b[31m": 3,
        "j\\xe9t!": 5,
    }


def test_the_registry_is_dedicated_and_rendering_twice_gives_the_same_text(base: Path) -> None:
    config = config_of(base)

    first, second = render(config), render(config)

    assert first == second
    # The global registry's process and platform collectors are not in it.
    assert b"process_" not in first and b"python_info" not in first


def test_a_missing_database_raises_database_error(base: Path) -> None:
    config = config_of(base)
    (base / "jobs.db").unlink()

    with pytest.raises(DatabaseError, match=r"database not found: .*jobs\.db"):
        render(config)


def test_write_textfile_replaces_the_file_and_leaves_no_temporary_file(base: Path) -> None:
    target = base / "collector" / "eemt_cleanup.prom"
    target.parent.mkdir()
    target.write_text("old\n")
    conn = migrated(base / "jobs.db")
    add_counts(conn, "completed", "successful", 7)
    conn.close()

    write_textfile(config_of(base), target)

    assert [entry.name for entry in target.parent.iterdir()] == ["eemt_cleanup.prom"]
    assert target.read_bytes() == render(config_of(base))
    assert value(parse(target.read_bytes()), "eemt_jobs_cleaned_total", status="completed") == 7


def test_write_textfile_into_a_missing_directory_raises_and_creates_nothing(base: Path) -> None:
    target = base / "missing" / "eemt_cleanup.prom"

    with pytest.raises(FileNotFoundError):
        write_textfile(config_of(base), target)

    assert not (base / "missing").exists()


def test_write_textfile_replaces_a_planted_symlink_and_never_writes_through_it(
    base: Path,
) -> None:
    # The collector directory may be writable by node_exporter's user; we run as root.
    victim = base / "victim"
    victim.write_text("precious\n")
    collector = base / "collector"
    collector.mkdir()
    target = collector / "eemt_cleanup.prom"
    target.symlink_to(victim)
    # prometheus_client's write_to_textfile would open this name, predictable, with open().
    predictable = Path(f"{target}.{os.getpid()}.{threading.current_thread().ident}")
    predictable.symlink_to(victim)
    old_umask = os.umask(0o077)
    try:
        write_textfile(config_of(base), target)
    finally:
        os.umask(old_umask)

    assert victim.read_text() == "precious\n"
    assert predictable.is_symlink()
    assert not target.is_symlink() and target.is_file()
    # Readable by node_exporter's own user whatever the umask.
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_bytes() == render(config_of(base))

"""``eemt-cleanup metrics`` from the installed CLI: counters monotonic across cron-like
runs in separate processes, the textfile for node_exporter, and its errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult, DemoBase, create_jobs_db, error_line, guarded_env
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
COUNTERS = (
    "eemt_cleanup_runs_total",
    "eemt_space_freed_bytes_total",
    "eemt_cleanup_files_deleted_total",
    "eemt_cleanup_duration_seconds_count",
)


def parse(text: str) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def empty_config(directory: Path) -> Path:
    # A config file of its own, so no cleanup_config.yaml of the working directory counts.
    config = directory / "cleanup_config.yaml"
    config.touch()
    return config


def metrics(run_cli, base: DemoBase, *extra: str) -> CliResult:  # type: ignore[no-untyped-def]
    config = empty_config(base.path)
    return run_cli("metrics", "-c", str(config), "--db-path", str(base.db), *extra)


def scrape(run_cli, base: DemoBase) -> Series:  # type: ignore[no-untyped-def]
    done = metrics(run_cli, base)
    assert done.code == 0, done.stderr
    assert done.stderr == ""
    return parse(done.stdout)


def real_run(run_cli, base: DemoBase, *extra: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    config = empty_config(base.path)
    done = run_cli("run", "--json", "-c", str(config), *base.path_args(), *extra)
    assert done.code == 0, done.stderr
    return done.json()  # type: ignore[no-any-return]


def test_counters_follow_each_run_across_processes_and_never_decrease(
    demo_base: DemoBase, run_cli
) -> None:
    first = real_run(run_cli, demo_base)
    after_first = scrape(run_cli, demo_base)
    # A dry run changes nothing, so it counts for nothing.
    real_run(run_cli, demo_base, "--dry-run")
    after_dry_run = scrape(run_cli, demo_base)
    # Retention 0: the jobs kept by the first run are due now.
    second = real_run(run_cli, demo_base, "--success-retention", "0", "--failed-retention", "0")
    after_second = scrape(run_cli, demo_base)

    assert first["cleaned_jobs"]["successful"] > 0 and first["cleaned_jobs"]["failed"] > 0
    assert second["cleaned_jobs"]["successful"] > 0 and second["cleaned_jobs"]["failed"] > 0
    assert value(after_first, "eemt_cleanup_runs_total") == 1
    assert value(after_second, "eemt_cleanup_runs_total") == 2
    runs = (first, second)
    for series, done in ((after_first, runs[:1]), (after_second, runs)):
        # The demo's statuses: completed is the one successful status, failed the one failed.
        assert value(series, "eemt_jobs_cleaned_total", status="completed") == sum(
            run["cleaned_jobs"]["successful"] for run in done
        )
        assert value(series, "eemt_jobs_cleaned_total", status="failed") == sum(
            run["cleaned_jobs"]["failed"] for run in done
        )
        assert value(series, "eemt_space_freed_bytes_total") == sum(
            run["space_freed"]["bytes"] for run in done
        )
        assert value(series, "eemt_cleanup_files_deleted_total") == sum(
            run["files_deleted"] for run in done
        )
        assert value(series, "eemt_cleanup_duration_seconds_count") == value(
            series, "eemt_cleanup_runs_total"
        )
        assert value(series, "eemt_cleanup_last_run_exit_code") == 0
        assert value(series, "eemt_cleanup_last_success_timestamp_seconds") > 0
    assert {key: after_dry_run[key] for key in after_first if key[0] in COUNTERS} == {
        key: after_first[key] for key in after_first if key[0] in COUNTERS
    }
    counters = [
        key for key in after_first if key[0] in COUNTERS or key[0] == "eemt_jobs_cleaned_total"
    ]
    for key in counters:
        assert after_first[key] <= after_dry_run[key] <= after_second[key], key
    assert value(after_second, "eemt_space_freed_bytes_total") > value(
        after_first, "eemt_space_freed_bytes_total"
    )


def test_storage_gauges_match_what_status_measured(demo_base: DemoBase, run_cli) -> None:
    config = empty_config(demo_base.path)
    status = run_cli("status", "--json", "-c", str(config), *demo_base.path_args())
    assert status.code == 0, status.stderr

    series = scrape(run_cli, demo_base)

    measured = {group["status"]: group["bytes"] for group in status.json()["by_status"]}
    gauges = {
        dict(labels)["status"]: found
        for (name, labels), found in series.items()
        if name == "eemt_storage_usage_bytes" and found
    }
    assert gauges == {status: size for status, size in measured.items() if size}
    assert value(series, "eemt_cleanup_jobs_due") == status.json()["due_now"]
    assert value(series, "eemt_cleanup_filesystem_free_bytes", root="results") > 0
    assert value(series, "eemt_cleanup_runs_total") == 0


def test_textfile_is_written_whole_with_no_temporary_file_left(
    demo_base: DemoBase, run_cli, tmp_path: Path
) -> None:
    real_run(run_cli, demo_base)
    collector = tmp_path / "textfile_collector"
    collector.mkdir()
    target = collector / "eemt_cleanup.prom"

    done = metrics(run_cli, demo_base, "--textfile", str(target))

    assert done.code == 0, done.stderr
    assert done.stdout == f"wrote {target}\n"
    assert [entry.name for entry in collector.iterdir()] == ["eemt_cleanup.prom"]
    assert value(parse(target.read_text()), "eemt_cleanup_runs_total") == 1


def test_textfile_in_a_missing_directory_is_exit_2_naming_the_path(
    demo_base: DemoBase, run_cli, tmp_path: Path
) -> None:
    target = tmp_path / "no_such_dir" / "eemt_cleanup.prom"

    done = metrics(run_cli, demo_base, "--textfile", str(target))

    assert done.code == 2
    assert done.stdout == ""
    assert error_line(done) == (
        f"--textfile: cannot write the metrics to {target}: No such file or directory"
    )
    assert not target.parent.exists()


def test_textfile_not_ending_in_prom_is_exit_2(demo_base: DemoBase, run_cli) -> None:
    done = metrics(run_cli, demo_base, "--textfile", str(demo_base.path / "metrics.txt"))

    assert done.code == 2
    assert error_line(done) == (
        f"--textfile {demo_base.path / 'metrics.txt'}: must end in .prom (node_exporter "
        "reads only those)"
    )
    assert not (demo_base.path / "metrics.txt").exists()


def test_a_missing_database_is_exit_2_with_one_line(run_cli, tmp_path: Path) -> None:
    config = empty_config(tmp_path)
    missing = tmp_path / "absent.db"

    done = run_cli("metrics", "-c", str(config), "--db-path", str(missing))

    assert done.code == 2
    assert done.stdout == ""
    assert error_line(done) == (
        f"database not found: {missing} (set paths.database, EEMT_DB_PATH or --db-path)"
    )


def test_a_database_never_cleaned_gives_zeros_and_is_not_changed(run_cli, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    create_jobs_db(db, [{"id": "a", "status": "completed", "completed_at": "2026-01-01"}])
    before = db.read_bytes()
    config = empty_config(tmp_path)

    done = run_cli("metrics", "-c", str(config), "--db-path", str(db))

    assert done.code == 0, done.stderr
    series = parse(done.stdout)
    assert value(series, "eemt_cleanup_runs_total") == 0
    assert value(series, "eemt_jobs_cleaned_total", status="completed") == 0
    assert value(series, "eemt_jobs_cleaned_total", status="failed") == 0
    assert value(series, "eemt_space_freed_bytes_total") == 0
    assert value(series, "eemt_cleanup_duration_seconds_count") == 0
    assert value(series, "eemt_cleanup_last_success_timestamp_seconds") == 0
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    finally:
        conn.close()
    assert tables == ["jobs", "sqlite_autoindex_jobs_1"]


def test_a_run_with_metrics_textfile_configured_writes_it(demo_base: DemoBase, run_cli) -> None:
    (demo_base.path / "prom").mkdir()
    config = demo_base.path / "cleanup_config.yaml"
    config.write_text("metrics:\n  textfile: prom/eemt_cleanup.prom\n")

    done = run_cli("run", "--quiet", "-c", str(config), *demo_base.path_args())

    assert done.code == 0, done.stderr
    written = parse((demo_base.path / "prom" / "eemt_cleanup.prom").read_text())
    assert value(written, "eemt_cleanup_runs_total") == 1
    assert value(written, "eemt_cleanup_last_sample_timestamp_seconds") > 0


def test_help_explains_the_textfile_collector_with_the_example_path(run_cli) -> None:
    done = run_cli("metrics", "--help")

    assert done.code == 0
    assert "node_exporter's" in done.stdout and "textfile collector" in done.stdout
    assert (
        "eemt-cleanup metrics --textfile "
        "/var/lib/node_exporter/textfile_collector/eemt_cleanup.prom" in done.stdout
    )


def test_the_cli_starts_without_loading_prometheus_client(tmp_path: Path) -> None:
    probe = "import sys, eemt_cleanup.cli; print('prometheus_client' in sys.modules)"

    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=guarded_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert done.stdout == "False\n"

"""What lasts between runs and what goes out after one: usage samples, per-status counts
written with each batch, disk alerts, and the Outlets subscriber."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DemoBase

from eemt_cleanup import load_config, run_cleanup
from eemt_cleanup.alerts import AlertKind, check_alerts
from eemt_cleanup.config.schema import Alerts
from eemt_cleanup.engine import RunOptions
from eemt_cleanup.outlets import Outlets
from eemt_cleanup.sampling import sample_from, store_sample, take_sample
from eemt_cleanup.stocktake import take_inventory
from eemt_cleanup.store.usage import (
    RootUsage,
    StatusUsage,
    UsageSample,
    cleaned_totals,
    latest_sample,
    run_stats,
    samples_since,
)

GIB = 1024**3


def config_of(base: DemoBase, **overrides: object):  # type: ignore[no-untyped-def]
    # A config file of its own (empty: defaults), so no cleanup_config.yaml of the working
    # directory is picked up; the logs go beside it.
    config_file = base.path / "cleanup_config.yaml"
    config_file.touch()
    return load_config(
        config_file,
        db_path=str(base.db),
        uploads_dir=str(base.path / "uploads"),
        results_dir=str(base.path / "results"),
        temp_dir=str(base.path / "temp"),
        **overrides,
    )


def test_a_sample_splits_the_measured_data_by_status_and_by_root(demo_base: DemoBase) -> None:
    config = config_of(demo_base)
    inventory = take_inventory(config, measure=True, store_sizes=False)
    sample = sample_from(config, inventory, source="status")

    by_status = {group.status: group.bytes for group in sample.by_status}
    assert by_status == {g.status: g.bytes_used for g in inventory.groups.values()}
    # Every byte of job data lies in exactly one root.
    assert sum(usage.bytes for usage in sample.by_root) == sample.total_bytes
    assert {usage.root for usage in sample.by_root} == {"uploads", "results", "temp"}
    results = sample.root("results")
    assert results is not None and results.bytes > 0
    assert results.fs_size and results.fs_free is not None and results.fs_free <= results.fs_size
    assert sample.due_jobs == inventory.due_now > 0
    assert sample.due_bytes == inventory.due_bytes


def test_a_stored_sample_reads_back_whole_and_in_order(demo_base: DemoBase) -> None:
    config = config_of(demo_base)
    first = take_sample(config, source="status")
    assert store_sample(config, first) is None
    second = take_sample(config, source="run", run_id="r-2")
    assert store_sample(config, second) is None

    conn = sqlite3.connect(demo_base.db)
    try:
        latest = latest_sample(conn)
        history = samples_since(conn, datetime.now(UTC) - timedelta(hours=1))
    finally:
        conn.close()
    assert latest is not None
    assert latest.sample_id == second.sample_id and latest.run_id == "r-2"
    assert latest.by_status == second.by_status and latest.by_root == second.by_root
    assert (latest.due_jobs, latest.due_bytes) == (second.due_jobs, second.due_bytes)
    assert [sample.sample_id for sample in history] == [first.sample_id, second.sample_id]


def test_a_sample_that_cannot_be_stored_is_a_reason_not_an_exception(
    demo_base: DemoBase, tmp_path: Path
) -> None:
    config = config_of(demo_base)
    sample = take_sample(config, source="status")
    config.roots = dataclasses.replace(config.roots, database=tmp_path / "absent" / "jobs.db")

    problem = store_sample(config, sample)

    assert problem is not None and "absent" in problem


def test_a_real_run_counts_its_jobs_per_status_in_the_batches_transaction(
    demo_base: DemoBase,
) -> None:
    config = config_of(demo_base, batch_size=2)
    report = run_cleanup(config, RunOptions(trigger="test"))
    summary = report.summary()

    conn = sqlite3.connect(demo_base.db)
    try:
        totals = {total.status: total for total in cleaned_totals(conn)}
        stats = run_stats(conn)
        rows = conn.execute("SELECT count(*) FROM cleanup_counts").fetchone()[0]
    finally:
        conn.close()
    cleaned = {job.status for job in summary.details}
    assert set(totals) == cleaned
    assert sum(t.jobs for t in totals.values() if t.kind == "successful") == (
        summary.cleaned_jobs.successful
    )
    assert sum(t.jobs for t in totals.values() if t.kind == "failed") == summary.cleaned_jobs.failed
    assert sum(t.bytes_freed for t in totals.values()) == summary.space_freed.bytes
    assert sum(t.files_deleted for t in totals.values()) == summary.files_deleted
    assert stats.runs == 1 and stats.bytes_freed == summary.space_freed.bytes
    assert stats.last_exit_code == 0 and stats.last_success_at is not None
    # At least a row per batch of two: written with each batch, not once at the end.
    cleaned_jobs = summary.cleaned_jobs.successful + summary.cleaned_jobs.failed
    assert rows >= (cleaned_jobs + 1) // 2 >= 2


def sample_with(results_bytes: int, roots: dict[str, tuple[int, int, int]]) -> UsageSample:
    return UsageSample(
        sample_id="s",
        taken_at=datetime(2026, 12, 1, tzinfo=UTC),
        source="status",
        by_status=[StatusUsage(status="completed", jobs=3, bytes=results_bytes)],
        by_root=[
            RootUsage(
                root=name,
                jobs=1,
                bytes=results_bytes if name == "results" else 0,
                fs_size=size,
                fs_free=free,
                fs_id=device,
            )
            for name, (size, free, device) in roots.items()
        ],
    )


def test_results_over_the_limit_raise_one_alert_with_both_sizes() -> None:
    alerts = Alerts(max_results_bytes="100G")
    over = sample_with(101 * GIB, {"results": (1000 * GIB, 500 * GIB, 1)})
    under = sample_with(100 * GIB, {"results": (1000 * GIB, 500 * GIB, 1)})

    [alert] = check_alerts(alerts, over)
    assert alert.kind is AlertKind.MAX_RESULTS_BYTES
    assert alert.roots == ["results"]
    assert alert.message == (
        "results holds 101.0 GB of job data, over the alert threshold of 100.0 GB"
        " (alerts.max_results_bytes)"
    )
    assert check_alerts(alerts, under) == []


def test_low_free_space_is_one_alert_per_filesystem_naming_its_roots() -> None:
    alerts = Alerts(min_free_percent=10)
    shared = (100 * GIB, 5 * GIB, 7)
    # uploads and results share device 7; temp is another filesystem (device 8).
    sample = sample_with(
        GIB, {"uploads": shared, "results": shared, "temp": (100 * GIB, 50 * GIB, 8)}
    )

    [alert] = check_alerts(alerts, sample)
    assert alert.kind is AlertKind.MIN_FREE_PERCENT
    assert alert.roots == ["uploads", "results"]
    assert alert.value == 5.0 and alert.threshold == 10
    assert alert.message == (
        "the filesystem of uploads, results has 5.0% free (5.0 GB), under the alert threshold"
        " of 10% (alerts.min_free_percent)"
    )


def test_two_filesystems_with_equal_figures_are_two_alerts() -> None:
    same = (100 * GIB, 5 * GIB)
    sample = sample_with(GIB, {"uploads": (*same, 1), "results": (*same, 2)})

    alerts = check_alerts(Alerts(min_free_percent=10), sample)

    assert [alert.roots for alert in alerts] == [["uploads"], ["results"]]


def test_no_thresholds_or_no_sample_raise_nothing() -> None:
    sample = sample_with(10**15, {"results": (100, 1, 1)})
    assert check_alerts(Alerts(), sample) == []
    assert check_alerts(Alerts(min_free_percent=50, max_results_bytes=1), None) == []


def test_the_subscriber_samples_alerts_and_never_changes_the_outcome(
    demo_base: DemoBase, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_of(demo_base, alerts__min_free_percent=100.0)
    outlets = Outlets(config)
    caplog.set_level("WARNING", logger="eemt_cleanup")

    report = run_cleanup(config, RunOptions(trigger="test"), on_event=outlets)

    assert report.outcome == "done"
    out = outlets.result
    assert out is not None and out.usage is not None and out.usage.run_id == report.run_id
    # After the run nothing is due any more, and the sample says so.
    assert out.usage.due_jobs == 0
    assert [alert.kind for alert in out.alerts] == [AlertKind.MIN_FREE_PERCENT]
    assert any(
        record.getMessage().startswith("ALERT: the filesystem of") for record in caplog.records
    )
    assert out.problems == []
    conn = sqlite3.connect(demo_base.db)
    try:
        stored = latest_sample(conn)
    finally:
        conn.close()
    assert stored is not None and stored.sample_id == out.usage.sample_id


def test_the_subscriber_does_nothing_for_a_dry_run(demo_base: DemoBase) -> None:
    config = config_of(demo_base, usage__sample_after_run=True)
    outlets = Outlets(config)
    run_cleanup(config, RunOptions(dry_run=True, trigger="test"), on_event=outlets)
    assert outlets.result is None
    conn = sqlite3.connect(demo_base.db)
    try:
        assert latest_sample(conn) is None
    finally:
        conn.close()


def test_the_png_replaces_a_planted_symlink_and_is_0644_whatever_the_umask(
    tmp_path: Path,
) -> None:
    from matplotlib.figure import Figure

    from eemt_cleanup.report.chart import _save

    # The chart's directory may be a web server's: nothing is done by path to what is there.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    target = tmp_path / "www" / "capacity.png"
    target.parent.mkdir()
    target.symlink_to(victim)
    old_umask = os.umask(0o077)
    try:
        _save(Figure(figsize=(2, 1)), target)
    finally:
        os.umask(old_umask)

    assert victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert not target.is_symlink()
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["capacity.png"]


def test_a_part_that_raises_is_a_problem_and_the_notices_still_go_out(
    demo_base: DemoBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from servers import http_receiver

    import eemt_cleanup.sampling

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(eemt_cleanup.sampling, "take_sample", broken)
    with http_receiver() as hook:
        config = config_of(
            demo_base,
            notifications__slack__enabled=True,
            notifications__slack__webhook_url=hook.url,
            notifications__slack__on=["success"],
        )
        outlets = Outlets(config)
        report = run_cleanup(config, RunOptions(trigger="test"), on_event=outlets)

    assert report.outcome == "done"
    out = outlets.result
    assert out is not None
    assert out.problems == ["the usage sample failed: RuntimeError: boom"]
    assert [(n.channel, n.decision) for n in out.notifications] == [("slack", "sent")]
    assert len(hook.bodies) == 1

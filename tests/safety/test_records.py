"""Item 9: what a run reports is exactly what it recorded.

When a batch's commit fails for good — another writer holds the database past every retry,
or the database file is replaced under the run — those jobs are not counted as cleaned in
the report, the JSON or ``cleanup_log``; the run says so and exits 1. The journal keeps
what they freed; a later run that finds such a job with no data left marks it, counts it
once and writes the audit rows (paths, bytes, the deleting run's id) the first run could
not. Over every run, the jobs counted in ``cleanup_log`` equal the jobs marked.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.engine import RunReport
from eemt_cleanup.report.json_out import report_to_dict

from .conftest import Harness, attribute
from .state_helpers import WebSimulator, start_slow_web_write

RETRY = "  busy_timeout_seconds: 0.2\n  commit_retry_seconds: {retry}\n"


def configure(harness: Harness, retry: float) -> None:
    # The harness's config file ends with its performance section.
    harness.config_file.write_text(harness.config_file.read_text() + RETRY.format(retry=retry))


def once(action: Callable[[], None]) -> Callable[[int, str], None]:
    """A before_open hook that acts the first time a job directory is opened, i.e. while
    the first job is being deleted and before any batch is committed."""
    done: list[bool] = []

    def hook(_parent_fd: int, _name: str) -> None:
        if not done:
            done.append(True)
            action()

    return hook


def counted_in_run_log(harness: Harness) -> int:
    ((total,),) = harness.query(
        "SELECT coalesce(sum(jobs_successful), 0) + coalesce(sum(jobs_failed), 0) FROM cleanup_log"
    )
    return int(total)


def journal(harness: Harness) -> Path:
    return harness.base / "logs" / "cleanup-journal.jsonl"


def assert_deleted_but_not_counted(harness: Harness, report: RunReport) -> None:
    for job in harness.legit:
        for path in job.artifacts(harness.base):
            assert not os.path.lexists(path), path
    assert exit_code(report) == 1
    data = report_to_dict(report)
    assert data["cleaned_jobs"] == {"successful": 0, "failed": 0}
    assert data["success"] is False
    assert report.unrecorded == len(harness.legit)
    assert any("could not be written" in error for error in data["errors"]), data["errors"]
    for detail in data["details"]:
        assert any("its record could not be written" in e for e in detail["errors"]), detail
    assert data["space_freed"]["bytes"] > 0, "the bytes really freed are still reported"
    assert harness.marked() == set()
    assert counted_in_run_log(harness) == 0
    assert journal(harness).stat().st_size > 0


def assert_recorded_once_by_the_next_run(harness: Harness, first: RunReport) -> None:
    """The next run records what ``first`` deleted, once; the writer's own files (its
    report, under tmp_path/writer) are the test's, not the run's."""
    second = harness.run()

    assert exit_code(second) == 0, second.errors
    assert second.cleaned("successful") == len(harness.legit)
    assert {job.job_id for job in second.recovered} == {job.job_id for job in harness.legit}
    assert second.bytes_freed == 0, "the second run freed nothing itself"
    freed_first = {job.job_id: job.bytes_freed for job in first.jobs}
    for job in second.recovered:
        assert job.recovered_run == first.run_id
        assert job.recovered_bytes == freed_first[job.job_id]
    assert {job.job_id for job in harness.legit} <= harness.marked()
    assert counted_in_run_log(harness) == harness.marked_count() == len(harness.legit)
    # The paths the first run deleted are in the audit, under its run id, with their bytes.
    rows = harness.query(
        "SELECT job_id, path, bytes_freed FROM cleanup_audit WHERE run_id = ? "
        "AND action LIKE 'deleted_%'",
        (first.run_id,),
    )
    by_path = {(job_id, path): freed for job_id, path, freed in rows}
    for job in first.jobs:
        assert {path for (job_id, path) in by_path if job_id == job.job_id} == set(job.paths)
        assert sum(v for (job_id, _), v in by_path.items() if job_id == job.job_id) == (
            job.bytes_freed
        )
    assert not journal(harness).exists(), "nothing is left unrecorded"
    third = harness.run()
    assert third.jobs == [] and exit_code(third) == 0
    assert counted_in_run_log(harness) == harness.marked_count()
    harness.assert_safe(second, changing=[harness.tmp / "writer"])


def test_a_writer_holding_the_database_past_every_retry_leaves_the_jobs_uncounted(
    harness: Harness,
) -> None:
    configure(harness, retry=1.0)
    writers: list[WebSimulator] = []
    hook = once(
        lambda: writers.append(start_slow_web_write(harness.db, harness.tmp / "writer", seconds=60))
    )
    harness.arm()
    try:
        first = harness.run(before_open=hook, deadline=60)
    finally:
        for writer in writers:
            writer.process.kill()
            writer.process.wait()

    assert writers, "the hook never ran"
    assert_deleted_but_not_counted(harness, first)
    assert any("database is locked" in error for error in first.errors), first.errors
    assert_recorded_once_by_the_next_run(harness, first)


def test_a_writer_that_lets_go_within_the_retry_time_is_waited_for(harness: Harness) -> None:
    configure(harness, retry=30.0)
    writers: list[WebSimulator] = []
    hook = once(
        lambda: writers.append(
            start_slow_web_write(harness.db, harness.tmp / "writer", seconds=1.5)
        )
    )
    harness.arm()
    try:
        report = harness.run(before_open=hook, deadline=60)
    finally:
        requests = [writer.stop(timeout=60) for writer in writers]

    assert [request["errors"] for request in requests] == [[]], "the web write failed"
    assert exit_code(report) == 0, report.errors
    assert report.cleaned("successful") == len(harness.legit)
    assert counted_in_run_log(harness) == harness.marked_count() == len(harness.legit)
    conn = sqlite3.connect(harness.db)  # the web request's own row is not the run's doing
    with conn:
        conn.execute("DELETE FROM jobs WHERE id = ?", (requests[0]["job_id"],))
    conn.close()
    harness.assert_safe(report, changing=[harness.tmp / "writer"])


def test_a_database_replaced_during_the_run_is_never_written_and_nothing_is_counted(
    harness: Harness,
) -> None:
    configure(harness, retry=30.0)  # a replaced file is not retried: the run stops at once
    copy = harness.tmp / "restored.db"

    def restore_a_backup() -> None:
        shutil.copy2(harness.db, copy)
        os.replace(copy, harness.db)

    harness.arm()
    old = os.stat(harness.db).st_ino
    first = harness.run(before_open=once(restore_a_backup), deadline=60)

    assert os.stat(harness.db).st_ino != old
    assert_deleted_but_not_counted(harness, first)
    assert any("was replaced or removed during the run" in e for e in first.errors), first.errors
    assert_recorded_once_by_the_next_run(harness, first)


def test_a_run_killed_between_deleting_and_committing_is_recorded_with_its_bytes(
    harness: Harness,
) -> None:
    # The journal's "after" line is written before the commit: simulate the commit never
    # happening (as a SIGKILL at that instant would) by making the books drop the batch.
    # A killed run never gets to settle its journal either: only the lines written around
    # each batch, before its commit, are left.
    from eemt_cleanup.store import books, journal

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(books.Books, "record", lambda self, batch, timestamp: "killed")
        patch.setattr(books.Books, "flush", lambda self, timestamp, patient: "killed")
        patch.setattr(journal.Journal, "settle", lambda self, unrecorded, gone: None)
        first = harness.run()

    assert_deleted_but_not_counted(harness, first)
    assert_recorded_once_by_the_next_run(harness, first)


def test_a_job_that_failed_in_a_committed_batch_is_not_carried_twice(harness: Harness) -> None:
    # The job's other paths went and were audited in a committed batch; only its results
    # tree could not go. The next run must not write those audit rows a second time.
    victim = harness.legit[0]
    stuck = victim.results(harness.base) / "outputs" / "tile_000.tif"
    with attribute("i", stuck):
        first = harness.run()
    assert exit_code(first) == 1
    assert victim.job_id not in harness.marked()
    assert not journal(harness).exists(), "a committed batch leaves nothing to carry"

    second = harness.run()

    assert exit_code(second) == 0, second.errors
    assert second.recovered == []
    for path in (f"temp/{victim.job_id}/", f"uploads/{victim.upload}"):
        rows = harness.query(
            "SELECT run_id FROM cleanup_audit WHERE job_id = ? AND path = ?",
            (victim.job_id, path),
        )
        assert rows == [(first.run_id,)], (path, rows)
    assert counted_in_run_log(harness) == harness.marked_count() == len(harness.legit)
    harness.assert_safe(None)  # the second run only had the victim left to clean


def test_a_row_removed_by_the_web_interface_during_the_run_is_not_counted_nor_an_error(
    harness: Harness,
) -> None:
    # Between the re-read and the commit the user deletes the job in the web interface:
    # its data went, its audit rows are written, but there is no row to mark or count.
    victim = harness.legit[0]

    def delete_the_row() -> None:
        conn = sqlite3.connect(harness.db)
        with conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (victim.job_id,))
        conn.close()

    harness.arm()
    report = harness.run(before_open=once(delete_the_row), deadline=60)

    assert exit_code(report) == 0, report.errors
    assert report.cleaned("successful") == len(harness.legit) - 1
    assert report.unrecorded == 0
    assert counted_in_run_log(harness) == harness.marked_count() == len(harness.legit) - 1
    assert harness.query(
        "SELECT count(*) FROM cleanup_audit WHERE job_id = ? AND action LIKE 'deleted_%'",
        (victim.job_id,),
    ) == [(4,)]
    assert not journal(harness).exists()


def test_a_forged_or_broken_journal_never_stops_the_run_or_fakes_records(
    harness: Harness,
) -> None:
    # logs/ may be writable by the web application: whatever it puts in the journal, the run
    # goes on, cleans what is due, and counts nothing it did not verify on disk.
    victim = harness.legit[0]
    journal(harness).parent.mkdir()
    journal(harness).write_bytes(
        b'{"v":1,"run":"x","batch":"not a number","done":[]}\n'
        b'{"v":1,"run":"x","batch":1,"done":[{"job":"' + victim.job_id.encode() + b'",'
        b'"audit":[["deleted_results","../etc",1,1]],"bytes":-5,"files":"many"}]}\n'
        b'{"v":1,"run":"x","batch":2,"intent":"nope","done":[17,null]}\n'
        + b"[" * 100_000
        + b"\n\xff\xfe not json\n"
    )

    report = harness.run()

    assert exit_code(report) == 0, report.errors
    assert report.cleaned("successful") == len(harness.legit)
    (carried,) = [job for job in report.jobs if job.job_id == victim.job_id]
    assert (carried.recovered_bytes, carried.recovered_files) == (0, 0)
    assert harness.query("SELECT count(*) FROM cleanup_audit WHERE path = '../etc'") == [(0,)], (
        "a malformed audit row from the journal was written"
    )
    assert counted_in_run_log(harness) == harness.marked_count() == len(harness.legit)
    assert not journal(harness).exists()
    harness.assert_safe(report)

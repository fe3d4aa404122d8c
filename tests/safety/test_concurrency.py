"""Concurrency with the web interface (SPEC §2, §7): while a run deletes, another process
uses the same database the way the EEMT web interface does.

The simulator (``state_helpers.py simulate``) is a separate process with one
``sqlite3.connect(path)`` and every default (5 s timeout, default isolation level). Many
times a second it inserts pending jobs, moves them pending → running → completed (recent, so
never due), reads ``SELECT *`` by position, each write in its own commit, and counts every
``sqlite3.OperationalError``.

How the re-queue race is made deterministic: the engine plans every due job before it
touches any, so the moment the first due job's ``temp/<id>/`` disappears, planning is over.
The simulator polls for exactly that and then puts the *last* due job back to ``running``.
The first due job has ten times the files of the others, and some thirty jobs stand between
it and the last one, so the run is still far from the last job when the flip lands (the
simulator needs one loop of a few milliseconds). If the flip came too late, the run would
have cleaned the job and the test would fail; it cannot pass by accident, because the
skip reason "status changed to running since planning" is only given to a job that was
planned as due and read again as running.

The runs under the simulator start on a database that a previous run already migrated (as
every run but the first finds it), so they judge the deleting phase alone. The first run's
migration is judged separately, against a web write transaction that is open while it
starts: the busy timeout must make it wait, not fail.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.config.loader import load_config
from eemt_cleanup.engine import RunOptions, Skip, run_cleanup
from eemt_cleanup.models import SkipReason

from .state_helpers import (
    SafetyBase,
    audited_ids,
    build_base,
    completion_problems,
    has_column,
    kept_logs,
    marked_ids,
    premigrate,
    query,
    run_log,
    run_to_end,
    start_run,
    start_slow_web_write,
    start_web_simulator,
    wait_until,
)

pytestmark = pytest.mark.e2e

DUE_JOBS = 32
FILES_PER_JOB = 200
FIRST_JOB_FILES = 2000
HOLD_SECONDS = 1.0
REQUEUED_REASON = "status changed to running since planning"
LOCKED = "database is locked"


def concurrency_base(root: Path, seed: int) -> SafetyBase:
    return build_base(
        root,
        seed=seed,
        due_jobs=DUE_JOBS,
        files_per_job=FILES_PER_JOB,
        first_job_files=FIRST_JOB_FILES,
    )


def job_snapshot(base: SafetyBase, job_id: str) -> dict[str, Any]:
    from conftest import snapshot

    job = base.job(job_id)
    assert job is not None
    found: dict[str, Any] = {}
    for path in base.artifacts(job):
        found[path.name] = snapshot(path) if path.is_dir() else path.read_bytes()
    return found


def simulator_problems(report: dict[str, Any], db: Path, window: tuple[float, float]) -> list[str]:
    """The web interface's side: no error at all, busy during the whole run, every row it
    committed still there with the status it gave it and never marked cleaned."""
    problems = []
    if report["errors"]:
        problems.append(f"the web interface got errors: {report['errors']}")
    problems += report["anomalies"]
    start, end = window
    if not (report["started_at"] < start and report["finished_at"] > end):
        problems.append("the simulator was not running for the whole cleanup run")
    during = [moment for moment in report["write_times"] if start <= moment <= end]
    if len(during) < 10 * (end - start):
        problems.append(f"only {len(during)} web writes in the {end - start:.1f} s run")
    statuses = report["statuses"]
    rows = query(db, "SELECT id, status, data_cleaned_at FROM jobs")
    found = {job_id: (status, cleaned) for job_id, status, cleaned in rows}
    for job_id, status in statuses.items():
        if job_id not in found:
            problems.append(f"the web interface's job {job_id} is gone")
        elif found[job_id] != (status, None):
            problems.append(f"the web interface's job {job_id} is {found[job_id]}, not {status}")
    return problems


@pytest.mark.parametrize(
    ("workers", "batch_size", "requeued_status"),
    [(1, 2, "running"), (4, 10, "pending")],
    ids=["workers1-batch2-running", "workers4-batch10-pending"],
)
def test_web_interface_writing_during_a_run_sees_no_lock_and_a_requeued_job_is_untouched(
    tmp_path: Path, workers: int, batch_size: int, requeued_status: str
) -> None:
    base = concurrency_base(tmp_path / "site", seed=7000 + workers)
    first, requeued = base.due[0], base.due[-1]
    protected, logs = base.protected_snapshot(), kept_logs(base)
    requeued_before = job_snapshot(base, requeued.job_id)
    premigrated = premigrate(base)

    web = start_web_simulator(
        base.db,
        tmp_path / "web",
        requeue=requeued.job_id,
        requeue_when_gone=base.path / "temp" / first.job_id,
        requeue_status=requeued_status,
    )
    try:
        start = time.time()
        run = start_run(base, "--json", "--workers", str(workers), "--batch-size", str(batch_size))
        outcome = run.wait(120)
        end = time.time()
    finally:
        report = web.stop()

    during = [moment for moment in report["write_times"] if start <= moment <= end]
    print(
        f"run {end - start:.2f} s; web: {len(during)} commits during it "
        f"({len(during) / (end - start):.0f}/s), {report['counts']}, errors {report['errors']}; "
        f"re-queued {report['requeued_at'] - start:.2f} s after the run started"
        if report["requeued_at"]
        else "never re-queued"
    )
    assert outcome.code == 0, outcome.stderr
    result = outcome.json()
    assert result["success"] is True
    assert result["errors"] == []
    assert LOCKED not in outcome.stderr
    # The simulator flipped the job after planning, and the run read it again and left it.
    assert report["requeued_at"] is not None
    assert start < report["requeued_at"] < end
    assert report["requeue_planned_status"] == requeued.status
    reason = f"status changed to {requeued_status} since planning"
    assert {"job_id": requeued.job_id, "reason": reason} in result["skipped"]
    assert requeued.job_id not in {detail["job_id"] for detail in result["details"]}
    assert job_snapshot(base, requeued.job_id) == requeued_before
    assert query(
        base.db, "SELECT status, data_cleaned_at FROM jobs WHERE id = ?", [requeued.job_id]
    ) == [(requeued_status, None)]
    assert audited_ids(base.db)[requeued.job_id] == 0
    # Everything else was cleaned as if nobody had been writing.
    assert completion_problems(base, protected, logs, left_alone=[requeued.job_id]) == []
    assert marked_ids(base.db) == {job.job_id for job in base.due[:-1]}
    assert simulator_problems(report, base.db, (start, end)) == []
    exit_codes = {row["run_id"]: row["exit_code"] for row in run_log(base.db)}
    assert exit_codes == {premigrated: 0, result["run_id"]: 0}


class RequeueWhenPlanned:
    """An event subscriber that is the web interface putting a job of a later batch back to
    ``running`` with its own default connection, when the first job starts: after the run
    planned, before it touches that job."""

    def __init__(self, db: Path, job_id: str) -> None:
        self.db = db
        self.job_id = job_id
        self.requeued = 0
        self.done: list[str] = []

    def __call__(self, event: Any) -> None:
        if event.kind == "job_started" and not self.requeued:
            self.requeued += 1
            conn = sqlite3.connect(self.db)
            try:
                conn.execute(
                    "UPDATE jobs SET status = 'running', completed_at = NULL WHERE id = ?",
                    (self.job_id,),
                )
                conn.commit()
            finally:
                conn.close()
        if event.kind == "job_finished":
            self.done.append(event.job.job_id)


def test_job_requeued_by_the_web_interface_in_planned_callback_is_skipped_while_it_writes(
    tmp_path: Path,
) -> None:
    base = build_base(tmp_path / "site", seed=7100, due_jobs=12, files_per_job=200)
    requeued = base.due[5]
    protected, logs = base.protected_snapshot(), kept_logs(base)
    requeued_before = job_snapshot(base, requeued.job_id)
    loaded = load_config(
        environ={},
        cwd=base.path,
        overrides={
            "paths.database": (str(base.db), "--db-path"),
            "paths.uploads": (str(base.path / "uploads"), "--uploads-dir"),
            "paths.results": (str(base.path / "results"), "--results-dir"),
            "paths.temp": (str(base.path / "temp"), "--temp-dir"),
            "performance.max_workers": (2, "--workers"),
            "performance.batch_size": (3, "--batch-size"),
        },
    )
    events = RequeueWhenPlanned(base.db, requeued.job_id)
    premigrate(base)

    web = start_web_simulator(base.db, tmp_path / "web")
    try:
        start = time.time()
        report = run_cleanup(loaded, RunOptions(), events)
        end = time.time()
    finally:
        web_report = web.stop()

    assert events.requeued == 1
    assert requeued.job_id not in events.done
    assert (
        Skip(
            job_id=requeued.job_id,
            reason=REQUEUED_REASON,
            code=SkipReason.STATUS_CHANGED,
            status=requeued.status,
        )
        in report.skipped
    )
    assert report.errors == []
    assert exit_code(report) == 0
    assert job_snapshot(base, requeued.job_id) == requeued_before
    assert completion_problems(base, protected, logs, left_alone=[requeued.job_id]) == []
    assert simulator_problems(web_report, base.db, (start, end)) == []


def test_web_interface_keeps_writing_through_a_sigterm_and_the_run_stops_cleanly(
    tmp_path: Path,
) -> None:
    """A stop under load: the books are written through the web interface's traffic."""
    base = concurrency_base(tmp_path / "site", seed=7200)
    first = base.due[0]
    premigrated = premigrate(base)
    web = start_web_simulator(base.db, tmp_path / "web")
    try:
        start = time.time()
        run = start_run(base, "--json", "--workers", "1", "--batch-size", "2")
        gone = base.path / "results" / first.job_id
        wait_until(
            lambda: not gone.exists() or run.process.poll() is not None, 120, "deletion starts"
        )
        run.signal(signal.SIGTERM)
        outcome = run.wait(120)
        end = time.time()
    finally:
        report = web.stop()

    assert outcome.code == 143, outcome.stderr
    result = json.loads(outcome.stdout)
    assert result["success"] is False
    assert 0 < len(result["details"]) < len(base.due)
    assert LOCKED not in outcome.stderr
    exit_codes = {row["run_id"]: row["exit_code"] for row in run_log(base.db)}
    assert exit_codes == {premigrated: 0, result["run_id"]: 143}
    assert simulator_problems(report, base.db, (start, end)) == []


@pytest.mark.parametrize("moment", ["migrating", "deleting"])
def test_web_write_transaction_open_for_a_second_delays_the_run_but_fails_neither_side(
    tmp_path: Path, moment: str
) -> None:
    """A web request that writes, then commits a second later (it saves an upload in
    between). While the first run adds its columns and tables, or while a run deletes, the
    run must wait for the commit (busy timeout) and the request must succeed."""
    base = build_base(tmp_path / "site", seed=7300, due_jobs=12, files_per_job=200)
    protected, logs = base.protected_snapshot(), kept_logs(base)
    if moment == "migrating":
        assert not has_column(base.db, "jobs", "data_cleaned_at")
        web = start_slow_web_write(
            base.db, tmp_path / "web", seconds=HOLD_SECONDS, until_locked=True
        )
    else:
        premigrate(base)
        web = start_slow_web_write(
            base.db,
            tmp_path / "web",
            seconds=HOLD_SECONDS,
            when_gone=base.path / "temp" / base.due[0].job_id,
        )
    try:
        outcome = run_to_end(base, "--json", "--workers", "1", "--batch-size", "2")
    finally:
        request = web.stop()

    assert request["errors"] == []
    assert request["committed_at"] is not None
    assert outcome.code == 0, outcome.stderr
    assert outcome.json()["errors"] == []
    assert query(base.db, "SELECT status FROM jobs WHERE id = ?", [request["job_id"]]) == [
        ("pending",)
    ]
    assert completion_problems(base, protected, logs) == []

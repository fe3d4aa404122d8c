"""Signals: SIGTERM / SIGINT while a real run deletes.

The first signal lets the job in hand finish, writes its batch (marks and audit rows) and
the run-log row, prints a partial summary and exits 143 / 130; the jobs it did not reach are
left exactly as they were for the next run. A second signal while the first is being
honoured stops the run at once; what it leaves is still a state the next run completes.

Each run is signalled once it is deleting: the poll waits until the first due job's
directory is gone (or, for the second-signal cases, its temp directory, with its large
results tree still to go), never for a fixed time.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from .state_helpers import (
    CliRun,
    SafetyBase,
    audited_ids,
    build_base,
    completion_problems,
    count_entries,
    kept_logs,
    lock_is_free,
    marked_ids,
    run_log,
    run_to_end,
    start_run,
    state_violations,
    wait_until,
)

pytestmark = pytest.mark.e2e

DUE_JOBS = 40
FILES_PER_JOB = 300
LARGE_JOB_FILES = 30_000
# A second signal must end the run well within this, however large the job in hand.
PROMPT_SECONDS = 1.0
# Python runs a signal handler between bytecodes of the main thread; two signals of one
# kind that arrive before it ran are merged into one call. This gives it time to run.
HANDLER_SECONDS = 0.2
ANSI = "\x1b["
SUMMARY = re.compile(
    r"^Cleanup summary: (?:(\d+) completed jobs?)?(?: and )?(?:(\d+) failed jobs?)? cleaned, "
    r"\d+(\.\d)? \w+ freed$"
)


def signal_base(root: Path, seed: int, first_job_files: int | None = None) -> SafetyBase:
    # No upload shared by two due jobs: every job not reached keeps all of its own data.
    return build_base(
        root,
        seed=seed,
        due_jobs=DUE_JOBS,
        files_per_job=FILES_PER_JOB,
        first_job_files=first_job_files,
        share_due_upload=False,
    )


def signal_when_deleting(base: SafetyBase, run: CliRun, number: int) -> None:
    """Send ``number`` once the first due job's results directory is gone."""
    first = base.path / "results" / base.due[0].job_id
    wait_until(lambda: not first.exists() or run.process.poll() is not None, 120, "deletion starts")
    assert run.process.poll() is None, "the run ended before it could be signalled"
    run.signal(number)


def reached_in_order(base: SafetyBase, cleaned: list[str]) -> None:
    """The jobs a stopped run cleaned are the first ones in due order; the others are
    untouched and unmarked, and every job whose data was touched was cleaned and marked."""
    assert 1 <= len(cleaned) < len(base.due)
    assert cleaned == [job.job_id for job in base.due[: len(cleaned)]]
    touched = [job.job_id for job in base.due if base.touched(job)]
    assert touched == cleaned
    assert marked_ids(base.db) == set(cleaned)
    for job in base.due[len(cleaned) :]:
        assert all(path.exists() for path in base.artifacts(job)), job


@pytest.mark.parametrize(
    ("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "sigint"]
)
def test_signal_while_deleting_finishes_the_job_in_hand_writes_the_books_and_exits_with_its_code(
    tmp_path: Path, number: int, code: int
) -> None:
    base = signal_base(tmp_path / "site", seed=9000 + number)
    protected, logs = base.protected_snapshot(), kept_logs(base)
    run = start_run(base, "--json", "--workers", "1", "--batch-size", "2")
    signal_when_deleting(base, run, number)
    outcome = run.wait(120)

    assert outcome.code == code, outcome.stderr
    report = json.loads(outcome.stdout)  # exactly one JSON object, nothing else
    assert report["success"] is False
    assert report["errors"] == []
    assert report["finished_at"] is not None
    cleaned = [detail["job_id"] for detail in report["details"]]
    assert all(detail["errors"] == [] for detail in report["details"])
    counted = report["cleaned_jobs"]["successful"] + report["cleaned_jobs"]["failed"]
    assert counted == len(cleaned)
    assert report["files_deleted"] > 0
    assert report["space_freed"]["bytes"] > 0
    reached_in_order(base, cleaned)
    audited = audited_ids(base.db, report["run_id"])
    assert set(audited) == set(cleaned)
    assert (
        f"Cleanup stopped by {signal.Signals(number).name}; the rest is left for the next run"
        in (outcome.stderr)
    )
    (row,) = run_log(base.db)
    assert row["run_id"] == report["run_id"]
    assert row["pid"] == run.pid
    assert row["exit_code"] == code
    assert row["finished_at"] is not None
    assert row["jobs_successful"] + row["jobs_failed"] == len(cleaned)
    assert row["files_deleted"] == report["files_deleted"]
    assert state_violations(base) == []
    assert lock_is_free(base)

    rerun = run_to_end(base, "--json", "--workers", "1", "--batch-size", "2")

    assert rerun.code == 0, rerun.stderr
    rest = rerun.json()
    assert [detail["job_id"] for detail in rest["details"]] == [
        job.job_id for job in base.due[len(cleaned) :]
    ]
    assert completion_problems(base, protected, logs) == []
    assert [row["exit_code"] for row in run_log(base.db)] == [code, 0]


def test_sigterm_during_a_plain_run_ends_its_output_with_the_summary_lines(
    tmp_path: Path,
) -> None:
    base = signal_base(tmp_path / "site", seed=9100)
    run = start_run(base, "--workers", "1", "--batch-size", "2")
    signal_when_deleting(base, run, signal.SIGTERM)
    outcome = run.wait(120)

    assert outcome.code == 143, outcome.stderr
    assert ANSI not in outcome.stdout
    lines = outcome.stdout.splitlines()
    assert lines[-1] == "WARNING: Cleanup stopped by SIGTERM; the rest is left for the next run"
    summary = SUMMARY.match(lines[-2])
    assert summary is not None, lines[-2]
    cleaned = int(summary.group(1) or 0) + int(summary.group(2) or 0)
    assert 1 <= cleaned < len(base.due)
    assert len(marked_ids(base.db)) == cleaned
    assert [row["exit_code"] for row in run_log(base.db)] == [143]


def double_signal(base: SafetyBase) -> tuple[CliRun, float, int]:
    """SIGTERM a run while it deletes its large first job, then SIGTERM it again; return the
    run, the seconds from the second signal to its exit, and how many entries of the large
    job's results tree were left (-1: none, the job was finished)."""
    large = base.due[0]
    run = start_run(base, "--json", "--workers", "1", "--batch-size", "2")
    temp = base.path / "temp" / large.job_id
    wait_until(lambda: not temp.exists() or run.process.poll() is not None, 120, "deleting")
    run.signal(signal.SIGTERM)
    time.sleep(HANDLER_SECONDS)
    assert run.process.poll() is None, "the large job was done before the second signal"
    second = time.monotonic()
    run.signal(signal.SIGTERM)
    run.process.wait(120)
    waited = time.monotonic() - second
    return run, waited, count_entries(base.path / "results" / large.job_id)


def test_second_signal_while_the_first_is_honoured_exits_without_finishing_the_job_in_hand(
    tmp_path: Path,
) -> None:
    base = signal_base(tmp_path / "site", seed=9200, first_job_files=LARGE_JOB_FILES)
    run, waited, left = double_signal(base)
    outcome = run.wait()

    assert outcome.code == 143, outcome.stderr
    assert waited < PROMPT_SECONDS and left > 0, (
        f"after the second SIGTERM the run went on for {waited:.2f} s and "
        + (f"left {left} entries" if left > 0 else "finished deleting")
        + f" of the {LARGE_JOB_FILES}-file job in hand"
    )


def test_second_signal_while_the_first_is_honoured_leaves_a_state_the_next_run_completes(
    tmp_path: Path,
) -> None:
    base = signal_base(tmp_path / "site", seed=9300, first_job_files=LARGE_JOB_FILES)
    protected, logs = base.protected_snapshot(), kept_logs(base)
    run, _, _ = double_signal(base)
    outcome = run.wait()

    assert outcome.code == 143, outcome.stderr
    assert state_violations(base) == []
    assert lock_is_free(base)
    (row,) = run_log(base.db)
    assert row["exit_code"] in (None, 143)

    rerun = run_to_end(base, "--json", "--workers", "1", "--batch-size", "2")

    assert rerun.code == 0, rerun.stderr
    assert completion_problems(base, protected, logs) == []
    assert run_log(base.db)[-1]["exit_code"] == 0

"""Crash consistency (SPEC §7): SIGKILL real runs at random instants.

Each trial builds a fresh base (due completed and failed jobs of a few hundred files each,
retained, pending and running jobs, an upload shared by a due and a retained job, another
shared by two due jobs, a link out of the roots in every due job), starts the installed
``eemt-cleanup run --json`` and SIGKILLs it after a seeded random delay. The delays are
stratified over the duration of an uninterrupted run on an identical base (measured once at
the start), from half-way through start-up to just past the end, so kills land before,
during and after the deletions. After each kill: no job is marked cleaned while any of its
data exists, the database is intact and the lock is free; then a rerun must finish the work
with a full audit trail and touch nothing else.

The bases live on ``/dev/shm``, in a directory of the test's own that is removed afterwards
(``tmp_path`` where there is no ``/dev/shm``): a SIGKILL does not lose the page cache, so
the filesystem does not change what a crash leaves, and tmpfs keeps the trials inside CI
time whatever the disk is doing. The per-trial table is printed (``pytest -rP`` shows it).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .state_helpers import (
    SafetyBase,
    audited_ids,
    build_base,
    completion_problems,
    kept_logs,
    lock_is_free,
    marked_ids,
    memory_scratch,
    run_log,
    run_to_end,
    start_run,
    state_violations,
    wait_until,
)

pytestmark = pytest.mark.e2e

SEED = 20240120
TRIALS = 20
DUE_JOBS = 56
FILES_PER_JOB = 300
# (workers, batch size): mostly the slow, fine-grained shape, some parallel batches.
SHAPES = [(1, 2), (1, 2), (1, 1), (2, 2), (2, 3)]


@dataclass
class Trial:
    number: int
    seed: int
    workers: int
    batch_size: int
    delay: float
    phase: str = ""
    marked_after_kill: int = 0
    killed_row: str = ""
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"trial {self.number:2d} seed {self.seed} workers {self.workers} batch "
            f"{self.batch_size} kill at {self.delay:5.2f} s: {self.phase:<15} "
            f"{self.marked_after_kill:2d}/{DUE_JOBS} marked, run-log row {self.killed_row}"
        )


def fresh_base(root: Path, seed: int) -> SafetyBase:
    return build_base(root, seed=seed, due_jobs=DUE_JOBS, files_per_job=FILES_PER_JOB)


def calibrate(root: Path) -> tuple[float, float]:
    """Seconds from start to the first deletion and to the end of an uninterrupted run."""
    base = fresh_base(root, SEED)
    protected, logs = base.protected_snapshot(), kept_logs(base)
    first = base.path / "temp" / base.due[0].job_id
    run = start_run(base, "--json", "--workers", "1", "--batch-size", "2")
    wait_until(lambda: not first.exists() or run.process.poll() is not None, 120, "deletion starts")
    first_deletion = time.monotonic() - run.started
    outcome = run.wait()
    assert outcome.code == 0, outcome.stderr
    assert completion_problems(base, protected, logs) == []
    shutil.rmtree(root)
    return first_deletion, outcome.seconds


def kill_delays(rng: random.Random, start: float, end: float) -> list[float]:
    """One delay per trial, stratified over [start, end] so the whole run is covered."""
    width = (end - start) / TRIALS
    delays = [start + width * (index + rng.random()) for index in range(TRIALS)]
    rng.shuffle(delays)
    return delays


def phase_after_kill(
    base: SafetyBase, exited: bool, marked: set[str], row: dict[str, Any] | None
) -> str:
    if exited:
        return "after (exited)"
    if row is not None and row["exit_code"] is not None:
        return "after (books)"
    if len(marked) == len(base.due):
        return "after deletion"
    if marked or any(base.touched(job) for job in base.due):
        return "mid-deletion"
    return "before deletion"


def killed_run_problems(trial: Trial, rows: list[dict[str, Any]], all_marked: bool) -> list[str]:
    """The killed run's run-log row: absent only when killed before deleting anything; open
    (NULL exit_code and finished_at) unless the run had finished before the kill landed."""
    if len(rows) > 1:
        return [f"the killed run has {len(rows)} run-log rows: {rows}"]
    if not rows:
        trial.killed_row = "none"
        if trial.phase != "before deletion":
            return [f"the killed run ({trial.phase}) left no run-log row"]
        return []
    row = rows[0]
    if row["exit_code"] is None:
        trial.killed_row = "exit_code NULL"
        if row["finished_at"] is not None:
            return [f"the killed run's row has finished_at but no exit_code: {row}"]
        return []
    trial.killed_row = f"exit_code {row['exit_code']}"
    if row["exit_code"] != 0 or row["finished_at"] is None or not all_marked:
        return [f"the killed run's row claims it finished, but: {row}"]
    return []


def run_trial(trial: Trial, root: Path) -> None:
    base = fresh_base(root, trial.seed)
    protected, logs = base.protected_snapshot(), kept_logs(base)
    shape = ("--workers", str(trial.workers), "--batch-size", str(trial.batch_size))

    run = start_run(base, "--json", *shape)
    time.sleep(max(0.0, run.started + trial.delay - time.monotonic()))  # the random instant
    exited = not run.kill()
    killed = run.wait(60)
    marked = marked_ids(base.db)
    rows = [row for row in run_log(base.db) if row["pid"] == run.pid]
    trial.marked_after_kill = len(marked)
    trial.phase = phase_after_kill(base, exited, marked, rows[0] if rows else None)

    # Right after the kill: the invariants hold and the lock is not stale.
    trial.problems += [f"after the kill: {problem}" for problem in state_violations(base)]
    trial.problems += killed_run_problems(trial, rows, len(marked) == len(base.due))
    if not lock_is_free(base):
        trial.problems.append("after the kill: the lock is still held by the dead run")
    if exited and killed.code != 0:
        trial.problems.append(f"the run ended by itself with {killed.code}: {killed.stderr}")

    rerun = run_to_end(base, "--json", *shape)
    if rerun.code != 0:
        trial.problems.append(f"rerun exited {rerun.code}: {rerun.stderr[-2000:]}")
        return
    report = rerun.json()
    cleaned = report["cleaned_jobs"]["successful"] + report["cleaned_jobs"]["failed"]
    if cleaned != len(base.due) - len(marked):
        trial.problems.append(f"rerun cleaned {cleaned} jobs, {len(marked)} were marked before")
    trial.problems += [
        f"after the rerun: {problem}" for problem in completion_problems(base, protected, logs)
    ]
    audited = audited_ids(base.db)
    trial.problems += [
        f"after the rerun: job {job.job_id} has no audit row"
        for job in base.due
        if audited[job.job_id] < 1
    ]
    by_run = {row["run_id"]: row for row in run_log(base.db)}
    rerun_row = by_run.get(report["run_id"])
    if rerun_row is None or rerun_row["exit_code"] != 0 or rerun_row["finished_at"] is None:
        trial.problems.append(f"the rerun's run-log row is {rerun_row}")
    if len(by_run) != 1 + len(rows):
        trial.problems.append(f"unexpected run-log rows: {list(by_run.values())}")


def test_sigkill_at_random_instants_never_marks_a_job_with_data_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    with memory_scratch(tmp_path) as scratch:
        first_deletion, duration = calibrate(scratch / "calibration")
        rng = random.Random(SEED)
        delays = kill_delays(rng, first_deletion / 2, duration * 1.05)
        trials = []
        for number, delay in enumerate(delays):
            workers, batch_size = rng.choice(SHAPES)
            trial = Trial(number, SEED + number, workers, batch_size, delay)
            trials.append(trial)
            root = scratch / f"trial-{number:02d}"
            run_trial(trial, root)
            if trial.problems:  # keep the failing trial's base for a post-mortem
                shutil.copytree(root, tmp_path / root.name, symlinks=True)
            shutil.rmtree(root)

    phases = Counter(trial.phase for trial in trials)
    summary = "\n".join(
        [
            f"calibration: first deletion at {first_deletion:.2f} s, run took {duration:.2f} s",
            *(trial.line() for trial in trials),
            "kills: " + json.dumps(dict(sorted(phases.items()))),
        ]
    )
    print(summary)
    failures = [f"trial {trial.number}: {p}" for trial in trials for p in trial.problems]
    assert failures == [], summary + "\n" + "\n".join(failures)
    # The schedule must really have put kills in the middle of the deletions (typically more
    # than half of them; the margin allows for a calibration run slowed by a busy machine).
    assert phases["mid-deletion"] >= 3, summary

"""Shared helpers of the state-safety tests: crash consistency, concurrency, signals.

- :func:`build_base` writes a base directory with many due jobs of a few hundred small files
  each (so a ``--workers 1 --batch-size 2`` run lasts a second or more), retained, pending
  and running jobs, shared uploads and a canary directory outside the roots.
- :func:`state_violations` checks the crash invariants of SPEC §7 on the files and rows as
  they are now; :func:`lock_is_free` checks that no dead run still holds the lock.
- :func:`start_run` starts the installed ``eemt-cleanup run`` as a real process.
- Run as a script (``python state_helpers.py simulate ...``) this module is the web-interface
  simulator: a separate process that uses the database exactly as the EEMT web interface
  does, with Python's default ``sqlite3.connect(path)``.

Only the standard library is imported at module level, so the simulator starts fast and
needs nothing from the test process; what ``tests/conftest.py`` provides is imported where
it is used.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LOG_FILES = ("workflow.log", "task_output.log", "sys.err", "container.log")
SUCCESS_HOURS = 168
FAILED_HOURS = 12
FILES_PER_DIRECTORY = 100
POLL_SECONDS = 0.002
SIMULATOR = Path(__file__).resolve()

Snapshot = dict[str, tuple[str, int, bytes | str]]


# --------------------------------------------------------------------------- the base


@dataclass(frozen=True)
class JobSpec:
    """One job of a built base, and what a default-policy run must do with it."""

    job_id: str
    status: str
    expect: str  # "due", "retained" or "active"
    upload: str | None
    files: int


@dataclass
class SafetyBase:
    """A base directory (``root/base``) and a canary tree outside its roots
    (``root/outside``); ``jobs`` lists every job, the due ones first, in the order a run
    cleans them."""

    root: Path
    jobs: list[JobSpec]
    shared_due_upload: str | None = None
    shared_retained_upload: str | None = None

    @property
    def path(self) -> Path:
        return self.root / "base"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def db(self) -> Path:
        return self.path / "jobs.db"

    def path_args(self) -> list[str]:
        from conftest import path_args

        return path_args(self.path)

    @property
    def due(self) -> list[JobSpec]:
        return [job for job in self.jobs if job.expect == "due"]

    @property
    def kept(self) -> list[JobSpec]:
        """Jobs no run may touch: retained, pending and running."""
        return [job for job in self.jobs if job.expect != "due"]

    def job(self, job_id: str) -> JobSpec | None:
        return next((job for job in self.jobs if job.job_id == job_id), None)

    def artifacts(self, job: JobSpec) -> list[Path]:
        """Every path the job owns: results dir, archive, temp dir and its upload."""
        paths = [
            self.path / "results" / job.job_id,
            self.path / "results" / f"{job.job_id}_results.zip",
            self.path / "temp" / job.job_id,
        ]
        if job.upload is not None:
            paths.append(self.path / "uploads" / job.upload)
        return paths

    def touched(self, job: JobSpec) -> bool:
        """True when any of the job's own (not shared) data is gone or changed in count."""
        results = self.path / "results" / job.job_id
        if not all(os.path.lexists(path) for path in self.artifacts(job)[:3]):
            return True
        return count_entries(results) != expected_results_entries(job)

    def data_left(self, job: JobSpec) -> list[str]:
        """The job's paths still on disk, beyond what a cleaned job may keep."""
        left = []
        for path in self.artifacts(job):
            if not os.path.lexists(path):
                continue
            if path.name == job.job_id and path.parent.name == "results":
                extra = sorted(set(os.listdir(path)) - set(LOG_FILES))
                if job.status == "failed" and not extra:
                    continue  # the kept error logs
            if job.upload is not None and path.name == job.upload:
                continue  # judged against the other references by state_violations
            left.append(str(path.relative_to(self.path)))
        return left

    def protected_snapshot(self) -> Snapshot:
        """Everything a run must leave alone: the kept jobs' data and the outside tree."""
        from conftest import snapshot

        entries: Snapshot = {}
        for job in self.kept:
            for path in self.artifacts(job):
                rel = str(path.relative_to(self.root))
                if path.is_dir() and not path.is_symlink():
                    entries[rel] = ("dir", 0, "")
                    for key, value in snapshot(path).items():
                        entries[f"{rel}/{key}"] = value
                elif os.path.lexists(path):
                    entries[rel] = ("file", path.stat().st_size, path.read_bytes())
        for key, value in snapshot(self.outside).items():
            entries[f"outside/{key}"] = value
        return entries

    def log_contents(self, job: JobSpec) -> dict[str, bytes]:
        folder = self.path / "results" / job.job_id
        return {name: (folder / name).read_bytes() for name in LOG_FILES}


def expected_results_entries(job: JobSpec) -> int:
    """Entries under results/<id>/ as built (logs, outputs/, part dirs, files, one link)."""
    parts = -(-job.files // FILES_PER_DIRECTORY)
    return len(LOG_FILES) + 1 + parts + job.files + 1


def count_entries(top: Path) -> int:
    if not top.is_dir() or top.is_symlink():
        return -1
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(top))


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _job_tree(base: Path, outside: Path, job: JobSpec) -> None:
    results = base / "results" / job.job_id
    outputs = results / "outputs"
    outputs.mkdir(parents=True)
    for name in LOG_FILES:
        _write(results / name, f"{name} of {job.job_id}\n".encode())
    for index in range(job.files):
        folder = outputs / f"part_{index // FILES_PER_DIRECTORY:03d}"
        if index % FILES_PER_DIRECTORY == 0:
            folder.mkdir()
        _write(folder / f"tile_{index:05d}.dat", b"%d %s\n" % (index, job.job_id.encode()))
    # A link out of the roots: removed as a link, its target never entered.
    os.symlink(outside, outputs / "link_to_outside")
    _write(base / "results" / f"{job.job_id}_results.zip", b"PK\x03\x04" + b"z" * 508)
    temp = base / "temp" / job.job_id
    temp.mkdir()
    for index in range(5):
        _write(temp / f"chunk_{index}.tmp", b"t" * 100)
    if job.upload is not None and not (base / "uploads" / job.upload).exists():
        _write(base / "uploads" / job.upload, b"II*\x00" + b"d" * 1020)


def _local(moment: datetime) -> str:
    # started_at / completed_at as the web interface writes them: naive local time.
    return moment.isoformat()


def build_base(
    root: Path,
    *,
    seed: int,
    due_jobs: int,
    files_per_job: int,
    failed_share: float = 0.35,
    first_job_files: int | None = None,
    share_due_upload: bool = True,
) -> SafetyBase:
    """Write a base at ``root/base`` (and a canary at ``root/outside``).

    ``due_jobs`` due jobs (completed and failed, mixed by ``seed``) become due one hour apart,
    so the run cleans them in list order; the first has ``first_job_files`` files when given.
    Besides: two retained jobs (one sharing an upload with due job 1), one pending and one
    running job, and with ``share_due_upload`` one upload shared by due jobs 2 and n-2.
    """
    rng = random.Random(seed)
    now = datetime.now()

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    jobs: list[JobSpec] = []
    rows: list[dict[str, Any]] = []

    def add(job: JobSpec, completed: datetime | None, started: datetime | None) -> None:
        created = (started or now) - timedelta(minutes=5)
        cancelled = job.status == "failed" and rng.random() < 0.5
        jobs.append(job)
        rows.append(
            {
                "id": job.job_id,
                "workflow_type": rng.choice(["eemt", "sol"]),
                "status": job.status,
                # created_at as SQLite's CURRENT_TIMESTAMP (UTC), the others naive local.
                "created_at": created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "started_at": _local(started) if started else None,
                "completed_at": _local(completed) if completed else None,
                "parameters": json.dumps({"step": rng.choice([1, 2, 4]), "seed": seed}),
                "dem_filename": job.upload,
                "error_message": ("Job cancelled by user" if cancelled else "Workflow failed")
                if job.status == "failed"
                else None,
                "progress": 100 if job.status in ("completed", "failed") else 30,
            }
        )

    def upload_name() -> str:
        return f"{new_id()}_dem.tif"

    shared_due = upload_name() if share_due_upload and due_jobs >= 5 else None
    shared_retained = upload_name()
    for index in range(due_jobs):
        status = (
            "failed" if 0 < index < due_jobs - 1 and rng.random() < failed_share else "completed"
        )
        upload = upload_name()
        if index == 1:
            upload = shared_retained
        elif shared_due is not None and index in (2, due_jobs - 2):
            upload = shared_due
        files = first_job_files if index == 0 and first_job_files else files_per_job
        overdue = timedelta(hours=due_jobs - index, minutes=rng.randint(0, 30))
        hours = SUCCESS_HOURS if status == "completed" else FAILED_HOURS
        completed = now - overdue - timedelta(hours=hours)
        add(
            JobSpec(new_id(), status, "due", upload, files),
            completed,
            completed - timedelta(hours=2),
        )
    retained_completed = now - timedelta(days=2)
    add(
        JobSpec(new_id(), "completed", "retained", shared_retained, 20),
        retained_completed,
        retained_completed - timedelta(hours=1),
    )
    retained_failed = now - timedelta(hours=2)
    add(
        JobSpec(new_id(), "failed", "retained", upload_name(), 20),
        retained_failed,
        retained_failed - timedelta(hours=1),
    )
    add(JobSpec(new_id(), "pending", "active", upload_name(), 20), None, None)
    add(JobSpec(new_id(), "running", "active", upload_name(), 20), None, now - timedelta(hours=30))

    base = root / "base"
    outside = root / "outside"
    for name in ("uploads", "results", "temp"):
        (base / name).mkdir(parents=True)
    (outside / "canary" / "sub").mkdir(parents=True)
    _write(outside / "canary" / "keep.txt", b"never delete me\n")
    _write(outside / "canary" / "sub" / "deep.txt", b"nor me\n")
    for job in jobs:
        _job_tree(base, outside, job)
    from conftest import create_jobs_db

    create_jobs_db(base / "jobs.db", rows)
    return SafetyBase(root, jobs, shared_due, shared_retained)


@contextlib.contextmanager
def memory_scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory of this test's own on ``/dev/shm`` (``tmp_path`` when there is none),
    removed afterwards; the deletion guard of this process allows it while it exists (CLI
    runs on a base inside it are guarded to that base by :func:`start_run`)."""
    import deletion_guard

    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    scratch = Path(tempfile.mkdtemp(prefix="eemt-safety-", dir=shm))
    allowed = list(deletion_guard._allowed)
    deletion_guard.install([*allowed, str(scratch)])
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        deletion_guard.install(allowed)


# --------------------------------------------------------------------------- the invariants


def query(db: Path, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, tuple(params)).fetchall()


def has_column(db: Path, table: str, column: str) -> bool:
    return any(row[1] == column for row in query(db, f'PRAGMA table_info("{table}")'))


def has_table(db: Path, table: str) -> bool:
    return bool(query(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]))


def marked_ids(db: Path) -> set[str]:
    """Jobs whose ``data_cleaned_at`` is set (none before the first migration)."""
    if not has_column(db, "jobs", "data_cleaned_at"):
        return set()
    return {row[0] for row in query(db, "SELECT id FROM jobs WHERE data_cleaned_at IS NOT NULL")}


def audited_ids(db: Path, run_id: str | None = None) -> Counter[str]:
    """Audit rows per job (of one run when ``run_id`` is given)."""
    if not has_table(db, "cleanup_audit"):
        return Counter()
    if run_id is None:
        rows = query(db, "SELECT job_id FROM cleanup_audit")
    else:
        rows = query(db, "SELECT job_id FROM cleanup_audit WHERE run_id = ?", [run_id])
    return Counter(row[0] for row in rows)


def database_health(db: Path) -> list[str]:
    """``PRAGMA integrity_check`` and ``foreign_key_check`` problems (empty when healthy)."""
    with closing(sqlite3.connect(db)) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
    problems = [] if integrity == ["ok"] else [f"integrity_check: {integrity}"]
    if foreign:
        problems.append(f"foreign_key_check: {foreign}")
    return problems


def state_violations(base: SafetyBase) -> list[str]:
    """The crash invariants, as they hold now: a healthy database; no job marked cleaned while
    any of its data exists (except a failed job's kept logs, and an upload still referenced by
    a job that is not cleaned); no marked job without an audit row."""
    problems = database_health(base.db)
    marked = marked_ids(base.db)
    if not marked:
        return problems
    audited = audited_ids(base.db)
    rows = query(base.db, "SELECT id, dem_filename, data_cleaned_at FROM jobs")
    still_needed = {upload for _, upload, cleaned in rows if cleaned is None and upload}
    for job_id in sorted(marked):
        job = base.job(job_id)
        if job is None:
            problems.append(f"job {job_id}, which has no data in the base, was marked cleaned")
            continue
        if job.expect != "due":
            problems.append(f"job {job_id} ({job.expect}) was marked cleaned")
        for left in base.data_left(job):
            problems.append(f"job {job_id} is marked cleaned but {left} exists")
        upload = base.path / "uploads" / (job.upload or "-")
        if job.upload and upload.exists() and job.upload not in still_needed:
            problems.append(
                f"job {job_id} is marked cleaned but uploads/{job.upload} exists and no "
                "uncleaned job references it"
            )
        if audited[job_id] < 1:
            problems.append(f"job {job_id} is marked cleaned but has no audit row")
    return problems


def lock_is_free(base: SafetyBase) -> bool:
    """True when nobody holds the run lock, a flock on the database (a dead run's lock must
    never be stale)."""
    fd = os.open(base.db, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def run_holds_lock(db: Path) -> bool:
    """Whether a run holds the lock on ``db`` (read from /proc/locks: never takes it)."""
    from eemt_cleanup.lock import find_holder

    return find_holder(db) is not None


def run_log(db: Path) -> list[dict[str, Any]]:
    if not has_table(db, "cleanup_log"):
        return []
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM cleanup_log ORDER BY id")]


def kept_logs(base: SafetyBase) -> dict[str, dict[str, bytes]]:
    """The error logs of the due failed jobs, which every run must keep (keep_error_logs)."""
    return {job.job_id: base.log_contents(job) for job in base.due if job.status == "failed"}


def snapshot_difference(before: Snapshot, after: Snapshot) -> list[str]:
    changed = sorted(key for key in before.keys() & after.keys() if before[key] != after[key])
    return [
        *(f"gone: {key}" for key in sorted(before.keys() - after.keys())[:10]),
        *(f"new: {key}" for key in sorted(after.keys() - before.keys())[:10]),
        *(f"changed: {key}" for key in changed[:10]),
    ]


def completion_problems(
    base: SafetyBase,
    protected: Snapshot,
    logs: dict[str, dict[str, bytes]],
    left_alone: Iterable[str] = (),
) -> list[str]:
    """What is wrong with ``base`` after a run that should have finished all the work: every
    due job (but those ``left_alone``, judged by the caller) marked and its data gone (failed
    jobs keep exactly their error logs, the upload shared with a retained job stays), nothing
    else touched, the invariants hold, the lock is free."""
    problems = state_violations(base)
    marked = marked_ids(base.db)
    skipped = set(left_alone)
    due = {job.job_id for job in base.due} - skipped
    problems += [f"due job {job_id} is not marked cleaned" for job_id in sorted(due - marked)]
    problems += [f"job {job_id} was marked but is not due" for job_id in sorted(marked - due)]
    for job in base.due:
        if job.job_id in skipped:
            continue
        problems += [f"due job {job.job_id} still has {left}" for left in base.data_left(job)]
        upload = base.path / "uploads" / (job.upload or "-")
        if job.upload and job.upload != base.shared_retained_upload and upload.exists():
            problems.append(f"due job {job.job_id} still has uploads/{job.upload}")
        if job.job_id in logs:
            folder = base.path / "results" / job.job_id
            found = {entry.name: entry.read_bytes() for entry in folder.iterdir()}
            if found != logs[job.job_id]:
                problems.append(
                    f"failed job {job.job_id} kept {sorted(found)} instead of its error logs"
                )
    problems += [
        f"protected data changed: {item}"
        for item in snapshot_difference(protected, base.protected_snapshot())
    ]
    if not lock_is_free(base):
        problems.append("the run lock is still held")
    return problems


# --------------------------------------------------------------------------- real runs


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds waited (AssertionError on timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - start


@dataclass
class RunOutcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class CliRun:
    """An ``eemt-cleanup run`` started as a real process; output goes to files (never a
    pipe that could fill up and stall it)."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def kill(self) -> bool:
        """SIGKILL it; False when it had already exited."""
        if self.process.poll() is not None:
            return False
        self.process.send_signal(signal.SIGKILL)
        return True

    def wait(self, timeout: float = 120) -> RunOutcome:
        code = self.process.wait(timeout=timeout)
        seconds = time.monotonic() - self.started
        return RunOutcome(
            code,
            self.stdout_path.read_text(errors="replace"),
            self.stderr_path.read_text(errors="replace"),
            seconds,
        )


def start_run(base: SafetyBase, *args: str, env: dict[str, str] | None = None) -> CliRun:
    """Start the installed ``eemt-cleanup run`` on ``base`` from ``/`` (as cron does), with
    the deletion guard limited to ``base.root``."""
    from conftest import cli_executable, guarded_env

    logs = base.root / "cli-output"
    logs.mkdir(exist_ok=True)
    number = len(list(logs.iterdir())) // 2
    stdout_path = logs / f"run-{number}.out"
    stderr_path = logs / f"run-{number}.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [cli_executable(), "run", *base.path_args(), *args],
            cwd="/",
            env=env or guarded_env(base.root),
            stdout=stdout,
            stderr=stderr,
        )
    return CliRun(process, stdout_path, stderr_path)


def run_to_end(base: SafetyBase, *args: str, timeout: float = 120) -> RunOutcome:
    return start_run(base, *args).wait(timeout)


def premigrate(base: SafetyBase) -> str:
    """Let a run that cleans nothing (only a retained job selected) add the tool's columns
    and tables, as every run after the first finds them; return its run id."""
    retained = next(job for job in base.kept if job.expect == "retained")
    outcome = run_to_end(base, "--json", "--job", retained.job_id)
    assert outcome.code == 0, outcome.stderr
    assert outcome.json()["details"] == []
    return str(outcome.json()["run_id"])


# --------------------------------------------------------------------------- the web interface


@dataclass
class WebSimulator:
    """A web-interface process (the simulator or one slow write) and the files it talks
    through; ``stop`` asks it to end (the slow write ends by itself) and returns its report."""

    process: subprocess.Popen[bytes]
    ready: Path
    stop_file: Path
    report_path: Path
    stderr_path: Path

    def stop(self, timeout: float = 30) -> dict[str, Any]:
        self.stop_file.touch()
        code = self.process.wait(timeout=timeout)
        stderr = self.stderr_path.read_text(errors="replace")
        assert code == 0, f"the web-interface simulator failed ({code}):\n{stderr}"
        report: dict[str, Any] = json.loads(self.report_path.read_text())
        return report


def start_web_simulator(
    db: Path,
    workdir: Path,
    *,
    requeue: str | None = None,
    requeue_when_gone: Path | None = None,
    requeue_status: str = "running",
    interval: float = 0.004,
    hold: float = 0.0,
    timeout: float = 90,
) -> WebSimulator:
    """Start the simulator on ``db`` and wait until it has committed its first writes.

    With ``requeue``, it puts that job back to ``requeue_status`` as soon as ``requeue_when_gone``
    has disappeared (the run has started deleting, so it has planned). ``hold`` keeps each
    write transaction open that long before its commit; ``interval`` is the pause between
    rounds. It stops by itself after ``timeout`` seconds at the latest.
    """
    from conftest import guarded_env

    workdir.mkdir(parents=True, exist_ok=True)
    ready, stop_file = workdir / "ready", workdir / "stop"
    report_path, stderr_path = workdir / "report.json", workdir / "simulator.err"
    command = [
        sys.executable,
        str(SIMULATOR),
        "simulate",
        "--db",
        str(db),
        "--ready",
        str(ready),
        "--stop",
        str(stop_file),
        "--report",
        str(report_path),
        "--max-seconds",
        str(timeout),
        "--interval",
        str(interval),
        "--hold",
        str(hold),
    ]
    if requeue is not None and requeue_when_gone is not None:
        command += ["--requeue", requeue, "--requeue-when-gone", str(requeue_when_gone)]
        command += ["--requeue-status", requeue_status]
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command,
            env=guarded_env(workdir),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=workdir,
        )
    simulator = WebSimulator(process, ready, stop_file, report_path, stderr_path)
    wait_until(lambda: ready.exists() or process.poll() is not None, 30, "the simulator is writing")
    assert process.poll() is None, stderr_path.read_text()
    return simulator


def simulate_web_interface(arguments: argparse.Namespace) -> dict[str, Any]:
    """Use the database the way the EEMT web interface does, until told to stop.

    One ``sqlite3.connect(path)`` with every default (5 s timeout, default isolation level):
    insert pending jobs, move them pending → running → completed (recent, so never due) and
    read ``SELECT *`` by position, each write committed on its own; every
    ``sqlite3.OperationalError`` is counted by message, none is fatal.
    """
    conn = sqlite3.connect(arguments.db)
    statuses: dict[str, str] = {}
    pending: list[str] = []
    running: list[str] = []
    errors: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    anomalies: list[str] = []
    write_times: list[float] = []
    requeued_at: float | None = None
    requeue_planned_status: str | None = None
    started = time.time()
    deadline = time.monotonic() + arguments.max_seconds

    def commit() -> None:
        # A web request may do some work between its write and its commit: the write
        # transaction (and its RESERVED lock) stays open that long.
        if arguments.hold:
            time.sleep(arguments.hold)
        conn.commit()

    def attempt(kind: str, action: Callable[[], None]) -> bool:
        try:
            action()
        except sqlite3.OperationalError as error:
            errors[str(error)] += 1
            if conn.in_transaction:
                conn.rollback()
            return False
        counts[kind] += 1
        if kind != "select":
            write_times.append(time.time())
        return True

    def insert() -> None:
        job_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO jobs (id, workflow_type, status, parameters, dem_filename) "
            "VALUES (?, ?, 'pending', ?, ?)",
            (job_id, "eemt", json.dumps({"step": 1}), f"{uuid.uuid4()}_sim.tif"),
        )
        commit()
        statuses[job_id] = "pending"
        pending.append(job_id)

    def start_one() -> None:
        job_id = pending[0]
        conn.execute(
            "UPDATE jobs SET status = 'running', started_at = ?, progress = 10 WHERE id = ?",
            (datetime.now().isoformat(), job_id),
        )
        commit()
        pending.pop(0)
        statuses[job_id] = "running"
        running.append(job_id)

    def complete_one() -> None:
        job_id = running[0]
        conn.execute(
            "UPDATE jobs SET status = 'completed', completed_at = ?, progress = 100 WHERE id = ?",
            (datetime.now().isoformat(), job_id),
        )
        commit()
        running.pop(0)
        statuses[job_id] = "completed"

    def read_page() -> None:
        rows = conn.execute("SELECT * FROM jobs ORDER BY rowid DESC LIMIT 25").fetchall()
        for row in rows:
            # The web interface indexes columns by position: id 0, status 2, progress 9.
            if not isinstance(row[0], str) or row[2] not in (
                "pending",
                "running",
                "completed",
                "failed",
            ):
                anomalies.append(f"row read by position looks wrong: {row[:10]!r}")
            if not isinstance(row[9], int):
                anomalies.append(f"progress (column 9) is not an integer: {row[:10]!r}")

    def requeue() -> None:
        nonlocal requeued_at, requeue_planned_status
        rows = conn.execute("SELECT * FROM jobs WHERE id = ?", (arguments.requeue,)).fetchall()
        requeue_planned_status = rows[0][2] if rows else None
        conn.execute(
            "UPDATE jobs SET status = ?, completed_at = NULL, started_at = ?, progress = 5 "
            "WHERE id = ?",
            (arguments.requeue_status, datetime.now().isoformat(), arguments.requeue),
        )
        commit()
        requeued_at = time.time()

    def requeue_when_due() -> None:
        # Checked before every operation, so the flip lands within one statement's time.
        if (
            arguments.requeue
            and requeued_at is None
            and not os.path.lexists(arguments.requeue_when_gone)
        ):
            attempt("requeue", requeue)

    step = 0
    while time.monotonic() < deadline and not os.path.exists(arguments.stop):
        for kind, action, wanted in (
            ("insert", insert, True),
            ("start", start_one, len(pending) > 2),
            ("complete", complete_one, len(running) > 2),
            ("select", read_page, True),
        ):
            requeue_when_due()
            if wanted:
                attempt(kind, action)
        step += 1
        if step == 3:
            Path(arguments.ready).touch()
        time.sleep(arguments.interval)
    conn.close()
    return {
        "started_at": started,
        "finished_at": time.time(),
        "counts": dict(counts),
        "errors": dict(errors),
        "anomalies": anomalies[:20],
        "write_times": write_times,
        "statuses": statuses,
        "requeued_at": requeued_at,
        "requeue_planned_status": requeue_planned_status,
    }


def hold_write_transaction(arguments: argparse.Namespace) -> dict[str, Any]:
    """A web request that writes and commits only ``--seconds`` later (say it saves an
    upload in between), with Python's default connection. It opens its transaction at once,
    or once ``--when-gone`` has disappeared; it commits ``--seconds`` after
    ``--until-nonempty`` has become a non-empty file, or once ``--until-locked`` (a run
    holds the lock on the database) — at once when neither is given."""
    conn = sqlite3.connect(arguments.db)
    job_id = str(uuid.uuid4())
    errors: list[str] = []
    opened_at = committed_at = None
    deadline = time.monotonic() + arguments.max_seconds

    def wait_for(condition: Callable[[], bool]) -> None:
        while not condition() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 2)

    Path(arguments.ready).touch()
    if arguments.when_gone:
        wait_for(lambda: not os.path.lexists(arguments.when_gone))
    try:
        conn.execute(
            "INSERT INTO jobs (id, workflow_type, status, parameters, dem_filename) "
            "VALUES (?, 'eemt', 'pending', '{}', ?)",
            (job_id, f"{uuid.uuid4()}_slow.tif"),
        )
        opened_at = time.time()
        if arguments.until_locked:
            wait_for(lambda: run_holds_lock(Path(arguments.db)))
        if arguments.until_nonempty:
            target = Path(arguments.until_nonempty)
            wait_for(lambda: target.exists() and target.stat().st_size > 0)
        time.sleep(arguments.seconds)
        conn.commit()
        committed_at = time.time()
    except sqlite3.OperationalError as error:
        errors.append(str(error))
        if conn.in_transaction:
            conn.rollback()
    conn.close()
    return {
        "job_id": job_id,
        "opened_at": opened_at,
        "committed_at": committed_at,
        "errors": errors,
    }


def start_slow_web_write(
    db: Path,
    workdir: Path,
    *,
    seconds: float,
    when_gone: Path | None = None,
    until_nonempty: Path | None = None,
    until_locked: bool = False,
    timeout: float = 60,
) -> WebSimulator:
    """Start :func:`hold_write_transaction` in its own process; return once it is connected
    (and, without ``when_gone``, holds its open write transaction)."""
    from conftest import guarded_env

    workdir.mkdir(parents=True, exist_ok=True)
    ready, stop_file = workdir / "ready", workdir / "stop"
    report_path, stderr_path = workdir / "report.json", workdir / "slow-write.err"
    command = [
        sys.executable,
        str(SIMULATOR),
        "slow-write",
        "--db",
        str(db),
        "--ready",
        str(ready),
        "--report",
        str(report_path),
        "--seconds",
        str(seconds),
        "--max-seconds",
        str(timeout),
    ]
    if when_gone is not None:
        command += ["--when-gone", str(when_gone)]
    if until_nonempty is not None:
        command += ["--until-nonempty", str(until_nonempty)]
    if until_locked:
        command.append("--until-locked")
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            command,
            env=guarded_env(workdir),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=workdir,
        )
    writer = WebSimulator(process, ready, stop_file, report_path, stderr_path)
    wait_until(lambda: ready.exists() or process.poll() is not None, 30, "the web write opens")
    if when_gone is None:
        # The INSERT follows the ready mark at once; wait until the transaction holds the lock.
        wait_until(lambda: _write_locked(db) or process.poll() is not None, 30, "it locks")
    assert process.poll() is None, stderr_path.read_text()
    return writer


def _write_locked(db: Path) -> bool:
    probe = sqlite3.connect(db, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    else:
        probe.rollback()
        return False
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    simulate = commands.add_parser("simulate", help="be the web interface until --stop exists")
    simulate.add_argument("--db", required=True)
    simulate.add_argument("--ready", required=True)
    simulate.add_argument("--stop", required=True)
    simulate.add_argument("--report", required=True)
    simulate.add_argument("--interval", type=float, default=0.004)
    simulate.add_argument("--max-seconds", type=float, default=60)
    simulate.add_argument("--hold", type=float, default=0.0)
    simulate.add_argument("--requeue")
    simulate.add_argument("--requeue-when-gone")
    simulate.add_argument("--requeue-status", default="running")
    slow = commands.add_parser("slow-write", help="one write transaction held open a while")
    slow.add_argument("--db", required=True)
    slow.add_argument("--ready", required=True)
    slow.add_argument("--report", required=True)
    slow.add_argument("--seconds", type=float, required=True)
    slow.add_argument("--max-seconds", type=float, default=60)
    slow.add_argument("--when-gone")
    slow.add_argument("--until-nonempty")
    slow.add_argument("--until-locked", action="store_true")
    arguments = parser.parse_args(argv)
    if arguments.command == "slow-write":
        report = hold_write_transaction(arguments)
    else:
        report = simulate_web_interface(arguments)
    Path(arguments.report).write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

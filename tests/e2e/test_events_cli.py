"""End-to-end: ``eemt-cleanup run --events jsonl`` streams the run's events as they happen.

The installed CLI runs on a base directory of many due jobs, made slow deterministically by a
``sitecustomize`` hook that sleeps a few milliseconds in every ``os.unlink`` and ``os.rmdir``
of the CLI process (and of any deletion worker it spawns: they inherit ``PYTHONPATH``). The
test reads stdout line by line while the run goes on and notes when each line arrives: a
stream that is only written (or only flushed) at the end fails, whatever its content.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    call,
    cli_executable,
    create_jobs_db,
    error_line,
    guarded_env,
    snapshot,
)

from eemt_cleanup.events import EVENT_KINDS, parse_event
from eemt_cleanup.report.json_out import NO_REPORTS

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
NOW = datetime.now(UTC)
DEADLINE_SECONDS = 120
# 40 due jobs of ~36 unlinks and ~4 rmdirs each at 3 ms a call: about 5 s of deletion on an
# idle machine, of which the first job takes about a fortieth.
DUE_JOBS = 40
OUTPUT_FILES = 30
SLOW_SECONDS = "0.003"
MIN_RUN_SECONDS = 3.0
MIN_LEAD_SECONDS = 1.5
JOB_FLAGS = ["--workers", "1", "--batch-size", "10"]
# The --json object's keys that name this run rather than describe what it did.
RUN_IDENTITY = ("run_id", "started_at", "finished_at")

SLOW_HOOK = '''"""Sleep in os.unlink and os.rmdir (written by tests/e2e/test_events_cli.py).

Loaded at start-up as the ``sitecustomize`` of the CLI process and of its deletion workers.
The ``sitecustomize`` it shadows (the deletion guard's) runs first, so the guard still
decides; this only makes every deletion take a known time.
"""

import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
for _entry in sys.path:
    _candidate = os.path.join(_entry or ".", "sitecustomize.py")
    if os.path.abspath(_entry or ".") != _HERE and os.path.exists(_candidate):
        with open(_candidate) as _file:
            exec(compile(_file.read(), _candidate, "exec"), {"__name__": "_shadowed"})
        break

_DELAY = float(os.environ.get("SLOW_DELETION_SECONDS") or 0)


def _slowed(real):
    def slow(*args, **kwargs):
        time.sleep(_DELAY)
        return real(*args, **kwargs)

    return slow


if _DELAY > 0:
    os.unlink = _slowed(os.unlink)
    os.rmdir = _slowed(os.rmdir)
'''


# --------------------------------------------------------------------------- the base


@dataclass
class EventsBase:
    path: Path
    due: list[str]  # in the order a run cleans them: the longest overdue first
    kept: list[str]  # within retention, or running: never touched
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.path / "cleanup_config.yaml"

    @property
    def db(self) -> Path:
        return self.path / "jobs.db"

    def artifacts(self, job_id: str) -> list[Path]:
        return [
            self.path / "results" / job_id,
            self.path / "results" / f"{job_id}_results.zip",
            self.path / "temp" / job_id,
            self.path / "uploads" / f"{job_id}_dem.tif",
        ]

    def cleaned_at(self) -> dict[str, str | None]:
        conn = sqlite3.connect(self.db)
        try:
            return dict(conn.execute("SELECT id, data_cleaned_at FROM jobs").fetchall())
        finally:
            conn.close()


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_base(target: Path, due_jobs: int, *, seed: int = 9) -> EventsBase:
    """``due_jobs`` completed jobs past retention (results/<id>/ with OUTPUT_FILES files and a
    log, an archive, temp/<id>/ and an upload of their own), two within retention and one
    running; the shipped config file inside. The same seed gives the same ids and contents."""
    chooser = random.Random(seed)
    due: list[str] = []
    kept: list[str] = []
    rows: list[dict[str, Any]] = []
    plan = [("completed", 8 + due_jobs - index, "due") for index in range(due_jobs)]
    plan += [("completed", 1, "kept"), ("completed", 2, "kept"), ("running", None, "kept")]
    for status, days, expect in plan:
        job_id = str(uuid.UUID(int=chooser.getrandbits(128), version=4))
        results = target / "results" / job_id
        write_bytes(results / "workflow.log", f"log of {job_id}\n".encode())
        for index in range(OUTPUT_FILES):
            part = results / "outputs" / f"part_{index // 10}"
            write_bytes(part / f"tile_{index:03d}.dat", b"%d %s\n" % (index, job_id.encode()))
        write_bytes(target / "results" / f"{job_id}_results.zip", b"PK\x03\x04" + b"z" * 700)
        write_bytes(target / "temp" / job_id / "chunk_0.tmp", b"t" * 300)
        write_bytes(target / "temp" / job_id / "chunk_1.tmp", b"t" * 300)
        upload = f"{job_id}_dem.tif"
        write_bytes(target / "uploads" / upload, b"II*\x00" + b"d" * 2000)
        # An hour past a whole number of days: ages print as N.0 however long the run takes.
        completed = None if days is None else (NOW - timedelta(days=days, hours=1)).isoformat()
        rows.append(
            {
                "id": job_id,
                "status": status,
                "started_at": (NOW - timedelta(days=40)).isoformat(),
                "completed_at": completed,
                "dem_filename": upload,
            }
        )
        (due if expect == "due" else kept).append(job_id)
    create_jobs_db(target / "jobs.db", rows)
    base = EventsBase(target, due, kept)
    shutil.copyfile(SHIPPED_CONFIG, base.config)
    return base


def assert_due_jobs_cleaned(base: EventsBase) -> None:
    marks = base.cleaned_at()
    assert [job_id for job_id in base.due if marks[job_id] is None] == []
    assert [job_id for job_id in base.kept if marks[job_id] is not None] == []
    for job_id in base.due:
        for path in base.artifacts(job_id):
            assert not os.path.lexists(path), path
    for job_id in base.kept:
        for path in base.artifacts(job_id):
            assert os.path.lexists(path), path


# --------------------------------------------------------------------------- running


def slow_env(tmp_path: Path, hook_dir: Path) -> dict[str, str]:
    """The guarded environment with the slow-deletion hook loaded in front of the guard."""
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(SLOW_HOOK)
    env = guarded_env(tmp_path, SLOW_DELETION_SECONDS=SLOW_SECONDS, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), env["PYTHONPATH"]])
    # As under cron, stdout is block-buffered unless the product flushes: an inherited
    # PYTHONUNBUFFERED would hide an event line that is written but never flushed.
    env.pop("PYTHONUNBUFFERED", None)
    return env


@dataclass
class Line:
    arrived: float  # time.monotonic() when it was read
    text: str
    running: bool  # the process had not exited yet when the line was read


@dataclass
class Stream:
    started: float
    exited: float
    code: int
    lines: list[Line]
    stderr: str

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line.text) for line in self.lines]


def stream_run(args: list[str], env: dict[str, str], stderr_file: Path) -> Stream:
    """Start the installed CLI and read its stdout as it comes, noting when each line
    arrives and whether the process was still running then."""
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    lines: list[Line] = []
    with (
        stderr_file.open("wb") as stderr,
        subprocess.Popen(
            [cli_executable(), *args],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            bufsize=0,
        ) as process,
    ):
        assert process.stdout is not None
        fd = process.stdout.fileno()
        pending = b""
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    process.kill()
                    pytest.fail(f"no end of output within {DEADLINE_SECONDS} s")
                if not selector.select(timeout=remaining):
                    continue
                chunk = os.read(fd, 65536)
                arrived = time.monotonic()
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    lines.append(Line(arrived, raw.decode(), process.poll() is None))
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        exited = time.monotonic()
    assert pending == b"", f"output does not end with a newline: {pending!r}"
    return Stream(started, exited, code, lines, stderr_file.read_text())


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def job_of(event: dict[str, Any]) -> str | None:
    if event["kind"] == "job_finished":
        return str(event["job"]["job_id"])
    job_id = event.get("job_id")
    return None if job_id is None else str(job_id)


def assert_well_formed(events: list[dict[str, Any]]) -> None:
    """One JSON object a line, each a known event of this run, from run_started to
    run_finished."""
    assert events, "no event at all"
    for event in events:
        assert isinstance(event, dict), event
        assert event["kind"] in EVENT_KINDS, event
        parse_event(event)  # the documented model of its kind, field for field
        assert event["run_id"] == events[0]["run_id"], event
        assert event["at"], event
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "run_finished"
    assert kinds.count("run_started") == 1
    assert kinds.count("run_finished") == 1


def assert_job_order(events: list[dict[str, Any]]) -> list[str]:
    """Per job: job_started, then its path events, then job_finished (each once); every
    job of a batch_recorded finished before it. Returns the finished jobs in order."""
    positions: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    finished: list[str] = []
    for index, event in enumerate(events):
        job_id = job_of(event)
        if job_id is not None:
            positions[job_id][event["kind"]].append(index)
        if event["kind"] == "job_finished":
            finished.append(str(event["job"]["job_id"]))
        if event["kind"] == "batch_recorded":
            assert event["job_ids"], event
            for recorded in event["job_ids"]:
                assert recorded in finished, f"{recorded} recorded before it finished"
    for job_id in finished:
        seen = positions[job_id]
        assert len(seen["job_started"]) == 1, (job_id, dict(seen))
        assert len(seen["job_finished"]) == 1, (job_id, dict(seen))
        start, end = seen["job_started"][0], seen["job_finished"][0]
        for kind in ("path_removed", "path_kept"):
            for index in seen[kind]:
                assert start < index < end, (job_id, kind, dict(seen))
    assert len(set(finished)) == len(finished)
    return finished


def without_identity(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key not in RUN_IDENTITY}


# --------------------------------------------------------------------------- the stream


def test_events_jsonl_streams_each_event_while_the_run_goes_on(tmp_path: Path) -> None:
    base = build_base(tmp_path / "base", DUE_JOBS)
    twin = build_base(tmp_path / "twin", DUE_JOBS)  # the same jobs, for the --json object
    env = slow_env(tmp_path, tmp_path / "slow-hook")

    stream = stream_run(
        ["run", "--events", "jsonl", *JOB_FLAGS, "--config", str(base.config)],
        env,
        tmp_path / "stderr.txt",
    )

    assert stream.code == 0, stream.stderr
    assert "Traceback" not in stream.stderr
    events = stream.events()
    assert_well_formed(events)
    assert stream.exited - stream.started >= MIN_RUN_SECONDS, "the slow hook was not loaded"
    first_finished = next(
        line
        for line, event in zip(stream.lines, events, strict=True)
        if event["kind"] == "job_finished"
    )
    assert first_finished.running, "the first job_finished came after the process exited"
    lead = stream.exited - first_finished.arrived
    assert lead >= MIN_LEAD_SECONDS, (
        f"the first job_finished arrived {lead:.2f} s before the exit of a run of "
        f"{stream.exited - stream.started:.2f} s: events are not streamed as they happen"
    )

    finished = assert_job_order(events)
    assert finished == base.due
    recorded = [job_id for e in events if e["kind"] == "batch_recorded" for job_id in e["job_ids"]]
    assert sorted(recorded) == sorted(base.due)

    report = events[-1]["report"]
    assert report["dry_run"] is False
    assert report["run_id"] == events[0]["run_id"]
    assert [detail["job_id"] for detail in report["details"]] == finished
    by_job = {e["job"]["job_id"]: e["job"] for e in events if e["kind"] == "job_finished"}
    assert [by_job[job_id] for job_id in finished] == report["details"]
    json_run = call(
        ["run", "--json", *JOB_FLAGS, "--config", str(twin.config)], guarded_env(tmp_path)
    )
    assert json_run.code == 0, json_run.stderr
    # --json adds what went out after the run (nothing is configured here); the event's
    # report is the run's own object.
    expected = json_run.json()
    assert {key: expected.pop(key) for key in NO_REPORTS} == NO_REPORTS
    assert sorted(report) == sorted(expected)
    assert without_identity(report) == without_identity(expected)
    assert report["cleaned_jobs"] == {"successful": DUE_JOBS, "failed": 0}

    assert_due_jobs_cleaned(base)


def test_events_jsonl_dry_run_streams_dry_events_and_deletes_nothing(tmp_path: Path) -> None:
    base = build_base(tmp_path / "base", 5)
    before = snapshot(base.path)

    done = call(
        ["run", "--events", "jsonl", "--dry-run", "--config", str(base.config)],
        guarded_env(tmp_path),
    )

    assert done.code == 0, done.stderr
    events = events_of(done.stdout)
    assert_well_formed(events)
    assert events[0]["dry_run"] is True
    for event in events:
        if event["kind"] in ("job_started", "path_removed", "job_finished"):
            assert event["dry_run"] is True, event
    assert "batch_recorded" not in {event["kind"] for event in events}
    finished = assert_job_order(events)
    assert finished == base.due
    removed = {e["path"] for e in events if e["kind"] == "path_removed"}
    assert removed == {
        str(path.relative_to(base.path)) + ("/" if path.is_dir() else "")
        for job_id in base.due
        for path in base.artifacts(job_id)
    }
    report = events[-1]["report"]
    assert report["dry_run"] is True
    assert [detail["job_id"] for detail in report["details"]] == base.due
    for job_id in base.due:  # the log lines go to stderr, never into the stream
        assert f"[DRY RUN] Would clean job {job_id} (" in done.stderr
    assert snapshot(base.path) == before  # jobs.db too: not even migrated


# --------------------------------------------------------------------------- usage errors


def test_events_jsonl_with_json_exits_2_with_one_message_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    base = build_base(tmp_path / "base", 3)
    before = snapshot(base.path)

    done = call(
        ["run", "--events", "jsonl", "--json", "--config", str(base.config)], guarded_env(tmp_path)
    )

    assert done.code == 2
    message = error_line(done)
    assert "--events jsonl and --json both write stdout" in message
    # As for any usage error with --json: the one error object on stdout (test_errors_cli).
    assert json.loads(done.stdout) == {"success": False, "errors": [message]}
    assert snapshot(base.path) == before


def test_events_with_an_unknown_format_exits_2_naming_the_only_format(tmp_path: Path) -> None:
    base = build_base(tmp_path / "base", 3)
    before = snapshot(base.path)

    done = call(["run", "--events", "xml", "--config", str(base.config)], guarded_env(tmp_path))

    assert done.code == 2
    message = error_line(done)
    assert "'xml'" in message
    assert "jsonl" in message
    assert done.stdout == ""
    assert snapshot(base.path) == before


# --------------------------------------------------------------------------- the reader goes


def test_reader_closing_the_event_stream_early_does_not_stop_the_run(tmp_path: Path) -> None:
    base = build_base(tmp_path / "base", DUE_JOBS)
    env = slow_env(tmp_path, tmp_path / "slow-hook")
    stderr_file = tmp_path / "stderr.txt"
    with (
        stderr_file.open("wb") as stderr,
        subprocess.Popen(
            [
                cli_executable(),
                "run",
                "--events",
                "jsonl",
                *JOB_FLAGS,
                "--config",
                str(base.config),
            ],
            cwd="/",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        ) as process,
    ):
        assert process.stdout is not None
        first = [process.stdout.readline() for _ in range(3)]
        still_running = process.poll() is None
        process.stdout.close()
        code = process.wait(timeout=DEADLINE_SECONDS)
    errors = stderr_file.read_text()

    kinds = [json.loads(line)["kind"] for line in first]
    assert kinds[0] == "run_started" and len(kinds) == 3, kinds
    assert still_running, "the run was over before the reader left: the case proves nothing"
    assert "Traceback" not in errors, errors
    assert "Exception ignored" not in errors, errors
    assert code == 0, errors
    assert_due_jobs_cleaned(base)
    conn = sqlite3.connect(base.db)
    try:
        runs = conn.execute("SELECT exit_code, finished_at FROM cleanup_log").fetchall()
    finally:
        conn.close()
    assert len(runs) == 1 and runs[0][0] == 0 and runs[0][1], runs

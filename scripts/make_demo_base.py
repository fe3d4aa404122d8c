#!/usr/bin/env python3
"""Generate a realistic demo *base directory* as the EEMT web interface leaves it.

Used by ``make demo`` and by end-to-end tests of eemt-cleanup.  Standard library only.

Usage::

    python scripts/make_demo_base.py BASE_DIR [--now ISO8601] [--seed N] [--scale N]
                                              [--force] [--quiet]

``BASE_DIR`` receives ``jobs.db`` (the web interface's ``jobs`` table, verbatim schema),
``uploads/``, ``results/``, ``temp/`` (job data) and ``cache/``, ``shared/`` (never job data),
plus ``demo_manifest.json`` describing every scenario::

    {"now": "...", "seed": 42, "scale": 1,
     "jobs": [{"id": "...", "scenario": 1, "label": "...", "status": "completed",
               "expect": "due" | "retained" | "never" | "unknown_status" | "unparseable",
               "paths": ["results/<id>/", "results/<id>_results.zip", "temp/<id>/",
                         "uploads/<name>"],
               "upload": "<dem_filename or null>"}],
     "uploads": {"<name>": "deleted" | "kept"},
     "untouched": ["cache/...", "shared/...", "uploads/<abandoned>"]}

``paths`` lists exactly the artifacts created on disk for a job (directories end in ``/``);
whether a default-policy run deletes an upload is given by ``uploads`` (an upload can be
shared, see scenarios 14 and 15).  ``expect`` is the designed outcome of a default-policy
run (completed: 168 h, failed: 12 h) at ``now``.

Options:
    --now     reference instant, ISO-8601 with an offset (default: the real time, UTC);
              every timestamp is computed relative to it.
    --seed    seed for ids, timestamps' microseconds, parameters and file contents/sizes
              (default 42).  Same --seed, --now and --scale (and the same local time zone,
              which the naive timestamps are written in) give the same tree.
    --scale   multiplies the number of output files per job (default 1, a few MB in all).
    --force   replace a BASE_DIR previously made by this script (it must contain
              demo_manifest.json); any other non-empty directory is refused.
    --quiet   print nothing on success.

Exit status: 0 on success, 2 on a usage error or refusal (one line on stderr), 1 when writing
fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import stat
import sys
import uuid
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

PROG = "make_demo_base.py"
MANIFEST_NAME = "demo_manifest.json"

# Verbatim from SPEC section 2: the web interface creates exactly this table.
JOBS_DDL = """CREATE TABLE jobs (
    id TEXT PRIMARY KEY,            -- a uuid4 string
    workflow_type TEXT NOT NULL,    -- 'eemt' | 'sol' | ...
    status TEXT NOT NULL,           -- 'pending' | 'running' | 'completed' | 'failed'
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    started_at TIMESTAMP,
    completed_at TIMESTAMP,
    parameters TEXT,                -- JSON
    dem_filename TEXT,              -- name of the upload inside uploads/
    error_message TEXT,
    progress INTEGER DEFAULT 0
)"""

TIFF_MAGIC = b"II*\x00"
GARBAGE_TIMESTAMP = "not a date"
CANCELLED = "Job cancelled by user"

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
QUEUE_WAIT = timedelta(seconds=42)
RUNTIME = {"eemt": timedelta(minutes=47), "sol": timedelta(minutes=12)}

UPLOAD_STEMS = (
    "santa_catalina_10m_dem", "mt_lemmon_lidar_1m", "sabino_canyon_dem",
    "reynolds_creek_30m", "jemez_river_basin", "boulder_creek_czo",
    "valles_caldera_dem", "redondo_peak_3m", "marshall_gulch_1m",
    "oracle_ridge_dem", "tucson_basin_30m", "rincon_mountains_10m",
    "test_upload_do_not_use", "catalina_jemez_merged", "walnut_gulch_5m",
)


@dataclass(frozen=True)
class Scenario:
    """One designed job: its row's shape and the artifacts it leaves on disk."""

    number: int
    label: str
    status: str
    expect: str
    workflow: str = "eemt"
    completed_ago: timedelta | None = None
    started_ago: timedelta | None = None
    created_ago: timedelta | None = None
    ts_style: str = "local"  # local | offset | z | epoch | garbage (completed_at only)
    error_message: str | None = None
    progress: int = 100
    results: str | None = "full"  # "full" | "partial" | None
    archive: bool = False
    temp: bool = False
    upload: str | None = None  # "own" | "shared:<n>" | "missing" | None (NULL)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "completed 8.2 days ago, local naive completed_at", "completed", "due",
             completed_ago=8.2 * DAY, archive=True, temp=True, upload="own"),
    Scenario(2, "completed 3 days ago, within retention", "completed", "retained", "sol",
             completed_ago=3 * DAY, archive=True, temp=True, upload="own"),
    Scenario(3, "completed 7 days 2 hours ago, 'Z' completed_at", "completed", "due",
             completed_ago=7 * DAY + 2 * HOUR, ts_style="z", upload="own"),
    Scenario(4, "completed 10 days ago, '+00:00' completed_at", "completed", "due", "sol",
             completed_ago=10 * DAY, ts_style="offset", temp=True, upload="own"),
    Scenario(5, "completed 20 days ago, epoch-seconds completed_at", "completed", "due",
             completed_ago=20 * DAY, ts_style="epoch", upload="missing"),
    Scenario(6, "completed, completed_at NULL, started 9 days ago", "completed", "due",
             started_ago=9 * DAY, created_ago=9.1 * DAY, temp=True, upload="own"),
    Scenario(7, "failed 13 hours ago, local naive completed_at", "failed", "due",
             completed_ago=13 * HOUR, progress=40, results="partial", temp=True,
             upload="own", error_message="Workflow failed: r.sun exited with status 1"),
    Scenario(8, "cancelled by user 2 days ago", "failed", "due", "sol",
             completed_ago=2 * DAY, progress=25, results="partial", temp=True,
             upload="own", error_message=CANCELLED),
    Scenario(9, "failed 6 hours ago, within retention", "failed", "retained",
             completed_ago=6 * HOUR, progress=70, results="partial", temp=True,
             upload="own", error_message="Container exited with code 137 (out of memory)"),
    Scenario(10, "pending, created 30 days ago", "pending", "never", "sol",
             created_ago=30 * DAY, progress=0, results=None, upload="own"),
    Scenario(11, "running, started 10 days ago", "running", "never",
             started_ago=10 * DAY, progress=55, results="partial", temp=True, upload="own"),
    Scenario(12, "unknown status 'archived', completed 30 days ago", "archived",
             "unknown_status", completed_ago=30 * DAY, upload="own"),
    Scenario(13, "completed, completed_at 'not a date'", "completed", "unparseable", "sol",
             completed_ago=5 * DAY, ts_style="garbage", upload="own"),
    Scenario(14, "shared upload kept: job A completed 9 days ago", "completed", "due",
             completed_ago=9 * DAY, upload="shared:14"),
    Scenario(14, "shared upload kept: job B completed 2 days ago", "completed", "retained",
             completed_ago=2 * DAY, upload="shared:14"),
    Scenario(15, "shared upload deleted: job C completed 15 days ago", "completed", "due",
             "sol", completed_ago=15 * DAY, upload="shared:15"),
    Scenario(15, "shared upload deleted: job D completed 8 days ago", "completed", "due",
             "sol", completed_ago=8 * DAY, upload="shared:15"),
    Scenario(17, "completed 12 days ago, upload missing on disk, no temp dir", "completed",
             "due", completed_ago=12 * DAY, upload="missing"),
)
# Scenario 16, an abandoned upload that no job references, is not a job: its file is listed
# under "untouched" (and as "kept" under "uploads") in the manifest.


@dataclass
class Job:
    """A scenario made concrete: id, instants, upload name and the paths created."""

    scenario: Scenario
    id: str
    created: datetime
    started: datetime | None
    completed: datetime | None
    parameters: str
    upload_name: str | None
    paths: list[str] = field(default_factory=list)

    @property
    def last_instant(self) -> datetime:
        return self.completed or self.started or self.created


class Refusal(Exception):
    """BASE_DIR cannot be used; the message is shown as one line on stderr."""


# --------------------------------------------------------------------------- arguments


def parse_now(value: str) -> datetime:
    """Parse --now; an offset is required so the result does not depend on the machine."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {value!r}") from exc
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset (e.g. +00:00): {value!r}")
    return parsed.astimezone(UTC)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from exc
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value!r}")
    return number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Generate a demo EEMT web-interface base directory."
    )
    parser.add_argument("base_dir", metavar="BASE_DIR", type=Path)
    parser.add_argument("--now", type=parse_now, default=None,
                        help="reference instant, ISO-8601 with offset (default: now, UTC)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--scale", type=positive_int, default=1,
                        help="multiplies the number of output files per job (default 1)")
    parser.add_argument("--force", action="store_true",
                        help="replace a BASE_DIR previously made by this script")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- base dir


def clear_directory(base: Path) -> None:
    """Remove the children of ``base`` without following symlinks out of it."""
    with os.scandir(base) as entries:
        children = list(entries)
    for entry in children:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def prepare_base_dir(base: Path, force: bool) -> None:
    """Create ``base`` or empty a previous demo in it; raise Refusal otherwise."""
    if base.is_symlink():
        raise Refusal(f"refusing to use {base}: it is a symlink")
    if base.exists() and not base.is_dir():
        raise Refusal(f"refusing to use {base}: it exists and is not a directory")
    if base.is_dir() and any(base.iterdir()):
        if not force:
            raise Refusal(f"refusing to write into non-empty {base} (use --force to "
                          "replace a previous demo)")
        manifest = base / MANIFEST_NAME
        if manifest.is_symlink() or not manifest.is_file():
            raise Refusal(f"refusing to clear {base}: no {MANIFEST_NAME}, "
                          "it was not made by this script")
        clear_directory(base)
    base.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- timestamps


def fmt_created(instant: datetime) -> str:
    """SQLite CURRENT_TIMESTAMP: UTC, naive, whole seconds."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_instant(instant: datetime, style: str) -> str | int:
    """started_at / completed_at as the various deployments store them."""
    if style == "local":  # datetime.now().isoformat(): naive local time
        return instant.astimezone().replace(tzinfo=None).isoformat(timespec="microseconds")
    if style == "offset":
        return instant.astimezone(UTC).isoformat(timespec="microseconds")
    if style == "z":
        return instant.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    if style == "epoch":
        return int(instant.timestamp())
    raise ValueError(f"unknown timestamp style {style!r}")


def completed_value(job: Job) -> str | int | None:
    style = job.scenario.ts_style
    if style == "garbage":
        return GARBAGE_TIMESTAMP
    return None if job.completed is None else fmt_instant(job.completed, style)


def started_value(job: Job) -> str | int | None:
    # A garbage completed_at sits next to a valid local started_at: the age must still be
    # "unknown", never silently taken from started_at.
    style = "local" if job.scenario.ts_style == "garbage" else job.scenario.ts_style
    return None if job.started is None else fmt_instant(job.started, style)


# --------------------------------------------------------------------------- planning


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def jitter(rng: random.Random) -> timedelta:
    """Sub-second noise, so naive ISO timestamps carry microseconds like datetime.now()."""
    return timedelta(microseconds=rng.randrange(1, 1_000_000))


def resolve_times(
    sc: Scenario, now: datetime, rng: random.Random
) -> tuple[datetime, datetime | None, datetime | None]:
    completed = None if sc.completed_ago is None else now - sc.completed_ago - jitter(rng)
    if sc.started_ago is not None:
        started: datetime | None = now - sc.started_ago - jitter(rng)
    elif completed is not None:
        started = completed - RUNTIME[sc.workflow] - jitter(rng)
    else:
        started = None
    if sc.created_ago is not None:
        created = now - sc.created_ago
    else:
        created = (started or completed or now) - QUEUE_WAIT
    return created, started, completed


def make_parameters(workflow: str, rng: random.Random) -> str:
    threads = rng.choice([2, 4, 8])
    if workflow == "eemt":
        year = rng.randint(2015, 2020)
        params: dict[str, object] = {
            "start_year": year, "end_year": year + rng.randint(0, 2), "step": 15,
            "linke_value": 3.0, "albedo_value": 0.2, "num_threads": threads,
        }
    else:
        params = {
            "step": rng.choice([5, 15, 30]), "linke_value": round(rng.uniform(2.0, 4.0), 1),
            "albedo_value": 0.2, "num_threads": threads, "days": "1-365",
        }
    return json.dumps(params)


def upload_key(sc: Scenario, index: int) -> str | None:
    """Jobs with the same key share one upload; "own" and "missing" are per job."""
    if sc.upload in ("own", "missing"):
        return f"{sc.upload}:{index}"
    return sc.upload


class UploadNamer:
    """Hands out ``<uuid4>_<original name>.tif`` names, one per upload key."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._names: dict[str, str] = {}

    def name_for(self, key: str) -> str:
        if key not in self._names:
            stem = UPLOAD_STEMS[len(self._names) % len(UPLOAD_STEMS)]
            self._names[key] = f"{new_uuid(self._rng)}_{stem}.tif"
        return self._names[key]


def plan_jobs(now: datetime, rng: random.Random) -> tuple[list[Job], str]:
    """Make every scenario concrete; returns the jobs and the abandoned upload's name."""
    ids = [new_uuid(rng) for _ in SCENARIOS]
    namer = UploadNamer(rng)
    jobs = []
    for index, (sc, job_id) in enumerate(zip(SCENARIOS, ids, strict=True)):
        created, started, completed = resolve_times(sc, now, rng)
        key = upload_key(sc, index)
        jobs.append(Job(
            scenario=sc, id=job_id, created=created, started=started, completed=completed,
            parameters=make_parameters(sc.workflow, rng),
            upload_name=None if key is None else namer.name_for(key),
        ))
    return jobs, namer.name_for("abandoned")


# --------------------------------------------------------------------------- writing files


def write_random(path: Path, size: int, rng: random.Random, magic: bytes = b"") -> None:
    """Write ``size`` bytes of real (non-sparse) pseudo-random data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(magic + rng.randbytes(max(size - len(magic), 0)))


def stamp(path: Path, when: datetime) -> None:
    """Give ``path`` (and everything below it) the mtime the web interface would have left."""
    ts = when.timestamp()
    if path.is_dir():
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files + dirs:
                os.utime(os.path.join(root, name), (ts, ts), follow_symlinks=False)
    os.utime(path, (ts, ts), follow_symlinks=False)


def local_str(instant: datetime) -> str:
    return instant.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def log_texts(job: Job, rng: random.Random) -> dict[str, str]:
    sc = job.scenario
    start = job.started or job.created
    steps = rng.randint(8, 40)
    done = steps if sc.results == "full" else max(1, steps * sc.progress // 100)
    workflow = [f"{local_str(start)} INFO Starting {sc.workflow} workflow for job {job.id}"]
    workflow += [f"{local_str(start + k * timedelta(seconds=37))} INFO Task {k}/{steps} "
                 "finished" for k in range(1, done + 1)]
    task = [f"[task {k:03d}] r.sun elevation=dem step={rng.randint(5, 30)} "
            f"threads={rng.choice([2, 4, 8])} ok" for k in range(1, done + 1)]
    container = [f"{local_str(start)} pulling image cyverse/eemt:latest",
                 f"{local_str(start)} container started (workdir /tmp/{job.id})"]
    errors = ""
    if sc.status == "failed":
        message = sc.error_message or "unknown error"
        workflow.append(f"{local_str(job.last_instant)} ERROR {message}")
        errors = f"Traceback (most recent call last):\n  ...\nRuntimeError: {message}\n"
    elif sc.results == "full":
        workflow.append(f"{local_str(job.last_instant)} INFO Workflow completed")
        container.append(f"{local_str(job.last_instant)} container exited with code 0")
    return {
        "workflow.log": "\n".join(workflow) + "\n",
        "task_output.log": "\n".join(task) + "\n",
        "sys.err": errors,
        "container.log": "\n".join(container) + "\n",
    }


def write_outputs(outputs: Path, job: Job, rng: random.Random, scale: int) -> None:
    full = job.scenario.results == "full"
    eemt = job.scenario.workflow == "eemt"
    count = (3 if full else 1) * scale
    stem = "eemt_tile" if eemt else "sol_global"
    outputs.mkdir(parents=True)
    for k in range(count):
        write_random(outputs / f"{stem}_{k:03d}.tif", rng.randint(20_000, 150_000), rng,
                     TIFF_MAGIC)
    if full and rng.random() < 0.5:
        nested, prefix = ("monthly", "eemt_month") if eemt else ("daily", "sol_day")
        for k in range(2 * scale):
            write_random(outputs / nested / f"{prefix}_{k + 1:03d}.tif",
                         rng.randint(20_000, 150_000), rng, TIFF_MAGIC)


def make_results_dir(base: Path, job: Job, rng: random.Random, scale: int) -> str:
    directory = base / "results" / job.id
    directory.mkdir()
    for name, text in log_texts(job, rng).items():
        (directory / name).write_text(text)
    write_outputs(directory / "outputs", job, rng, scale)
    stamp(directory, job.last_instant)
    return f"results/{job.id}/"


def make_archive(base: Path, job: Job, rng: random.Random) -> str:
    path = base / "results" / f"{job.id}_results.zip"
    write_random(path, rng.randint(50_000, 200_000), rng, b"PK\x03\x04")
    stamp(path, job.last_instant + timedelta(minutes=rng.randint(5, 600)))
    return f"results/{job.id}_results.zip"


def make_temp_dir(base: Path, job: Job, rng: random.Random) -> str:
    directory = base / "temp" / job.id
    directory.mkdir()
    write_random(directory / "dem_reprojected.tif", rng.randint(10_000, 60_000), rng,
                 TIFF_MAGIC)
    (directory / "workflow_config.json").write_text(job.parameters + "\n")
    write_random(directory / "grass_session.tmp", rng.randint(1_000, 8_000), rng)
    stamp(directory, job.started or job.created)
    return f"temp/{job.id}/"


def make_upload(base: Path, name: str, when: datetime, rng: random.Random) -> str:
    path = base / "uploads" / name
    write_random(path, rng.randint(60_000, 250_000), rng, TIFF_MAGIC)
    stamp(path, when)
    return f"uploads/{name}"


def make_job_artifacts(base: Path, job: Job, rng: random.Random, scale: int) -> None:
    sc = job.scenario
    if sc.results is not None:
        job.paths.append(make_results_dir(base, job, rng, scale))
    if sc.archive:
        job.paths.append(make_archive(base, job, rng))
    if sc.temp:
        job.paths.append(make_temp_dir(base, job, rng))


def make_uploads(
    base: Path, jobs: list[Job], abandoned: str, now: datetime, rng: random.Random
) -> dict[str, str]:
    """Create every upload on disk; returns name -> "deleted" | "kept" for a default run."""
    fates: dict[str, str] = {}
    for job in jobs:
        name = job.upload_name
        if name is None or job.scenario.upload == "missing":
            continue
        users = [j for j in jobs if j.upload_name == name]
        if name not in fates:
            first_use = min(j.created for j in users) - timedelta(minutes=2)
            make_upload(base, name, first_use, rng)
            fates[name] = "deleted" if all(j.scenario.expect == "due" for j in users) \
                else "kept"
        job.paths.append(f"uploads/{name}")
    make_upload(base, abandoned, now - 40 * DAY, rng)
    fates[abandoned] = "kept"
    return dict(sorted(fates.items()))


def make_non_job_files(base: Path, now: datetime, rng: random.Random) -> list[str]:
    """cache/ and shared/: never job data, never to be touched."""
    files = {
        "cache/dem_tiles/tile_0_0.bin": rng.randint(5_000, 30_000),
        "cache/dem_tiles/tile_0_1.bin": rng.randint(5_000, 30_000),
        "cache/session_cache.json": 0,
        "shared/README.txt": 0,
        "shared/colormaps/eemt_viridis.txt": 0,
    }
    texts = {
        "cache/session_cache.json": json.dumps({"version": 1, "entries": []}) + "\n",
        "shared/README.txt": "Shared reference data for all EEMT jobs. Do not delete.\n",
        "shared/colormaps/eemt_viridis.txt": "".join(
            f"{k} {rng.randint(0, 255)} {rng.randint(0, 255)} {rng.randint(0, 255)}\n"
            for k in range(0, 101, 10)),
    }
    for rel, size in files.items():
        path = base / rel
        if rel in texts:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(texts[rel])
        else:
            write_random(path, size, rng)
        stamp(path, now - 60 * DAY)
    return sorted(files)


# --------------------------------------------------------------------------- database


def job_row(job: Job) -> tuple[object, ...]:
    sc = job.scenario
    return (job.id, sc.workflow, sc.status, fmt_created(job.created), started_value(job),
            completed_value(job), job.parameters, job.upload_name, sc.error_message,
            sc.progress)


def write_database(path: Path, jobs: list[Job]) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(JOBS_DDL)
        conn.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [job_row(job) for job in jobs])


# --------------------------------------------------------------------------- manifest


def job_entry(job: Job) -> dict[str, object]:
    sc = job.scenario
    return {"id": job.id, "scenario": sc.number, "label": sc.label, "status": sc.status,
            "expect": sc.expect, "paths": job.paths, "upload": job.upload_name}


def write_json(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def generate(base: Path, now: datetime, seed: int, scale: int) -> dict[str, object]:
    """Fill the (empty) ``base`` and return the manifest written to it."""
    # Written first so that a half-made tree can still be replaced with --force.
    write_json(base / MANIFEST_NAME, {"incomplete": True})
    meta_rng = random.Random(seed)  # ids, names, instants, parameters
    data_rng = random.Random(f"eemt-demo-data:{seed}")  # file sizes and contents
    jobs, abandoned = plan_jobs(now, meta_rng)
    for sub in ("uploads", "results", "temp", "cache", "shared"):
        (base / sub).mkdir()
    for job in jobs:
        make_job_artifacts(base, job, data_rng, scale)
    upload_fates = make_uploads(base, jobs, abandoned, now, data_rng)
    untouched = [*make_non_job_files(base, now, data_rng), f"uploads/{abandoned}"]
    write_database(base / "jobs.db", jobs)
    manifest: dict[str, object] = {
        "now": now.isoformat(), "seed": seed, "scale": scale,
        "jobs": [job_entry(job) for job in jobs],
        "uploads": upload_fates,
        "untouched": untouched,
    }
    write_json(base / MANIFEST_NAME, manifest)
    return manifest


# --------------------------------------------------------------------------- summary


def tree_size(base: Path) -> tuple[int, int]:
    files = total = 0
    for root, _dirs, names in os.walk(base):
        for name in names:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(info.st_mode):
                files += 1
                total += info.st_size
    return files, total


def counts(items: list[str]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(Counter(items).items()))


def print_summary(base: Path, manifest: dict[str, object]) -> None:
    jobs = manifest["jobs"]
    uploads = manifest["uploads"]
    assert isinstance(jobs, list)
    assert isinstance(uploads, dict)
    files, total = tree_size(base)
    print(f"Demo base directory {base} (now {manifest['now']}, seed {manifest['seed']}, "
          f"scale {manifest['scale']}): {files} files, {total / 1e6:.1f} MB")
    print(f"  jobs by status: {len(jobs)} ({counts([j['status'] for j in jobs])})")
    print(f"  expected outcome: {counts([j['expect'] for j in jobs])}")
    print(f"  uploads: {len(uploads)} ({counts(list(uploads.values()))})")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now: datetime = args.now or datetime.now(UTC)
    base: Path = args.base_dir
    try:
        prepare_base_dir(base, args.force)
        manifest = generate(base, now, args.seed, args.scale)
    except Refusal as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"{PROG}: failed to write {base}: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print_summary(base, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

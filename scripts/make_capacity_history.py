#!/usr/bin/env python3
"""Fill a copy of a jobs database with a realistic usage history, for ``eemt-cleanup report``.

Used to draw ``docs/capacity.png`` and to try ``report`` without waiting a month::

    python scripts/make_demo_base.py /tmp/eemt-demo --quiet
    python scripts/make_capacity_history.py /tmp/eemt-demo/jobs.db /tmp/eemt-history.db
    eemt-cleanup report --db-path /tmp/eemt-history.db --png /tmp/capacity.png

Usage::

    python scripts/make_capacity_history.py SOURCE_DB TARGET_DB [--days 30] [--now ISO8601]
                                            [--seed N] [--fs-size-gb N] [--force]

``SOURCE_DB`` (a demo base's ``jobs.db``, or any jobs database) is copied to ``TARGET_DB``
(never changed itself), migrated as a run would, and given ``--days`` days ending at
``--now`` of: one usage sample a day at 02:05 UTC (after the nightly cron run), a second
sample some afternoons (someone ran ``status``), and the nightly run's cleanup counts per
status. The site it describes: a results filesystem of ``--fs-size-gb`` (default 2048 GB)
whose used space grows about 12 GB a day (new jobs write more than the cleanups free),
completed jobs' data in the hundreds of GB, failed jobs' a few, pending and running jobs'
some; a history long enough to fill the filesystem levels off at 95 % used. The same
``--seed`` and ``--now`` give the same history.

Exit status: 0 on success, 2 on a usage error or refusal (one line on stderr).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

GIB = 1024**3
JOB_GB = {"completed": 14.0, "failed": 1.5}  # mean data of one cleaned job


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, metavar="SOURCE_DB")
    parser.add_argument("target", type=Path, metavar="TARGET_DB")
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, default=None, help="end of the history (ISO-8601)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--fs-size-gb", type=int, default=2048, help="results filesystem size (default 2048)"
    )
    parser.add_argument("--force", action="store_true", help="replace TARGET_DB")
    return parser.parse_args(argv)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` at ``target`` (SQLite's online backup)."""
    reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    with closing(reader) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def history(conn: sqlite3.Connection, *, days: int, now: datetime, fs_size: int, seed: int) -> int:
    """Write ``days`` days of samples and counts ending at ``now``; the number of samples."""
    from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample, write_sample

    rng = random.Random(seed)
    first = (now - timedelta(days=days - 1)).replace(hour=2, minute=5, second=0, microsecond=0)
    completed, failed, pending, running = 420.0, 6.0, 25.0, 40.0  # GB of job data
    other_gb = 380.0  # what else lives on the results filesystem
    samples = 0
    for offset in range(days):
        night = first + timedelta(days=offset)
        if night > now:
            break
        # The nightly run: completed and failed jobs past retention are cleaned.
        cleaned_completed = rng.randint(0, 4) if offset % 7 not in (5, 6) else rng.randint(0, 1)
        cleaned_failed = rng.randint(0, 3)
        freed_completed = sum(
            rng.uniform(0.4, 1.6) * JOB_GB["completed"] for _ in range(cleaned_completed)
        )
        freed_failed = sum(rng.uniform(0.2, 1.8) * JOB_GB["failed"] for _ in range(cleaned_failed))
        _counts(conn, night, "completed", "successful", cleaned_completed, freed_completed)
        _counts(conn, night, "failed", "failed", cleaned_failed, freed_failed)
        _run_row(conn, night, cleaned_completed, cleaned_failed, freed_completed + freed_failed)
        # During the day users ran jobs: more written than the night freed, on average.
        completed += rng.uniform(25.0, 45.0) - freed_completed
        failed = max(0.5, failed + rng.uniform(0.5, 2.5) - freed_failed)
        pending = max(0.0, pending + rng.uniform(-6.0, 6.0))
        running = max(5.0, running + rng.uniform(-15.0, 15.0))
        other_gb += rng.uniform(-1.0, 2.5)
        # A long history levels off at 95 % used (users stop submitting on a full disk)
        # instead of drawing a filesystem fuller than its size.
        room = 0.95 * fs_size / GIB - other_gb - failed - pending - running
        completed = min(completed, room)
        moments = [night]
        if rng.random() < 0.4:
            moments.append(night + timedelta(hours=rng.randint(10, 16), minutes=rng.randint(0, 59)))
        for moment in moments:
            if moment > now:
                continue
            data = completed + failed + pending + running
            used = (data + other_gb) * GIB
            sample = UsageSample(
                sample_id=str(uuid.uuid4()),
                taken_at=moment,
                source="run" if moment == night else "status",
                run_id=f"history-{night:%Y%m%d}" if moment == night else None,
                by_status=[
                    StatusUsage(status=status, jobs=max(1, int(gb / 9)), bytes=int(gb * GIB))
                    for status, gb in (
                        ("completed", completed),
                        ("failed", failed),
                        ("pending", pending),
                        ("running", running),
                    )
                ],
                by_root=[
                    RootUsage(
                        root="uploads",
                        jobs=60,
                        bytes=int(data * 0.04 * GIB),
                        fs_size=fs_size,
                        fs_free=int(fs_size - used),
                    ),
                    RootUsage(
                        root="results",
                        jobs=60,
                        bytes=int(data * 0.9 * GIB),
                        fs_size=fs_size,
                        fs_free=int(fs_size - used),
                    ),
                    RootUsage(
                        root="temp",
                        jobs=12,
                        bytes=int(data * 0.06 * GIB),
                        fs_size=fs_size,
                        fs_free=int(fs_size - used),
                    ),
                ],
            )
            write_sample(conn, sample)
            samples += 1
    return samples


def _run_row(
    conn: sqlite3.Connection, night: datetime, successful: int, failed: int, gb: float
) -> None:
    """The nightly run's cleanup_log row (its counts as the batches summed them)."""
    from eemt_cleanup.timeparse import format_utc

    conn.execute(
        "INSERT INTO cleanup_log (run_id, started_at, finished_at, trigger, user, host, pid, "
        "dry_run, jobs_successful, jobs_failed, bytes_freed, files_deleted, errors, exit_code) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            f"history-{night:%Y%m%d}",
            format_utc(night),
            format_utc(night + timedelta(minutes=4)),
            "cron",
            "root",
            "eemt-web",
            1,
            0,
            successful,
            failed,
            int(gb * GIB),
            (successful + failed) * 140,
            0,
            0,
        ),
    )


def _counts(
    conn: sqlite3.Connection, night: datetime, status: str, kind: str, jobs: int, gb: float
) -> None:
    """One nightly batch's cleanup_counts row (as the engine writes it with its marks)."""
    from eemt_cleanup.timeparse import format_utc

    if not jobs:
        return
    conn.execute(
        "INSERT INTO cleanup_counts (run_id, recorded_at, status, kind, jobs, bytes_freed, "
        "files_deleted) VALUES (?,?,?,?,?,?,?)",
        (
            f"history-{night:%Y%m%d}",
            format_utc(night + timedelta(minutes=3)),
            status,
            kind,
            jobs,
            int(gb * GIB),
            jobs * 140,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.source.is_file():
        print(f"make_capacity_history: {args.source}: no such database", file=sys.stderr)
        return 2
    if args.target.exists() and not args.force:
        print(f"make_capacity_history: {args.target} exists (--force replaces it)", file=sys.stderr)
        return 2
    if args.days < 1:
        print("make_capacity_history: --days must be at least 1", file=sys.stderr)
        return 2
    now = args.now or datetime.now(UTC)
    if now.tzinfo is None:
        print("make_capacity_history: --now needs a UTC offset (e.g. +00:00)", file=sys.stderr)
        return 2
    from eemt_cleanup.store.migrations import migrate

    args.target.unlink(missing_ok=True)
    copy_database(args.source, args.target)
    with closing(sqlite3.connect(args.target, isolation_level=None)) as conn:
        migrate(conn, "jobs", "status", "dem_filename")
        count = history(
            conn, days=args.days, now=now, fs_size=args.fs_size_gb * GIB, seed=args.seed
        )
    print(
        f"{args.target}: {count} usage samples over {args.days} days ending {now:%Y-%m-%d %H:%M %Z}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Planning: ``eemt-cleanup run --dry-run`` over jobs tables of 10k, 100k and 1M rows, a
real run that cleans and marks the 1,000 due jobs, and ``eemt-cleanup --help``.

Each table: the web interface's ``jobs`` schema, migrated by the product's own
``migrate()`` (so the partial "due" index exists), then filled in one transaction. Exactly
``--due`` (1,000) completed jobs are due, each with a tiny ``results/<id>/`` (one file) and
a tiny upload; 1 % of the rows are completed 1 day ago (within retention), 100 are
pending/running, and every other row was cleaned long ago (``data_cleaned_at`` set).
Tables are built once into a cache on ``/dev/shm`` and copied for every real run.

    python benchmarks/bench_planning.py [--sizes 10000,100000,1000000] [--trials 5]
                                        [--due 1000] [--retained 1%] [--help-trials 10]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common
from common import Section, Target

DRY_RUN_LIMIT = 0.5  # s, over the largest table, interpreter start included
RSS_LIMIT = 100_000_000  # bytes ("100 MB", read strictly as decimal megabytes)
FLAT_LIMIT = 1.2  # largest table / smallest table, for wall and for peak RSS
MARK_LIMIT = 2.0  # s, real run cleaning and marking the due jobs
HELP_LIMIT = 0.150  # s
ACTIVE = 100  # pending + running rows (never cleaned)
INSERT = (
    "INSERT INTO jobs (id, workflow_type, status, created_at, started_at, completed_at, "
    "parameters, dem_filename, error_message, progress, data_cleaned_at, data_size_mb) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Composition:
    rows: int
    due: int
    retained: int
    active: int

    @property
    def cleaned(self) -> int:
        return self.rows - self.due - self.retained - self.active


def composition(rows: int, due: int, retained: str) -> Composition:
    """``retained`` is a row count or a percentage of the table (``1%``)."""
    count = rows * float(retained[:-1]) / 100 if retained.endswith("%") else float(retained)
    result = Composition(rows, due, int(count), ACTIVE)
    if result.cleaned < 0:
        raise SystemExit(f"bench_planning: {rows} rows cannot hold {due} due jobs and the rest")
    return result


def due_ids(comp: Composition) -> list[str]:
    return common.job_ids(comp.due, seed=comp.rows)


def generate_rows(
    comp: Composition, now: datetime, garbage: bool = False
) -> Iterator[tuple[object, ...]]:
    """Rows in the order the web interface would have written them (oldest first). With
    ``garbage``, the rows that would have been cleaned long ago are instead not cleaned and
    have timestamps nobody can parse (their age is unknown: kept forever, reported)."""
    rng = random.Random(comp.rows)  # noqa: S311 - test data, not secrets
    params = common.PARAMETERS
    local, utc = common.local_naive, common.sqlite_utc

    def row(
        job_id: str, status: str, completed: datetime | None, cleaned: str | None
    ) -> tuple[object, ...]:
        started = (completed or now) - timedelta(minutes=47)
        created = started - timedelta(minutes=2)
        error = "Workflow failed: r.sun exited with status 1" if status == "failed" else None
        return (
            job_id,
            "eemt" if rng.random() < 0.7 else "sol",
            status,
            utc(created),
            local(started) if status != "pending" else None,
            local(completed) if completed else None,
            params,
            common.upload_name(job_id),
            error,
            100 if completed else 40,
            cleaned,
            round(rng.uniform(0.1, 4000.0), 3) if cleaned else None,
        )

    two_years = timedelta(days=730)
    oldest = now - two_years - timedelta(days=31)
    step = two_years / max(comp.cleaned, 1)
    for index, job_id in enumerate(common.job_ids(comp.cleaned, seed=comp.rows + 1)):
        completed = oldest + step * index
        cleaned = (completed + timedelta(days=8)).isoformat(timespec="seconds")
        status = "failed" if rng.random() < 0.1 else "completed"
        if garbage:
            values = list(row(job_id, status, completed, None))
            values[3:6] = [f"garbage {index}", f"?{index}", f"not a date {index}"]
            yield tuple(values)
            continue
        yield row(job_id, status, completed, cleaned)
    for index, job_id in enumerate(due_ids(comp)):
        completed = now - timedelta(days=30) + timedelta(days=22) * index / comp.due
        yield row(job_id, "completed", completed, None)
    for job_id in common.job_ids(comp.retained, seed=comp.rows + 2):
        yield row(job_id, "completed", now - timedelta(days=1), None)
    for index, job_id in enumerate(common.job_ids(comp.active, seed=comp.rows + 3)):
        yield row(job_id, "running" if index % 2 else "pending", None, None)


def build_db(path: Path, comp: Composition, garbage: bool = False) -> None:
    """The table, migrated first (partial index included), then one bulk transaction."""
    from eemt_cleanup.store.migrations import migrate

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(common.JOBS_DDL)
        migrate(conn, "jobs", "status", "dem_filename")
        conn.execute("PRAGMA cache_size = -400000")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        conn.executemany(INSERT, generate_rows(comp, datetime.now(UTC), garbage))
        conn.execute("COMMIT")


def build_base(base: Path, cached_db: Path, comp: Composition) -> None:
    """A base directory: a copy of the cached table, the due jobs' results and uploads."""
    for sub in ("uploads", "results", "temp"):
        (base / sub).mkdir(parents=True)
    shutil.copyfile(cached_db, base / "jobs.db")
    payload = common.file_bytes(1024)
    for job_id in due_ids(comp):
        directory = base / "results" / job_id
        directory.mkdir()
        (directory / "total_sun_day_001.tif").write_bytes(payload)
        (base / "uploads" / common.upload_name(job_id)).write_bytes(payload)


def remaining(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM jobs WHERE data_cleaned_at IS NULL").fetchone()[0]


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, m: common.Measurement, problem: str) -> None:
        self.wall.append(m.wall)
        self.rss.append(m.maxrss_kib)
        if problem:
            self.problems.append(problem)

    @property
    def median_wall(self) -> float:
        return float("nan") if self.problems else common.median(self.wall)

    @property
    def median_rss(self) -> float:
        return float("nan") if self.problems else common.median(self.rss)


def check_run(m: common.Measurement, comp: Composition, dry: bool, garbage: bool = False) -> str:
    data = common.parse_json(m.stdout)
    if data is None:
        return f"exit {m.returncode}, no JSON: {m.stderr.strip()[-200:]}"
    found = data.get("cleaned_jobs", {}).get("successful")
    if m.returncode != 0 or data.get("dry_run") is not dry or found != comp.due:
        return f"exit {m.returncode}, dry_run={data.get('dry_run')}, {found} of {comp.due} jobs"
    if garbage:
        unknown = data.get("never_cleaned", {}).get("unknown_age", {}).get("count")
        lines = [line for line in m.stderr.splitlines() if "Never cleaned until fixed" in line]
        if unknown != comp.cleaned or len(lines) != 1:
            return f"{unknown} of {comp.cleaned} unknown ages reported, in {len(lines)} lines"
    return ""


def dry_run(base: Path, comp: Composition) -> tuple[common.Measurement, str]:
    m = common.run_measured(common.eemt_run_cmd(base / "jobs.db", base, "--dry-run"))
    return m, check_run(m, comp, dry=True)


def real_run(
    base: Path, comp: Composition, garbage: bool = False
) -> tuple[common.Measurement, str]:
    m = common.run_measured(common.eemt_run_cmd(base / "jobs.db", base))
    problem = check_run(m, comp, dry=False, garbage=garbage)
    left = common.count_entries(base / "results")
    kept = comp.retained + comp.active + (comp.cleaned if garbage else 0)
    unmarked = remaining(base / "jobs.db") - kept
    if not problem and (left or unmarked):
        problem = f"{left} entries left in results/, {unmarked} due jobs not marked"
    return m, problem


def measure_garbage(work: Path, comp: Composition, trials: int) -> Runs:
    """Real runs over a table whose long-cleaned rows are instead unparseable (item 13)."""
    cached = work / f"garbage-{comp.rows}.db"
    build_db(cached, comp, garbage=True)
    runs = Runs()
    for trial in range(trials):
        base = work / f"garbage-run-{comp.rows}"
        build_base(base, cached, comp)
        m, problem = real_run(base, comp, garbage=True)
        runs.add(m, problem)
        common.log(
            f"planning garbage {comp.rows:,} trial {trial + 1}: real run {m.wall:.3f} s, "
            f"{m.rss_mib:.1f} MiB {problem}"
        )
        common.remove_tree(base)
    return runs


def measure_help(trials: int) -> dict[str, Runs]:
    python = sys.executable
    commands = {
        "`eemt-cleanup --help`": [common.eemt_cli(), "--help"],
        "`python -c pass` (interpreter start, reference)": [python, "-c", "pass"],
        "`python -c 'import eemt_cleanup.cli'` (reference)": [
            python,
            "-c",
            "import eemt_cleanup.cli",
        ],
    }
    runs = {name: Runs() for name in commands}
    for trial in range(trials):
        order = list(commands.items())
        for name, cmd in order if trial % 2 == 0 else order[::-1]:
            m = common.run_measured(cmd)
            runs[name].add(m, "" if m.returncode == 0 else f"exit {m.returncode}")
    return runs


def run(args: argparse.Namespace) -> Section:
    sizes = sorted(args.sizes)
    comps = {rows: composition(rows, args.due, args.retained) for rows in sizes}
    section = Section(
        f"3. Planning: jobs tables of {', '.join(f'{n:,}' for n in sizes)} rows, "
        f"{args.due:,} due, {args.trials} trials"
    )
    dry = {rows: Runs() for rows in sizes}
    real = {rows: Runs() for rows in sizes}
    db_mb: dict[int, float] = {}
    build_s: dict[int, float] = {}
    with common.workdir(common.TMPFS_ROOT, "planning") as work:
        for rows in sizes:
            cached = work / f"cache-{rows}.db"
            start = time.perf_counter()
            build_db(cached, comps[rows])
            build_s[rows] = time.perf_counter() - start
            db_mb[rows] = cached.stat().st_size / 1e6
            common.log(f"planning: built {rows:,} rows in {build_s[rows]:.1f} s")
            build_base(work / f"dry-{rows}", cached, comps[rows])
        for trial in range(args.trials):
            for rows in sizes if trial % 2 == 0 else sizes[::-1]:
                comp, dry_base = comps[rows], work / f"dry-{rows}"
                before = (dry_base / "jobs.db").stat()
                m, problem = dry_run(dry_base, comp)
                after = (dry_base / "jobs.db").stat()
                if (before.st_mtime_ns, before.st_size) != (after.st_mtime_ns, after.st_size):
                    problem = (problem + "; " if problem else "") + "dry run changed jobs.db"
                dry[rows].add(m, problem)
                common.log(
                    f"planning {rows:,} trial {trial + 1}: dry run {m.wall:.3f} s, "
                    f"{m.rss_mib:.1f} MiB {problem}"
                )
                real_base = work / f"real-{rows}"
                build_base(real_base, work / f"cache-{rows}.db", comp)
                m, problem = real_run(real_base, comp)
                real[rows].add(m, problem)
                common.log(
                    f"planning {rows:,} trial {trial + 1}: real run {m.wall:.3f} s, "
                    f"{m.rss_mib:.1f} MiB {problem}"
                )
                common.remove_tree(real_base)
        garbage = measure_garbage(work, comps[sizes[-1]], args.trials)
    helps = measure_help(args.help_trials)

    rows_table = []
    for rows in sizes:
        comp = comps[rows]
        rows_table.append(
            (
                f"{rows:,}",
                f"{comp.cleaned:,} / {comp.retained:,} / {comp.active} / {comp.due:,}",
                f"{db_mb[rows]:.1f} MB ({build_s[rows]:.0f} s)",
                common.fmt_s(dry[rows].median_wall),
                common.fmt_spread(dry[rows].wall),
                common.fmt_mib(dry[rows].median_rss),
                common.fmt_s(real[rows].median_wall),
                common.fmt_spread(real[rows].wall),
                common.fmt_mib(real[rows].median_rss),
            )
        )
    section.blocks.append(
        common.markdown_table(
            [
                "rows",
                "cleaned / retained / active / due",
                "db size (build)",
                "dry run",
                "dry-run trials",
                "dry-run peak RSS",
                "real run (marks due)",
                "real-run trials",
                "real-run peak RSS",
            ],
            rows_table,
            "rrrrrrrrr",
        )
    )
    help_rows = [
        (
            name,
            common.fmt_s(r.median_wall),
            f"{min(r.wall) * 1000:.0f} ms",
            common.fmt_mib(r.median_rss),
        )
        for name, r in helps.items()
    ]
    section.blocks.append(
        common.markdown_table(
            ["command", f"wall (median of {args.help_trials})", "fastest", "peak RSS"],
            help_rows,
            "lrrr",
        )
    )
    problems = [
        f"- **{kind} {rows:,} invalid**: {problem}"
        for kind, runs in (("dry run", dry), ("real run", real))
        for rows in sizes
        for problem in runs[rows].problems
    ]
    section.blocks.append(
        "Wall = spawn to reap of `eemt-cleanup run [--dry-run] --json` from `/`, interpreter "
        "start included; everything (database, roots, logs) on /dev/shm. The dry run must "
        f"find exactly the {args.due:,} due jobs and leave jobs.db untouched; the real run "
        "deletes their results and uploads and marks them (batches of 100, audit rows, "
        "run log), on a fresh copy of the table each trial. Dry and real runs, and the sizes, "
        "alternate in every trial." + ("\n\n" + "\n".join(problems) if problems else "")
    )

    largest, smallest = sizes[-1], sizes[0]
    note = "" if largest >= 1_000_000 else f" (quick run: {largest:,} rows, target is at 1M)"
    big_dry, big_real = dry[largest], real[largest]
    section.targets += [
        Target(
            f"dry run over {largest:,} rows ≤ {DRY_RUN_LIMIT} s wall{note}",
            common.fmt_s(big_dry.median_wall),
            _ok(big_dry.median_wall <= DRY_RUN_LIMIT, big_dry),
        ),
        Target(
            f"dry-run peak RSS over {largest:,} rows ≤ 100 MB (95.4 MiB){note}",
            common.fmt_mib(big_dry.median_rss),
            _ok(big_dry.median_rss * 1024 <= RSS_LIMIT, big_dry),
        ),
    ]
    if largest != smallest:
        wall_ratio = common.ratio(big_dry.median_wall, dry[smallest].median_wall)
        rss_ratio = common.ratio(big_dry.median_rss, dry[smallest].median_rss)
        section.targets.append(
            Target(
                f"dry run flat from {smallest:,} to {largest:,} rows "
                f"(wall and RSS ratios ≤ {FLAT_LIMIT}×)",
                f"wall {common.fmt_ratio(wall_ratio)}, RSS {common.fmt_ratio(rss_ratio)}",
                None
                if wall_ratio != wall_ratio or rss_ratio != rss_ratio
                else wall_ratio <= FLAT_LIMIT and rss_ratio <= FLAT_LIMIT,
            )
        )
    section.targets.append(
        Target(
            f"real run marking {args.due:,} due jobs in {largest:,} rows ≤ {MARK_LIMIT} s{note}",
            common.fmt_s(big_real.median_wall),
            _ok(big_real.median_wall <= MARK_LIMIT, big_real),
        )
    )
    section.blocks.append(
        f"Unknown ages: a real run over {largest:,} rows of which {comps[largest].cleaned:,} "
        "are not cleaned and have timestamps nobody can parse (besides the due and retained "
        f"jobs): {common.fmt_s(garbage.median_wall)} wall, peak RSS "
        f"{common.fmt_mib(garbage.median_rss)}; they are reported in one summary line."
        + (
            "\n\n" + "\n".join(f"- **invalid**: {p}" for p in garbage.problems)
            if garbage.problems
            else ""
        )
    )
    section.targets.append(
        Target(
            f"real run over {largest:,} rows, most with garbage timestamps: peak RSS ≤ 100 MB"
            f"{note}",
            common.fmt_mib(garbage.median_rss),
            _ok(garbage.median_rss * 1024 <= RSS_LIMIT, garbage),
        )
    )
    help_runs = helps["`eemt-cleanup --help`"]
    section.targets.append(
        Target(
            f"`eemt-cleanup --help` ≤ {HELP_LIMIT * 1000:.0f} ms",
            common.fmt_s(help_runs.median_wall),
            _ok(help_runs.median_wall <= HELP_LIMIT, help_runs),
        )
    )
    return section


def _ok(condition: bool, runs: Runs) -> bool:
    """A target over invalid runs is not met, whatever their times."""
    return bool(condition) and not runs.problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part.replace("_", "")) for part in text.split(",") if part],
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated table sizes (10000,100000,1000000)",
    )
    parser.add_argument("--due", type=int, default=1000, help="due completed jobs (1000)")
    parser.add_argument(
        "--retained",
        default="1%",
        help="rows completed within retention: a count, or a share of the table (1%%)",
    )
    parser.add_argument("--trials", type=int, default=5, help="trials per size (5)")
    parser.add_argument("--help-trials", type=int, default=10, help="--help timings (10)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.help_trials < 1 or args.due < 1 or not args.sizes:
        parser.error("--trials, --help-trials, --due must be at least 1; --sizes non-empty")
    common.install_signal_handlers()
    common.print_standalone(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

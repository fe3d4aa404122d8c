"""Honesty: does ``eemt-cleanup run`` report the bytes the filesystem really got back?

On tmpfs, for trees of (i) many small files, (ii) sparse files, (iii) hard links with both
links inside the tree and (iv) hard links with the other link outside the tree (must free
0), compare ``space_freed.bytes`` with the statvfs delta (``f_bfree * f_frsize``) measured
right around the run. Only the job data lives on the tmpfs: the database and the log
directory live on disk, so the run's own writes do not disturb the delta.

    python benchmarks/bench_honesty.py [--trials 3] [--jobs 20] [--files 1000]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common
from common import Section, Target

GIB = 1 << 30
PAGE = 4096
LINKED_FILE = 64 * 1024
IDLE_WINDOW = 0.3  # seconds of watching statvfs with nothing running, before each run


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    build: Callable[[Path, list[str], argparse.Namespace], None]


def build_small(roots: Path, ids: list[str], args: argparse.Namespace) -> None:
    for job_id in ids:
        directory = roots / "results" / job_id
        directory.mkdir()
        common.write_files(directory, args.files, 512)


def build_sparse(roots: Path, ids: list[str], _args: argparse.Namespace) -> None:
    """Per job: 4 files of 1 GiB apparent size with 3 written pages each (48 KiB)."""
    page = common.file_bytes(PAGE)
    for job_id in ids:
        directory = roots / "results" / job_id
        directory.mkdir()
        for number in range(4):
            fd = os.open(directory / f"srad_{number}.tif", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, GIB)
                for offset in (0, GIB // 2, GIB - PAGE):
                    os.pwrite(fd, page, offset)
            finally:
                os.close(fd)


def _linked_files(roots: Path, job_id: str) -> list[Path]:
    directory = roots / "results" / job_id
    directory.mkdir()
    common.write_files(directory, 50, LINKED_FILE, prefix="linked")
    return sorted(directory.iterdir())


def build_links_inside(roots: Path, ids: list[str], _args: argparse.Namespace) -> None:
    """Every file of job k also has a link in job k+1 (the last job's in job 0)."""
    files = {job_id: _linked_files(roots, job_id) for job_id in ids}
    for index, job_id in enumerate(ids):
        other = roots / "results" / ids[(index + 1) % len(ids)]
        for path in files[job_id]:
            os.link(path, other / f"from_{job_id[:8]}_{path.name}")


def build_links_outside(roots: Path, ids: list[str], _args: argparse.Namespace) -> None:
    """Every file also has a link outside every root: deleting the job frees nothing."""
    outside = roots / "outside"
    for job_id in ids:
        for path in _linked_files(roots, job_id):
            os.link(path, outside / f"{job_id[:8]}_{path.name}")


CASES = (
    Case("small", "(i) small files (512 B)", build_small),
    Case("sparse", "(ii) sparse files (1 GiB, 3 pages written)", build_sparse),
    Case("links-in", "(iii) hard links, both inside the tree", build_links_inside),
    Case("links-out", "(iv) hard links, other link outside (frees 0)", build_links_outside),
)


def tree_facts(results: Path) -> tuple[int, int, int]:
    """(allocated bytes that deleting ``results/*`` must free, allocated bytes of every
    inode seen, what the old script would report) — computed independently of the product.
    """
    inodes: dict[tuple[int, int], tuple[int, int, int]] = {}  # -> (nlink, blocks, seen)
    old_total = 0
    for directory in results.iterdir():
        old_total += sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
    for root, _dirs, names in os.walk(results):
        for name in names:
            info = os.lstat(os.path.join(root, name))
            if not stat.S_ISREG(info.st_mode):
                continue
            key = (info.st_dev, info.st_ino)
            nlink, blocks, seen = inodes.get(key, (info.st_nlink, info.st_blocks, 0))
            inodes[key] = (nlink, blocks, seen + 1)
    must_free = sum(blocks * 512 for nlink, blocks, seen in inodes.values() if seen >= nlink)
    allocated = sum(blocks * 512 for _nlink, blocks, _seen in inodes.values())
    return must_free, allocated, old_total


@dataclass
class Trial:
    reported: int | None
    delta: int
    expected: int
    allocated: int
    old: int
    drift: int
    wall: float
    problem: str

    def error(self, value: int | None) -> float:
        if value is None:
            return float("nan")
        denominator = max(abs(self.delta), self.allocated, 1)
        return abs(value - self.delta) / denominator * 100


def run_case(case: Case, trial: int, data: Path, dbs: Path, args: argparse.Namespace) -> Trial:
    roots = data / f"{case.key}-{trial}"
    db_dir = dbs / f"{case.key}-{trial}"
    for sub in ("uploads", "results", "temp", "outside"):
        (roots / sub).mkdir(parents=True)
    db_dir.mkdir()
    jobs = args.jobs if case.key == "small" else 10
    ids = common.job_ids(jobs, seed=zlib.crc32(case.key.encode()))
    completed = datetime.now(UTC) - timedelta(days=30)
    common.write_jobs_db(
        db_dir / "jobs.db", (common.completed_row(i, completed, common.upload_name(i)) for i in ids)
    )
    case.build(roots, ids, args)
    expected, allocated, old = tree_facts(roots / "results")
    outside = common.count_entries(roots / "outside")
    common.settle()
    idle_start = common.free_bytes(roots)
    time.sleep(IDLE_WINDOW)
    before = common.free_bytes(roots)
    m = common.run_measured(common.eemt_run_cmd(db_dir / "jobs.db", roots))
    after = common.free_bytes(roots)
    data_json = common.parse_json(m.stdout)
    problems = []
    reported = None
    if data_json is None:
        problems.append(f"exit {m.returncode}, no JSON: {m.stderr.strip()[-200:]}")
    else:
        reported = int(data_json.get("space_freed", {}).get("bytes", 0))
        cleaned = data_json.get("cleaned_jobs", {}).get("successful")
        if cleaned != jobs or m.returncode != 0:
            problems.append(f"exit {m.returncode}, cleaned {cleaned} of {jobs}")
    leftovers = common.count_entries(roots / "results")
    if leftovers:
        problems.append(f"{leftovers} entries left in results/")
    if common.count_entries(roots / "outside") != outside:
        problems.append("entries outside every root changed")
    return Trial(
        reported=reported,
        delta=after - before,
        expected=expected,
        allocated=allocated,
        old=old,
        drift=before - idle_start,
        wall=m.wall,
        problem="; ".join(problems),
    )


def fmt_bytes(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{int(value):,} B"


def fmt_pct(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:,.0f} %" if value >= 1000 else f"{value:.3f} %"


def measure_cases(data: Path, dbs: Path, args: argparse.Namespace) -> dict[str, list[Trial]]:
    """Every case, ``args.trials`` times, on the tmpfs holding ``data``."""
    outcomes: dict[str, list[Trial]] = {}
    for case in CASES:
        trials = outcomes.setdefault(case.key, [])
        for trial in range(args.trials):
            try:
                outcome = run_case(case, trial, data, dbs, args)
            finally:
                common.remove_tree(data / f"{case.key}-{trial}")
                common.remove_tree(dbs / f"{case.key}-{trial}")
            trials.append(outcome)
            common.log(
                f"honesty {case.key} trial {trial + 1}/{args.trials}: reported "
                f"{outcome.reported}, statvfs {outcome.delta}, expected {outcome.expected}"
                + (f" INVALID: {outcome.problem}" if outcome.problem else "")
            )
    return outcomes


def _mount_tmpfs(target: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"eemt-bench", bytes(target), b"tmpfs", 0, b"size=50%,mode=0700") != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount tmpfs on {target}: {os.strerror(error)}")


def inner_main(args: argparse.Namespace) -> int:
    """Inside a private mount namespace: a tmpfs of our own that no one else writes to.

    It disappears with the namespace, i.e. when this process exits.
    """
    data = Path(args.inner_data) / "tmpfs"
    data.mkdir()
    _mount_tmpfs(data)
    outcomes = measure_cases(data, Path(args.inner_dbs), args)
    print(json.dumps({key: [asdict(t) for t in trials] for key, trials in outcomes.items()}))
    return 0


def isolated(data: Path, dbs: Path, args: argparse.Namespace) -> dict[str, list[Trial]] | None:
    """Run the cases in ``unshare`` (a private tmpfs); None when that is not possible."""
    if not shutil.which("unshare"):
        return None
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    cmd = [
        *namespace,
        sys.executable,
        str(Path(__file__).resolve()),
        f"--trials={args.trials}",
        f"--jobs={args.jobs}",
        f"--files={args.files}",
        f"--inner-data={data}",
        f"--inner-dbs={dbs}",
    ]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        common.log(f"honesty: no private tmpfs (exit {result.returncode}); using {data}")
        return None
    raw = json.loads(result.stdout)
    return {key: [Trial(**t) for t in trials] for key, trials in raw.items()}


def run(args: argparse.Namespace) -> Section:
    section = Section(
        f"2. Honesty: reported freed bytes vs the tmpfs statvfs delta, {args.trials} trials"
    )
    rows, notes = [], []
    with (
        common.workdir(common.TMPFS_ROOT, "honesty") as data,
        common.workdir(common.DISK_ROOT, "honesty-db") as dbs,
    ):
        page = os.statvfs(data).f_frsize
        outcomes = isolated(data, dbs, args)
        where = f"a private tmpfs mounted in a mount namespace under {data}"
        if outcomes is None:
            where = f"{data} on the shared {common.TMPFS_ROOT} (no private tmpfs possible)"
            outcomes = measure_cases(data, dbs, args)
    for case in CASES:
        trials = outcomes[case.key]
        errors = [t.error(t.reported) for t in trials]
        invalid = [t.problem for t in trials if t.problem]
        error = common.median(errors) if not invalid else float("nan")
        worst = max(errors) if not invalid else float("nan")
        passed = False if invalid else worst <= 1.0
        measured = f"{fmt_pct(error)} (worst {fmt_pct(worst)})" if not invalid else "invalid run"
        rows.append(
            (
                case.label,
                fmt_bytes(common.median([t.reported or 0 for t in trials])),
                fmt_bytes(common.median([t.delta for t in trials])),
                fmt_bytes(common.median([t.expected for t in trials])),
                measured,
                fmt_bytes(common.median([t.old for t in trials])),
                fmt_pct(common.median([t.error(t.old) for t in trials])),
                fmt_bytes(max((abs(t.drift) for t in trials), default=0)),
                common.verdict(passed),
            )
        )
        notes += [f"- **{case.key} invalid**: {problem}" for problem in invalid]
        section.targets.append(
            Target(f"honesty {case.label}: freed within 1 % of statvfs", measured, passed)
        )
    section.blocks.append(
        common.markdown_table(
            [
                "case",
                "eemt reports",
                "statvfs delta",
                "expected",
                "error (median)",
                "old method would report",
                "old error",
                "idle drift",
                "≤ 1 %",
            ],
            rows,
            "lrrrrrrrl",
        )
    )
    small_files = args.jobs * args.files
    section.blocks.append(
        f"Measured on {where}; the database and logs are on disk, so only the deletion "
        f"changes the tmpfs. Cases: (i) {args.jobs} jobs × {args.files} files of 512 B "
        f"({small_files:,} files); (ii) 10 jobs × 4 files truncated to 1 GiB with 3 pages "
        "written; (iii) 10 jobs × 50 files of 64 KiB, each also linked from the next job; "
        "(iv) the same with the second link in a directory outside every root. tmpfs counts "
        f"in pages (f_frsize = {page} B): a 512 B file frees one page. 'expected' is computed "
        "by the harness from `lstat` (allocated blocks of inodes whose every link is in the "
        "tree); 'old method would report' applies the old script's `rglob`/`st_size` sum to "
        "the same tree before the run. Error = |reported − delta| / max(delta, allocated "
        "bytes in the tree); the target must hold in every trial. 'idle drift' is the "
        f"largest statvfs change over {IDLE_WINDOW} s just before a run with nothing of "
        "ours running (other writers to the filesystem would show there)."
    )
    if notes:
        section.blocks.append("\n".join(notes))
    return section


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=3, help="trials per case (3)")
    parser.add_argument("--jobs", type=int, default=20, help="jobs in case (i) (20)")
    parser.add_argument("--files", type=int, default=1000, help="files per job in (i) (1000)")
    parser.add_argument("--inner-data", help=argparse.SUPPRESS)
    parser.add_argument("--inner-dbs", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.jobs < 1 or args.files < 1:
        parser.error("--trials, --jobs and --files must be at least 1")
    common.install_signal_handlers()
    if args.inner_data:
        return inner_main(args)
    common.print_standalone(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deletion speed: ``eemt-cleanup run`` against ``du -sb`` + ``rm -rf``, ``rm -rf``,
``shutil.rmtree`` and the old EEMT cleanup script's method, on tmpfs and on disk.

Every trial rebuilds an identical tree (untimed) before each method, and the method order
alternates between trials (forward, reversed, forward, ...). Reported: medians of the wall
time (spawn to reap, interpreter start included), peak RSS, what each method says it freed,
what the filesystem says was freed (statvfs, after ``sync``), and leftovers (must be 0).

    python benchmarks/bench_delete.py [--jobs 200] [--files 1000] [--size 512] [--trials 3]
                                      [--workers 4] [--fs tmpfs,disk]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import common
from common import Section, Target

# The old EEMT cleanup script, per job: walk with rglob, sum st_size of regular files (the
# apparent size, every hard link again, holes included), then shutil.rmtree.
OLD_METHOD = """\
import shutil, sys
from pathlib import Path
total = 0
for d in sorted(Path(sys.argv[1]).iterdir()):
    if d.is_dir():
        size = sum(p.stat().st_size for p in Path(d).rglob('*') if p.is_file())
        shutil.rmtree(d)
        total += size
print(total)
"""

RMTREE = """\
import os, shutil, sys
for entry in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name):
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path)
"""

# The floor: the least any method can do that reports freed bytes honestly (one lstat per
# file), with eemt's parallelism: the jobs dealt round-robin to as many forked processes as
# eemt has workers, each scandir + lstat + unlink + rmdir; no database, no safety checks, no
# output but the total.
FLOOR = """\
import os, sys
root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
names = sorted(os.listdir(root))
cpus = int(sys.argv[2])
readers = []
for k in range(cpus):
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        total = 0
        for name in names[k::cpus]:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
            with os.scandir(fd) as entries:
                for entry in entries:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    os.unlink(entry.name, dir_fd=fd)
            total += os.fstat(fd).st_blocks * 512
            os.close(fd)
            os.rmdir(name, dir_fd=root)
        os.write(write_end, str(total).encode())
        os._exit(0)
    os.close(write_end)
    readers.append(read_end)
print(sum(int(os.read(fd, 64) or b"0") for fd in readers))
for _ in readers:
    os.wait()
"""

FILESYSTEMS = {"tmpfs": common.TMPFS_ROOT, "disk": common.DISK_ROOT}


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    command: Callable[[Path, argparse.Namespace], tuple[list[str], Path]]
    reported: Callable[[common.Measurement, argparse.Namespace], int | str | None]


def _eemt_cmd(base: Path, args: argparse.Namespace) -> tuple[list[str], Path]:
    return common.eemt_run_cmd(base / "jobs.db", base, workers=args.workers), Path("/")


def _eemt_more_cmd(base: Path, args: argparse.Namespace) -> tuple[list[str], Path]:
    return common.eemt_run_cmd(base / "jobs.db", base, workers=args.more_workers), Path("/")


def _eemt_reported(m: common.Measurement, args: argparse.Namespace) -> int | str | None:
    data = common.parse_json(m.stdout)
    if data is None:
        return "no JSON on stdout"
    cleaned = data.get("cleaned_jobs", {}).get("successful")
    if not data.get("success") or cleaned != args.jobs:
        return f"success={data.get('success')}, cleaned {cleaned} of {args.jobs}"
    return int(data["space_freed"]["bytes"])


def _du_reported(m: common.Measurement, _args: argparse.Namespace) -> int | str | None:
    first = m.stdout.split()
    return int(first[0]) if first and first[0].isdigit() else "no du output"


def _old_reported(m: common.Measurement, _args: argparse.Namespace) -> int | str | None:
    text = m.stdout.strip()
    return int(text) if text.isdigit() else "no total printed"


def _nothing(_m: common.Measurement, _args: argparse.Namespace) -> int | str | None:
    return None


METHODS = (
    Method("eemt", "`eemt-cleanup run --json` (full)", _eemt_cmd, _eemt_reported),
    Method(
        "eemt-more",
        "the same with `--workers` raised (see the notes; informational)",
        _eemt_more_cmd,
        _eemt_reported,
    ),
    Method(
        "du+rm",
        "`du -sb results && rm -rf results/*`",
        lambda base, _a: (["sh", "-c", "du -sb results && rm -rf results/*"], base),
        _du_reported,
    ),
    Method(
        "rm",
        "`rm -rf results/*`",
        lambda base, _a: (["sh", "-c", "rm -rf results/*"], base),
        _nothing,
    ),
    Method(
        "rmtree",
        "`shutil.rmtree` per job (python)",
        lambda base, _a: ([sys.executable, "-c", RMTREE, str(base / "results")], base),
        _nothing,
    ),
    Method(
        "floor",
        "floor: scandir + lstat + unlink in --workers forked processes (python, no checks)",
        lambda base, a: (
            [sys.executable, "-c", FLOOR, str(base / "results"), str(a.workers)],
            base,
        ),
        _old_reported,
    ),
    Method(
        "old",
        "old script's method: rglob + is_file + st_size, then rmtree (python)",
        lambda base, _a: ([sys.executable, "-c", OLD_METHOD, str(base / "results")], base),
        _old_reported,
    ),
)


@dataclass
class Trial:
    wall: float
    sync: float
    rss_kib: int
    reported: int | None
    freed: int
    leftovers: int
    problem: str = ""


@dataclass
class Results:
    trials: dict[str, list[Trial]] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)
    startup: list[float] = field(default_factory=list)  # eemt with nothing due

    def valid(self, key: str) -> list[Trial]:
        return [t for t in self.trials.get(key, []) if not t.problem]

    def wall(self, key: str) -> float:
        """Median wall over all trials; NaN when any trial of the method was invalid."""
        trials = self.trials.get(key, [])
        if not trials or any(t.problem for t in trials):
            return float("nan")
        return common.median([t.wall for t in trials])


def measure_one(method: Method, base: Path, args: argparse.Namespace) -> Trial:
    cmd, cwd = method.command(base, args)
    common.settle()
    before = common.free_bytes(base)
    m = common.run_measured(cmd, cwd=cwd)
    start = time.perf_counter()
    common.settle()  # not in the wall time: lets the filesystem finish, for statvfs
    synced = time.perf_counter() - start
    freed = common.free_bytes(base) - before
    leftovers = common.count_entries(base / "results")
    reported = method.reported(m, args)
    problems = []
    if m.returncode != 0:
        problems.append(f"exit {m.returncode}: {m.stderr.strip().splitlines()[-1:]}")
    if isinstance(reported, str):
        problems.append(reported)
        reported = None
    if leftovers:
        problems.append(f"{leftovers} entries left in results/")
    return Trial(m.wall, synced, m.maxrss_kib, reported, freed, leftovers, "; ".join(problems))


def run_filesystem(fs: str, args: argparse.Namespace) -> Results:
    results = Results({method.key: [] for method in METHODS})
    ids = common.job_ids(args.jobs, seed=20240120)
    with common.workdir(FILESYSTEMS[fs], f"delete-{fs}") as work:
        for trial in range(args.trials):
            order = METHODS if trial % 2 == 0 else METHODS[::-1]
            results.orders.append(" → ".join(method.key for method in order))
            for method in order:
                base = work / f"t{trial}-{method.key.replace('+', '_')}"
                common.build_job_base(base, ids, args.files, args.size)
                outcome = measure_one(method, base, args)
                results.trials[method.key].append(outcome)
                if method.key == "eemt" and not outcome.problem:
                    # Once more on the same base, now with nothing due: eemt's fixed cost
                    # (interpreter, imports, configuration, database, lock, workers).
                    cmd, cwd = method.command(base, args)
                    results.startup.append(common.run_measured(cmd, cwd=cwd).wall)
                common.log(
                    f"delete {fs} trial {trial + 1}/{args.trials} {method.key}: "
                    f"{outcome.wall:.3f} s, {outcome.rss_kib / 1024:.1f} MiB"
                    + (f" INVALID: {outcome.problem}" if outcome.problem else "")
                )
                common.remove_tree(base)
    return results


def method_table(results: Results) -> str:
    rows = []
    for method in METHODS:
        trials = results.trials[method.key]
        reported = [t.reported for t in trials if t.reported is not None]
        problems = [t.problem for t in trials if t.problem]
        rows.append(
            (
                method.label,
                common.fmt_s(results.wall(method.key))
                if not problems
                else f"INVALID ({len(problems)}/{len(trials)})",
                common.fmt_spread([t.wall for t in trials]),
                common.fmt_s(common.median([t.wall + t.sync for t in trials])),
                common.fmt_mib(common.median([t.rss_kib for t in trials])),
                common.fmt_mb(common.median(reported)) if reported else "—",
                common.fmt_mb(common.median([t.freed for t in trials])),
                max((t.leftovers for t in trials), default=0),
            )
        )
    table = common.markdown_table(
        [
            "method",
            "wall (median)",
            "trials, in run order",
            "+ sync after",
            "peak RSS",
            "reports freed",
            "statvfs freed",
            "left over",
        ],
        rows,
        "lrrrrrrr",
    )
    notes = [f"- trial {i + 1} order: {order}" for i, order in enumerate(results.orders)]
    if results.startup:
        notes.insert(
            0,
            "- `eemt-cleanup run` again right after each of its trials, with nothing left to "
            f"do (its fixed start-up cost): {common.fmt_s(common.median(results.startup))} "
            f"({common.fmt_spread(results.startup)})",
        )
    for method in METHODS:
        for index, trial in enumerate(results.trials[method.key]):
            if trial.problem:
                notes.append(f"- **{method.key} trial {index + 1} invalid**: {trial.problem}")
    return table + "\n\n" + "\n".join(notes)


def ratio_rows(fs: str, results: Results) -> tuple[list[tuple[str, ...]], list[Target]]:
    eemt, du_rm, rm = results.wall("eemt"), results.wall("du+rm"), results.wall("rm")
    old, rmtree, floor = results.wall("old"), results.wall("rmtree"), results.wall("floor")
    pairs = [
        ("eemt / du+rm", common.ratio(eemt, du_rm), "≤ 1.00×", lambda r: r <= 1.0),
        ("eemt / rm (stretch)", common.ratio(eemt, rm), "≤ 1.00×", lambda r: r <= 1.0),
        ("old / eemt", common.ratio(old, eemt), "≥ 3.00×", lambda r: r >= 3.0),
        ("old / eemt with more workers", common.ratio(old, results.wall("eemt-more")), "", None),
        ("du+rm / rm", common.ratio(du_rm, rm), "", None),
        ("rmtree / rm", common.ratio(rmtree, rm), "", None),
        ("old / rm", common.ratio(old, rm), "", None),
        ("eemt / floor", common.ratio(eemt, floor), "", None),
        (
            "old / floor (the most working like eemt reaches here)",
            common.ratio(old, floor),
            "",
            None,
        ),
        (
            "old / (floor + eemt start-up): eemt's best with its fixed cost",
            common.ratio(old, floor + common.median(results.startup)),
            "",
            None,
        ),
    ]
    rows, targets = [], []
    for name, value, goal, check in pairs:
        passed = None if check is None or value != value else bool(check(value))
        rows.append((fs, name, common.fmt_ratio(value), goal or "info", common.verdict(passed)))
        if check is not None:
            targets.append(Target(f"deletion on {fs}: {name} {goal}", rows[-1][2], passed))
    return rows, targets


def run(args: argparse.Namespace) -> Section:
    files = args.jobs * args.files
    section = Section(
        f"1. Deletion: {args.jobs} jobs × {args.files} files × {args.size} B "
        f"({files:,} files, {common.fmt_mb(files * args.size)} apparent), "
        f"{args.trials} trials"
    )
    ratio_table: list[tuple[str, ...]] = []
    for fs in args.fs:
        common.log(f"delete: {fs} ({FILESYSTEMS[fs]}), {args.trials} trials")
        results = run_filesystem(fs, args)
        section.blocks.append(f"### {fs} ({common.filesystem_type(FILESYSTEMS[fs])})")
        section.blocks.append(method_table(results))
        rows, targets = ratio_rows(fs, results)
        ratio_table += rows
        section.targets += targets
    section.blocks.append("### Ratios of the medians")
    section.blocks.append(
        common.markdown_table(
            ["filesystem", "pair", "ratio", "target", "result"], ratio_table, "llrll"
        )
    )
    section.blocks.append(
        f"`eemt-cleanup` ran from `/` with `--workers {args.workers}`, paths by flag, the "
        "database in the base directory (same filesystem), migrated when the tree was built "
        "as after a first run (the one-time migration is not in the time): planning, "
        "per-job re-read, "
        "fd-based deletion with block accounting, marking, audit rows and the log file are "
        "all in its time. Wall = spawn to reap, interpreter start included; `sync` before "
        "and after each command is not in it ('+ sync after' adds the `sync` that follows, "
        "i.e. work the filesystem still had to do, e.g. ext4 journal commits and discards). "
        "Peak RSS = GNU time's `%M` (`ru_maxrss`: the largest single process of the "
        "command's tree, children included). 'reports freed' is what the method prints "
        "(eemt: `space_freed.bytes`; du: apparent size; old: sum of `st_size`; floor: "
        "allocated blocks). Ratios use the wall medians. The floor is the least work any "
        "method does that counts freed bytes with one `lstat` per file, in as many processes "
        f"as eemt has workers ({args.workers}, on {os.cpu_count()} CPUs), with no database "
        "and no safety checks: `old / floor` is the largest `old / eemt` that eemt's way of "
        "working could show on this machine, with nothing else to do. The informational "
        f"`eemt-more` row is the same product run with `--workers {args.more_workers}`, what an "
        "operator gets by raising `performance.max_workers`: on a journaling disk unlinks "
        "wait on the filesystem's locks and journal more than on the CPU, so more workers "
        "than cores help there (the targets are judged at the default, 4)."
    )
    return section


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=200, help="job directories (200)")
    parser.add_argument("--files", type=int, default=1000, help="files per job (1000)")
    parser.add_argument("--size", type=int, default=512, help="bytes per file (512)")
    parser.add_argument("--trials", type=int, default=3, help="trials per method (3)")
    parser.add_argument("--workers", type=int, default=4, help="eemt-cleanup --workers (4)")
    parser.add_argument(
        "--more-workers",
        type=int,
        default=16,
        help="--workers of the informational eemt-more method (16)",
    )
    parser.add_argument(
        "--fs",
        type=lambda text: [part for part in text.split(",") if part],
        default=["tmpfs", "disk"],
        help="comma-separated: tmpfs,disk (both)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [fs for fs in args.fs if fs not in FILESYSTEMS]
    if unknown or args.trials < 1 or args.jobs < 1 or args.files < 1 or args.size < 0:
        parser.error(f"bad arguments (unknown filesystems: {unknown})")
    common.install_signal_handlers()
    common.print_standalone(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: every eemt-cleanup benchmark in one run, one markdown report on stdout.

    python benchmarks/run_all.py            # default sizes (several minutes)
    python benchmarks/run_all.py --quick    # tiny trees, 10k rows only (< 1 minute)
    python benchmarks/run_all.py --output report.md   # also write the report to a file

Progress goes to stderr. Targets that are not met print FAIL; the exit status is 0 unless
the harness itself failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_delete
import bench_honesty
import bench_planning
import common

QUICK = {
    "delete": ["--jobs=10", "--files=100", "--trials=3"],
    "honesty": ["--jobs=5", "--files=100", "--trials=3"],
    "planning": ["--sizes=10000", "--trials=3", "--help-trials=5"],
}


def sub_args(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (< 60 s)")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    common.install_signal_handlers()
    common.eemt_cli()  # fail early, with a clear message, when the CLI is not installed

    start = time.perf_counter()
    load_start = common.load_average()
    info = common.machine_info()
    code_before = common.product_fingerprint()
    modules = (
        ("delete", bench_delete),
        ("honesty", bench_honesty),
        ("planning", bench_planning),
    )
    sections = []
    for name, module in modules:
        common.log(f"== {name} ==")
        sections.append(module.run(sub_args(module, QUICK[name] if args.quick else [])))
    elapsed = time.perf_counter() - start
    targets = [target for section in sections for target in section.targets]
    failed = sum(1 for target in targets if target.passed is not True)

    mode = (
        "quick smoke run (--quick): sizes too small to judge targets"
        if args.quick
        else ("default sizes")
    )
    header = [
        "# eemt-cleanup benchmarks",
        common.markdown_table(
            ["", ""],
            [
                *info,
                ("mode", mode),
                (
                    "load average (1/5/15 min)",
                    f"at start {load_start}, at end {common.load_average()}",
                ),
                ("benchmark time", f"{elapsed / 60:.1f} min"),
            ],
        ),
    ]
    if common.product_fingerprint() != code_before:
        header.append(
            "**Warning:** the code of `eemt_cleanup` changed (a commit or an edit) while the "
            "benchmarks ran: the sections may have measured different versions."
        )
    if float(load_start.split()[0]) > 0.5:
        header.append(
            "**Note:** the machine was not idle when the run started (load average above "
            "0.5): other processes competed for the CPU, so absolute times are noisy; the "
            "side-by-side ratios of alternating trials are the figures to trust."
        )
    report = "\n\n".join(
        [
            *header,
            *(section.render() for section in sections),
            "## Targets",
            common.targets_table(targets),
            f"{len(targets) - failed} of {len(targets)} targets met.",
        ]
    )
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

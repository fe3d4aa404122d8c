"""Shared helpers of the eemt-cleanup benchmarks (standard library only).

Everything here is harness: building base directories (never timed), running one command
and measuring its wall time and peak RSS, filesystem free space, medians and markdown.

Temporary directories are only ever created, and only ever deleted, as direct children of
``/dev/shm`` or ``/var/tmp`` named ``eemt-bench-*`` (see :func:`workdir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

TMPFS_ROOT = Path("/dev/shm")  # noqa: S108 - the tmpfs we benchmark on, by design
DISK_ROOT = Path("/var/tmp")  # noqa: S108 - an ext4 directory that survives reboots
BENCH_PREFIX = "eemt-bench-"

# The web interface's exact jobs table: one verbatim copy, the demo generator's.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_demo_base import JOBS_DDL  # noqa: E402

JOBS_INSERT = "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
PARAMETERS = '{"step": 15, "linke_value": 3.0, "albedo_value": 0.2, "num_threads": 4}'


def log(message: str) -> None:
    """Progress goes to stderr; the report goes to stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the product


def eemt_cli() -> str:
    """The installed console script next to the running interpreter."""
    path = Path(sys.executable).parent / "eemt-cleanup"
    if not path.exists():
        raise SystemExit(
            f"benchmarks: {path} not found; run with the project's .venv/bin/python "
            "(make bench installs it)"
        )
    return str(path)


def child_env() -> dict[str, str]:
    """The environment of measured commands: no EEMT_* overrides, no colours."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EEMT_")}
    env.update(NO_COLOR="1", TERM="dumb", LC_ALL="C.UTF-8")
    return env


def eemt_run_cmd(db: Path, roots: Path, *extra: str, workers: int | None = None) -> list[str]:
    """``eemt-cleanup run --json`` with every path given by flag (run it from ``/``)."""
    cmd = [
        eemt_cli(),
        "run",
        "--json",
        "--db-path",
        str(db),
        "--uploads-dir",
        str(roots / "uploads"),
        "--results-dir",
        str(roots / "results"),
        "--temp-dir",
        str(roots / "temp"),
    ]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd + list(extra)


def parse_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- temp dirs


def _check_bench_path(path: Path) -> Path:
    """Refuse to touch anything that is not one of our own temporary directories."""
    if path.is_symlink():
        raise RuntimeError(f"refusing to remove {path}: it is a symlink")
    real = path.resolve()
    for root in (TMPFS_ROOT, DISK_ROOT):
        top = real.relative_to(root).parts[0] if real.is_relative_to(root) else ""
        if top.startswith(BENCH_PREFIX):
            return real
    raise RuntimeError(f"refusing to remove {path}: not under {TMPFS_ROOT} or {DISK_ROOT}")


def remove_tree(path: Path) -> None:
    """Delete one of our temporary directories (or a directory inside one)."""
    if not path.exists() and not path.is_symlink():
        return
    shutil.rmtree(_check_bench_path(path))


@contextlib.contextmanager
def workdir(root: Path, tag: str) -> Iterator[Path]:
    """A fresh ``<root>/eemt-bench-<tag>-XXXX`` directory, removed afterwards, also on error."""
    path = Path(tempfile.mkdtemp(prefix=f"{BENCH_PREFIX}{tag}-", dir=root))
    try:
        yield path
    finally:
        remove_tree(path)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so every ``finally`` (cleanup) runs."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


# --------------------------------------------------------------------------- building


def job_ids(count: int, seed: int) -> list[str]:
    """Deterministic uuid4 strings (identical trees across trials and methods)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]


def local_naive(instant: datetime) -> str:
    """``datetime.now().isoformat()`` as the web interface writes it: local time, no offset."""
    return instant.astimezone().replace(tzinfo=None).isoformat(timespec="microseconds")


def sqlite_utc(instant: datetime) -> str:
    """SQLite's ``CURRENT_TIMESTAMP`` format (UTC, no offset)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def completed_row(
    job_id: str, completed: datetime, dem_filename: str | None = None
) -> tuple[object, ...]:
    """A completed ``jobs`` row: created 2 min before it started, ran 47 minutes."""
    started = completed - timedelta(minutes=47)
    created = started - timedelta(minutes=2)
    return (
        job_id,
        "eemt",
        "completed",
        sqlite_utc(created),
        local_naive(started),
        local_naive(completed),
        PARAMETERS,
        dem_filename,
        None,
        100,
    )


def upload_name(job_id: str) -> str:
    """``<uuid4>_<original name>.tif``, as the web interface names uploads."""
    return f"{job_id}_santa_catalina_10m_dem.tif"


def write_jobs_db(path: Path, rows: Iterable[tuple[object, ...]]) -> None:
    """A database with the web interface's exact ``jobs`` table and these rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(JOBS_DDL)
        conn.executemany(JOBS_INSERT, rows)


def migrate_jobs_db(path: Path) -> None:
    """Apply the product's migrations (cleanup columns, audit and log tables, indexes)."""
    from eemt_cleanup.store.migrations import migrate

    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        migrate(conn, "jobs", "status", "dem_filename")


def file_bytes(size: int) -> bytes:
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def write_files(directory: Path, count: int, size: int, prefix: str = "out") -> None:
    """``count`` files of ``size`` real bytes in an existing directory (os-level writes)."""
    data = file_bytes(size)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for number in range(count):
            fd = os.open(f"{prefix}_{number:05d}.tif", flags, 0o644, dir_fd=dir_fd)
            try:
                if data:
                    os.write(fd, data)
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def is_tmpfs(path: Path) -> bool:
    return path.resolve().is_relative_to(TMPFS_ROOT)


def build_job_base(
    base: Path,
    ids: Sequence[str],
    files: int,
    size: int,
    *,
    completed_days_ago: float = 30.0,
) -> None:
    """A base directory: ``jobs.db`` with ``ids`` as completed jobs (due), ``uploads/``,
    ``temp/`` (empty) and ``results/<id>/`` with ``files`` files of ``size`` bytes each.

    Every row names its upload (the web interface always records one), but the upload is
    already gone from ``uploads/``, so every method deletes exactly ``results/<id>/``.

    The database is migrated by the product's own ``migrate()``, as it is after the first
    run: a nightly run meets a migrated database, and the one-time migration (about 40 ms,
    most of it importing sqlite-utils) is not what is being compared.

    Two writer threads on tmpfs (syscalls release the GIL); one on ext4, where concurrent
    creates in one filesystem only contend on the journal.
    """
    for sub in ("uploads", "results", "temp"):
        (base / sub).mkdir(parents=True)
    completed = datetime.now(UTC) - timedelta(days=completed_days_ago)
    write_jobs_db(base / "jobs.db", (completed_row(i, completed, upload_name(i)) for i in ids))
    migrate_jobs_db(base / "jobs.db")

    def one(job_id: str) -> None:
        directory = base / "results" / job_id
        directory.mkdir()
        write_files(directory, files, size)

    threads = 2 if is_tmpfs(base) else 1
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, ids):
            pass


def count_entries(path: Path) -> int:
    """Files, links and directories below ``path`` (not ``path`` itself)."""
    total = 0
    for _root, dirs, names in os.walk(path):
        total += len(dirs) + len(names)
    return total


def settle() -> None:
    """Flush dirty data and pending deletes before/after a timed command (untimed)."""
    os.sync()


# --------------------------------------------------------------------------- measuring


TIME = Path("/usr/bin/time")


@dataclass
class Measurement:
    """One command: wall seconds (perf_counter from spawn to reap) and peak RSS in KiB."""

    cmd: list[str]
    wall: float
    maxrss_kib: int
    returncode: int
    stdout: str
    stderr: str

    @property
    def rss_mib(self) -> float:
        return self.maxrss_kib / 1024


def _drain(stream: IO[bytes], sink: list[bytes]) -> None:
    sink.append(stream.read())


def run_measured(
    cmd: Sequence[str], *, cwd: Path | str = "/", env: dict[str, str] | None = None
) -> Measurement:
    """Run ``cmd`` and measure it.

    Peak RSS comes from GNU time's ``%M`` (``ru_maxrss`` of the command as *time* reaps it
    with ``wait4``: the largest process of its tree). It cannot come from our own ``wait4``
    on a child we spawn: Linux folds the parent's high-water RSS into the child's
    ``ru_maxrss`` when the (v)forked child execs, so every command would "use" at least as
    much as this harness (19 MiB, or hundreds after building a million-row table). GNU time
    is a small C program, so its forked child starts near 1 MiB. Wall time is
    ``perf_counter`` around spawn and reap (GNU time's ``%e`` has 10 ms resolution).
    """
    if not TIME.exists():
        raise SystemExit(f"benchmarks: {TIME} (GNU time) is needed to measure peak RSS")
    rss_read, rss_write = os.pipe()
    out: list[bytes] = []
    err: list[bytes] = []
    rss: list[bytes] = []
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [str(TIME), "-f", "%M", "-o", f"/dev/fd/{rss_write}", *cmd],
            cwd=cwd,
            env=env if env is not None else child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(rss_write,),
            start_new_session=True,  # its own process group: stoppable as a whole
        )
    finally:
        os.close(rss_write)
    assert proc.stdout is not None and proc.stderr is not None
    with open(rss_read, "rb") as rss_stream:
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            _pid, status, _usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Interrupted: stop the command and everything it started before our caller
            # removes the directory it works in.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        for reader in readers:
            reader.join()
        rss.append(rss_stream.read())
    proc.stdout.close()
    proc.stderr.close()
    # With -o, GNU time writes "Command exited with non-zero status N" (or "terminated by
    # signal") before the format's line: the last line is %M.
    lines = b"".join(rss).decode(errors="replace").strip().splitlines()
    maxrss = int(lines[-1]) if lines and lines[-1].strip().isdigit() else -1
    return Measurement(
        cmd=list(cmd),
        wall=wall,
        maxrss_kib=maxrss,
        returncode=proc.returncode,
        stdout=b"".join(out).decode(errors="replace"),
        stderr=b"".join(err).decode(errors="replace"),
    )


def free_bytes(path: Path) -> int:
    """Free bytes of the filesystem holding ``path`` (``f_bfree * f_frsize``)."""
    info = os.statvfs(path)
    return info.f_bfree * info.f_frsize


# --------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fmt_spread(values: Sequence[float]) -> str:
    """Every trial, in the order measured."""
    return " / ".join(fmt_s(value) for value in values)


def fmt_mib(kib: float) -> str:
    return "n/a" if kib != kib else f"{kib / 1024:.1f} MiB"


def fmt_mb(nbytes: float | None) -> str:
    """Decimal megabytes, as the issue quotes them (102 MB vs 819 MB)."""
    if nbytes is None or nbytes != nbytes:
        return "n/a"
    return f"{nbytes / 1e6:,.1f} MB"


def fmt_ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}×"


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


# --------------------------------------------------------------------------- reporting


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], align: str = ""
) -> str:
    """A padded markdown table; ``align`` has one ``l``/``r`` per column (default: left)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    align = align.ljust(len(headers), "l")

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if align[i] == "r" else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [("-" * (w - 1) + ":") if align[i] == "r" else "-" * w for i, w in enumerate(widths)]
    return "\n".join([line(list(headers)), line(rule), *(line(row) for row in cells)])


@dataclass
class Target:
    name: str
    measured: str
    passed: bool | None


@dataclass
class Section:
    """One benchmark's part of the report: markdown blocks and the targets it checks."""

    title: str
    blocks: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def render(self) -> str:
        return "\n\n".join([f"## {self.title}", *self.blocks])


def targets_table(targets: Sequence[Target]) -> str:
    return markdown_table(
        ["target", "measured", "result"],
        [(t.name, t.measured, verdict(t.passed)) for t in targets],
    )


def print_standalone(section: Section) -> None:
    print(section.render())
    print()
    print("### Targets")
    print()
    print(targets_table(section.targets))


def _first_line(cmd: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine_info() -> list[tuple[str, str]]:
    """Facts that make a run's numbers comparable (or not) with another run's."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    repo = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "eemt_cleanup"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores", str(os.cpu_count())),
        ("cpu", cpu),
        ("memory", memory),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("eemt-cleanup", _first_line([eemt_cli(), "--version"])),
        ("git", f"{commit}{' (eemt_cleanup/ has uncommitted changes)' if dirty else ''}"),
        ("bytecode", bytecode_note(repo)),
        ("tmpfs", f"{TMPFS_ROOT} ({filesystem_type(TMPFS_ROOT)})"),
        ("disk", f"{DISK_ROOT} ({filesystem_type(DISK_ROOT)})"),
    ]


def bytecode_note(repo: Path) -> str:
    """Whether the package starts from cached bytecode, as a pip-installed one does."""
    cached = (repo / "eemt_cleanup" / "__pycache__").is_dir()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "PYTHONDONTWRITEBYTECODE is set" + (
            "" if cached else ": eemt_cleanup has no __pycache__ and is compiled at every start"
        )
    return "eemt_cleanup/__pycache__ present" if cached else "written on first start"


def product_fingerprint() -> str:
    """HEAD plus a digest of uncommitted changes to the package: lets the report say when
    the code under test changed while the benchmarks ran."""
    repo = str(Path(__file__).resolve().parent.parent)
    parts = []
    for cmd in (
        ["git", "-C", repo, "rev-parse", "HEAD"],
        ["git", "-C", repo, "diff", "HEAD", "--", "eemt_cleanup"],
        ["git", "-C", repo, "ls-files", "--others", "--exclude-standard", "--", "eemt_cleanup"],
    ):
        try:
            parts.append(subprocess.run(cmd, capture_output=True, timeout=30).stdout)
        except (OSError, subprocess.SubprocessError):
            parts.append(b"?")
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def filesystem_type(path: Path) -> str:
    best, kind, options = "", "unknown", ""
    with contextlib.suppress(OSError):
        for text in Path("/proc/self/mounts").read_text().splitlines():
            parts = text.split()
            mount = parts[1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, kind, options = mount, parts[2], parts[3]
    extra = " discard" if "discard" in options.split(",") else ""
    return f"{kind}{extra}, mounted on {best or '?'}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"

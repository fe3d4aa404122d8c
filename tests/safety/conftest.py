"""The adversarial harness: a base directory with due jobs, things that must survive, and
helpers to add hostile rows and filesystem objects, run a cleanup and judge that it was safe.

Layout built under ``tmp_path`` by the ``harness`` fixture::

    base/jobs.db                  made by create_jobs_db: LEGIT_IDS (due), RETAINED_ID (kept)
    base/cleanup_config.yaml      paths relative to itself, so the CLI only needs --config
    base/uploads/ results/ temp/  the three roots, each job with its artifacts
    base/uploads/abandoned_dem.tif  referenced by no job: never touched
    base/canary/                  outside the roots: files, a subdirectory, symlinks
    base/cache/ base/shared/      not job data: never touched

``Harness.arm`` records the state before a run (automatically on the first run) and
``Harness.assert_safe`` checks it afterwards: everything that was not a legit due job's
artifact (or named by the test) is byte-identical, the database is intact with every
original row, and every legit due job is gone and marked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import deletion_guard
import pytest
from conftest import CliResult, create_jobs_db, snapshot

import eemt_cleanup.engine as engine_module
from eemt_cleanup import site as site_module
from eemt_cleanup.config.loader import LoadedConfig, load_config
from eemt_cleanup.engine import RunOptions, RunReport, run_cleanup
from eemt_cleanup.fs.remove import Remover

LEGIT_IDS = (
    "0c6c6a53-6f2b-4d0e-9a8e-2f4b1c9d7e01",
    "5b0f4f7e-1d4c-4a61-8f0e-7c2d9b3a6e02",
    "9e3d2c1b-8a7f-4e6d-b5c4-3a2b1c0d9e03",
)
RETAINED_ID = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c04"
ABANDONED_UPLOAD = "abandoned_dem.tif"
DUE_AGE = timedelta(days=30)
RETAINED_AGE = timedelta(days=1)
ARCHIVE_SUFFIX = "_results.zip"
RUN_DEADLINE_SECONDS = 30.0
NOBODY = 65534
ORIGINAL_COLUMNS = (
    "id, workflow_type, status, created_at, started_at, completed_at, parameters, "
    "dem_filename, error_message, progress"
)
CONFIG_TEXT = """\
# The safety suite's config: every path relative to this file.
paths:
  database: ./jobs.db
  uploads: ./uploads
  results: ./results
  temp: ./temp
  logs: ./logs
performance:
  max_workers: 2
"""
# Changed by every real run, judged separately: the database, its lock file, the logs
# (and the test's own guard extension).
VOLATILE_PREFIXES = ("base/jobs.db", "base/logs", "guard-beyond-path-max")

Snapshot = dict[str, tuple[str, int, bytes | str]]


def write(path: Path, size: int, fill: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fill * size)
    return path


@dataclass(frozen=True)
class Sql:
    """A value given as an SQL expression (e.g. ``CAST(x'ff' AS TEXT)``) rather than bound."""

    expression: str


@dataclass(frozen=True)
class Job:
    """A job with a text id whose artifacts the harness created (or may create)."""

    job_id: str
    upload: str | None

    def artifacts(self, base: Path) -> list[Path]:
        paths = [
            base / "results" / self.job_id,
            base / "results" / (self.job_id + ARCHIVE_SUFFIX),
            base / "temp" / self.job_id,
        ]
        return [*paths, base / "uploads" / self.upload] if self.upload else paths

    def results(self, base: Path) -> Path:
        return base / "results" / self.job_id


def safe_snapshot(root: Path) -> Snapshot:
    """Like ``snapshot`` (kind, size, content or link target of every entry) but FIFOs,
    sockets and devices are recorded by kind and device number, never opened."""
    entries: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            info = os.lstat(full)
            rel = str(full.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", 0, os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", 0, "")
            elif stat.S_ISREG(info.st_mode):
                entries[rel] = ("file", info.st_size, full.read_bytes())
            else:
                entries[rel] = (stat.filemode(info.st_mode)[0], info.st_rdev, "")
    return entries


def _key_matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == prefix or key.startswith(prefix + "/") for prefix in prefixes)


class Harness:
    """One base directory under ``tmp_path`` and the tools to attack it."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any) -> None:
        self.tmp = tmp_path
        self.base = tmp_path / "base"
        self.db = self.base / "jobs.db"
        self.config_file = self.base / "cleanup_config.yaml"
        self.uploads = self.base / "uploads"
        self.results = self.base / "results"
        self.temp = self.base / "temp"
        self.canary = self.base / "canary"
        self.now = datetime.now(UTC)
        self._monkeypatch = monkeypatch
        self._cli = cli
        self._rows: list[dict[str, Any]] = []
        self.legit = [Job(job_id, f"{job_id}_dem.tif") for job_id in LEGIT_IDS]
        self.retained = Job(RETAINED_ID, f"{RETAINED_ID}_dem.tif")
        self._before: Snapshot | None = None
        self._canary_before: Snapshot | None = None
        self._config_before = b""
        self._db_before = b""
        self._rows_before: list[tuple[Any, ...]] = []
        self._build()

    # -- building --------------------------------------------------------------------

    def _build(self) -> None:
        for name in ("uploads", "results", "temp", "cache", "shared"):
            (self.base / name).mkdir(parents=True)
        write(self.canary / "precious.dat", 9_000, b"p")
        write(self.canary / "notes.txt", 120, b"n")
        write(self.canary / "nested" / "keep.txt", 33, b"k")
        write(self.canary / "nested" / "deeper" / "more.bin", 4_100, b"m")
        (self.canary / "link_to_file").symlink_to("precious.dat")
        (self.canary / "link_to_dir").symlink_to("nested", target_is_directory=True)
        write(self.base / "cache" / "tile_cache.bin", 2_000, b"c")
        write(self.base / "shared" / "model.bin", 3_000, b"s")
        write(self.uploads / ABANDONED_UPLOAD, 5_000, b"a")
        self.config_file.write_text(CONFIG_TEXT)
        for job in self.legit:
            self.make_data(job)
            self._rows.append(self._row(job.job_id, job.upload, age=DUE_AGE))
        self.make_data(self.retained)
        self._rows.append(self._row(RETAINED_ID, self.retained.upload, age=RETAINED_AGE))
        create_jobs_db(self.db, self._rows)

    def make_data(self, job: Job) -> Job:
        """The artifacts a real job leaves: outputs and logs, archive, temp dir, its upload."""
        results = self.results / job.job_id
        write(results / "workflow.log", 700, b"l")
        write(results / "outputs" / "tile_000.tif", 20_000)
        write(results / "outputs" / "monthly" / "month_01.tif", 6_000)
        write(self.results / (job.job_id + ARCHIVE_SUFFIX), 9_000, b"z")
        write(self.temp / job.job_id / "work.tmp", 3_000, b"t")
        if job.upload:
            write(self.uploads / job.upload, 12_000, b"u")
        return job

    def _row(
        self, job_id: Any, upload: Any, *, age: timedelta, status: str = "completed"
    ) -> dict[str, Any]:
        completed = self.now - age
        return {
            "id": job_id,
            "workflow_type": "eemt",
            "status": status,
            "created_at": (completed - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"),
            "started_at": (completed - timedelta(hours=1)).isoformat(),
            "completed_at": completed.isoformat(),
            "dem_filename": upload,
            "progress": 100,
        }

    def add_row(
        self,
        job_id: Any,
        dem_filename: Any = None,
        *,
        age: timedelta = DUE_AGE,
        status: str = "completed",
    ) -> None:
        """Insert one job row; ``Sql`` values are inserted as SQL expressions."""
        row = self._row(job_id, dem_filename, age=age, status=status)
        marks, params = [], []
        for value in row.values():
            if isinstance(value, Sql):
                marks.append(value.expression)
            else:
                marks.append("?")
                params.append(value)
        conn = sqlite3.connect(self.db)
        try:
            conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join(marks)})", params)
            conn.commit()
        finally:
            conn.close()

    def add_job(self, job_id: str, *, upload: bool = True, age: timedelta = DUE_AGE) -> Job:
        """A further job (row and data) for a test to make hostile."""
        job = Job(job_id, f"{job_id}_dem.tif" if upload else None)
        self.make_data(job)
        self.add_row(job_id, job.upload, age=age)
        return job

    # -- running ---------------------------------------------------------------------

    def config(self, *, workers: int | None = None, **paths: Path | str) -> LoadedConfig:
        """The effective config, as the CLI builds it from --config and the path flags.

        ``workers=1`` removes everything in this process (where hooks and spies reach);
        the config file's 2 workers send directory trees to deletion worker processes.
        """
        overrides: dict[str, tuple[Any, str]] = {
            "paths.database": (str(self.db), "--db-path"),
            "paths.uploads": (str(self.uploads), "--uploads-dir"),
            "paths.results": (str(self.results), "--results-dir"),
            "paths.temp": (str(self.temp), "--temp-dir"),
        }
        for key, value in paths.items():
            overrides[f"paths.{key}"] = (str(value), f"--{key}")
        if workers is not None:
            overrides["performance.max_workers"] = (workers, "--workers")
        return load_config(
            config_path=self.config_file, environ={}, cwd=self.base, overrides=overrides
        )

    def arm(self) -> None:
        """Record the state the run is judged against (call before making late changes)."""
        self._before = self._whole()
        self._canary_before = snapshot(self.canary)
        self._config_before = self.config_file.read_bytes()
        self._db_before = self.db.read_bytes()
        self._rows_before = self.original_rows()

    def run(
        self,
        options: RunOptions | None = None,
        *,
        config: LoadedConfig | None = None,
        workers: int | None = None,
        before_open: Callable[[int, str], None] | None = None,
        spy: FsSpy | None = None,
        deadline: float = RUN_DEADLINE_SECONDS,
        unblock: Callable[[], None] | None = None,
    ) -> RunReport:
        """Run the engine in-process on a thread; fail if it is not done by ``deadline``.

        ``before_open`` is handed to the Remover (its test hook), which only reaches removal
        in this process: it implies one worker. ``spy`` records the filesystem calls of the
        run only; ``unblock`` releases a hung run before failing.
        """
        if self._before is None:
            self.arm()
        if before_open is not None:
            workers = 1
        loaded = config or self.config(workers=workers)
        if before_open is not None:
            hooked = functools.partial(Remover, before_open=before_open)
            # The site makes the run's Remover; the engine makes the meter of --size-threshold.
            self._monkeypatch.setattr(site_module, "Remover", hooked)
            self._monkeypatch.setattr(engine_module, "Remover", hooked)
        outcome: list[RunReport] = []
        failures: list[BaseException] = []

        def target() -> None:
            try:
                outcome.append(run_cleanup(loaded, options or RunOptions()))
            except BaseException as error:
                failures.append(error)

        recording = spy.recording() if spy is not None else contextlib.nullcontext()
        with recording:
            thread = threading.Thread(target=target, name="safety-run", daemon=True)
            thread.start()
            thread.join(deadline)
            if thread.is_alive():
                if unblock is not None:
                    unblock()
                thread.join(10)
                pytest.fail(f"the run was still going after {deadline} s: it hung")
        if failures:
            raise failures[0]
        return outcome[0]

    def run_cli(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> CliResult:
        """``eemt-cleanup run --json --config <file> ARGS`` (guarded), judged by the caller."""
        if self._before is None:
            self.arm()
        result: CliResult = self._cli(
            "run", "--json", "--config", str(self.config_file), *args, env=env, timeout=timeout
        )
        return result

    # -- reading the outcome ---------------------------------------------------------

    def _whole(self) -> Snapshot:
        return {
            key: value
            for key, value in safe_snapshot(self.tmp).items()
            if not key.startswith(VOLATILE_PREFIXES)
        }

    def key(self, path: Path) -> str:
        return str(path.relative_to(self.tmp))

    def original_rows(self) -> list[tuple[Any, ...]]:
        """Every row's web-interface columns, raw (text as bytes: some are not UTF-8)."""
        conn = sqlite3.connect(self.db)
        conn.text_factory = bytes
        try:
            rows = conn.execute(f"SELECT {ORIGINAL_COLUMNS} FROM jobs").fetchall()
        finally:
            conn.close()
        return sorted(rows, key=repr)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def marked(self) -> set[str]:
        """Text ids of the jobs whose ``data_cleaned_at`` is set."""
        return {
            job_id
            for (job_id,) in self.query(
                "SELECT CAST(id AS TEXT) FROM jobs WHERE data_cleaned_at IS NOT NULL "
                "AND typeof(id) = 'text'"
            )
        }

    def marked_count(self) -> int:
        return int(self.query("SELECT count(*) FROM jobs WHERE data_cleaned_at IS NOT NULL")[0][0])

    def audit(self, action: str | None = None) -> list[tuple[Any, ...]]:
        """(job_id, action, path, error) of the audit rows, in order."""
        sql = "SELECT job_id, action, path, error FROM cleanup_audit"
        if action is not None:
            return self.query(sql + " WHERE action = ? ORDER BY id", (action,))
        return self.query(sql + " ORDER BY id")

    def modes(self, top: Path) -> dict[str, tuple[int, int, int]]:
        """(mode, uid, gid) of ``top`` and everything below it, links not followed."""
        found = {}
        for path in [top, *sorted(top.rglob("*"))] if top.is_dir() else [top]:
            info = os.lstat(path)
            found[self.key(path)] = (info.st_mode, info.st_uid, info.st_gid)
        return found

    # -- judging ---------------------------------------------------------------------

    def assert_safe(
        self,
        result: RunReport | CliResult | None,
        *,
        gone: Iterable[Path | Job] = (),
        changing: Iterable[Path | Job] = (),
    ) -> None:
        """The run was safe: only what was due (and ``gone``) went, the rest is identical.

        ``changing`` names paths the test lets change either way (e.g. a job's tree that a
        writer thread keeps filling); the database and the logs are judged on their own.
        """
        assert self._before is not None, "arm() was never called"
        assert self._canary_before is not None
        assert snapshot(self.canary) == self._canary_before, "the canary outside the roots changed"
        assert self.config_file.read_bytes() == self._config_before, "the config file changed"
        self._assert_database_intact()
        self._assert_legit_cleaned(result)
        removed = [self.key(path) for job in self.legit for path in job.artifacts(self.base)]
        for item in gone:
            paths = item.artifacts(self.base) if isinstance(item, Job) else [item]
            removed.extend(self.key(path) for path in paths)
        ignored = [
            self.key(path)
            for item in changing
            for path in (item.artifacts(self.base) if isinstance(item, Job) else [item])
        ]
        expected = {
            key: value
            for key, value in self._before.items()
            if not _key_matches(key, removed) and not _key_matches(key, ignored)
        }
        after = {
            key: value for key, value in self._whole().items() if not _key_matches(key, ignored)
        }
        missing = sorted(set(expected) - set(after))
        unexpected = sorted(set(after) - set(expected))
        changed = sorted(key for key in set(expected) & set(after) if expected[key] != after[key])
        assert (missing, unexpected, changed) == ([], [], []), (
            "outside what was due: (missing, unexpected, changed)"
        )

    def assert_untouched(self, *, database_bytes: bool = True) -> None:
        """Nothing changed: every file, every row, and (by default) the database's bytes."""
        assert self._before is not None, "arm() was never called"
        if database_bytes:
            assert self.db.read_bytes() == self._db_before, "the database was written"
        else:
            assert self.marked_count() == 0
        self._assert_database_intact()
        assert self._whole() == self._before

    def _assert_database_intact(self) -> None:
        assert self.db.is_file()
        assert self.query("PRAGMA integrity_check") == [("ok",)]
        assert self.original_rows() == self._rows_before, "a row of the jobs table changed"

    def _assert_legit_cleaned(self, result: RunReport | CliResult | None) -> None:
        for job in self.legit:
            for path in job.artifacts(self.base):
                assert not os.path.lexists(path), f"legit due job's {path} is still there"
        assert {job.job_id for job in self.legit} <= self.marked()
        if isinstance(result, RunReport):
            done = {job.job_id: job for job in result.jobs}
            for job in self.legit:
                assert done[job.job_id].cleaned, done[job.job_id]
                assert done[job.job_id].errors == []
        elif result is not None:
            details = {detail["job_id"]: detail for detail in result.json()["details"]}
            for job in self.legit:
                assert details[job.job_id]["errors"] == []


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Any) -> Harness:
    return Harness(tmp_path, monkeypatch, run_cli)


# -- read-only spies on the filesystem calls -----------------------------------------------

SPIED = ("stat", "lstat", "open", "unlink", "rmdir", "scandir")


@dataclass(frozen=True)
class FsCall:
    function: str
    path: str
    dir_fd: int | None


@dataclass
class FsSpy:
    """Records the path argument of every spied ``os`` call while ``recording``."""

    calls: list[FsCall] = field(default_factory=list)
    active: bool = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            if self.active:
                path = args[0] if args else kwargs.get("path")
                if path is not None and not isinstance(path, int):
                    text = os.fsdecode(os.fspath(path))
                    self.calls.append(FsCall(name, text, kwargs.get("dir_fd")))
            return real(*args, **kwargs)

        return spied

    def touching(
        self,
        exact: Iterable[str],
        markers: Iterable[str] = (),
        allowed_absolute: Iterable[str] = (),
    ) -> list[FsCall]:
        """Calls whose path is one of ``exact`` or contains a marker; an absolute path the
        engine legitimately stats or opens at start (``allowed_absolute``) is not counted."""
        exact, markers, allowed = set(exact), tuple(markers), set(allowed_absolute)
        found = []
        for call in self.calls:
            if call.path in allowed and call.dir_fd is None and call.function != "unlink":
                continue
            if call.path in exact or any(marker in call.path for marker in markers):
                found.append(call)
        return found


@pytest.fixture
def fs_spy(monkeypatch: pytest.MonkeyPatch) -> FsSpy:
    spy = FsSpy()
    for name in SPIED:
        monkeypatch.setattr(os, name, spy.wrap(name, getattr(os, name)))
    return spy


# -- mounts, attributes, privileges --------------------------------------------------------


@contextlib.contextmanager
def mounted(arguments: list[str], target: Path) -> Iterator[None]:
    """Mount for the duration (skip when this machine cannot); always unmounted after."""
    made = subprocess.run(
        ["mount", *arguments, str(target)], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount {' '.join(arguments)} here: {made.stderr.strip()}")
    try:
        yield
    finally:
        unmount(target)


def unmount(target: Path) -> None:
    done = subprocess.run(["umount", str(target)], capture_output=True, check=False)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def attribute(flag: str, *paths: Path) -> Iterator[None]:
    """``chattr +flag`` for the duration (skip when unsupported); always removed after."""
    done: list[Path] = []
    try:
        for path in paths:
            made = subprocess.run(
                ["chattr", f"+{flag}", str(path)], capture_output=True, text=True, check=False
            )
            if made.returncode != 0:
                pytest.skip(f"chattr +{flag} is not supported here: {made.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", f"-{flag}", str(path)], capture_output=True, check=False)


def make_special(kind: str, path: Path) -> None:
    """A FIFO, a socket, or a device node (``char-device``: like /dev/null, ``block-device``:
    a loop device) at ``path``, whose parent is created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        # Bound through /proc/self/fd: tmp_path is longer than a socket address may be.
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(f"/proc/self/fd/{fd}/{path.name}")
        finally:
            server.close()
            os.close(fd)
    elif kind == "char-device":
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    elif kind == "block-device":
        os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    else:
        raise ValueError(f"unknown special file kind {kind!r}")


def unblock_fifos(*fifos: Path) -> Callable[[], None]:
    """Release a run stuck opening one of ``fifos`` (only ever needed by a regression)."""

    def release() -> None:
        for fifo in fifos:
            for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
                with contextlib.suppress(OSError):
                    os.close(os.open(fifo, flags))

    return release


def has_attribute(path: Path, flag: str) -> bool:
    listed = subprocess.run(
        ["lsattr", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return flag in listed.split()[0]


def unprivileged_command(*command: str) -> list[str]:
    """``command`` as nobody, keeping only CAP_DAC_READ_SEARCH (to reach ``tmp_path``,
    whose parents are 0700 root) - it grants no write or ownership rights."""
    return [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=-all,+dac_read_search",
        "--ambient-caps=+dac_read_search",
        *command,
    ]


def chown_tree(top: Path, uid: int, gid: int) -> None:
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


# -- the deletion guard beyond PATH_MAX ----------------------------------------------------

GUARD_EXTENSION = '''"""Keep the deletion guard working beyond PATH_MAX (written by tests/safety).

The guard names a dir_fd through /proc/self/fd, which the kernel refuses (ENAMETOOLONG) for
a directory deeper than PATH_MAX; then containment is checked by walking ".." up from the
descriptor to an allowed directory instead. Anything outside is still refused.
"""

import errno
import os

import deletion_guard

FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def fd_inside(dir_fd, allowed):
    fd = os.open(".", FLAGS, dir_fd=dir_fd)
    try:
        while True:
            info = os.fstat(fd)
            here = (info.st_dev, info.st_ino)
            if here in allowed:
                return True
            parent = os.open("..", FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            above = os.fstat(fd)
            if (above.st_dev, above.st_ino) == here:
                return False
    finally:
        os.close(fd)


def make_resolve(real):
    def resolve(path, dir_fd):
        try:
            return real(path, dir_fd)
        except OSError as error:
            name = os.fsdecode(path)
            if error.errno != errno.ENAMETOOLONG or dir_fd is None or "/" in name:
                raise
            roots = list(deletion_guard._allowed)
            allowed = {(os.stat(r).st_dev, os.stat(r).st_ino) for r in roots}
            if roots and fd_inside(dir_fd, allowed):
                return os.path.join(roots[0], "beyond-PATH_MAX", name)
            return os.path.join("/", "outside-beyond-PATH_MAX", name)

    return resolve
'''

GUARD_SITECUSTOMIZE = """\
import deletion_guard
import guard_beyond_path_max

deletion_guard.install_from_environment()
deletion_guard._resolve = guard_beyond_path_max.make_resolve(deletion_guard._resolve)
"""
GUARD_EXTENSION_DIR = "guard-beyond-path-max"


@pytest.fixture
def guard_beyond_path_max(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deletion guard, here and in every process started, extended beyond PATH_MAX."""
    directory = tmp_path / GUARD_EXTENSION_DIR
    directory.mkdir()
    module = directory / "guard_beyond_path_max.py"
    module.write_text(GUARD_EXTENSION)
    (directory / "sitecustomize.py").write_text(GUARD_SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), os.environ["PYTHONPATH"]]))
    namespace: dict[str, Any] = {}
    exec(compile(GUARD_EXTENSION, str(module), "exec"), namespace)
    monkeypatch.setattr(
        deletion_guard, "_resolve", namespace["make_resolve"](deletion_guard._resolve)
    )


def json_skipped(result: CliResult) -> list[dict[str, str]]:
    data = json.loads(result.stdout)
    return list(data["skipped"])

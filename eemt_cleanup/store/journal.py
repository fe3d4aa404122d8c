"""The run's own record of what it deleted, kept outside the database commit.

A real run writes, per batch, one line *before* deleting (which jobs and paths it is about
to delete), one line *after* (each job's audit rows with the bytes and files really freed)
and one line once the batch's marks are committed. When a commit fails for good (a writer
holds the database past every retry, the disk is full, the file was replaced) or the run is
killed between deleting and committing, those lines are what is left of the deletion. The
next run reads them: a job it then finds with nothing left on disk is marked and counted
once, with the audit rows (paths, bytes, files, the run that deleted them) the earlier run
could not write. The file is removed again when nothing in it is left unrecorded.

Writing it is best effort, and never a reason not to free space: on a full disk the line
before deleting may be lost (the one after usually lands, the deletion having made room).
It lives in the logs directory, opened like the log file (never through a symlink).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eemt_cleanup.fs.safe_open import (
    make_directories,
    open_directory,
    open_regular,
    trusted_path,
)

log = logging.getLogger("eemt_cleanup")

JOURNAL_NAME = "cleanup-journal.jsonl"
FORMAT = 1


def job_key(raw_id: Any) -> str:
    """A stable key for a stored job id of any type (text, number)."""
    return json.dumps(raw_id, ensure_ascii=True)


@dataclass
class Leftover:
    """What an earlier run deleted of one job but could not record."""

    run_id: str
    audit: list[list[Any]] = field(default_factory=list)  # [action, path, bytes, files, error, at]
    bytes_freed: int = 0
    files_deleted: int = 0
    paths: list[str] = field(default_factory=list)
    finished: bool = False  # the deleting run got as far as its "after" line


class Journal:
    """The journal file of one run (created in ``directory`` when first written)."""

    def __init__(self, directory: Path, name: str = JOURNAL_NAME) -> None:
        self.directory = directory
        self.name = name
        self._dir_fd: int | None = None
        self._fd: int | None = None
        self._warned = False
        self.leftovers: dict[str, Leftover] = {}
        self.resolved: set[str] = set()

    # -- reading what earlier runs left ------------------------------------------------

    def load(self) -> None:
        """Read the leftovers of earlier runs (an absent or unreadable journal has none)."""
        try:
            self._open_directory(create=False)
            assert self._dir_fd is not None
            fd = open_regular(self.name, os.O_RDONLY, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return  # no logs directory yet, or no journal: nothing was left
        except OSError as error:
            self._warn("cannot read", error)
            return
        with os.fdopen(fd, "rb") as stream:
            self.leftovers = _leftovers(stream)

    # -- writing this run's lines ------------------------------------------------------

    def intend(self, run_id: str, batch: int, jobs: Sequence[tuple[Any, list[str]]]) -> None:
        """Before deleting: the jobs of the batch and the paths about to go."""
        self._append(
            {
                "v": FORMAT,
                "run": run_id,
                "batch": batch,
                "intent": [{"job": raw, "paths": paths} for raw, paths in jobs],
            }
        )

    def done(self, run_id: str, batch: int, jobs: Iterable[dict[str, Any]]) -> None:
        """After deleting: per job ``{"job", "audit", "bytes", "files"}`` as really done."""
        self._append({"v": FORMAT, "run": run_id, "batch": batch, "done": list(jobs)})

    def recorded(self, run_id: str, batch: int, keys: Iterable[str]) -> None:
        """The batch's records are committed; the leftovers it carried are settled."""
        self.resolved.update(keys)
        self._append({"v": FORMAT, "run": run_id, "batch": batch, "recorded": True})

    def settle(self, unrecorded: Sequence[dict[str, Any]], gone: set[str]) -> None:
        """At the end of a run: keep only what is still unrecorded (this run's jobs in
        ``unrecorded``, earlier leftovers neither resolved nor in ``gone``), or empty it."""
        carried = [
            {"job": json.loads(key), "run": item.run_id, **_as_done(item)}
            for key, item in self.leftovers.items()
            if key not in self.resolved and key not in gone
        ]
        lines = [{"v": FORMAT, "run": "carried", "batch": 0, "done": carried}] if carried else []
        if unrecorded:
            lines.append({"v": FORMAT, "run": "carried", "batch": 1, "done": list(unrecorded)})
        if not lines and self._fd is None and not self.leftovers:
            return  # nothing was ever written: leave no file behind
        try:
            if not lines:
                # Everything is recorded: remove the name (unlinking never follows a link).
                self._open_directory()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.name, dir_fd=self._dir_fd)
                return
            fd = self._file()
            os.ftruncate(fd, 0)
            for line in lines:
                _write_all(fd, _encode(line))
        except OSError as error:
            self._warn("cannot settle", error)

    def close(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._dir_fd = None

    # -- plumbing ----------------------------------------------------------------------

    def _open_directory(self, *, create: bool = True) -> None:
        if self._dir_fd is None:
            directory = trusted_path(self.directory)
            if create:
                make_directories(directory, 0o750)
            self._dir_fd = open_directory(directory)

    def _file(self) -> int:
        if self._fd is None:
            self._open_directory()
            assert self._dir_fd is not None
            self._fd = open_regular(
                self.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode=0o640, dir_fd=self._dir_fd
            )
        return self._fd

    def _append(self, line: dict[str, Any]) -> None:
        try:
            _write_all(self._file(), _encode(line))
        except OSError as error:
            self._warn("cannot write", error)

    def _warn(self, what: str, error: OSError) -> None:
        if self._warned:
            return
        self._warned = True
        reason = str(error) if not error.strerror else error.strerror
        log.warning(
            "The journal %s: %s (%s); a run whose records cannot be written would lose "
            "the details of what it deleted",
            what,
            self.directory / self.name,
            reason,
        )


def _encode(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _as_done(item: Leftover) -> dict[str, Any]:
    return {
        "audit": item.audit,
        "bytes": item.bytes_freed,
        "files": item.files_deleted,
        "paths": item.paths,
        "finished": item.finished,
    }


# The logs directory may be writable by the web application: a line that is not what we
# wrote (cut short by a crash, or forged) is skipped, never a reason for the run to fail.


def _entries(line: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    entries = line.get(kind)
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def _texts(values: Any) -> list[str]:
    return [value for value in values if isinstance(value, str)] if isinstance(values, list) else []


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _audit_row(row: Any) -> bool:
    """[action, path, bytes, files, error, at, run] as the engine writes it."""
    if not isinstance(row, list) or len(row) != 7:
        return False
    action, path, freed, files, error, at, run = row
    return (
        isinstance(action, str)
        and (path is None or isinstance(path, str))
        and _count(freed) == freed
        and _count(files) == files
        and (error is None or isinstance(error, str))
        and (at is None or isinstance(at, str))
        and (run is None or isinstance(run, str))
    )


def _leftovers(stream: Any) -> dict[str, Leftover]:
    """Per job, what the journal says was deleted and not recorded. A later "done" line of
    a job supersedes an earlier one (a run carries the leftovers it met into its own)."""
    batches: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for raw in stream:
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            continue  # a line cut short by a crash or a full disk, or not ours
        if not isinstance(line, dict) or line.get("v") != FORMAT:
            continue
        batch = line.get("batch", 0)
        if not isinstance(batch, int):
            continue
        batches.setdefault((str(line.get("run")), batch), []).append(line)
    found: dict[str, Leftover] = {}
    for (run_id, _batch), lines in batches.items():
        if any(line.get("recorded") for line in lines):
            # Committed: whatever this batch carried (its own jobs, earlier leftovers) is
            # in the database now.
            for line in lines:
                for entry in _entries(line, "intent") + _entries(line, "done"):
                    found.pop(job_key(entry.get("job")), None)
            continue
        for line in lines:
            for entry in _entries(line, "intent"):
                key = job_key(entry.get("job"))
                if key not in found:
                    found[key] = Leftover(run_id, paths=_texts(entry.get("paths")))
            for entry in _entries(line, "done"):
                key = job_key(entry.get("job"))
                found[key] = Leftover(
                    str(entry.get("run") or run_id),
                    audit=[row for row in entry.get("audit") or [] if _audit_row(row)],
                    bytes_freed=_count(entry.get("bytes")),
                    files_deleted=_count(entry.get("files")),
                    paths=_texts(entry.get("paths")),
                    finished=entry.get("finished", True) is True,
                )
    return found


__all__ = ["JOURNAL_NAME", "Journal", "Leftover", "job_key"]

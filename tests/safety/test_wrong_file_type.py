"""Wrong file types where a job names a file (issue #8 item 4, SPEC §3 and §7).

A job's upload (``uploads/<dem_filename>``) and its archive (``results/<id>_results.zip``)
name files. Anything else there — a directory full of someone's data, a FIFO, a socket, a
device node — is refused and reported (the job's errors, an audit row ``error`` with the
reason), never deleted and never opened; the job stays unmarked and the run exits 1. A
symlink there is removed as a link, its target untouched; a regular file is removed.

Each attack is made on an extra "victim" job, so the harness's legit due jobs show that the
run went on, and ``assert_safe`` shows that the refused entry is byte-identical.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.engine import JobResult, RunReport

from .conftest import ARCHIVE_SUFFIX, Harness, Job, make_special, unblock_fifos, write

DEADLINE_SECONDS = 15.0
REASON = "not a regular file (an upload or archive name must name a file)"
KINDS = {
    "directory": "a directory",
    "fifo": "a FIFO",
    "socket": "a socket",
    "char-device": "a character device",
    "block-device": "a block device",
}
PLACES = ("upload", "archive")


def entry_of(harness: Harness, victim: Job, place: str) -> tuple[Path, str]:
    """The path of the victim's upload or archive, and how reports name it."""
    if place == "upload":
        return harness.uploads / str(victim.upload), f"uploads/{victim.upload}"
    name = victim.job_id + ARCHIVE_SUFFIX
    return harness.results / name, f"results/{name}"


def others_of(harness: Harness, victim: Job, place: str) -> list[Path]:
    """The victim's artifacts besides ``place``: they are cleaned as usual."""
    entry, _display = entry_of(harness, victim, place)
    return [path for path in victim.artifacts(harness.base) if path != entry]


def plant(kind: str, path: Path) -> None:
    """Replace the file at ``path`` by an entry of ``kind``."""
    path.unlink()
    if kind == "directory":
        write(path / "tile_000.tif", 20_000, b"D")
        write(path / "nested" / "notes.txt", 300, b"N")
        (path / "nested" / "link").symlink_to("../tile_000.tif")
    else:
        make_special(kind, path)


def result_of(report: RunReport, job_id: str) -> JobResult:
    return next(job for job in report.jobs if job.job_id == job_id)


def refusal(display: str, kind: str) -> str:
    return f"{display}: refused: {KINDS[kind]}, {REASON}"


def assert_refused_and_reported(harness: Harness, victim: Job, display: str, error: str) -> None:
    """The audit trail names the refusal; the job is not marked."""
    assert (victim.job_id, "error", display, error) in harness.audit("error")
    assert victim.job_id not in harness.marked()


# -- in-process runs (one worker; two, with directory trees in the worker processes) ------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_upload_or_archive_that_is_not_a_file_is_refused_reported_and_left_intact(
    harness: Harness, kind: str, place: str, workers: int
) -> None:
    victim = harness.add_job("victim")
    entry, display = entry_of(harness, victim, place)
    plant(kind, entry)
    harness.arm()

    report = harness.run(workers=workers, deadline=DEADLINE_SECONDS, unblock=unblock_fifos(entry))

    assert exit_code(report) == 1
    job = result_of(report, victim.job_id)
    assert job.errors == [refusal(display, kind)]
    assert not job.cleaned
    assert_refused_and_reported(harness, victim, display, refusal(display, kind))
    assert stat.S_IFMT(os.lstat(entry).st_mode) != stat.S_IFREG
    # The entry (a directory: with everything in it) is byte-identical; the victim's other
    # artifacts are cleaned as usual.
    harness.assert_safe(report, gone=others_of(harness, victim, place))


LINKS: dict[str, Callable[[Harness], Path]] = {
    "to-a-directory-outside": lambda h: h.canary,
    "to-a-file-outside": lambda h: h.canary / "precious.dat",
    "to-another-root": lambda h: h.temp,
    "dangling": lambda h: h.tmp / "nowhere",
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("link", list(LINKS))
def test_upload_or_archive_that_is_a_symlink_is_removed_as_a_link_and_its_target_kept(
    harness: Harness, link: str, place: str, workers: int
) -> None:
    victim = harness.add_job("victim")
    entry, _display = entry_of(harness, victim, place)
    entry.unlink()
    entry.symlink_to(LINKS[link](harness))
    harness.arm()

    report = harness.run(workers=workers)

    assert not os.path.lexists(entry)
    assert exit_code(report) == 0
    assert result_of(report, victim.job_id).errors == []
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


@pytest.mark.parametrize("workers", [1, 2])
def test_upload_and_archive_that_are_regular_files_are_removed_and_the_job_marked(
    harness: Harness, workers: int
) -> None:
    victim = harness.add_job("victim")
    upload, upload_display = entry_of(harness, victim, "upload")
    archive, archive_display = entry_of(harness, victim, "archive")
    harness.arm()

    report = harness.run(workers=workers)

    assert not os.path.lexists(upload)
    assert not os.path.lexists(archive)
    assert exit_code(report) == 0
    job = result_of(report, victim.job_id)
    assert job.errors == []
    assert {upload_display, archive_display} <= set(job.paths)
    assert victim.job_id in harness.marked()
    harness.assert_safe(report, gone=[victim])


# -- through the installed CLI ------------------------------------------------------------


@pytest.mark.e2e
def test_cli_upload_directory_and_archive_fifo_are_refused_in_json_and_audit_and_exit_1(
    harness: Harness,
) -> None:
    victim = harness.add_job("victim")
    upload, upload_display = entry_of(harness, victim, "upload")
    archive, archive_display = entry_of(harness, victim, "archive")
    plant("directory", upload)
    plant("fifo", archive)
    harness.arm()

    try:
        result = harness.run_cli(timeout=DEADLINE_SECONDS * 4)
    except subprocess.TimeoutExpired:
        unblock_fifos(archive)()
        pytest.fail("the CLI run was still going: it opened the FIFO")

    assert result.code == 1, result.stderr
    data = result.json()
    assert data["success"] is False
    details = {detail["job_id"]: detail for detail in data["details"]}
    expected = [refusal(upload_display, "directory"), refusal(archive_display, "fifo")]
    assert sorted(details[victim.job_id]["errors"]) == sorted(expected)
    for display, kind in ((upload_display, "directory"), (archive_display, "fifo")):
        assert_refused_and_reported(harness, victim, display, refusal(display, kind))
    assert stat.S_ISDIR(os.lstat(upload).st_mode)
    assert stat.S_ISFIFO(os.lstat(archive).st_mode)
    gone = [victim.results(harness.base), harness.temp / victim.job_id]
    harness.assert_safe(result, gone=gone)

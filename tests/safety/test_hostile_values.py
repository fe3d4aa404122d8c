"""Hostile database values (SPEC §7): job ids and upload names that cannot name a direct
child of a root.

Each is refused before any filesystem call (read-only spies on ``os`` see no path derived
from it), reported (``skipped`` with the reason, an audit row ``refused``), and the run goes
on with the other jobs and exits 1. Where the value could be "normalised" or truncated into
something that exists (a NUL-truncated id that names a retained job, an undecodable name
whose raw bytes name a directory...), that bait exists and must survive.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from eemt_cleanup.cli.exit_codes import exit_code
from eemt_cleanup.engine import Skip
from eemt_cleanup.models import SkipReason

from .conftest import (
    ARCHIVE_SUFFIX,
    RETAINED_ID,
    FsSpy,
    Harness,
    Sql,
    json_skipped,
    write,
)

HOSTILE_JOB = "job-with-hostile-upload"


def shown(value: Any) -> str:
    """How a stored value is named in reports: text with undecodable bytes escaped."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return repr(value)
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def probe(value: Any) -> str:
    """The path a filesystem call would carry if the value were used as a name."""
    if isinstance(value, bytes):
        return str(value.decode("utf-8", "surrogateescape"))
    return str(value)


@dataclass(frozen=True)
class Case:
    """A hostile value: how it is stored, how it reads back, why it must be refused."""

    label: str
    stored: Callable[[Harness], Any]
    reason: str  # {what} = "job id" / "upload name", {value} = repr of the value read back
    read: Callable[[Harness], Any] | None = None
    markers: tuple[str, ...] = ()
    bait: Callable[[Harness], None] | None = None

    def value(self, harness: Harness) -> Any:
        return (self.read or self.stored)(harness)

    def expected_reason(self, harness: Harness, what: str) -> str:
        return "refused: " + self.reason.format(what=what, value=repr(self.value(harness)))


def const(value: Any) -> Callable[[Harness], Any]:
    return lambda _harness: value


def bait_dirs(*names: bytes) -> Callable[[Harness], None]:
    """Directories whose raw names the hostile value would reach if it were accepted."""

    def make(harness: Harness) -> None:
        for name in names:
            for root in (harness.results, harness.temp):
                directory = root / os.fsdecode(name)
                write(directory / "bait.txt", 500, b"b")

    return make


def bait_upload(*names: bytes) -> Callable[[Harness], None]:
    def make(harness: Harness) -> None:
        for name in names:
            write(harness.uploads / os.fsdecode(name), 700, b"b")

    return make


LONG_ARCHIVE_ID = "l" * (256 - len(ARCHIVE_SUFFIX))  # a valid name; its archive name is not

JOB_ID_CASES = [
    Case("empty", const(""), "{what} is empty"),
    Case(
        "white-space-only",
        const("   "),
        "{what} {value} is only white space",
        bait=bait_dirs(b"   "),
    ),
    Case("dot", const("."), "{what} {value} names a directory itself"),
    Case("dot-dot", const(".."), "{what} {value} names a directory itself"),
    Case(
        "traversal-to-canary", const("../canary"), "{what} {value} contains '/'", markers=("../",)
    ),
    Case(
        "traversal-to-database",
        const("../jobs.db"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "traversal-to-config",
        const("../cleanup_config.yaml"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "traversal-to-another-root",
        const("../uploads"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "slash-inside",
        const(f"{RETAINED_ID}/outputs"),
        "{what} {value} contains '/'",
        markers=(f"{RETAINED_ID}/outputs",),
    ),
    Case(
        "absolute-canary",
        lambda h: str(h.canary),
        "{what} {value} is an absolute path",
        markers=("canary",),
    ),
    Case("absolute-database", lambda h: str(h.db), "{what} {value} is an absolute path"),
    Case("absolute-config", lambda h: str(h.config_file), "{what} {value} is an absolute path"),
    Case("absolute-another-root", lambda h: str(h.uploads), "{what} {value} is an absolute path"),
    # (Not "/" itself: a regression would walk the whole machine with only the guard in the
    # way; the test's own directory is the same attack within reach of the snapshots.)
    Case(
        "absolute-test-directory",
        lambda h: str(h.tmp),
        "{what} {value} is an absolute path",
        markers=("canary",),
    ),
    Case(
        "nul-truncates-to-retained-job",
        const(RETAINED_ID + "\0evil"),
        "{what} {value} contains a NUL byte",
        markers=("\0",),
    ),
    Case(
        "over-255-bytes", const("e" * 256), "{what} is 256 bytes long (a file name has at most 255)"
    ),
    Case(
        "over-255-bytes-in-128-characters",
        const("\u00e9" * 128),
        "{what} is 256 bytes long (a file name has at most 255)",
    ),
    Case(
        "archive-name-over-255-bytes",
        const(LONG_ARCHIVE_ID),
        "{what} with '_results.zip' appended is 256 bytes long (a file name has at most 255)",
        bait=bait_dirs(LONG_ARCHIVE_ID.encode()),
    ),
    Case(
        "blob-not-utf8",
        const(b"evil\xfe"),
        "{what} {value} is stored as a BLOB, not text",
        markers=("\udcfe",),
        bait=bait_dirs(b"evil\xfe"),
    ),
    Case(
        "blob-traversal",
        const(b"../canary"),
        "{what} b'../canary' is stored as a BLOB, not text",
        markers=("../",),
    ),
    Case(
        "text-not-utf8",
        const(Sql("CAST(x'6576696cff' AS TEXT)")),
        "{what} {value} is not valid UTF-8",
        read=const("evil\udcff"),
        markers=("\udcff",),
        bait=bait_dirs(b"evil\xff"),
    ),
    Case(
        "text-overlong-slash",
        const(Sql("CAST(x'2e2ec0af63616e617279' AS TEXT)")),
        "{what} {value} is not valid UTF-8",
        read=const("..\udcc0\udcafcanary"),
        markers=("\udcc0",),
        bait=bait_dirs(b"..\xc0\xafcanary"),
    ),
    Case("null", const(None), "{what} is NULL"),
]

UPLOAD_CASES = [
    Case("dot-is-the-uploads-root", const("."), "{what} {value} names a directory itself"),
    Case("dot-dot-is-the-base", const(".."), "{what} {value} names a directory itself"),
    Case(
        "traversal-to-database",
        const("../jobs.db"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "traversal-to-config",
        const("../cleanup_config.yaml"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "traversal-to-another-root",
        const("../results"),
        "{what} {value} contains '/'",
        markers=("../",),
    ),
    Case(
        "traversal-to-canary-file",
        const("../canary/precious.dat"),
        "{what} {value} contains '/'",
        markers=("canary",),
    ),
    Case(
        "existing-nested-file",
        const("evil-dir/dem.tif"),
        "{what} {value} contains '/'",
        markers=("evil-dir",),
        bait=bait_upload(b"evil-dir/dem.tif"),
    ),
    Case(
        "absolute-canary-file",
        lambda h: str(h.canary / "precious.dat"),
        "{what} {value} is an absolute path",
        markers=("canary",),
    ),
    Case("absolute-database", lambda h: str(h.db), "{what} {value} is an absolute path"),
    Case("absolute-config", lambda h: str(h.config_file), "{what} {value} is an absolute path"),
    Case("absolute-another-root", lambda h: str(h.results), "{what} {value} is an absolute path"),
    Case(
        "nul-truncates-to-retained-upload",
        lambda h: f"{h.retained.upload}\0.evil",
        "{what} {value} contains a NUL byte",
        markers=("\0",),
    ),
    Case(
        "over-255-bytes", const("u" * 256), "{what} is 256 bytes long (a file name has at most 255)"
    ),
    Case(
        "blob-not-utf8",
        const(b"dem-\xe9.tif"),
        "{what} {value} is stored as a BLOB, not text",
        markers=("\udce9",),
        bait=bait_upload(b"dem-\xe9.tif"),
    ),
    Case(
        "blob-traversal",
        const(b"../jobs.db"),
        "{what} b'../jobs.db' is stored as a BLOB, not text",
        markers=("../",),
    ),
    Case(
        "text-not-utf8",
        const(Sql("CAST(x'64656dff2e746966' AS TEXT)")),
        "{what} {value} is not valid UTF-8",
        read=const("dem\udcff.tif"),
        markers=("\udcff",),
        bait=bait_upload(b"dem\xff.tif"),
    ),
]


def legit_absolute(harness: Harness) -> set[str]:
    """Absolute paths the engine stats or opens at start (roots, database, config, logs),
    and their ancestors, which path resolution lstat-s."""
    paths = {
        harness.db,
        harness.config_file,
        harness.uploads,
        harness.results,
        harness.temp,
        harness.base / "logs",
    }
    return {str(path) for path in paths} | {str(parent) for parent in harness.db.parents}


def hostile_calls(spy: FsSpy, harness: Harness, case: Case, *, job_id: bool) -> list[Any]:
    text = probe(case.value(harness))
    exact = {text, text + ARCHIVE_SUFFIX} if job_id else {text}
    return spy.touching(exact, case.markers, legit_absolute(harness))


def ids(cases: list[Case]) -> list[Any]:
    return [pytest.param(case, id=case.label) for case in cases]


def test_spy_sees_the_names_a_run_uses_and_none_of_a_job_it_must_not_touch(
    harness: Harness, fs_spy: FsSpy
) -> None:
    # The spies' own check: silence about a hostile name means something only if the names
    # a run does use are seen.
    report = harness.run(workers=1, spy=fs_spy)

    for job in harness.legit:
        for name in (job.job_id, job.job_id + ARCHIVE_SUFFIX, job.upload):
            assert fs_spy.touching({str(name)}), f"the spy never saw {name}"
    assert fs_spy.touching(set(), [RETAINED_ID]) == []
    harness.assert_safe(report)


# -- job ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ids(JOB_ID_CASES))
def test_hostile_job_id_is_refused_before_any_fs_call_reported_audited_and_the_run_exits_1(
    harness: Harness, fs_spy: FsSpy, case: Case
) -> None:
    if case.bait is not None:
        case.bait(harness)
    harness.add_row(case.stored(harness), None)
    display = shown(case.value(harness))
    reason = case.expected_reason(harness, "job id")

    report = harness.run(workers=1, spy=fs_spy)  # one worker: every call in this process

    assert exit_code(report) == 1
    assert (
        Skip(
            job_id=display,
            reason=reason,
            code=SkipReason.REFUSED,
            status="completed",
            needs_attention=True,
        )
        in report.skipped
    )
    assert (display, "refused", None, reason) in harness.audit("refused")
    assert display not in {job.job_id for job in report.jobs}
    assert any(call.function == "unlink" for call in fs_spy.calls), "the spy saw nothing"
    assert hostile_calls(fs_spy, harness, case, job_id=True) == []
    assert harness.marked_count() == len(harness.legit)
    harness.assert_safe(report)


def refused_upload(reason: str, path: str) -> Skip:
    return Skip(
        job_id=HOSTILE_JOB,
        reason=reason,
        code=SkipReason.UPLOAD_REFUSED,
        status="completed",
        path=path,
        needs_attention=True,
    )


# -- upload names --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ids(UPLOAD_CASES))
def test_hostile_upload_name_is_refused_before_any_fs_call_and_the_job_is_not_marked(
    harness: Harness, fs_spy: FsSpy, case: Case
) -> None:
    if case.bait is not None:
        case.bait(harness)
    harness.add_row(HOSTILE_JOB, case.stored(harness))
    path = f"uploads/{shown(case.value(harness))}"
    reason = case.expected_reason(harness, "upload name")

    report = harness.run(workers=1, spy=fs_spy)  # one worker: every call in this process

    assert exit_code(report) == 1
    assert refused_upload(reason, path) in report.skipped
    assert (HOSTILE_JOB, "refused", path, reason) in harness.audit("refused")
    assert any(call.function == "unlink" for call in fs_spy.calls), "the spy saw nothing"
    assert hostile_calls(fs_spy, harness, case, job_id=False) == []
    assert HOSTILE_JOB not in harness.marked()
    harness.assert_safe(report)


@pytest.mark.parametrize("stored", [pytest.param("", id="empty"), pytest.param(None, id="null")])
@pytest.mark.parametrize("workers", [1, 2])
def test_null_or_empty_upload_name_means_no_upload_the_job_is_cleaned_marked_and_exit_is_0(
    harness: Harness, stored: Any, workers: int
) -> None:
    # SPEC §3: a job that failed before its upload was stored has no upload recorded. That
    # is normal: its other data goes, it is marked, nothing is refused or reported.
    job = harness.add_job(HOSTILE_JOB, upload=False)  # dem_filename NULL
    if stored == "":
        conn = sqlite3.connect(harness.db)
        with conn:
            conn.execute("UPDATE jobs SET dem_filename = '' WHERE id = ?", (HOSTILE_JOB,))
        conn.close()

    report = harness.run(workers=workers)

    assert exit_code(report) == 0
    assert report.errors == []
    assert [skip for skip in report.skipped if skip.job_id == HOSTILE_JOB] == []
    assert [row for row in harness.audit() if row[0] == HOSTILE_JOB and row[1] == "refused"] == []
    assert HOSTILE_JOB in harness.marked()
    harness.assert_safe(report, gone=[job])


@pytest.mark.parametrize("stored", [pytest.param("", id="empty"), pytest.param(None, id="null")])
@pytest.mark.parametrize("mode", ["quiet", "json"])
def test_null_or_empty_upload_name_is_silent_under_quiet_and_json_says_success(
    harness: Harness, stored: Any, mode: str
) -> None:
    job = harness.add_job(HOSTILE_JOB, upload=False)
    if stored == "":
        conn = sqlite3.connect(harness.db)
        with conn:
            conn.execute("UPDATE jobs SET dem_filename = '' WHERE id = ?", (HOSTILE_JOB,))
        conn.close()
    harness.arm()

    if mode == "quiet":
        quiet = harness._cli("run", "--quiet", "--config", str(harness.config_file))
        assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")
    else:
        result = harness.run_cli()
        assert result.code == 0
        assert result.json()["success"] is True
        assert result.json()["skipped"] == []
        assert result.json()["errors"] == []
    assert HOSTILE_JOB in harness.marked()
    harness.assert_safe(None, gone=[job])


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        pytest.param("   ", "refused: upload name '   ' is only white space", id="white-space"),
        pytest.param(
            Sql("x''"), "refused: upload name b'' is stored as a BLOB, not text", id="empty-blob"
        ),
    ],
)
def test_blank_or_blob_upload_name_is_hostile_refused_and_the_job_stays_unmarked(
    harness: Harness, stored: Any, reason: str
) -> None:
    # Not "no upload": a blank name could name a file called "   ", a BLOB is not text.
    harness.add_row(HOSTILE_JOB, stored)

    report = harness.run()

    path = f"uploads/{shown(stored) if not isinstance(stored, Sql) else repr(b'')}"
    assert [skip for skip in report.skipped if skip.job_id == HOSTILE_JOB] == [
        refused_upload(reason, path)
    ]
    assert (HOSTILE_JOB, "refused", path, reason) in harness.audit("refused")
    assert exit_code(report) == 1
    assert HOSTILE_JOB not in harness.marked()
    harness.assert_safe(report)


# -- values that alias another job's data --------------------------------------------------


def test_blob_id_equal_to_a_retained_jobs_id_never_deletes_that_jobs_data(
    harness: Harness,
) -> None:
    # A BLOB is not a text id: decoded, it would name the retained job's directories.
    harness.add_row(RETAINED_ID.encode(), None)

    report = harness.run()

    for path in harness.retained.artifacts(harness.base):
        assert path.exists(), f"{path} of the retained job was deleted"
    assert exit_code(report) == 1
    assert any(skip.job_id == repr(RETAINED_ID.encode()) for skip in report.skipped)
    harness.assert_safe(report)


def test_id_naming_a_retained_jobs_archive_never_deletes_that_archive(harness: Harness) -> None:
    # results/<id>/ of this job would be results/<retained id>_results.zip.
    alias = RETAINED_ID + ARCHIVE_SUFFIX
    harness.add_row(alias, None)

    report = harness.run()

    archive = harness.results / alias
    assert archive.read_bytes() == b"z" * 9_000, "the retained job's archive was deleted"
    harness.assert_safe(report)


# -- many at once, and through the installed CLI --------------------------------------------


def test_every_hostile_row_in_one_run_is_refused_and_the_legit_jobs_are_all_cleaned(
    harness: Harness,
) -> None:
    for case in JOB_ID_CASES:
        if case.bait is not None:
            case.bait(harness)
        harness.add_row(case.stored(harness), None)
    for number, case in enumerate(UPLOAD_CASES):
        if case.bait is not None:
            case.bait(harness)
        harness.add_row(f"{HOSTILE_JOB}-{number}", case.stored(harness))

    report = harness.run()

    assert exit_code(report) == 1
    refused = {(skip.job_id, skip.path) for skip in report.skipped if skip.needs_attention}
    for case in JOB_ID_CASES:
        assert (shown(case.value(harness)), None) in refused, case.label
    for number, case in enumerate(UPLOAD_CASES):
        path = f"uploads/{shown(case.value(harness))}"
        assert (f"{HOSTILE_JOB}-{number}", path) in refused, case.label
    assert len(harness.audit("refused")) == len(JOB_ID_CASES) + len(UPLOAD_CASES)
    assert harness.marked_count() == len(harness.legit)
    harness.assert_safe(report)


CLI_JOB_ID_CASES = [
    case
    for case in JOB_ID_CASES
    if case.label
    in {
        "traversal-to-canary",
        "absolute-database",
        "blob-not-utf8",
        "text-not-utf8",
        "null",
        "dot-dot",
    }
]
CLI_UPLOAD_CASES = [
    case for case in UPLOAD_CASES if case.label in {"traversal-to-database", "absolute-config"}
]


@pytest.mark.e2e
@pytest.mark.parametrize("case", ids(CLI_JOB_ID_CASES))
def test_cli_hostile_job_id_is_in_json_skipped_with_its_reason_and_exits_1(
    harness: Harness, case: Case
) -> None:
    if case.bait is not None:
        case.bait(harness)
    harness.add_row(case.stored(harness), None)
    display = shown(case.value(harness))
    reason = case.expected_reason(harness, "job id")

    result = harness.run_cli()

    assert result.code == 1, result.stderr
    assert {"job_id": display, "reason": reason} in json_skipped(result)
    assert result.json()["success"] is False
    assert (display, "refused", None, reason) in harness.audit("refused")
    assert harness.marked_count() == len(harness.legit)
    harness.assert_safe(result)


@pytest.mark.e2e
@pytest.mark.parametrize("case", ids(CLI_UPLOAD_CASES))
def test_cli_hostile_upload_name_is_in_json_skipped_with_its_path_and_exits_1(
    harness: Harness, case: Case
) -> None:
    harness.add_row(HOSTILE_JOB, case.stored(harness))
    path = f"uploads/{shown(case.value(harness))}"
    reason = case.expected_reason(harness, "upload name")

    result = harness.run_cli()

    assert result.code == 1, result.stderr
    assert {"job_id": HOSTILE_JOB, "reason": f"{path}: {reason}"} in json_skipped(result)
    assert (HOSTILE_JOB, "refused", path, reason) in harness.audit("refused")
    assert HOSTILE_JOB not in harness.marked()
    harness.assert_safe(result)

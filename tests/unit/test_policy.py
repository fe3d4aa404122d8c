"""Unit tests of eemt_cleanup.policy: plain tables of rows, settings and a fixed "now"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from eemt_cleanup.config.schema import Settings
from eemt_cleanup.fs.names import NameRefused
from eemt_cleanup.policy import (
    Artifact,
    Decision,
    Policy,
    Verdict,
    decide,
    display_value,
    owned_artifacts,
    reference_time,
    upload_blocker,
)
from eemt_cleanup.store.db import JobRow

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
JOB = "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b"
OTHER = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
UPLOAD = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d_dem.tif"
LOG_FILES = frozenset({"workflow.log", "task_output.log", "sys.err", "container.log"})


def make_policy(**sections: Any) -> Policy:
    """A Policy from Settings; naive started_at/completed_at are UTC unless said otherwise."""
    tree: dict[str, Any] = {"jobs": {"timezone": "UTC"}}
    for key, value in sections.items():
        if key == "jobs":
            tree["jobs"] = {**tree["jobs"], **value}
        else:
            tree[key] = value
    return Policy.from_settings(Settings.model_validate(tree))


POLICY = make_policy()


def at(hours_ago: float) -> str:
    """A naive 'YYYY-MM-DD HH:MM:SS' timestamp ``hours_ago`` before NOW (UTC)."""
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%d %H:%M:%S")


def row(**fields: Any) -> JobRow:
    values: dict[str, Any] = {
        "rowid": 1,
        "job_id": JOB,
        "status": "completed",
        "created_at": None,
        "started_at": None,
        "completed_at": None,
        "dem_filename": None,
    }
    values.update(fields)
    return JobRow(**values)


# --- decide: verdicts by status and age -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "hours_ago", "verdict", "kind"),
    [
        ("completed", 169, Verdict.DUE, "successful"),
        ("completed", 168, Verdict.DUE, "successful"),
        ("completed", 167, Verdict.RETAINED, "successful"),
        ("completed", 1, Verdict.RETAINED, "successful"),
        ("completed", 24 * 365, Verdict.DUE, "successful"),
        ("failed", 13, Verdict.DUE, "failed"),
        ("failed", 12, Verdict.DUE, "failed"),
        ("failed", 11, Verdict.RETAINED, "failed"),
        ("failed", 0, Verdict.RETAINED, "failed"),
    ],
)
def test_terminal_job_verdict_follows_default_retention(
    status: str, hours_ago: float, verdict: Verdict, kind: str
) -> None:
    decision = decide(row(status=status, completed_at=at(hours_ago)), POLICY, NOW)
    assert decision.verdict is verdict
    assert decision.kind == kind
    assert decision.age_seconds == hours_ago * 3600


def test_completed_job_past_retention_is_due_with_its_artifacts() -> None:
    decision = decide(row(completed_at=at(200), dem_filename=UPLOAD), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.kind == "successful"
    assert decision.reason is None
    assert decision.name == JOB
    assert decision.upload == UPLOAD
    assert decision.upload_refused is None
    assert decision.keep_metadata is True
    assert decision.due_at == NOW - timedelta(hours=200) + timedelta(hours=168)
    assert decision.age_days == 8.3
    assert decision.artifacts == (
        Artifact("temp", JOB, "deleted_temp", True),
        Artifact("results", f"{JOB}_results.zip", "deleted_archive", False),
        Artifact("results", JOB, "deleted_results", True),
        Artifact("uploads", UPLOAD, "deleted_upload", False),
    )
    assert [artifact.display for artifact in decision.artifacts] == [
        f"temp/{JOB}/",
        f"results/{JOB}_results.zip",
        f"results/{JOB}/",
        f"uploads/{UPLOAD}",
    ]


def test_completed_job_within_retention_is_retained_with_due_time() -> None:
    decision = decide(row(completed_at=at(100), dem_filename=UPLOAD), POLICY, NOW)
    assert decision.verdict is Verdict.RETAINED
    assert decision.reason == "within retention"
    assert decision.due_at == NOW + timedelta(hours=68)
    assert decision.age_seconds == 100 * 3600
    assert decision.artifacts == ()
    assert decision.name is None


def test_job_exactly_at_due_time_is_due_and_one_microsecond_before_is_retained() -> None:
    job = row(completed_at="2024-05-25 12:00:00")
    due_at = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    before = decide(job, POLICY, due_at - timedelta(microseconds=1))
    exactly = decide(job, POLICY, due_at)
    assert before.verdict is Verdict.RETAINED
    assert before.due_at == due_at
    assert exactly.verdict is Verdict.DUE
    assert exactly.due_at == due_at
    assert exactly.age_seconds == 168 * 3600
    assert exactly.age_days == 7.0


def test_failed_job_exactly_at_twelve_hours_is_due() -> None:
    decision = decide(row(status="failed", completed_at=at(12)), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.due_at == NOW
    assert decision.kind == "failed"


def test_cancelled_job_stored_as_failed_is_due_after_twelve_hours() -> None:
    # The web interface stores a cancelled job as status 'failed' (the message is elsewhere).
    decision = decide(row(status="failed", completed_at=at(12.5)), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.kind == "failed"


@pytest.mark.parametrize("status", ["pending", "running"])
@pytest.mark.parametrize("hours_ago", [0, 169, 24 * 365 * 10])
def test_active_job_is_never_cleaned_whatever_its_age(status: str, hours_ago: float) -> None:
    decision = decide(
        row(status=status, completed_at=at(hours_ago), dem_filename=UPLOAD), POLICY, NOW
    )
    assert decision.verdict is Verdict.ACTIVE
    assert decision.reason == f"status {status} is never cleaned"
    assert decision.kind is None
    assert decision.artifacts == ()
    assert decision.due_at is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("cancelled", "unknown status 'cancelled': never touched"),
        ("archived", "unknown status 'archived': never touched"),
        ("COMPLETED", "unknown status 'COMPLETED': never touched"),
        ("completed ", "unknown status 'completed ': never touched"),
        ("", "unknown status '': never touched"),
        (None, "unknown status 'NULL': never touched"),
        (b"completed", "unknown status 'b'completed'': never touched"),
        (1, "unknown status '1': never touched"),
        ("bad\udcff", "unknown status 'bad\\udcff': never touched"),
    ],
)
def test_unknown_status_is_never_touched_and_reported(status: Any, reason: str) -> None:
    decision = decide(row(status=status, completed_at=at(1000)), POLICY, NOW)
    assert decision.verdict is Verdict.UNKNOWN_STATUS
    assert decision.reason == reason
    assert decision.artifacts == ()


@pytest.mark.parametrize("hours_ahead", [0.2, 24, 24 * 400])
def test_a_time_in_the_future_beyond_the_tolerance_is_clock_skew_kept_until_due(
    hours_ahead: float,
) -> None:
    future = NOW + timedelta(hours=hours_ahead)
    decision = decide(row(completed_at=future.isoformat()), POLICY, NOW)
    assert decision.verdict is Verdict.CLOCK_SKEW
    assert decision.due_at == future + timedelta(hours=POLICY.successful_hours)
    assert decision.reason is not None and "in the future (clock skew" in decision.reason
    assert decision.artifacts == ()


def test_a_time_within_the_tolerance_ahead_is_just_retained() -> None:
    soon = NOW + timedelta(minutes=4)
    decision = decide(row(completed_at=soon.isoformat()), POLICY, NOW)
    assert decision.verdict is Verdict.RETAINED


@pytest.mark.parametrize("status", ["completed", "failed", "running", "weird"])
def test_job_with_data_cleaned_at_is_cleaned_whatever_its_status(status: str) -> None:
    job = row(status=status, completed_at=at(1000), data_cleaned_at="2024-05-01T00:00:00+00:00")
    decision = decide(job, POLICY, NOW)
    assert decision.verdict is Verdict.CLEANED
    assert decision.reason == "data already cleaned"
    assert decision.artifacts == ()


# --- reference_time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"completed_at": at(10), "started_at": at(20), "created_at": at(30)}, at(10)),
        # completed_at wins even when it is older than started_at.
        ({"completed_at": at(30), "started_at": at(5), "created_at": at(1)}, at(30)),
        ({"started_at": at(20), "created_at": at(30)}, at(20)),
        ({"started_at": at(30), "created_at": at(20)}, at(20)),
        ({"started_at": at(20)}, at(20)),
        ({"created_at": at(30)}, at(30)),
        # A blank completed_at is treated like NULL.
        ({"completed_at": "", "started_at": at(20), "created_at": at(30)}, at(20)),
        ({"completed_at": "   ", "created_at": at(30)}, at(30)),
    ],
)
def test_reference_time_is_completed_at_else_latest_of_started_and_created(
    fields: dict[str, Any], expected: str
) -> None:
    start, why = reference_time(row(**fields), POLICY)
    assert why is None
    assert start == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_terminal_job_without_completed_at_is_aged_from_started_at() -> None:
    decision = decide(row(started_at=at(200), created_at=at(300)), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.age_seconds == 200 * 3600


def test_terminal_job_without_completed_at_uses_latest_time_and_can_be_retained() -> None:
    decision = decide(row(started_at=at(100), created_at=at(300)), POLICY, NOW)
    assert decision.verdict is Verdict.RETAINED
    assert decision.age_seconds == 100 * 3600


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        (
            {"completed_at": "garbage", "started_at": at(1000), "created_at": at(1000)},
            "completed_at garbage cannot be parsed",
        ),
        (
            {"completed_at": "2024-13-45 99:00:00", "created_at": at(1000)},
            "completed_at 2024-13-45 99:00:00 cannot be parsed",
        ),
        ({"completed_at": 0, "created_at": at(1000)}, "completed_at 0 cannot be parsed"),
        (
            {"completed_at": b"\xff\xfe", "created_at": at(1000)},
            "completed_at b'\\xff\\xfe' cannot be parsed",
        ),
        (
            {"started_at": "soon", "created_at": at(1000)},
            "started_at soon cannot be parsed",
        ),
        (
            {"started_at": at(1000), "created_at": "never"},
            "created_at never cannot be parsed",
        ),
        ({}, "completed_at, started_at and created_at are all NULL"),
        (
            {"completed_at": "", "started_at": " ", "created_at": None},
            "completed_at, started_at and created_at are all NULL",
        ),
    ],
)
def test_unparseable_or_missing_time_makes_age_unknown_without_fallback(
    fields: dict[str, Any], why: str
) -> None:
    job = row(**fields)
    assert reference_time(job, POLICY) == (None, why)
    decision = decide(job, POLICY, NOW)
    assert decision.verdict is Verdict.UNKNOWN_AGE
    assert decision.kind == "successful"
    assert decision.reason == f"age unknown ({why}): never cleaned"
    assert decision.artifacts == ()


def test_failed_job_with_unparseable_completed_at_is_unknown_age() -> None:
    decision = decide(row(status="failed", completed_at="n/a", created_at=at(99)), POLICY, NOW)
    assert decision.verdict is Verdict.UNKNOWN_AGE
    assert decision.kind == "failed"


@pytest.mark.parametrize("completed_at", ["9999-12-31 23:00:00", "9999-12-31T23:00:00+00:00"])
def test_far_future_completed_at_is_not_due_and_does_not_raise(completed_at: str) -> None:
    # A hostile or corrupt timestamp must never abort the whole run (SPEC §1, §2).
    decision = decide(row(completed_at=completed_at), POLICY, NOW)
    assert decision.verdict in (Verdict.RETAINED, Verdict.UNKNOWN_AGE)


PHOENIX_POLICY = make_policy(jobs={"timezone": "America/Phoenix"})  # UTC-7, no DST


def test_naive_completed_at_is_read_in_jobs_timezone() -> None:
    start, why = reference_time(row(completed_at="2024-05-25 05:00:00"), PHOENIX_POLICY)
    assert why is None
    assert start == datetime(2024, 5, 25, 12, 0, tzinfo=UTC)


def test_naive_started_at_is_read_in_jobs_timezone() -> None:
    start, _ = reference_time(row(started_at="2024-05-25 05:00:00"), PHOENIX_POLICY)
    assert start == datetime(2024, 5, 25, 12, 0, tzinfo=UTC)


def test_naive_created_at_is_read_as_utc_whatever_jobs_timezone() -> None:
    start, _ = reference_time(row(created_at="2024-05-25 05:00:00"), PHOENIX_POLICY)
    assert start == datetime(2024, 5, 25, 5, 0, tzinfo=UTC)


def test_latest_of_started_and_created_compares_instants_across_zones() -> None:
    # started_at 05:00 Phoenix = 12:00 UTC is later than created_at 10:00 UTC.
    job = row(started_at="2024-05-25 05:00:00", created_at="2024-05-25 10:00:00")
    start, _ = reference_time(job, PHOENIX_POLICY)
    assert start == datetime(2024, 5, 25, 12, 0, tzinfo=UTC)


def test_completed_at_in_jobs_timezone_decides_due_time() -> None:
    # 2024-05-25 05:00 Phoenix = 12:00 UTC; +168 h = NOW exactly: due. Read as UTC it
    # would have become due seven hours earlier.
    decision = decide(row(completed_at="2024-05-25 05:00:00"), PHOENIX_POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.due_at == NOW
    before = decide(row(completed_at="2024-05-25 05:00:01"), PHOENIX_POLICY, NOW)
    assert before.verdict is Verdict.RETAINED


def test_created_at_timezone_is_configurable() -> None:
    policy = make_policy(jobs={"created_at_timezone": "America/Phoenix"})
    start, _ = reference_time(row(created_at="2024-05-25 05:00:00"), policy)
    assert start == datetime(2024, 5, 25, 12, 0, tzinfo=UTC)


def test_offset_timestamps_ignore_jobs_timezone() -> None:
    start, _ = reference_time(row(completed_at="2024-05-25T05:00:00Z"), PHOENIX_POLICY)
    assert start == datetime(2024, 5, 25, 5, 0, tzinfo=UTC)


def test_epoch_completed_at_is_measured_in_seconds_since_epoch() -> None:
    epoch = int((NOW - timedelta(hours=200)).timestamp())
    decision = decide(row(completed_at=epoch), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.age_seconds == 200 * 3600


# --- custom statuses and retention settings -------------------------------------------------

CUSTOM = make_policy(
    jobs={
        "statuses": {"successful": ["done", "success"], "failed": ["error"], "active": ["queued"]}
    }
)


@pytest.mark.parametrize(
    ("status", "hours_ago", "verdict", "kind"),
    [
        ("done", 200, Verdict.DUE, "successful"),
        ("success", 200, Verdict.DUE, "successful"),
        ("done", 100, Verdict.RETAINED, "successful"),
        ("error", 13, Verdict.DUE, "failed"),
        ("error", 11, Verdict.RETAINED, "failed"),
        ("queued", 1000, Verdict.ACTIVE, None),
        ("completed", 1000, Verdict.UNKNOWN_STATUS, None),
        ("failed", 1000, Verdict.UNKNOWN_STATUS, None),
        ("running", 1000, Verdict.UNKNOWN_STATUS, None),
    ],
)
def test_custom_status_mapping_decides_kind(
    status: str, hours_ago: float, verdict: Verdict, kind: str | None
) -> None:
    decision = decide(row(status=status, completed_at=at(hours_ago)), CUSTOM, NOW)
    assert decision.verdict is verdict
    assert decision.kind == kind


@pytest.mark.parametrize(
    ("retention", "status", "hours_ago", "verdict"),
    [
        ({"successful_jobs": {"hours": 24}}, "completed", 25, Verdict.DUE),
        ({"successful_jobs": {"hours": 24}}, "completed", 23, Verdict.RETAINED),
        ({"failed_jobs": {"hours": 1}}, "failed", 1, Verdict.DUE),
        ({"failed_jobs": {"hours": 0}}, "failed", 0, Verdict.DUE),
        ({"failed_jobs": {"hours": 48}}, "failed", 47, Verdict.RETAINED),
        ({"successful_jobs": {"hours": 0.5}}, "completed", 0.5, Verdict.DUE),
    ],
)
def test_configured_retention_hours_decide_due(
    retention: dict[str, Any], status: str, hours_ago: float, verdict: Verdict
) -> None:
    policy = make_policy(retention=retention)
    assert decide(row(status=status, completed_at=at(hours_ago)), policy, NOW).verdict is verdict


def results_artifact(decision: Decision) -> Artifact:
    return next(a for a in decision.artifacts if a.action == "deleted_results")


@pytest.mark.parametrize(
    ("retention", "status", "keep"),
    [
        ({}, "completed", frozenset()),
        ({"successful_jobs": {"keep_logs": True}}, "completed", LOG_FILES),
        ({"successful_jobs": {"keep_logs": False}}, "completed", frozenset()),
        ({}, "failed", LOG_FILES),
        ({"failed_jobs": {"keep_error_logs": False}}, "failed", frozenset()),
        # Each flag applies only to its own kind.
        ({"failed_jobs": {"keep_error_logs": False}}, "completed", frozenset()),
        ({"successful_jobs": {"keep_logs": True}}, "failed", LOG_FILES),
        (
            {"successful_jobs": {"keep_logs": True}, "failed_jobs": {"keep_error_logs": False}},
            "failed",
            frozenset(),
        ),
        (
            {"successful_jobs": {"keep_logs": True}, "log_files": ["run.log"]},
            "completed",
            frozenset({"run.log"}),
        ),
    ],
)
def test_keep_logs_sets_keep_on_results_artifact_only(
    retention: dict[str, Any], status: str, keep: frozenset[str]
) -> None:
    policy = make_policy(retention=retention)
    decision = decide(row(status=status, completed_at=at(1000), dem_filename=UPLOAD), policy, NOW)
    assert decision.verdict is Verdict.DUE
    assert results_artifact(decision).keep == keep
    others = [a for a in decision.artifacts if a.action != "deleted_results"]
    assert [a.keep for a in others] == [frozenset()] * 3


@pytest.mark.parametrize(
    ("retention", "status", "keep_metadata"),
    [
        ({}, "completed", True),
        ({}, "failed", True),
        ({"successful_jobs": {"keep_metadata": False}}, "completed", False),
        ({"successful_jobs": {"keep_metadata": False}}, "failed", True),
        ({"failed_jobs": {"keep_metadata": False}}, "failed", False),
        ({"failed_jobs": {"keep_metadata": False}}, "completed", True),
    ],
)
def test_keep_metadata_false_applies_per_kind(
    retention: dict[str, Any], status: str, keep_metadata: bool
) -> None:
    policy = make_policy(retention=retention)
    decision = decide(row(status=status, completed_at=at(1000)), policy, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.keep_metadata is keep_metadata


# --- hostile values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "reason"),
    [
        ("", "refused: job id is empty"),
        ("   ", "refused: job id '   ' is only white space"),
        (".", "refused: job id '.' names a directory itself"),
        ("..", "refused: job id '..' names a directory itself"),
        ("a/b", "refused: job id 'a/b' contains '/'"),
        ("../../etc", "refused: job id '../../etc' contains '/'"),
        ("/", "refused: job id '/' is an absolute path"),
        ("/etc", "refused: job id '/etc' is an absolute path"),
        ("abc\0def", "refused: job id 'abc\\x00def' contains a NUL byte"),
        ("a" * 256, "refused: job id is 256 bytes long (a file name has at most 255)"),
        ("job\udcff", "refused: job id 'job\\udcff' is not valid UTF-8"),
        (b"job\xff", "refused: job id b'job\\xff' is stored as a BLOB, not text"),
        (b"../x", "refused: job id b'../x' is stored as a BLOB, not text"),
        (None, "refused: job id is NULL"),
        (1.5, "refused: job id has an unexpected type (float)"),
    ],
)
def test_due_job_with_hostile_id_is_refused_with_reason(job_id: Any, reason: str) -> None:
    decision = decide(row(job_id=job_id, completed_at=at(1000), dem_filename=UPLOAD), POLICY, NOW)
    assert decision.verdict is Verdict.REFUSED
    assert decision.reason == reason
    assert decision.kind == "successful"
    assert decision.artifacts == ()
    assert decision.name is None
    assert decision.upload is None


def test_retained_job_with_hostile_id_is_just_retained() -> None:
    decision = decide(row(job_id="../x", completed_at=at(1)), POLICY, NOW)
    assert decision.verdict is Verdict.RETAINED


def test_integer_job_id_names_its_artifacts() -> None:
    decision = decide(row(job_id=42, completed_at=at(1000)), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.name == "42"
    assert decision.job_id == "42"
    assert [a.name for a in decision.artifacts] == ["42", "42_results.zip", "42"]


@pytest.mark.parametrize(
    ("dem_filename", "refused"),
    [
        ("../../etc/passwd", "refused: upload name '../../etc/passwd' contains '/'"),
        ("/etc/passwd", "refused: upload name '/etc/passwd' is an absolute path"),
        ("sub/dem.tif", "refused: upload name 'sub/dem.tif' contains '/'"),
        (".", "refused: upload name '.' names a directory itself"),
        ("..", "refused: upload name '..' names a directory itself"),
        ("dem\0.tif", "refused: upload name 'dem\\x00.tif' contains a NUL byte"),
        ("d" * 256, "refused: upload name is 256 bytes long (a file name has at most 255)"),
        ("dem\udce9.tif", "refused: upload name 'dem\\udce9.tif' is not valid UTF-8"),
        (b"dem\xe9.tif", "refused: upload name b'dem\\xe9.tif' is stored as a BLOB, not text"),
        (3.5, "refused: upload name has an unexpected type (float)"),
    ],
)
def test_due_job_with_hostile_upload_name_is_due_without_upload(
    dem_filename: Any, refused: str
) -> None:
    decision = decide(row(completed_at=at(1000), dem_filename=dem_filename), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.upload_refused == refused
    assert decision.upload is None
    assert [a.root for a in decision.artifacts] == ["temp", "results", "results"]


@pytest.mark.parametrize("dem_filename", [None, ""])
def test_due_job_with_null_or_empty_upload_name_has_no_upload_and_nothing_refused(
    dem_filename: Any,
) -> None:
    # SPEC §3: no upload recorded is normal (a job that failed before storing it).
    decision = decide(row(completed_at=at(1000), dem_filename=dem_filename), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.upload is None
    assert decision.upload_refused is None
    assert [a.root for a in decision.artifacts] == ["temp", "results", "results"]


@pytest.mark.parametrize(
    ("dem_filename", "reason"),
    [
        ("  ", "refused: upload name '  ' is only white space"),
        (b"", "refused: upload name b'' is stored as a BLOB, not text"),
        ("../jobs.db", "refused: upload name '../jobs.db' contains '/'"),
    ],
)
def test_blank_blob_or_hostile_upload_name_is_refused(dem_filename: Any, reason: str) -> None:
    decision = decide(row(completed_at=at(1000), dem_filename=dem_filename), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.upload is None
    assert decision.upload_refused == reason
    assert [a.root for a in decision.artifacts] == ["temp", "results", "results"]


@pytest.mark.parametrize("suffix", ["_results.zip", "x_results.zip"])
def test_job_id_ending_like_an_archive_is_refused_so_it_cannot_name_another_jobs_archive(
    suffix: str,
) -> None:
    decision = decide(row(job_id=JOB + suffix, completed_at=at(1000)), POLICY, NOW)
    assert decision.verdict is Verdict.REFUSED
    assert decision.reason is not None and "would be another job's archive" in decision.reason


def test_job_id_whose_archive_name_exceeds_255_bytes_is_refused() -> None:
    job_id = "a" * (256 - len("_results.zip"))  # itself 244 bytes: a valid name
    decision = decide(row(job_id=job_id, completed_at=at(1000)), POLICY, NOW)
    assert decision.verdict is Verdict.REFUSED
    assert decision.reason is not None
    assert decision.reason.startswith("refused: job id ")
    assert decision.reason.endswith("256 bytes long (a file name has at most 255)")
    assert decision.artifacts == ()


def test_job_id_whose_archive_name_is_exactly_255_bytes_is_due() -> None:
    job_id = "a" * (255 - len("_results.zip"))
    decision = decide(row(job_id=job_id, completed_at=at(1000)), POLICY, NOW)
    assert decision.verdict is Verdict.DUE
    assert decision.artifacts[1].name == job_id + "_results.zip"
    assert len(decision.artifacts[1].name.encode()) == 255


# --- owned_artifacts -----------------------------------------------------------------------


def test_owned_artifacts_lists_temp_archive_results_and_upload() -> None:
    keep = frozenset({"workflow.log"})
    artifacts, refused = owned_artifacts(row(dem_filename=UPLOAD), keep)
    assert refused is None
    assert artifacts == [
        Artifact("temp", JOB, "deleted_temp", True),
        Artifact("results", f"{JOB}_results.zip", "deleted_archive", False),
        Artifact("results", JOB, "deleted_results", True, keep),
        Artifact("uploads", UPLOAD, "deleted_upload", False),
    ]


def test_owned_artifacts_refuses_hostile_upload_but_keeps_job_artifacts() -> None:
    artifacts, refused = owned_artifacts(row(dem_filename="../jobs.db"))
    assert refused == "refused: upload name '../jobs.db' contains '/'"
    assert [a.action for a in artifacts] == ["deleted_temp", "deleted_archive", "deleted_results"]


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("..", "job id '..' names a directory itself"),
        ("/", "job id '/' is an absolute path"),
        (None, "job id is NULL"),
    ],
)
def test_owned_artifacts_raises_name_refused_for_hostile_id(job_id: Any, message: str) -> None:
    with pytest.raises(NameRefused) as raised:
        owned_artifacts(row(job_id=job_id, dem_filename=UPLOAD))
    assert str(raised.value) == message


# --- upload_blocker ------------------------------------------------------------------------

ME = row(job_id=JOB, completed_at=at(1000), dem_filename=UPLOAD)


def in_run_none(_row: JobRow) -> bool:
    return False


def in_run_all(_row: JobRow) -> bool:
    return True


def test_upload_blocker_retained_other_job_blocks_and_is_named_with_due_time() -> None:
    other = row(rowid=2, job_id=OTHER, completed_at=at(100), dem_filename=UPLOAD)
    assert upload_blocker(JOB, [ME, other], POLICY, NOW, in_run_all) == (
        f"upload still referenced by job {OTHER} (completed, due 2024-06-04T08:00+00:00)"
    )


def test_upload_blocker_cleaned_other_job_does_not_block() -> None:
    other = row(rowid=2, job_id=OTHER, completed_at=at(1), data_cleaned_at="2024-05-01")
    assert upload_blocker(JOB, [ME, other], POLICY, NOW, in_run_none) is None


def test_upload_blocker_due_other_job_in_this_run_does_not_block() -> None:
    other = row(rowid=2, job_id=OTHER, completed_at=at(500), dem_filename=UPLOAD)
    assert upload_blocker(JOB, [ME, other], POLICY, NOW, in_run_all) is None


def test_upload_blocker_due_other_job_not_in_this_run_blocks() -> None:
    other = row(rowid=2, job_id=OTHER, completed_at=at(500), dem_filename=UPLOAD)
    assert upload_blocker(JOB, [ME, other], POLICY, NOW, in_run_none) == (
        f"upload still referenced by job {OTHER} (completed, not in this run)"
    )


def test_upload_blocker_in_run_is_asked_about_the_other_job() -> None:
    other = row(rowid=2, job_id=OTHER, completed_at=at(500), dem_filename=UPLOAD)
    asked: list[JobRow] = []

    def in_run(candidate: JobRow) -> bool:
        asked.append(candidate)
        return candidate.job_id == OTHER

    assert upload_blocker(JOB, [ME, other], POLICY, NOW, in_run) is None
    assert asked == [other]


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"status": "running", "completed_at": None}, "running"),
        ({"status": "pending", "completed_at": None}, "pending"),
        ({"status": "archived"}, "archived"),
        ({"status": None}, "NULL"),
        ({"completed_at": "garbage"}, "completed"),
        ({"status": "failed", "completed_at": at(6)}, "failed, due 2024-06-01T18:00+00:00"),
        # A refused job (hostile id) is not DUE, so it can never count as "in this run".
        ({"job_id": "../x", "completed_at": at(1000)}, "completed"),
    ],
)
def test_upload_blocker_other_job_not_cleanable_blocks_with_its_state(
    fields: dict[str, Any], state: str
) -> None:
    other = row(rowid=2, **{"job_id": OTHER, "completed_at": at(1), **fields})
    blocker = upload_blocker(JOB, [ME, other], POLICY, NOW, in_run_all)
    assert blocker == f"upload still referenced by job {display_value(other.job_id)} ({state})"


def test_upload_blocker_ignores_the_job_itself() -> None:
    retained_me = row(job_id=JOB, completed_at=at(1), dem_filename=UPLOAD)
    assert upload_blocker(JOB, [retained_me], POLICY, NOW, in_run_none) is None


def test_upload_blocker_with_no_references_is_none() -> None:
    assert upload_blocker(JOB, [], POLICY, NOW, in_run_none) is None


def test_upload_blocker_reports_first_blocking_job() -> None:
    cleaned = row(rowid=2, job_id="cleaned", data_cleaned_at="2024-05-01")
    running = row(rowid=3, job_id="busy", status="running")
    retained = row(rowid=4, job_id="young", completed_at=at(1))
    blocker = upload_blocker(JOB, [ME, cleaned, running, retained], POLICY, NOW, in_run_all)
    assert blocker == "upload still referenced by job busy (running)"


# --- Policy.from_settings ---------------------------------------------------------------------


def test_policy_from_default_settings() -> None:
    assert Policy.from_settings(Settings()) == Policy(
        successful_statuses=frozenset({"completed"}),
        failed_statuses=frozenset({"failed"}),
        active_statuses=frozenset({"pending", "running"}),
        successful_hours=168,
        failed_hours=12,
        keep_logs=False,
        keep_error_logs=True,
        keep_metadata_successful=True,
        keep_metadata_failed=True,
        log_files=LOG_FILES,
        naive_zone=None,
        created_zone=UTC,
    )


def test_policy_from_custom_settings() -> None:
    settings = Settings.model_validate(
        {
            "retention": {
                "successful_jobs": {"hours": 72, "keep_metadata": False, "keep_logs": True},
                "failed_jobs": {"hours": 1.5, "keep_metadata": False, "keep_error_logs": False},
                "log_files": ["run.log"],
            },
            "jobs": {
                "timezone": "America/Phoenix",
                "created_at_timezone": "local",
                "statuses": {"successful": ["done", "success"], "failed": ["error"]},
            },
        }
    )
    assert Policy.from_settings(settings) == Policy(
        successful_statuses=frozenset({"done", "success"}),
        failed_statuses=frozenset({"error"}),
        active_statuses=frozenset({"pending", "running"}),
        successful_hours=72,
        failed_hours=1.5,
        keep_logs=True,
        keep_error_logs=False,
        keep_metadata_successful=False,
        keep_metadata_failed=False,
        log_files=frozenset({"run.log"}),
        naive_zone=ZoneInfo("America/Phoenix"),
        created_zone=None,
    )


def test_policy_known_statuses_are_sorted() -> None:
    assert CUSTOM.known_statuses == ["done", "error", "queued", "success"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [("completed", "successful"), ("failed", "failed"), ("running", None), ("x", None)],
)
def test_policy_kind_of_status(status: str, kind: str | None) -> None:
    assert POLICY.kind_of(status) == kind


# --- small helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "abc"),
        (None, "NULL"),
        (42, "42"),
        (b"\xff", "b'\\xff'"),
        ("bad\udcff", "bad\\udcff"),
    ],
)
def test_display_value_is_printable(value: Any, shown: str) -> None:
    assert display_value(value) == shown


@pytest.mark.parametrize(
    ("seconds", "days"),
    [(None, None), (0, 0.0), (86400 * 8.2, 8.2), (86400 * 7.5, 7.5), (3600, 0.0)],
)
def test_decision_age_days_rounds_to_one_decimal(seconds: float | None, days: float | None) -> None:
    assert Decision(row(), Verdict.DUE, age_seconds=seconds).age_days == days

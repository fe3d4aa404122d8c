"""Events: the dispatcher, JSON round trips, and what run_finished says (issue #9)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from eemt_cleanup.engine import _run_finished
from eemt_cleanup.events import Dispatcher, JobSkipped, RunStarted, parse_event
from eemt_cleanup.models import Outcome, RunReport, Skip, SkipReason

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def report_with(kinds: dict[SkipReason, int]) -> RunReport:
    report = RunReport(run_id="run-1", dry_run=False, started_at=NOW, finished_at=NOW)
    for kind, count in kinds.items():
        for n in range(count):
            skip = Skip(job_id=f"{kind}-{n}", reason=f"because {n}", code=kind)
            report.kept[kind].add(skip)
    return report


@pytest.mark.parametrize(
    ("kinds", "never", "skew"),
    [
        ({}, 0, False),
        ({SkipReason.UNKNOWN_STATUS: 2, SkipReason.CLOCK_SKEW: 1}, 1, True),
        ({SkipReason.UNKNOWN_AGE: 1, SkipReason.UNKNOWN_STATUS: 1}, 2, False),
        ({SkipReason.UNKNOWN_AGE: 5, SkipReason.CLOCK_SKEW: 4}, 1, True),
        ({SkipReason.CLOCK_SKEW: 1}, 0, True),
    ],
)
def test_run_finished_says_each_kind_of_row_never_cleaned_once(
    kinds: dict[SkipReason, int], never: int, skew: bool
) -> None:
    event = _run_finished(report_with(kinds))

    assert len(event.never_cleaned) == never
    assert all("clock" not in line and "future" not in line for line in event.never_cleaned)
    assert (event.clock_skew is not None) is skew
    assert event.outcome is Outcome.DONE
    assert event.report.success is True


def test_every_event_comes_back_from_its_json_line() -> None:
    started = RunStarted(
        run_id="r", dry_run=True, trigger="api", successful_hours=168, failed_hours=12
    )
    skipped = JobSkipped.of(
        "r", Skip(job_id="j\n1", reason="x", code=SkipReason.REFUSED, needs_attention=True)
    )
    finished = _run_finished(report_with({SkipReason.UNKNOWN_AGE: 1}))
    for event in (started, skipped, finished):
        line = event.to_json()
        assert "\n" not in line
        back = parse_event(line)
        assert back == event
        assert parse_event(json.loads(line)) == event


def test_a_subscriber_that_raises_is_logged_once_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(_event: Any) -> None:
        raise ValueError("boom")

    dispatch = Dispatcher([broken, lambda event: seen.append(event.kind), None])
    event = RunStarted(run_id="r", dry_run=False, trigger="t", successful_hours=1, failed_hours=1)
    with caplog.at_level(logging.ERROR, logger="eemt_cleanup"):
        for _ in range(3):
            dispatch(event)

    assert seen == ["run_started"] * 3
    assert len([r for r in caplog.records if "boom" in r.getMessage()]) == 1


def test_a_name_that_is_not_utf8_is_escaped_in_json_never_an_error() -> None:
    from eemt_cleanup.models import JobKind, JobResult

    name = b"results/job/caf\xe9/".decode("utf-8", "surrogateescape")
    report = RunReport(run_id="r", dry_run=False, started_at=NOW, finished_at=NOW)
    report.jobs.append(
        JobResult(job_id="job", status="failed", age_days=1.0, kind=JobKind.FAILED, errors=[name])
    )
    text = report.summary().to_json()
    assert "\\udce9" in text
    assert json.loads(text)["details"][0]["errors"] == [name]
    event = _run_finished(report)
    assert "\\udce9" in event.to_json()


def test_the_sql_trace_is_the_clis_switch_not_a_hosts_debug_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from eemt_cleanup.store.db import TRACE_SQL, connect

    db = tmp_path / "jobs.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with caplog.at_level(logging.DEBUG):
        connect(db, readonly=True).close()
        assert not [r for r in caplog.records if r.getMessage().startswith("SQL:")]
        TRACE_SQL.enabled = True
        try:
            conn = connect(db, readonly=True)
            conn.execute("SELECT 'a\nb'").fetchall()
            conn.close()
        finally:
            TRACE_SQL.enabled = False
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SQL:")]
    assert "SQL: SELECT 'a\\nb'" in lines

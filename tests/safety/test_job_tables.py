"""Item 12: a jobs "table" that is not a plain table either works correctly or is refused
(exit 2) before anything is altered — never read as "0 jobs" with exit 0.

We append columns to the jobs table, index it and page through it by rowid: a VIEW, a
virtual table or a WITHOUT ROWID table cannot be treated so, and a column named ``rowid``
must not be mistaken for the rowid.
"""

from __future__ import annotations

import sqlite3

import pytest
from conftest import JOBS_SCHEMA

from .conftest import Harness


def rebuild(harness: Harness, statements: list[str]) -> None:
    conn = sqlite3.connect(harness.db)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def without_rowid_schema() -> str:
    body = JOBS_SCHEMA.strip().rstrip(";")
    assert body.endswith(")")
    return body.replace("CREATE TABLE jobs", "CREATE TABLE jobs_new", 1) + " WITHOUT ROWID"


CASES = {
    "view": (
        [
            "ALTER TABLE jobs RENAME TO jobs_data",
            "CREATE VIEW jobs AS SELECT * FROM jobs_data",
        ],
        "'jobs' is a view, not a table: its rows cannot be marked cleaned; point jobs.table at "
        "a plain table",
    ),
    "without-rowid": (
        [
            without_rowid_schema(),
            "INSERT INTO jobs_new SELECT * FROM jobs",
            "DROP TABLE jobs",
            "ALTER TABLE jobs_new RENAME TO jobs",
        ],
        "'jobs' is a WITHOUT ROWID table, which eemt-cleanup cannot page through; point "
        "jobs.table at a plain table",
    ),
    "virtual": (
        [
            "ALTER TABLE jobs RENAME TO jobs_plain",
            "CREATE VIRTUAL TABLE jobs USING fts5(id, workflow_type, status, created_at, "
            "started_at, completed_at, parameters, dem_filename, error_message, progress)",
            "INSERT INTO jobs SELECT id, workflow_type, status, created_at, started_at, "
            "completed_at, parameters, dem_filename, error_message, progress FROM jobs_plain",
        ],
        "'jobs' is a virtual table; point jobs.table at a plain table",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", [["run"], ["run", "--dry-run"], ["status"]])
def test_a_jobs_table_that_is_not_a_plain_table_is_refused_before_anything_is_altered(
    harness: Harness, case: str, command: list[str]
) -> None:
    statements, reason = CASES[case]
    rebuild(harness, statements)
    harness.arm()

    result = harness._cli(*command, "--config", str(harness.config_file))

    assert result.code == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.splitlines()
    assert line == f"eemt-cleanup: error: {harness.db}: {reason}"
    harness.assert_untouched()  # the database's bytes included: nothing was altered


def test_a_column_named_rowid_is_not_taken_for_the_rowid(harness: Harness) -> None:
    # Its values are NULL: paging on them would read no row at all ("0 jobs", exit 0).
    rebuild(harness, ["ALTER TABLE jobs ADD COLUMN rowid INTEGER"])

    result = harness.run_cli()

    assert result.code == 0, result.stderr
    assert result.json()["cleaned_jobs"]["successful"] == len(harness.legit)
    harness.assert_safe(result)


def test_columns_hiding_every_name_of_the_rowid_are_refused(harness: Harness) -> None:
    rebuild(
        harness,
        [f"ALTER TABLE jobs ADD COLUMN {name} INTEGER" for name in ("rowid", "_rowid_", "oid")],
    )
    harness.arm()

    result = harness.run_cli()

    assert result.code == 2
    assert "has columns named rowid, _rowid_ and oid" in result.stderr
    harness.assert_untouched()

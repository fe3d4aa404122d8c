"""Item 13: rows that will never be cleaned are summarised, not listed, and cron sees it.

Unknown ages (unparseable timestamps) and unknown statuses come out as one line per run
with the count and a few escaped examples — not one line per row — and that line is shown
even under --quiet: cron must tell the operator that data is being kept forever. A time in
the future beyond a small tolerance is reported as clock skew. Epoch milliseconds parse.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import Harness

GARBAGE = 40
UNKNOWN = 25
SKEWED = 4


def add_rows_kept_forever(harness: Harness) -> None:
    conn = sqlite3.connect(harness.db)
    with conn:
        for n in range(GARBAGE):
            conn.execute(
                "INSERT INTO jobs (id, workflow_type, status, completed_at) VALUES (?,?,?,?)",
                (f"garbage-{n:03d}", "eemt", "completed", f"not a date {n}\x1b[2J"),
            )
        for n in range(UNKNOWN):
            conn.execute(
                "INSERT INTO jobs (id, workflow_type, status, completed_at) VALUES (?,?,?,?)",
                (f"unknown-{n:03d}", "eemt", "archived\n2024 INFO: forged", "2020-01-01T00:00:00"),
            )
        future = (datetime.now(UTC) + timedelta(days=400)).isoformat()
        for n in range(SKEWED):
            conn.execute(
                "INSERT INTO jobs (id, workflow_type, status, completed_at) VALUES (?,?,?,?)",
                (f"future-{n:03d}", "eemt", "failed", future),
            )
    conn.close()


def summary_lines(output: str) -> tuple[list[str], list[str]]:
    lines = output.splitlines()
    never = [line for line in lines if "Never cleaned until fixed:" in line]
    skew = [line for line in lines if "Clock skew:" in line]
    return never, skew


@pytest.mark.parametrize("quiet", [False, True], ids=["plain", "quiet"])
def test_rows_never_cleaned_are_one_summary_line_shown_even_under_quiet(
    harness: Harness, quiet: bool
) -> None:
    add_rows_kept_forever(harness)
    harness.arm()

    result = harness._cli(
        "run", *(["--quiet"] if quiet else []), "--config", str(harness.config_file)
    )

    assert result.code == 0, result.stderr
    never, skew = summary_lines(result.stdout)
    assert len(never) == 1 and len(skew) == 1, result.stdout
    assert f"{GARBAGE} jobs with an unknown age (e.g. job garbage-000: " in never[0]
    assert f"{UNKNOWN} jobs with an unknown status (e.g. job unknown-000: " in never[0]
    assert never[0].count("e.g.") == 2 and never[0].count("job garbage-") == 3
    assert "\\x1b[2J" in never[0] and "\x1b" not in result.stdout  # examples escaped
    assert "archived\\n2024 INFO: forged" in never[0]
    assert f"{SKEWED} jobs with a time in the future" in skew[0]
    mentioned = [line for line in result.stdout.splitlines() if "garbage-0" in line]
    assert mentioned == never, "not one line per row"
    if quiet:
        assert result.stdout.splitlines() == [
            "WARNING: " + never[0].removeprefix("WARNING: "),
            "WARNING: " + skew[0].removeprefix("WARNING: "),
        ]
    harness.assert_safe(None)


def test_json_counts_rows_never_cleaned_with_a_few_examples(harness: Harness) -> None:
    add_rows_kept_forever(harness)

    result = harness.run_cli()

    data = result.json()
    assert data["never_cleaned"]["unknown_age"]["count"] == GARBAGE
    assert data["never_cleaned"]["unknown_status"]["count"] == UNKNOWN
    assert data["never_cleaned"]["clock_skew"]["count"] == SKEWED
    examples = data["never_cleaned"]["unknown_status"]["examples"]
    assert [e["job_id"] for e in examples] == ["unknown-000", "unknown-001", "unknown-002"]
    assert examples[0]["reason"] == (
        "unknown status 'archived\n2024 INFO: forged': never touched"
    ), "JSON is exact"
    assert len(data["skipped"]) == 3 * 3, "skipped lists the examples, not every row"
    harness.assert_safe(result)


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param("ms-int", id="milliseconds-integer"),
        pytest.param("ms-text", id="milliseconds-text"),
        pytest.param("s-int", id="seconds-integer"),
    ],
)
def test_epoch_timestamps_parse_in_seconds_and_milliseconds(harness: Harness, stored: str) -> None:
    moment = (datetime.now(UTC) - timedelta(days=30)).timestamp()
    value: object = {
        "ms-int": int(moment * 1000),
        "ms-text": str(int(moment * 1000)),
        "s-int": int(moment),
    }[stored]
    job = harness.add_job("epoch-job", upload=False)
    conn = sqlite3.connect(harness.db)
    with conn:
        conn.execute("UPDATE jobs SET completed_at = ? WHERE id = 'epoch-job'", (value,))
    conn.close()

    result = harness.run_cli()

    assert result.code == 0, result.stderr
    (detail,) = [d for d in result.json()["details"] if d["job_id"] == "epoch-job"]
    assert detail["age_days"] == pytest.approx(30.0, abs=0.1)
    harness.assert_safe(result, gone=[job])


def test_a_time_a_little_in_the_future_is_not_clock_skew(harness: Harness) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    harness.add_row("just-finished", None, status="failed")
    conn = sqlite3.connect(harness.db)
    with conn:
        conn.execute("UPDATE jobs SET completed_at = ? WHERE id = 'just-finished'", (soon,))
    conn.close()

    result = harness.run_cli()

    assert result.json()["never_cleaned"]["clock_skew"]["count"] == 0
    assert "Clock skew" not in result.stderr

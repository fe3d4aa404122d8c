"""End-to-end: what ``status``, ``history``, ``audit`` and ``config show`` show people.

Ids whole on one line at 80 and 200 columns (the installed CLI on a real pseudo-terminal),
one date style, human sizes, Title Case headers, "1 job"/"2 jobs", ``audit --job`` by id
prefix, ``audit --action`` checked, ``config show`` taking a pasted ``run`` command line,
and ``config validate`` naming the roots ``run`` would refuse. JSON keeps its shape.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import shutil
import sqlite3
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    DemoBase,
    call,
    cli_executable,
    create_jobs_db,
    error_line,
    guarded_env,
    make_demo_base,
)
from rich.cells import cell_len

from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.store.actions import AuditAction

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "cleanup_config.yaml"
WIDTHS = [80, 200]
TERMINAL_DEADLINE_SECONDS = 120.0
MOMENT = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
CONTROL_SEQUENCE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
PREFIX = "eemt-cleanup: error: "


def install_config(demo: DemoBase) -> Path:
    target = demo.path / "cleanup_config.yaml"
    shutil.copyfile(SHIPPED_CONFIG, target)
    return target


def tab_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines() if "\t" in line]


# --------------------------------------------------------------------------- a real terminal


@dataclass
class Screen:
    code: int
    raw: bytes

    @property
    def text(self) -> str:
        return CONTROL_SEQUENCE.sub("", self.raw.decode("utf-8", errors="replace"))

    @property
    def lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.text.split("\n")]


def on_terminal(
    args: list[str], env: dict[str, str], columns: int, rows: int = 50, cwd: Path | str = "/"
) -> Screen:
    """Run the installed CLI on a pseudo-terminal of ``columns`` x ``rows`` (set both with
    TIOCSWINSZ and COLUMNS/LINES) and read everything it writes, until the terminal's other
    side closes, within a generous deadline (no fixed sleep)."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    terminal_env = {
        **env,
        "TERM": "xterm-256color",
        "COLUMNS": str(columns),
        "LINES": str(rows),
    }
    process = subprocess.Popen(
        [cli_executable(), *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=terminal_env,
        cwd=cwd,
        close_fds=True,
    )
    os.close(secondary)
    output = bytearray()
    deadline = time.monotonic() + TERMINAL_DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError as error:
                if error.errno == errno.EIO:  # every writer has closed the terminal
                    break
                raise
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
            process.wait()
    return Screen(code, bytes(output))


def assert_fits_with_ids_whole(screen: Screen, ids: set[str], columns: int) -> None:
    assert screen.code == 0, screen.text
    assert "Traceback" not in screen.text
    for line in screen.lines:
        assert cell_len(line) <= columns, (columns, line)
    assert "…" not in screen.text
    for shown in ids:
        assert any(shown in line for line in screen.lines), (shown, screen.text)


# --------------------------------------------------------------------------- a cleaned base


@dataclass
class Cleaned:
    demo: DemoBase
    config: Path
    env: dict[str, str]
    report: dict[str, Any]
    forced_run_id: str

    def cli(self, *args: str) -> Any:
        return call([*args, "--config", str(self.config)], self.env)

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> Cleaned:
    """The demo base after one real run and one forced dry run (two runs in history)."""
    root = tmp_path_factory.mktemp("info")
    env = guarded_env(root)
    demo = make_demo_base(root / "base")
    config = install_config(demo)
    result = call(["run", "--json", "--config", str(config)], env)
    assert result.code == 0, result.stderr
    forced = call(
        ["run", "--json", "--config", str(config)],
        {**env, "EEMT_CLEANUP_DRY_RUN": "true"},
    )
    assert forced.code == 0, forced.stderr
    return Cleaned(
        demo, config, env, json.loads(result.stdout), json.loads(forced.stdout)["run_id"]
    )


# --------------------------------------------------------------------------- ids whole


@pytest.mark.parametrize("columns", WIDTHS)
def test_history_on_a_terminal_shows_every_run_id_whole_within_the_width(
    cleaned: Cleaned, columns: int
) -> None:
    runs = cleaned.json("history")
    screen = on_terminal(["history", "--config", str(cleaned.config)], cleaned.env, columns)
    assert_fits_with_ids_whole(screen, {run["run_id"] for run in runs}, columns)


@pytest.mark.parametrize("columns", WIDTHS)
def test_audit_on_a_terminal_shows_every_job_and_run_id_whole_within_the_width(
    cleaned: Cleaned, columns: int
) -> None:
    rows = cleaned.json("audit", "--limit", "12")
    ids = {row["job_id"] for row in rows} | {row["run_id"] for row in rows}
    screen = on_terminal(
        ["audit", "--limit", "12", "--config", str(cleaned.config)], cleaned.env, columns
    )
    assert_fits_with_ids_whole(screen, ids, columns)


@pytest.mark.parametrize("columns", WIDTHS)
def test_status_on_a_terminal_shows_the_next_due_job_and_last_run_ids_whole(
    cleaned: Cleaned, columns: int
) -> None:
    data = cleaned.json("status", "--no-measure")
    ids = {data["next_due_job"], data["last_run"]["run_id"]}
    screen = on_terminal(
        ["status", "--no-measure", "--config", str(cleaned.config)], cleaned.env, columns
    )
    assert_fits_with_ids_whole(screen, ids, columns)
    assert "Jobs Not Yet Cleaned" in screen.text


@pytest.mark.parametrize("columns", WIDTHS)
def test_config_show_on_a_terminal_shows_pasted_job_ids_whole_within_the_width(
    cleaned: Cleaned, columns: int
) -> None:
    jobs = [detail["job_id"] for detail in cleaned.report["details"][:3]]
    args = ["config", "show", "--config", str(cleaned.config)]
    for job_id in jobs:
        args += ["--job", job_id]
    screen = on_terminal(args, cleaned.env, columns)
    assert_fits_with_ids_whole(screen, set(jobs), columns)
    assert "Effective Configuration" in screen.text and "Run Options" in screen.text


def test_history_is_one_block_per_run_at_80_columns_and_one_table_row_per_run_at_200(
    cleaned: Cleaned,
) -> None:
    run_id = cleaned.report["run_id"]
    args = ["history", "--config", str(cleaned.config)]
    narrow = on_terminal(args, cleaned.env, 80)
    assert any(re.match(rf"^Run +{run_id}\s*$", line) for line in narrow.lines), narrow.text
    assert any(re.match(rf"^Started +{MOMENT}\s*$", line) for line in narrow.lines)
    wide = on_terminal(args, cleaned.env, 200)
    (row,) = [line for line in wide.lines if run_id in line]
    assert re.search(rf"{run_id} │ {MOMENT} │ {MOMENT} │", row), row
    header = next(line for line in wide.lines if "Started" in line)
    for word in ("Run", "Started", "Finished", "Trigger", "Dry Run", "Files", "Freed", "Exit"):
        assert word in header, (word, header)


def test_numbers_are_right_aligned_in_the_horizontal_history_table(cleaned: Cleaned) -> None:
    run_id = cleaned.report["run_id"]
    wide = on_terminal(["history", "--config", str(cleaned.config)], cleaned.env, 200)
    header = next(line for line in wide.lines if "Started" in line)
    headers = [part.strip() for part in re.split(r"[┃│]", header)]
    (row,) = [line for line in wide.lines if run_id in line]
    cells = re.split(r"│", row)
    files = cells[headers.index("Files")]
    shown = str(cleaned.report["files_deleted"])
    assert files == " " + shown.rjust(len(files) - 2) + " ", files
    freed = cells[headers.index("Freed")]
    assert (
        freed.rstrip() == freed[:-1]
        and freed.strip() == cleaned.report["space_freed"]["human_readable"]
    )


def test_hostile_audit_values_are_escaped_in_the_terminal_layouts(tmp_path: Path) -> None:
    base = tmp_path / "base"
    db = make_audited_base(
        base,
        [
            ("x\x1b[2J\nforged-3f2a9c1e-5b7d-4c1e-9d2a-0e8f6b4a1c3d", "[red]x:smile:"),
        ],
    )
    env = guarded_env(tmp_path, NO_COLOR="1")
    for columns in WIDTHS:
        screen = on_terminal(["audit", "--db-path", str(db)], env, columns, cwd=base)
        assert screen.code == 0, screen.text
        # NO_COLOR: no style at all, so any escape byte would have come from the row.
        assert b"\x1b" not in screen.raw
        assert "x\\x1b[2J\\nforged-3f2a9c1e-5b7d-4c1e-9d2a-0e8f6b4a1c3d" in screen.text
        assert "[red]x:smile:" in screen.text
        assert all(cell_len(line) <= columns for line in screen.lines)


# --------------------------------------------------------------------------- plain words


def test_history_plain_output_has_title_case_headers_dates_and_human_sizes(
    cleaned: Cleaned,
) -> None:
    result = cleaned.cli("history")
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[0] == [
        "Run",
        "Started",
        "Finished",
        "Trigger",
        "User",
        "Dry Run",
        "Successful Jobs",
        "Failed Jobs",
        "Files",
        "Freed",
        "Errors",
        "Exit",
    ]
    shown = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    real = shown[cleaned.report["run_id"]]
    assert re.fullmatch(MOMENT, real["Started"]) and re.fullmatch(MOMENT, real["Finished"])
    assert real["Freed"] == human_size(cleaned.report["space_freed"]["bytes"])
    assert real["Freed"] == cleaned.report["space_freed"]["human_readable"]
    assert real["Dry Run"] == "no"
    assert real["Exit"] == "0"
    forced = shown[cleaned.forced_run_id]
    assert forced["Dry Run"] == "yes, forced by env EEMT_CLEANUP_DRY_RUN"


def test_history_json_keeps_raw_bytes_and_every_column(cleaned: Cleaned) -> None:
    runs = cleaned.json("history")
    (real,) = [run for run in runs if run["run_id"] == cleaned.report["run_id"]]
    assert real["bytes_freed"] == cleaned.report["space_freed"]["bytes"]
    assert isinstance(real["bytes_freed"], int)
    assert {"started_at", "finished_at", "dry_run", "dry_run_forced_by", "exit_code"} <= set(real)
    assert real["started_at"] == cleaned.report["started_at"]


def test_audit_plain_output_has_title_case_headers_dates_and_human_sizes(
    cleaned: Cleaned,
) -> None:
    result = cleaned.cli("audit", "--action", "deleted_upload")
    assert result.code == 0, result.stderr
    rows = tab_rows(result.stdout)
    assert rows[0] == [
        "Time",
        "Job",
        "Action",
        "Path",
        "Freed",
        "Files",
        "User",
        "Run",
        "Error",
    ]
    raw = {row["id"]: row for row in cleaned.json("audit", "--action", "deleted_upload")}
    assert len(rows) - 1 == len(raw)
    for row in rows[1:]:
        assert re.fullmatch(MOMENT, row[0]), row
        assert row[2] == "deleted_upload"
    by_path = {row["path"]: row for row in raw.values()}
    for row in rows[1:]:
        assert row[4] == human_size(by_path[row[3]]["bytes_freed"])


def test_status_says_1_job_and_1_file_in_the_singular(tmp_path: Path) -> None:
    base = tmp_path / "base"
    for root in ("uploads", "results", "temp"):
        (base / root).mkdir(parents=True)
    old = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    job_id = "3f2a9c1e-5b7d-4c1e-9d2a-0e8f6b4a1c3d"
    create_jobs_db(base / "jobs.db", [{"id": job_id, "status": "completed", "completed_at": old}])
    (base / "results" / job_id).mkdir()
    (base / "results" / job_id / "output.tif").write_bytes(b"x" * 5000)
    args = ["--db-path", str(base / "jobs.db")]
    for root in ("uploads", "results", "temp"):
        args += [f"--{root}-dir", str(base / root)]
    env = guarded_env(tmp_path)

    before = call(["status", *args], env)
    assert before.code == 0, before.stderr
    assert re.search(r"^Due now: 1 job, \d", before.stdout, re.M), before.stdout
    run = call(["run", "--json", *args], env)
    assert run.code == 0, run.stderr
    after = call(["status", *args], env)
    assert after.code == 0, after.stderr
    assert "Due now: 0 jobs, 0 Bytes" in after.stdout
    assert re.search(
        rf"^Last run: {json.loads(run.stdout)['run_id']}, started {MOMENT}, finished {MOMENT}, "
        rf"exit 0: 1 job cleaned \(1 successful, 0 failed\), 1 file, [\d.]+ \w+ freed$",
        after.stdout,
        re.M,
    ), after.stdout


def test_status_json_keeps_its_shape_and_iso_dates(cleaned: Cleaned) -> None:
    data = cleaned.json("status", "--no-measure")
    assert {"by_status", "due_now", "next_due_at", "next_due_job", "last_run"} <= set(data)
    assert datetime.fromisoformat(data["next_due_at"]).tzinfo is not None
    assert data["last_run"]["run_id"] == cleaned.forced_run_id
    assert isinstance(data["last_run"]["bytes_freed"], int)


# --------------------------------------------------------------------------- audit --job, --action


def make_audited_base(base: Path, rows: list[tuple[str, str]]) -> Path:
    """A base whose audit has one row per (job id, path), written as a run writes them."""
    from eemt_cleanup.store.migrations import migrate

    for root in ("uploads", "results", "temp"):
        (base / root).mkdir(parents=True, exist_ok=True)
    db = base / "jobs.db"
    create_jobs_db(db, [])
    conn = sqlite3.connect(db)
    try:
        migrate(conn, "jobs", "status", "dem_filename")
        with conn:
            conn.executemany(
                "INSERT INTO cleanup_audit (timestamp, job_id, action, space_freed_mb, user, "
                "run_id, path, bytes_freed, files_deleted) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        "2026-12-02T23:27:41+00:00",
                        job_id,
                        "deleted_results",
                        0.004,
                        "root",
                        "9b1c0d2e-3f4a-4b5c-8d6e-7f8091a2b3c4",
                        path,
                        4096,
                        1,
                    )
                    for job_id, path in rows
                ],
            )
        assert not conn.in_transaction
    finally:
        conn.close()
    return db


PREFIXED = [
    "abc-1111",
    "abc-2222",
    "abc-3333",
    "abc-4444",
    "ab_1",
    "abx1",
    "ABC-5555",
    "zz%1",
]


@pytest.fixture
def prefixed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    base = tmp_path / "base"
    db = make_audited_base(base, [(job_id, f"results/{job_id}/") for job_id in PREFIXED])
    return db, guarded_env(tmp_path)


def audit_json(db: Path, env: dict[str, str], *args: str) -> Any:
    return call(["audit", "--json", "--db-path", str(db), *args], env, cwd=db.parent)


def test_audit_job_accepts_the_first_8_characters_of_an_id(cleaned: Cleaned) -> None:
    job_id = cleaned.report["details"][0]["job_id"]
    whole = cleaned.json("audit", "--job", job_id)
    by_prefix = cleaned.json("audit", "--job", job_id[:8])
    assert whole and by_prefix == whole
    assert {row["job_id"] for row in by_prefix} == {job_id}


def test_audit_job_with_an_ambiguous_prefix_exits_2_naming_how_many_and_a_few(
    prefixed: tuple[Path, dict[str, str]],
) -> None:
    db, env = prefixed
    result = call(["audit", "--db-path", str(db), "--job", "abc"], env, cwd=db.parent)
    assert result.code == 2
    assert result.stdout == ""
    assert error_line(result) == (
        "--job 'abc': 4 jobs match ('abc-1111', 'abc-2222', 'abc-3333', ...); give more of the id"
    )
    as_json = audit_json(db, env, "--job", "abc-")
    assert as_json.code == 2
    assert as_json.json()["success"] is False
    assert "4 jobs match" in as_json.json()["errors"][0]


def test_audit_job_prefix_treats_percent_and_underscore_as_plain_characters(
    prefixed: tuple[Path, dict[str, str]],
) -> None:
    db, env = prefixed
    underscore = audit_json(db, env, "--job", "ab_")
    assert underscore.code == 0, underscore.stderr
    assert {row["job_id"] for row in underscore.json()} == {"ab_1"}
    for pattern in ("%", "a%", "_", "zz_"):
        result = call(["audit", "--db-path", str(db), "--job", pattern], env, cwd=db.parent)
        assert result.code == 2, (pattern, result.stdout)
        assert error_line(result) == (
            f"--job '{pattern}': no audited job has this id or starts with it"
        )
    percent = audit_json(db, env, "--job", "zz%")
    assert percent.code == 0, percent.stderr
    assert {row["job_id"] for row in percent.json()} == {"zz%1"}


def test_audit_job_prefix_is_case_sensitive_and_a_whole_id_wins(
    prefixed: tuple[Path, dict[str, str]],
) -> None:
    db, env = prefixed
    upper = audit_json(db, env, "--job", "ABC")
    assert upper.code == 0, upper.stderr
    assert {row["job_id"] for row in upper.json()} == {"ABC-5555"}
    whole = audit_json(db, env, "--job", "abc-2222")
    assert whole.code == 0, whole.stderr
    assert {row["job_id"] for row in whole.json()} == {"abc-2222"}


def test_audit_job_that_matches_nothing_exits_2(prefixed: tuple[Path, dict[str, str]]) -> None:
    db, env = prefixed
    result = call(["audit", "--db-path", str(db), "--job", "nope"], env, cwd=db.parent)
    assert result.code == 2
    assert error_line(result) == "--job 'nope': no audited job has this id or starts with it"
    assert result.stdout == ""


def test_audit_job_ambiguity_message_escapes_the_ids_it_names(tmp_path: Path) -> None:
    base = tmp_path / "base"
    hostile = ["ev\x1b[2Jil-1", "ev\nil-2"]
    db = make_audited_base(base, [(job_id, "results/x/") for job_id in hostile])
    result = call(["audit", "--db-path", str(db), "--job", "ev"], guarded_env(tmp_path), cwd=base)
    assert result.code == 2
    assert "\x1b" not in result.stderr
    assert error_line(result) == (
        "--job 'ev': 2 jobs match ('ev\\nil-2', 'ev\\x1b[2Jil-1'); give more of the id"
    )


def test_audit_action_unknown_exits_2_listing_the_valid_actions(cleaned: Cleaned) -> None:
    result = cleaned.cli("audit", "--action", "deleted")
    assert result.code == 2
    assert result.stdout == ""
    assert error_line(result) == (
        "--action 'deleted': not an audit action; one of deleted_results, deleted_archive, "
        "deleted_temp, deleted_upload, kept_upload, kept_logs, refused, error, no_data"
    )


@pytest.mark.parametrize("action", list(AuditAction))
def test_audit_action_accepts_every_action_the_engine_writes(
    cleaned: Cleaned, action: AuditAction
) -> None:
    rows = cleaned.json("audit", "--action", str(action))
    assert {row["action"] for row in rows} <= {str(action)}


def test_every_action_the_run_wrote_and_the_engine_names_is_an_audit_action(
    cleaned: Cleaned,
) -> None:
    written = {row["action"] for row in cleaned.json("audit", "--limit", "100000")}
    assert written and written <= set(AuditAction)
    source = (REPO / "eemt_cleanup" / "engine.py").read_text()
    source += (REPO / "eemt_cleanup" / "policy.py").read_text()
    named = set(re.findall(r"AuditRow\(\s*[\w.]+,\s*\"(\w+)\"", source))
    named |= set(re.findall(r"Artifact\([^)]*?\"((?:deleted|kept)_\w+)\"", source))
    named |= {AuditAction[name].value for name in re.findall(r"AuditAction\.([A-Z_]+)", source)}
    assert {"refused", "error", "no_data", "kept_upload", "kept_logs", "deleted_temp"} <= named
    assert named <= set(AuditAction)


# --------------------------------------------------------------------------- config show


def test_config_show_accepts_every_option_of_run() -> None:
    import typer.main

    from eemt_cleanup.cli import app

    group = typer.main.get_command(app)
    run = group.commands["run"]  # type: ignore[attr-defined]
    show = group.commands["config"].commands["show"]  # type: ignore[attr-defined]

    def options(command: Any) -> set[str]:
        return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}

    assert options(run) <= options(show), options(run) - options(show)


def test_config_show_takes_a_pasted_run_command_line_and_names_each_flag(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    job_id = demo_base.manifest["jobs"][0]["id"]
    line = [
        "--dry-run",
        "-c",
        str(config),
        "--success-retention",
        "24",
        "--failed-retention",
        "6",
        "--workers",
        "8",
        "--batch-size",
        "50",
        "--job",
        job_id,
        "--limit",
        "3",
        "--verbose",
        "--trigger",
        "cron",
        "--events",
        "jsonl",
        "--debug",
    ]
    result = call(["config", "show", *line], guarded_env(tmp_path))
    assert result.code == 0, result.stderr
    shown = {row[0]: (row[1], row[2]) for row in tab_rows(result.stdout)[1:]}
    assert shown["performance.max_workers"] == ("8", "flag --workers")
    assert shown["performance.parallel_delete"] == ("true", "flag --workers")
    assert shown["performance.batch_size"] == ("50", "flag --batch-size")
    assert shown["retention.successful_jobs.hours"] == ("24.0", "flag --success-retention")
    assert shown["retention.failed_jobs.hours"] == ("6.0", "flag --failed-retention")
    assert shown["run.dry_run"] == ("true", "flag --dry-run")
    assert shown["run.jobs"] == (json.dumps([job_id]), "flag --job")
    assert shown["run.limit"] == ("3", "flag --limit")
    assert shown["run.verbose"] == ("true", "flag --verbose")
    assert shown["run.trigger"] == ("cron", "flag --trigger")
    assert shown["run.events"] == ("jsonl", "flag --events")
    # The header is printed once: the run's options continue the same tab-separated table.
    assert [row for row in tab_rows(result.stdout) if row[0] == "Key"] == [
        ["Key", "Value", "Source"]
    ]


def test_config_show_json_keeps_its_shape_with_run_flags(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = install_config(demo_base)
    env = guarded_env(tmp_path)
    plain = call(["config", "show", "--json", "-c", str(config)], env)
    assert plain.code == 0, plain.stderr
    items = json.loads(plain.stdout)
    assert all(set(item) == {"key", "value", "source"} for item in items)
    assert not any(item["key"].startswith("run.") for item in items)
    assert {item["key"]: item["source"] for item in items}["paths.temp"] == f"file {config}"
    flagged = call(
        ["config", "show", "--json", "-c", str(config), "--workers", "8", "-q", "--job", "a"],
        env,
    )
    assert flagged.code == 0, flagged.stderr
    extra = json.loads(flagged.stdout)
    assert all(set(item) == {"key", "value", "source"} for item in extra)
    by_key = {item["key"]: item for item in extra}
    assert by_key["performance.max_workers"] == {
        "key": "performance.max_workers",
        "value": 8,
        "source": "flag --workers",
    }
    assert by_key["run.jobs"]["value"] == ["a"]
    assert by_key["run.quiet"]["value"] is True


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quiet", "--verbose"], "--quiet and --verbose contradict each other"),
        (["--events", "xml"], "--events 'xml': the only format is 'jsonl'"),
    ],
)
def test_config_show_refuses_what_run_refuses_with_the_same_words(
    tmp_path: Path, demo_base: DemoBase, flags: list[str], message: str
) -> None:
    config = install_config(demo_base)
    env = guarded_env(tmp_path)
    shown = call(["config", "show", "-c", str(config), *flags], env)
    run = call(["run", "--dry-run", "-c", str(config), *flags], env)
    assert shown.code == run.code == 2
    assert error_line(shown) == error_line(run) == message


# --------------------------------------------------------------------------- config validate


def test_config_validate_of_a_missing_file_names_that_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cleanup_config.yaml"
    result = call(["config", "validate", str(missing)], guarded_env(tmp_path))
    assert result.code == 2
    assert error_line(result) == f"FILE: no such file: {missing}"
    assert "--config" not in result.stderr
    relative = call(["config", "validate", "missing.yaml"], guarded_env(tmp_path), cwd=tmp_path)
    assert relative.code == 2
    assert error_line(relative) == f"FILE: no such file: {tmp_path / 'missing.yaml'}"


def test_config_validate_names_each_root_run_would_refuse(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    create_jobs_db(base / "jobs.db", [])
    (base / "results").write_text("a file, not a directory\n")
    (base / "temp").symlink_to(base / "gone")
    config = base / "cleanup_config.yaml"
    config.write_text(
        "paths:\n  database: ./jobs.db\n  uploads: ./uploads\n  results: ./results\n"
        "  temp: ./temp\n  logs: ./logs\n"
    )
    env = guarded_env(tmp_path)
    result = call(["config", "validate", str(config)], env)
    assert result.code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    origin = f"(from file {config})"
    assert lines == [
        f"{PREFIX}paths.uploads: {base / 'uploads'} does not exist {origin}",
        f"{PREFIX}paths.results: {base / 'results'} is a regular file, not a directory {origin}",
        f"{PREFIX}paths.temp: {base / 'gone'} does not exist {origin}",
    ]
    run = call(["run", "--dry-run", "--config", str(config)], env)
    assert run.code == 2, "run refuses the same roots"
    assert error_line(run).startswith("paths.uploads: ")


def test_config_validate_accepts_roots_that_are_symlinks_to_directories_as_run_does(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    for root in ("uploads", "real_results", "temp"):
        (base / root).mkdir(parents=True)
    (base / "results").symlink_to(base / "real_results")
    create_jobs_db(base / "jobs.db", [])
    config = base / "cleanup_config.yaml"
    config.write_text("paths:\n  uploads: ./uploads\n  results: ./results\n  temp: ./temp\n")
    env = guarded_env(tmp_path)
    result = call(["config", "validate", str(config)], env)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{config}: valid"
    run = call(["run", "--dry-run", "--db-path", str(base / "jobs.db"), "-c", str(config)], env)
    assert run.code == 0, run.stderr


# --------------------------------------------------------------------------- the layout itself

RUN_ID = "9b1c0d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"
JOB_ID = "3f2a9c1e-5b7d-4c1e-9d2a-0e8f6b4a1c3d"


def rendered(table: Any, columns: int) -> list[str]:
    """``table`` as a terminal of ``columns`` would show it (no styles)."""
    import io

    from rich.console import Console

    from eemt_cleanup.report.info_tables import show_table

    out = io.StringIO()
    show_table(Console(file=out, width=columns, color_system=None, force_terminal=True), table)
    return CONTROL_SEQUENCE.sub("", out.getvalue()).splitlines()


def audit_row(error: str | None = None) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-02T23:27:41+00:00",
        "job_id": JOB_ID,
        "action": "error",
        "path": f"results/{JOB_ID}/outputs/a/very/deep/tree/of/tiles/tile_00042.tif",
        "bytes_freed": 4_812_000,
        "files_deleted": 1,
        "user": "root",
        "run_id": RUN_ID,
        "error": error,
    }


@pytest.mark.parametrize("columns", [60, 80, 120, 200, 300])
def test_long_error_text_wraps_whole_and_ids_stay_on_one_line_at_any_width(
    columns: int,
) -> None:
    from eemt_cleanup.report.info_tables import audit_table

    error = " ".join(f"word{index}" for index in range(80)) + " [red]markup[/red]"
    lines = rendered(audit_table([audit_row(error)]), columns)
    assert all(cell_len(line) <= columns for line in lines), lines
    assert any(JOB_ID in line for line in lines) and any(RUN_ID in line for line in lines)
    text = "\n".join(lines)
    assert "…" not in text
    for word in error.split():
        assert word in text, word  # wrapped at spaces, never cut
    assert "4.6 MB" in text and "2026-12-02 23:27 UTC" in text


def test_a_table_too_wide_for_its_ids_is_laid_out_one_block_per_record() -> None:
    from eemt_cleanup.report.info_tables import audit_table, column_widths

    table = audit_table([audit_row(), audit_row("disk on fire")])
    assert column_widths(table, 80) is None
    widths = column_widths(table, 200)
    assert widths is not None
    assert sum(widths) + 2 * len(widths) + len(widths) + 1 <= 200
    lines = rendered(table, 80)
    jobs = [line.rstrip() for line in lines if line.startswith("Job ")]
    assert jobs == [f"Job     {JOB_ID}"] * 2
    assert lines[0] == "Audit"


def test_a_terminal_narrower_than_a_key_and_an_id_puts_each_value_under_its_key() -> None:
    from eemt_cleanup.report.info_tables import history_table

    run = {"run_id": RUN_ID, "started_at": "2026-12-02T23:27:41+00:00", "bytes_freed": 10}
    lines = rendered(history_table([run]), 40)
    assert all(cell_len(line) <= 40 for line in lines), lines
    index = lines.index("Run")
    assert lines[index + 1].strip() == RUN_ID
    assert "Exit" in lines and "-" in [line.strip() for line in lines]

"""Reports going out from the installed CLI: alerts under --quiet, the JSON keys, usage
samples from run and status, and nothing loaded when nothing is configured."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DemoBase, guarded_env
from servers import SECRET_PATH, free_port, http_receiver, smtp_server, wait_for

pytestmark = pytest.mark.e2e


def write_config(base: DemoBase, text: str) -> Path:
    config = base.path / "cleanup_config.yaml"
    config.write_text(text)
    return config


def samples(db: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT source, run_id FROM cleanup_usage GROUP BY sample_id ORDER BY min(id)"
        ).fetchall()
    finally:
        conn.close()


def test_an_alert_is_printed_under_quiet_and_the_exit_code_stays_0(
    demo_base: DemoBase, run_cli
) -> None:
    config = write_config(demo_base, "alerts:\n  min_free_percent: 100\n")

    done = run_cli("run", "--quiet", "--config", str(config), *demo_base.path_args())

    assert done.code == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    alerts = [line for line in lines if "ALERT: the filesystem of" in line]
    assert len(alerts) == 1, lines
    assert "under the alert threshold of 100% (alerts.min_free_percent)" in alerts[0]
    # --quiet: nothing else is printed but the demo's one row that is never cleaned.
    others = [line for line in lines if line not in alerts]
    assert len(others) == 1 and "Never cleaned until fixed" in others[0], lines


def test_run_json_lists_alerts_usage_and_no_notices(demo_base: DemoBase, run_cli) -> None:
    config = write_config(demo_base, "alerts:\n  max_results_bytes: 1\n")

    done = run_cli("run", "--json", "--config", str(config), *demo_base.path_args())

    assert done.code == 0, done.stderr
    data = done.json()
    [alert] = data["alerts"]
    assert alert["kind"] == "max_results_bytes" and alert["roots"] == ["results"]
    assert alert["threshold"] == 1 and alert["value"] > 1
    assert data["notifications"] == [] and data["metrics"] is None
    assert data["report_problems"] == []
    assert data["usage"]["source"] == "run" and data["usage"]["run_id"] == data["run_id"]
    assert data["usage"]["due_jobs"] == 0
    assert samples(demo_base.db) == [("run", data["run_id"])]


def test_a_run_with_nothing_configured_has_empty_report_keys_and_stores_no_sample(
    demo_base: DemoBase, run_cli
) -> None:
    config = write_config(demo_base, "")

    done = run_cli("run", "--json", "--config", str(config), *demo_base.path_args())

    assert done.code == 0, done.stderr
    data = done.json()
    assert (data["alerts"], data["notifications"], data["metrics"], data["usage"]) == (
        [],
        [],
        None,
        None,
    )
    conn = sqlite3.connect(demo_base.db)
    try:
        assert conn.execute("SELECT count(*) FROM cleanup_usage").fetchone()[0] == 0
    finally:
        conn.close()


def test_status_stores_a_sample_and_shows_alert_lines(demo_base: DemoBase, run_cli) -> None:
    config = write_config(demo_base, "alerts:\n  min_free_percent: 100\n")

    shown = run_cli("status", "--config", str(config), *demo_base.path_args())
    data = run_cli("status", "--json", "--config", str(config), *demo_base.path_args())

    assert shown.code == 0, shown.stderr
    assert any(line.startswith("ALERT: the filesystem of") for line in shown.stdout.splitlines())
    assert data.code == 0, data.stderr
    payload = data.json()
    assert [alert["kind"] for alert in payload["alerts"]] == ["min_free_percent"]
    assert payload["usage"]["source"] == "status"
    assert payload["usage"]["due_jobs"] == payload["due_now"]
    assert {group["status"]: group["bytes"] for group in payload["usage"]["by_status"]} == {
        group["status"]: group["bytes"] for group in payload["by_status"]
    }
    assert samples(demo_base.db) == [("status", None), ("status", None)]


# Modules of reports going out: a run with none configured must not even import them.
REPORT_MODULES = (
    "eemt_cleanup.outlets",
    "eemt_cleanup.sampling",
    "eemt_cleanup.metrics",
    "eemt_cleanup.notify",
    "prometheus_client",
    "smtplib",
    "urllib.request",
    "apprise",
    "matplotlib",
)
PROBE = """
import json, sys
from eemt_cleanup.cli import invoke
code = invoke(sys.argv[1:])
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}), file=sys.stderr)
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_run_with_no_reports_configured_loads_none_of_their_modules(
    demo_base: DemoBase, tmp_path: Path, dry_run: bool
) -> None:
    config = write_config(demo_base, "")
    args = ["run", "--quiet", "--config", str(config), *demo_base.path_args()]
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (REPORT_MODULES,), *args, *(["-n"] if dry_run else [])],
        env=guarded_env(tmp_path),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    probe = json.loads(done.stderr.strip().splitlines()[-1])
    assert probe == {"code": 0, "loaded": []}


SECRET = SECRET_PATH.rsplit("/", 1)[-1]


def notifying_config(base: DemoBase, webhook: str, smtp_port: int, extra: str = "") -> Path:
    return write_config(
        base,
        f"""\
notifications:
  email:
    enabled: true
    smtp_server: 127.0.0.1
    smtp_port: {smtp_port}
    sender: eemt@example.org
    recipients: [ops@example.org, admin@example.org]
    on: [failure, success]
  slack:
    enabled: true
    webhook_url: {webhook}
    retries: 1
    on: [failure, success]
{extra}""",
    )


def test_a_real_run_sends_its_report_to_slack_and_by_mail(demo_base: DemoBase, run_cli) -> None:
    with http_receiver() as hook, smtp_server() as mailbox:
        config = notifying_config(demo_base, hook.url, mailbox.port)
        done = run_cli("run", "--json", "--config", str(config), *demo_base.path_args())
        wait_for(lambda: len(mailbox.messages) == 1 and len(hook.bodies) == 1)

    assert done.code == 0, done.stderr
    data = done.json()
    cleaned = data["cleaned_jobs"]
    assert {(n["channel"], n["decision"]) for n in data["notifications"]} == {
        ("email", "sent"),
        ("slack", "sent"),
    }
    [payload] = hook.bodies
    assert payload["text"] == "EEMT Cleanup Report"
    fields = {f["title"]: f["value"] for f in payload["attachments"][0]["fields"]}
    assert fields["Space Freed"] == data["space_freed"]["human_readable"]
    assert fields["Status"] == "Success"
    per_status: dict[str, int] = {}
    for detail in data["details"]:
        per_status[detail["status"]] = per_status.get(detail["status"], 0) + 1
    assert sum(per_status.values()) == cleaned["successful"] + cleaned["failed"]
    assert fields["Jobs Cleaned"] == ", ".join(f"{n} {s}" for s, n in sorted(per_status.items()))
    [mail] = mailbox.messages
    assert mail["Subject"].startswith("EEMT Daily Cleanup Report")
    assert mail["From"] == "eemt@example.org"
    assert mailbox.envelopes[0][1] == ["ops@example.org", "admin@example.org"]
    body = mail.get_payload(decode=True).decode()
    assert data["space_freed"]["human_readable"] in body
    for words in ("Jobs Cleaned", "Space Freed", "Current Storage Usage", "Available Space"):
        assert words in body, body
    assert "Next cleanup scheduled for" in body


def test_receivers_down_or_failing_leave_exit_0_and_no_secret_anywhere(
    demo_base: DemoBase, run_cli
) -> None:
    with http_receiver([(500, {}, "oops")]) as hook:
        config = notifying_config(demo_base, hook.url, free_port())  # nothing listens there
        done = run_cli("run", "--json", "--config", str(config), *demo_base.path_args())
        shown = run_cli("config", "show", "--config", str(config))
        shown_json = run_cli("config", "show", "--json", "--config", str(config))

    assert done.code == 0, done.stderr
    data = done.json()
    assert data["success"] is True
    decisions = {n["channel"]: n for n in data["notifications"]}
    assert decisions["slack"]["decision"] == "failed" and decisions["email"]["decision"] == "failed"
    assert len(hook.bodies) == 2  # one retry, then given up
    assert any("slack notice failed" in problem for problem in data["report_problems"])
    log_text = (demo_base.path / "logs" / "cleanup.log").read_text()
    for text in (done.stdout, done.stderr, log_text, shown.stdout, shown_json.stdout):
        assert SECRET not in text
    assert "http://127.0.0.1/***" in shown.stdout


def test_a_metrics_file_that_cannot_be_written_is_a_problem_not_a_failure(
    demo_base: DemoBase, run_cli
) -> None:
    missing = demo_base.path / "no-such-dir" / "eemt.prom"
    config = write_config(demo_base, f"metrics:\n  textfile: {missing}\n")

    done = run_cli("run", "--json", "--config", str(config), *demo_base.path_args())

    assert done.code == 0, done.stderr
    data = done.json()
    assert data["success"] is True
    assert data["metrics"] == {
        "textfile": str(missing),
        "written": False,
        "error": "No such file or directory",
    }
    assert data["report_problems"] == [
        f"metrics textfile {missing} not written: No such file or directory"
    ]


def test_a_run_that_cannot_start_sends_a_failure_notice_and_exits_2(
    demo_base: DemoBase, run_cli
) -> None:
    import shutil

    with http_receiver() as hook:
        config = write_config(
            demo_base,
            f"notifications:\n  slack:\n    enabled: true\n    webhook_url: {hook.url}\n",
        )
        shutil.rmtree(demo_base.path / "results")  # its mount is gone
        done = run_cli("run", "--quiet", "--config", str(config), *demo_base.path_args())
        wait_for(lambda: len(hook.bodies) == 1)

    assert done.code == 2
    assert "paths.results: not an existing directory" in done.stderr
    fields = {f["title"]: f["value"] for f in hook.bodies[0]["attachments"][0]["fields"]}
    assert fields["Status"] == "Failed (exit 2)"
    assert "paths.results: not an existing directory" in fields["Error"]


def test_another_run_holding_the_lock_sends_no_notice(demo_base: DemoBase, run_cli) -> None:
    import fcntl

    with http_receiver() as hook:
        config = write_config(
            demo_base,
            f"notifications:\n  slack:\n    enabled: true\n    webhook_url: {hook.url}\n"
            "    on: [failure, success]\n",
        )
        with open(demo_base.db, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # what another live run holds
            done = run_cli("run", "--quiet", "--config", str(config), *demo_base.path_args())

    assert done.code == 75
    assert hook.bodies == []

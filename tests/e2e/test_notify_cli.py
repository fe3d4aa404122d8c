"""End-to-end: ``eemt-cleanup notify --test`` (the installed CLI) against a real SMTP server
and HTTP receiver on 127.0.0.1: one line per channel, exit 0 when every channel took the
notice, 1 when one failed (without a trace of the webhook's secret path), 2 without --test
or without an enabled channel; ``--json``; the notice recorded in the database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import call, create_jobs_db, error_line, guarded_env
from servers import SECRET_PATH, closed_url, free_port, http_receiver, smtp_server

pytestmark = pytest.mark.e2e

SECRET = SECRET_PATH.rsplit("/", 1)[1]


def write_config(base: Path, notifications: dict[str, Any]) -> Path:
    """A base directory (an empty jobs table, the roots) and its config file."""
    base.mkdir(parents=True, exist_ok=True)
    create_jobs_db(base / "jobs.db", [])
    for root in ("uploads", "results", "temp"):
        (base / root).mkdir()
    paths = {"database": "./jobs.db", "uploads": "./uploads", "results": "./results"}
    paths.update(temp="./temp", logs="./logs")
    config_file = base / "cleanup_config.yaml"
    config_file.write_text(yaml.safe_dump({"paths": paths, "notifications": notifications}))
    return config_file


def channels(smtp_port: int, webhook_url: str) -> dict[str, Any]:
    return {
        "email": {
            "enabled": True,
            "smtp_server": "127.0.0.1",
            "smtp_port": smtp_port,
            "recipients": ["ops@example.com"],
            "sender": "janitor@example.com",
        },
        "slack": {"enabled": True, "webhook_url": webhook_url, "retries": 0},
    }


def recorded(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT channel, kind, decision FROM cleanup_notices ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_notify_test_reaches_mail_and_webhook_says_so_and_exits_0(tmp_path: Path) -> None:
    with smtp_server() as box, http_receiver() as receiver:
        config = write_config(tmp_path / "base", channels(box.port, receiver.url))
        env = guarded_env(tmp_path, TZ="UTC")
        result = call(["notify", "--test", "--config", str(config)], env)

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"email: sent (1 recipient via 127.0.0.1:{box.port})",
        "slack: sent (http://127.0.0.1/***)",
    ]
    assert result.stderr == ""
    (mail,) = box.messages
    assert (mail["Subject"], mail["To"]) == ("EEMT Cleanup Test", "ops@example.com")
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    lines = payload.decode().splitlines()
    assert lines[:3] == [
        "Cleanup Test",
        "============",
        "A test notice from eemt-cleanup notify --test: notices reach you.",
    ]
    # The shipped schedule (02:00 every day), read in the local zone (TZ=UTC here).
    assert re.fullmatch(
        r"Next cleanup scheduled for: \d{4}-\d\d-\d\d 02:00 UTC \(in .+\)", lines[3]
    )
    (body,) = receiver.bodies
    assert body["text"] == "EEMT Cleanup Test"
    assert recorded(tmp_path / "base" / "jobs.db") == [
        ("email", "test", "sent"),
        ("slack", "test", "sent"),
    ]


def test_notify_test_with_the_receiver_down_exits_1_and_shows_no_secret(tmp_path: Path) -> None:
    url = closed_url()
    port = url.split(":")[2].split("/")[0]
    with smtp_server() as box:
        config = write_config(tmp_path / "base", channels(box.port, url))
        result = call(["notify", "--test", "-c", str(config)], guarded_env(tmp_path))

    assert result.code == 1
    error = f"connection refused: 127.0.0.1:{port}"
    assert result.stdout.splitlines() == [
        f"email: sent (1 recipient via 127.0.0.1:{box.port})",
        f"slack: failed ({error})",
    ]
    # The failure is the channel's line on stdout; it is not repeated as a warning.
    assert result.stderr == ""
    for stream in (result.stdout, result.stderr):
        assert SECRET not in stream and "/services" not in stream
    assert len(box.messages) == 1


def test_notify_test_json_lists_each_result_and_records_in_the_db_path_given(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.db"
    create_jobs_db(other, [])
    with http_receiver() as receiver:
        settings = {"slack": {"enabled": True, "webhook_url": receiver.url}}
        config = write_config(tmp_path / "base", settings)
        args = ["notify", "--test", "-c", str(config), "--db-path", str(other), "--json"]
        result = call(args, guarded_env(tmp_path))

    assert result.code == 0, result.stderr
    assert result.json() == {
        "success": True,
        "results": [
            {
                "channel": "slack",
                "decision": "sent",
                "kind": "test",
                "error": None,
                "suppressed_before": 0,
                "destination": "http://127.0.0.1/***",
                "note": None,
            }
        ],
    }
    assert recorded(other) == [("slack", "test", "sent")]
    assert len(receiver.requests) == 1


def test_notify_without_test_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "base", channels(free_port(), closed_url()))
    result = call(["notify", "-c", str(config)], guarded_env(tmp_path))

    assert result.code == 2
    assert result.stdout == ""
    assert error_line(result) == (
        "notify: nothing to do; give --test to send a test notice to every enabled channel"
        " (see 'eemt-cleanup notify --help')"
    )


def test_notify_test_without_an_enabled_channel_says_how_to_enable_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "base", {})
    result = call(["notify", "--test", "-c", str(config)], guarded_env(tmp_path))

    assert result.code == 2
    assert error_line(result) == (
        "no notification channel is enabled: set notifications.email.enabled, "
        "notifications.slack.enabled or notifications.apprise.enabled to true in "
        f"{config}"
    )


def test_notify_help_shows_the_examples_and_exit_codes(tmp_path: Path) -> None:
    result = call(["notify", "--help"], guarded_env(tmp_path))

    assert result.code == 0
    assert "eemt-cleanup notify --test -c /srv/eemt/cleanup_config.yaml" in result.stdout
    assert "Exit codes: 0 every channel took the notice, 1 at least one failed" in result.stdout


def test_notify_test_with_a_missing_database_still_sends_and_says_why_in_a_note(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "absent.db"
    with http_receiver() as receiver:
        settings = {"slack": {"enabled": True, "webhook_url": receiver.url}}
        config = write_config(tmp_path / "base", settings)
        args = ["notify", "--test", "-c", str(config), "--db-path", str(missing)]
        result = call(args, guarded_env(tmp_path))

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "slack: sent (http://127.0.0.1/***)",
        f"Note: notification state in {missing} cannot be used (database not found: {missing}"
        " (set paths.database, EEMT_DB_PATH or --db-path)): notices are sent without a rate"
        " limit",
    ]
    assert result.stderr == ""
    assert len(receiver.requests) == 1 and not missing.exists()

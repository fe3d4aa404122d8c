"""Notices arrive at real servers on 127.0.0.1 with the right words: the e-mail report
(aiosmtpd, with and without a login), the Slack-compatible webhook (an HTTP receiver:
payload, retries, failures that leak no secret, escaping), apprise (its json:// URL against
the same receiver), and the rate limit with its state in SQLite (an injected clock)."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import create_jobs_db
from servers import (
    SECRET_PATH,
    SLOW_HTTP_ANSWER,
    SLOW_SMTP_GREETING,
    Answer,
    Mailbox,
    closed_url,
    free_port,
    http_receiver,
    self_signed_certificate,
    smtp_server,
    trickling_server,
    wait_for,
)

from eemt_cleanup.alerts import Alert, AlertKind
from eemt_cleanup.config.loader import LoadedConfig, load_config
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.models import CleanedJobs, RunSummary, SpaceFreed
from eemt_cleanup.notify import (
    Notice,
    NoticeResult,
    apprise_channel,
    decide,
    enabled_channels,
    send_notices,
)
from eemt_cleanup.notify.apprise_channel import NOT_INSTALLED
from eemt_cleanup.notify.message import build_message
from eemt_cleanup.store.notices import ChannelHistory, recent_notices
from eemt_cleanup.store.usage import RootUsage, StatusUsage, UsageSample

GIB = 1024**3
TIB = 1024**4
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
EVERY_KIND = ["success", "failure", "alert"]

# The SMTP server of these tests takes a login without TLS: it listens on 127.0.0.1 only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


# --- configuration, runs and usage -----------------------------------------------------------


def write_config(base: Path, notifications: dict[str, Any], **sections: Any) -> LoadedConfig:
    """A base directory (an empty jobs table, the three roots) and a config file enabling
    ``notifications``; loaded without the environment."""
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "jobs.db").exists():
        create_jobs_db(base / "jobs.db", [])
    for root in ("uploads", "results", "temp"):
        (base / root).mkdir(exist_ok=True)
    paths = {"database": "./jobs.db", "uploads": "./uploads", "results": "./results"}
    paths.update(temp="./temp", logs="./logs")
    config_file = base / "cleanup_config.yaml"
    tree = {"paths": paths, "notifications": notifications, **sections}
    config_file.write_text(yaml.safe_dump(tree))
    return load_config(config_path=config_file, environ={})


def slack(url: str, **settings: Any) -> dict[str, Any]:
    return {"slack": {"enabled": True, "webhook_url": url, **settings}}


def email(box: Mailbox, **settings: Any) -> dict[str, Any]:
    values = {
        "enabled": True,
        "smtp_server": box.host,
        "smtp_port": box.port,
        "recipients": ["ops@example.com", "oncall@example.com"],
        "sender": "janitor@example.com",
        **settings,
    }
    return {"email": values}


def run_summary(*, errors: list[str] | None = None, run_id: str = "run-1") -> RunSummary:
    freed = 45 * GIB
    return RunSummary(
        success=not errors,
        dry_run=False,
        run_id=run_id,
        started_at=NOW - timedelta(minutes=2),
        finished_at=NOW,
        cleaned_jobs=CleanedJobs(successful=3, failed=2),
        space_freed=SpaceFreed(bytes=freed, human_readable=human_size(freed)),
        files_deleted=1234,
        details=[],
        skipped=[],
        errors=errors or [],
        dry_run_forced_by=None,
        never_cleaned={},
        recorded_late=[],
    )


def usage_sample() -> UsageSample:
    # The three roots on one filesystem of 1 TiB with 500 GiB free.
    roots = [
        RootUsage(root=name, jobs=12, bytes=size, fs_size=TIB, fs_free=500 * GIB)
        for name, size in (("uploads", 10 * GIB), ("results", 100 * GIB), ("temp", 10 * GIB))
    ]
    return UsageSample(
        sample_id="s-1",
        taken_at=NOW,
        source="run",
        run_id="run-1",
        by_status=[
            StatusUsage(status="completed", jobs=10, bytes=100 * GIB),
            StatusUsage(status="failed", jobs=2, bytes=20 * GIB),
        ],
        by_root=roots,
    )


RESULTS_ALERT = Alert(
    kind=AlertKind.MAX_RESULTS_BYTES,
    roots=["results"],
    value=100 * GIB,
    threshold=50 * GIB,
    message="results holds 100.0 GB of job data, over the alert threshold of 50.0 GB "
    "(alerts.max_results_bytes)",
)


def success_notice(**extra: Any) -> Notice:
    return Notice(
        kinds=frozenset({"success"}),
        run=run_summary(),
        exit_code=0,
        trigger="cli",
        usage=usage_sample(),
        **extra,
    )


def failure_notice(errors: list[str] | None = None, **extra: Any) -> Notice:
    return Notice(
        kinds=frozenset({"failure"}),
        run=run_summary(errors=errors or ["results/abc: Permission denied"]),
        exit_code=1,
        trigger="cli",
        usage=usage_sample(),
        **extra,
    )


@pytest.fixture
def local_time_is_utc() -> Iterator[None]:
    """The process's local zone is UTC (cron expressions are read in local time)."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = previous
        time.tzset()


def no_sleep(delays: list[float]) -> Any:
    return delays.append


def body_lines(message: Message) -> list[str]:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8").splitlines()


def notices_in(config: LoadedConfig, channel: str | None = None) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{config.roots.database.as_uri()}?mode=ro", uri=True)
    try:
        return [
            (record.kind, record.decision, record.suppressed_before, record.error)
            for record in recent_notices(conn, channel)
        ]
    finally:
        conn.close()


# --- e-mail ----------------------------------------------------------------------------------


def test_run_report_mail_has_subject_addresses_and_the_daily_report_lines(
    tmp_path: Path, local_time_is_utc: None
) -> None:
    with smtp_server() as box:
        config = write_config(tmp_path / "base", email(box, on=EVERY_KIND))
        results = send_notices(config, success_notice(), now=NOW)

    assert results == [
        NoticeResult(
            channel="email",
            decision="sent",
            kind="success",
            destination=f"2 recipients via 127.0.0.1:{box.port}",
        )
    ]
    assert box.envelopes == [("janitor@example.com", ["ops@example.com", "oncall@example.com"])]
    (mail,) = box.messages
    assert mail["Subject"] == "EEMT Daily Cleanup Report"
    assert mail["From"] == "janitor@example.com"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "text/plain"
    assert body_lines(mail) == [
        "Daily Cleanup Report",
        "====================",
        "Jobs Cleaned: 3 completed, 2 failed",
        "Space Freed: 45.0 GB",
        "Current Storage Usage: 120.0 GB (12 jobs)",
        "  completed: 10 jobs, 100.0 GB",
        "  failed: 2 jobs, 20.0 GB",
        "Available Space:",
        "  uploads, results, temp: 500.0 GB free of 1.0 TB (48.8%)",
        "Next cleanup scheduled for: 2026-01-21 02:00 UTC (in 14 hours)",
        "Status: Success",
        "",
        f"Host: {socket.gethostname()}",
        "Run ID: run-1",
        "Triggered by: cli",
    ]
    assert notices_in(config) == [("success", "sent", 0, None)]


def test_failed_run_with_an_alert_mails_failed_alert_subject_and_the_first_ten_errors(
    tmp_path: Path, local_time_is_utc: None
) -> None:
    errors = [f"results/job-{number}: Permission denied" for number in range(12)]
    notice = Notice(
        kinds=frozenset({"failure", "alert"}),
        run=run_summary(errors=errors),
        exit_code=1,
        trigger="schedule",
        alerts=(RESULTS_ALERT,),
        usage=usage_sample(),
    )
    with smtp_server() as box:
        config = write_config(tmp_path / "base", email(box))
        (result,) = send_notices(config, notice, now=NOW)

    assert (result.decision, result.kind) == ("sent", "failure")
    (mail,) = box.messages
    assert mail["Subject"] == "EEMT Daily Cleanup Report - FAILED - ALERT"
    lines = body_lines(mail)
    assert "Status: Failed (exit 1)" in lines
    start = lines.index("Alerts:")
    assert lines[start + 1] == f"  - {RESULTS_ALERT.message}"
    start = lines.index("Errors (first 10 of 12):")
    assert lines[start + 1 : start + 11] == [f"  - {error}" for error in errors[:10]]
    assert lines[start + 11] == ""
    assert "Triggered by: schedule" in lines


def test_alert_only_mail_comes_from_the_default_sender_and_says_nothing_is_scheduled(
    tmp_path: Path,
) -> None:
    notice = Notice(kinds=frozenset({"alert"}), alerts=(RESULTS_ALERT,), usage=usage_sample())
    with smtp_server() as box:
        settings = email(box, sender="", recipients=["ops@example.com"])
        config = write_config(tmp_path / "base", settings, schedule={"enabled": False})
        (result,) = send_notices(config, notice, now=NOW)

    assert (result.decision, result.kind, result.destination) == (
        "sent",
        "alert",
        f"1 recipient via 127.0.0.1:{box.port}",
    )
    (mail,) = box.messages
    assert mail["Subject"] == "EEMT Cleanup Alert"
    assert mail["From"] == f"eemt-cleanup@{socket.getfqdn()}"
    lines = body_lines(mail)
    assert lines[:2] == ["Cleanup Alert", "============="]
    assert "Next cleanup scheduled for: not scheduled (schedule.enabled is false)" in lines
    assert f"  - {RESULTS_ALERT.message}" in lines
    assert not any(line.startswith(("Jobs Cleaned", "Run ID", "Status")) for line in lines)


def test_login_with_the_password_from_an_environment_variable_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EEMT_TEST_SMTP_PASSWORD", "s3cret-from-env")
    with smtp_server({"janitor": "s3cret-from-env"}) as box:
        settings = email(box, username="janitor", password_env="EEMT_TEST_SMTP_PASSWORD")
        config = write_config(tmp_path / "base", settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("sent", None)
    assert box.logins == ["janitor"]
    assert len(box.messages) == 1


def test_login_with_the_password_from_the_first_line_of_a_file_sends(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "smtp_password").write_text("s3cret-from-file\nsecond line ignored\n")
    with smtp_server({"janitor": "s3cret-from-file"}) as box:
        # Relative to the config file's directory.
        settings = email(box, username="janitor", password_file="smtp_password")
        config = write_config(base, settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("sent", None)
    assert box.logins == ["janitor"]


def test_wrong_password_fails_with_an_error_that_does_not_hold_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EEMT_TEST_SMTP_PASSWORD", "wrong-Pa55word")
    caplog.set_level(logging.DEBUG, logger="eemt_cleanup")
    with smtp_server({"janitor": "right-password"}) as box:
        settings = email(box, username="janitor", password_env="EEMT_TEST_SMTP_PASSWORD")
        config = write_config(tmp_path / "base", settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert result.decision == "failed"
    assert result.error == (
        "login refused for user janitor: 535 5.7.8 Authentication credentials invalid"
    )
    assert box.messages == []
    assert "wrong-Pa55word" not in caplog.text
    assert "wrong-Pa55word" not in json.dumps(result.model_dump())
    assert notices_in(config) == [("failure", "failed", 0, result.error)]


def test_missing_password_variable_or_file_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EEMT_TEST_SMTP_PASSWORD", raising=False)
    with smtp_server({"janitor": "x"}) as box:
        by_env = email(box, username="janitor", password_env="EEMT_TEST_SMTP_PASSWORD")
        by_file = email(box, username="janitor", password_file="absent_password")
        (from_env,) = send_notices(write_config(tmp_path / "a", by_env), failure_notice())
        (from_file,) = send_notices(write_config(tmp_path / "b", by_file), failure_notice())

    assert from_env.decision == from_file.decision == "failed"
    assert from_env.error == (
        "password_env: the environment variable EEMT_TEST_SMTP_PASSWORD is not set (or is empty)"
    )
    assert from_file.error == (
        f"password_file: cannot read {tmp_path / 'b' / 'absent_password'}: "
        "No such file or directory"
    )
    assert box.messages == []


def test_mail_server_that_is_down_fails_with_connection_refused(tmp_path: Path) -> None:
    port = free_port()
    settings = {"email": {"enabled": True, "smtp_server": "127.0.0.1", "smtp_port": port}}
    settings["email"]["recipients"] = ["ops@example.com"]
    config = write_config(tmp_path / "base", settings)
    (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("failed", f"connection refused: 127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        (
            "starttls",
            "the server does not offer STARTTLS: 127.0.0.1:{port} (set notifications.email.tls)",
        ),
        ("ssl", "TLS failed (WRONG_VERSION_NUMBER): 127.0.0.1:{port}"),
    ],
)
def test_tls_that_the_server_cannot_speak_fails_before_anything_is_sent(
    tmp_path: Path, tls: str, expected: str
) -> None:
    with smtp_server() as box:
        config = write_config(tmp_path / "base", email(box, tls=tls))
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("failed", expected.format(port=box.port))
    assert box.messages == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    pair = self_signed_certificate(tmp_path)
    if pair is None:
        pytest.skip("the openssl program is needed to make a test certificate")
    return pair


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_login_over_tls_to_a_server_whose_certificate_is_trusted_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path], tls: str
) -> None:
    # The throw-away certificate is trusted the way an operator trusts a private CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.setenv("EEMT_TEST_SMTP_PASSWORD", "s3cret-over-tls")
    server = {"starttls": certificate} if tls == "starttls" else {"implicit_tls": certificate}
    with smtp_server({"janitor": "s3cret-over-tls"}, **server) as box:
        settings = email(box, tls=tls, username="janitor", password_env="EEMT_TEST_SMTP_PASSWORD")
        config = write_config(tmp_path / "base", settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("sent", None)
    assert box.logins == ["janitor"]
    assert len(box.messages) == 1


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_a_certificate_nobody_trusts_fails_before_the_password_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path], tls: str
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("EEMT_TEST_SMTP_PASSWORD", "never-sent")
    server = {"starttls": certificate} if tls == "starttls" else {"implicit_tls": certificate}
    with smtp_server({"janitor": "never-sent"}, **server) as box:
        settings = email(box, tls=tls, username="janitor", password_env="EEMT_TEST_SMTP_PASSWORD")
        config = write_config(tmp_path / "base", settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert result.decision == "failed"
    assert result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert "never-sent" not in result.error
    assert box.logins == [] and box.messages == []


# --- Slack-compatible webhook ----------------------------------------------------------------


def test_webhook_receives_the_reference_payload_as_json(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, on=EVERY_KIND))
        (result,) = send_notices(config, success_notice(), now=NOW)

    assert result == NoticeResult(
        channel="slack", decision="sent", kind="success", destination="http://127.0.0.1/***"
    )
    (request,) = receiver.requests
    assert request.path == SECRET_PATH
    assert request.headers["Content-Type"] == "application/json"
    host = socket.gethostname()
    assert request.body == {
        "text": "EEMT Cleanup Report",
        "attachments": [
            {
                "fallback": f"EEMT Cleanup Report on {host}: Success, 5 jobs cleaned, "
                "45.0 GB freed",
                "color": "good",
                "fields": [
                    {"title": "Jobs Cleaned", "value": "3 completed, 2 failed", "short": True},
                    {"title": "Space Freed", "value": "45.0 GB", "short": True},
                    {"title": "Status", "value": "Success", "short": True},
                    {"title": "Host", "value": host, "short": True},
                    {"title": "Run", "value": "run-1", "short": True},
                ],
            }
        ],
    }


def test_webhook_failure_with_an_alert_is_danger_with_alerts_and_errors(tmp_path: Path) -> None:
    errors = [f"results/job-{number}: Permission denied" for number in range(5)]
    notice = failure_notice(errors, alerts=(RESULTS_ALERT,))
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        send_notices(config, notice, now=NOW)

    (attachment,) = receiver.bodies[0]["attachments"]
    fields = {item["title"]: item["value"] for item in attachment["fields"]}
    assert attachment["color"] == "danger"
    assert fields["Status"] == "Failed (exit 1)"
    assert fields["Alerts"] == RESULTS_ALERT.message
    assert fields["Errors"].split("\n") == [*errors[:3], "(and 2 more)"]


def test_alert_only_and_test_notices_have_their_own_titles(tmp_path: Path) -> None:
    alert = Notice(kinds=frozenset({"alert"}), alerts=(RESULTS_ALERT,), usage=usage_sample())
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        send_notices(config, alert, now=NOW)
        send_notices(config, Notice(kinds=frozenset({"test"})), now=NOW)

    titles = [(body["text"], body["attachments"][0]["color"]) for body in receiver.bodies]
    assert titles == [("EEMT Cleanup Alert", "warning"), ("EEMT Cleanup Test", "good")]
    alert_fields = [item["title"] for item in receiver.bodies[0]["attachments"][0]["fields"]]
    assert alert_fields == ["Alerts", "Current Usage", "Host"]


def test_webhook_answering_500_twice_then_200_is_sent_after_two_retries(tmp_path: Path) -> None:
    delays: list[float] = []
    answers: list[Answer] = [(500, {}, "oops"), (500, {}, "oops"), (200, {}, "ok")]
    with http_receiver(answers) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=2))
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep(delays))

    assert (result.decision, result.error) == ("sent", None)
    assert len(receiver.requests) == 3
    assert receiver.bodies[0] == receiver.bodies[2]
    assert delays == [1.0, 2.0]


def test_retry_after_is_honoured_up_to_thirty_seconds(tmp_path: Path) -> None:
    delays: list[float] = []
    answers: list[Answer] = [
        (429, {"Retry-After": "5"}, "rate_limited"),
        (503, {"Retry-After": "120"}, "busy"),
        (200, {}, "ok"),
    ]
    with http_receiver(answers) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=3))
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep(delays))

    assert result.decision == "sent"
    assert delays == [5.0, 30.0]


def test_webhook_that_is_down_fails_and_never_shows_the_secret_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delays: list[float] = []
    url = closed_url()
    port = url.split(":")[2].split("/")[0]
    config = write_config(tmp_path / "base", slack(url, retries=2))
    (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep(delays))

    assert result.decision == "failed"
    assert result.error == f"connection refused: 127.0.0.1:{port}, after 3 attempts"
    assert delays == [1.0, 2.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"slack notice failed (http://127.0.0.1/***): {result.error}"]
    for text in (caplog.text, json.dumps(result.model_dump()), str(notices_in(config))):
        assert "XSECRETTOKENX" not in text and "/services" not in text


def test_webhook_always_500_fails_after_its_retries_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver([(500, {}, "internal_error")]) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=1))
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep([]))

    assert len(receiver.requests) == 2
    assert (result.decision, result.error) == (
        "failed",
        "HTTP 500: internal_error, after 2 attempts",
    )
    assert "XSECRETTOKENX" not in caplog.text


def test_a_server_echoing_the_secret_path_has_it_scrubbed_and_4xx_is_not_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver([(404, {}, "no_service {path}")]) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=2))
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep([]))

    assert len(receiver.requests) == 1
    assert (result.decision, result.error) == ("failed", "HTTP 404: no_service ***")
    assert "XSECRETTOKENX" not in caplog.text


def test_a_redirecting_webhook_is_not_followed(tmp_path: Path) -> None:
    with http_receiver() as target:
        answers: list[Answer] = [(302, {"Location": target.url}, "")]
        with http_receiver(answers) as receiver:
            config = write_config(tmp_path / "base", slack(receiver.url))
            (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep([]))

    assert target.requests == []
    assert (result.decision, result.error) == (
        "failed",
        "HTTP 302 (the webhook redirects; redirects are not followed)",
    )


def test_slack_markup_and_newlines_in_an_error_are_escaped(tmp_path: Path) -> None:
    hostile = "uploads/<!channel> & <https://evil.example|click>\nFAKE: all good"
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        send_notices(config, failure_notice([hostile]), now=NOW)

    fields = {
        item["title"]: item["value"] for item in receiver.bodies[0]["attachments"][0]["fields"]
    }
    assert fields["Errors"] == (
        "uploads/&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;\\nFAKE: all good"
    )
    assert "\n" not in fields["Errors"]


# --- apprise ---------------------------------------------------------------------------------


def test_apprise_json_url_delivers_title_and_report_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with http_receiver(path="/") as receiver:
        url = receiver.url.replace("http://", "json://")
        settings = {"apprise": {"enabled": True, "urls": [url]}}
        config = write_config(tmp_path / "base", settings)
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert result == NoticeResult(
        channel="apprise", decision="sent", kind="failure", destination="json://***"
    )
    (body,) = receiver.bodies
    assert body["title"] == "EEMT Daily Cleanup Report - FAILED"
    assert body["type"] == "failure"
    lines = body["message"].splitlines()
    assert lines[:4] == [
        "Daily Cleanup Report",
        "====================",
        "Jobs Cleaned: 3 completed, 2 failed",
        "Space Freed: 45.0 GB",
    ]
    assert "  - results/abc: Permission denied" in lines
    assert caplog.records == []  # neither apprise nor urllib3 logged the URL
    assert logging.getLogger("urllib3").level == logging.NOTSET


def test_apprise_url_that_cannot_be_reached_fails_naming_it_by_scheme_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    urls = [f"json://127.0.0.1:{port}/XSECRETTOKENX", "nonsense-scheme://whatever"]
    config = write_config(tmp_path / "base", {"apprise": {"enabled": True, "urls": urls}})
    (result,) = send_notices(config, failure_notice(), now=NOW)

    assert result.decision == "failed"
    assert result.error == (
        "apprise could not notify 2 of 2: URL 1 (json://***), URL 2 (nonsense-scheme://***)"
    )
    assert "XSECRETTOKENX" not in caplog.text and str(port) not in caplog.text
    assert [r.name for r in caplog.records] == ["eemt_cleanup"]  # the one warning
    assert logging.getLogger("apprise").level == logging.NOTSET


def test_apprise_missing_fails_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise raises ImportError
    config = write_config(tmp_path / "base", {"apprise": {"enabled": True, "urls": ["json://x/"]}})
    (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == ("failed", NOT_INSTALLED)
    assert NOT_INSTALLED == "apprise is not installed: pip install 'eemt-cleanup[notify]'"


# --- which channels, rate limit, success <-> failure -----------------------------------------


def test_enabled_channels_come_in_the_order_email_slack_apprise(tmp_path: Path) -> None:
    settings = {
        "apprise": {"enabled": True, "urls": ["json://127.0.0.1/"]},
        "slack": {"enabled": True, "webhook_url": "https://hooks.example.com/x"},
        "email": {"enabled": True, "recipients": ["ops@example.com"]},
    }
    assert enabled_channels(write_config(tmp_path / "a", settings).settings) == [
        "email",
        "slack",
        "apprise",
    ]
    assert enabled_channels(write_config(tmp_path / "b", {}).settings) == []


def test_failures_within_min_interval_are_held_back_and_counted_in_the_next(
    tmp_path: Path,
) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, min_interval="6h"))
        decisions = [
            send_notices(config, failure_notice(), now=NOW + timedelta(hours=hours))[0]
            for hours in (0, 1, 2, 9)
        ]

    assert [(r.decision, r.suppressed_before) for r in decisions] == [
        ("sent", 0),
        ("suppressed", 0),
        ("suppressed", 0),
        ("sent", 2),
    ]
    assert len(receiver.bodies) == 2
    fields = {
        item["title"]: item["value"] for item in receiver.bodies[1]["attachments"][0]["fields"]
    }
    assert fields["Held back"] == "2 notices held back since 2026-01-20 13:00 UTC (min_interval 6h)"
    assert "Held back" not in str(receiver.bodies[0])
    assert notices_in(config) == [
        ("failure", "sent", 0, None),
        ("failure", "suppressed", 0, None),
        ("failure", "suppressed", 0, None),
        ("failure", "sent", 2, None),
    ]


def test_held_back_notices_are_mentioned_in_the_mail_body(
    tmp_path: Path, local_time_is_utc: None
) -> None:
    with smtp_server() as box:
        config = write_config(tmp_path / "base", email(box, min_interval="6h"))
        for hours in (0, 1, 7):
            send_notices(config, failure_notice(), now=NOW + timedelta(hours=hours))

    assert len(box.messages) == 2
    lines = body_lines(box.messages[1])
    assert "Held back: 1 notice held back since 2026-01-20 13:00 UTC (min_interval 6h)" in lines


def test_success_after_failure_is_sent_at_once_even_within_the_interval_and_off_on(
    tmp_path: Path,
) -> None:
    with http_receiver() as receiver:
        channel = slack(receiver.url, on=["failure"], min_interval="6h")
        config = write_config(tmp_path / "base", channel)
        sequence = [
            (0, failure_notice()),
            (1, success_notice()),  # a recovery: announced although on lacks success
            (2, success_notice()),  # no change: not wanted
            (3, failure_notice()),  # a change again: not held back by the interval
            (4, failure_notice()),  # no change, within the interval: held back
        ]
        decisions = [
            send_notices(config, notice, now=NOW + timedelta(hours=hours))[0].decision
            for hours, notice in sequence
        ]

    assert decisions == ["sent", "sent", "unwanted", "sent", "suppressed"]
    statuses = [
        next(f["value"] for f in body["attachments"][0]["fields"] if f["title"] == "Status")
        for body in receiver.bodies
    ]
    assert statuses == ["Failed (exit 1)", "Success", "Failed (exit 1)"]


def test_first_success_with_only_failure_wanted_is_unwanted_and_recorded(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, on=["failure"]))
        (result,) = send_notices(config, success_notice(), now=NOW)

    assert (result.decision, result.kind) == ("unwanted", "success")
    assert receiver.requests == []
    assert notices_in(config) == [("success", "unwanted", 0, None)]


def test_a_test_notice_does_not_count_as_sent_for_the_interval(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, min_interval="6h"))
        test = send_notices(config, Notice(kinds=frozenset({"test"})), now=NOW)[0]
        real = send_notices(config, failure_notice(), now=NOW + timedelta(minutes=5))[0]

    assert (test.decision, real.decision) == ("sent", "sent")
    assert notices_in(config) == [("test", "sent", 0, None), ("failure", "sent", 0, None)]


def test_a_failed_send_does_not_count_as_sent_for_the_interval(tmp_path: Path) -> None:
    answers: list[Answer] = [(500, {}, "down"), (200, {}, "ok")]
    with http_receiver(answers) as receiver:
        channel = slack(receiver.url, min_interval="6h", retries=0)
        config = write_config(tmp_path / "base", channel)
        first = send_notices(config, failure_notice(), now=NOW)[0]
        second = send_notices(config, failure_notice(), now=NOW + timedelta(hours=1))[0]

    assert (first.decision, second.decision) == ("failed", "sent")
    assert first.error == "HTTP 500: down"


def test_a_locked_database_still_sends_without_rate_limit_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with http_receiver() as receiver, smtp_server() as box:
        channels = {**slack(receiver.url, min_interval="6h"), **email(box, min_interval="6h")}
        config = write_config(
            tmp_path / "base", channels, performance={"busy_timeout_seconds": 0.05}
        )
        send_notices(config, failure_notice(), now=NOW)
        holder = sqlite3.connect(config.roots.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
        try:
            caplog.set_level(logging.WARNING)
            results = send_notices(config, failure_notice(), now=NOW + timedelta(hours=1))
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    assert [(r.channel, r.decision) for r in results] == [("email", "sent"), ("slack", "sent")]
    assert len(receiver.bodies) == 2 and len(box.messages) == 2
    warning = (
        f"notification state in {config.roots.database} cannot be used (database is locked):"
        " notices are sent without a rate limit"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [warning]
    # Also on every result, for callers that keep the log quiet (status, notify).
    assert [r.note for r in results] == [warning, warning]
    # Only the first notice (per channel) was recorded: the second found the state locked.
    assert [row[:2] for row in notices_in(config)] == [("failure", "sent"), ("failure", "sent")]


def test_a_missing_database_still_sends_and_creates_no_file(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        config.roots.database.unlink()
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert result.decision == "sent"
    assert not config.roots.database.exists()


def test_an_unexpected_error_in_a_channel_is_a_failed_result_without_the_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eemt_cleanup.notify import slack as slack_channel

    def broken(channel: Any, message: Any, *, wait: Any) -> None:
        raise RuntimeError(f"boom while posting to {channel.webhook_url}")

    monkeypatch.setattr(slack_channel, "post_message", broken)
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        (result,) = send_notices(config, failure_notice(), now=NOW)

    assert (result.decision, result.error) == (
        "failed",
        "unexpected error: boom while posting to ***",
    )


@pytest.mark.parametrize(
    ("kinds", "on", "last_outcome", "sent", "expected"),
    [
        ({"failure"}, ["failure"], None, None, "send"),
        ({"failure"}, ["failure"], "failure", ("failure", 1), "suppressed"),
        ({"failure"}, ["failure"], "failure", ("failure", 7), "send"),
        ({"failure"}, ["failure"], "success", ("success", 1), "send"),  # a change
        ({"success"}, ["failure"], "failure", ("failure", 1), "send"),  # a recovery
        ({"success"}, ["failure"], "success", ("success", 9), "unwanted"),
        ({"success"}, ["failure"], None, None, "unwanted"),
        ({"success", "alert"}, ["alert"], "success", ("success", 1), "suppressed"),
        ({"test"}, [], "failure", ("failure", 0), "send"),
        ({"failure"}, ["failure"], "failure", ("failure", -2), "send"),  # the clock stepped back
        ({"failure"}, ["failure", "alert"], None, ("alert", 1), "send"),  # per kind
        ({"alert"}, ["failure", "alert"], "failure", ("failure", 1), "send"),  # per kind
        ({"alert"}, ["failure", "alert"], None, ("alert", 1), "suppressed"),
    ],
)
def test_decide_follows_the_rules_of_on_interval_per_kind_and_change(
    kinds: set[str],
    on: list[str],
    last_outcome: str | None,
    sent: tuple[str, float] | None,
    expected: str,
) -> None:
    sent_at = {} if sent is None else {sent[0]: NOW - timedelta(hours=sent[1])}
    history = ChannelHistory(last_outcome, sent_at, 0, None)
    assert decide(Notice(kinds=frozenset(kinds)), on, 6 * 3600, history, NOW) == expected


# --- time limits, backoff, stopping ------------------------------------------------------------


def test_webhook_trickling_its_answer_times_out_as_one_whole_attempt(tmp_path: Path) -> None:
    # One byte every 0.2 s: no read ever waits 1 s, so only a limit on the attempt ends it.
    with trickling_server(SLOW_HTTP_ANSWER) as server:
        config = write_config(tmp_path / "base", slack(server.url, timeout_seconds=1, retries=0))
        started = time.monotonic()
        (result,) = send_notices(config, failure_notice(), now=NOW)
        elapsed = time.monotonic() - started

    assert (result.decision, result.error) == (
        "failed",
        f"timed out after 1 s: 127.0.0.1:{server.port}",
    )
    assert elapsed < 6
    assert server.connections == 1


def test_mail_server_trickling_its_greeting_times_out_as_one_whole_conversation(
    tmp_path: Path,
) -> None:
    with trickling_server(SLOW_SMTP_GREETING) as server:
        settings = {"enabled": True, "smtp_server": "127.0.0.1", "smtp_port": server.port}
        settings.update(recipients=["ops@example.com"], timeout_seconds=1)
        config = write_config(tmp_path / "base", {"email": settings})
        started = time.monotonic()
        (result,) = send_notices(config, failure_notice(), now=NOW)
        elapsed = time.monotonic() - started

    assert (result.decision, result.error) == (
        "failed",
        f"timed out after 1 s: 127.0.0.1:{server.port}",
    )
    assert elapsed < 6


def test_apprise_url_trickling_its_answer_is_abandoned_at_the_bound_and_stays_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(apprise_channel, "NOTIFY_TIMEOUT_SECONDS", 1.0)
    with trickling_server(SLOW_HTTP_ANSWER) as server:
        url = f"json://127.0.0.1:{server.port}/XSECRETTOKENX"
        config = write_config(tmp_path / "base", {"apprise": {"enabled": True, "urls": [url]}})
        started = time.monotonic()
        (result,) = send_notices(config, failure_notice(), now=NOW)
        elapsed = time.monotonic() - started
        # The abandoned notify() is still running: its loggers stay silenced meanwhile.
        assert logging.getLogger("urllib3").level > logging.CRITICAL

    assert (result.decision, result.error) == (
        "failed",
        "apprise could not notify 1 of 1: URL 1 (json://***, timed out after 1 s)",
    )
    assert elapsed < 6
    # The server closed: the abandoned notify() ends, and the last one out restores them.
    wait_for(lambda: logging.getLogger("urllib3").level == logging.NOTSET)
    assert logging.getLogger("apprise").level == logging.NOTSET
    assert "XSECRETTOKENX" not in caplog.text


def test_backoff_between_retries_is_capped_at_thirty_seconds(tmp_path: Path) -> None:
    delays: list[float] = []
    with http_receiver([(500, {}, "down")]) as receiver:
        # A budget of 300 * 11 + 60 s: the cap, not the budget, is what shows.
        channel = slack(receiver.url, retries=10, timeout_seconds=300)
        config = write_config(tmp_path / "base", channel)
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep(delays))

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert len(receiver.requests) == 11
    assert result.error == "HTTP 500: down, after 11 attempts"


def test_retries_stop_when_the_channel_budget_would_be_passed(tmp_path: Path) -> None:
    delays: list[float] = []
    with http_receiver([(500, {}, "down")]) as receiver:
        # Budget 1 * 11 + 60 = 71 s: after waits of 61 s, another 30 s wait and a 1 s
        # attempt would pass it.
        channel = slack(receiver.url, retries=10, timeout_seconds=1)
        config = write_config(tmp_path / "base", channel)
        (result,) = send_notices(config, failure_notice(), now=NOW, sleep=no_sleep(delays))

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert len(receiver.requests) == 7
    assert result.error == "HTTP 500: down, after 7 attempts (retry budget of 71 s used up)"


def test_a_stop_already_set_allows_exactly_one_attempt_and_no_wait(tmp_path: Path) -> None:
    delays: list[float] = []
    stop = threading.Event()
    stop.set()
    with http_receiver([(500, {}, "oops")]) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=2))
        (result,) = send_notices(
            config, failure_notice(), now=NOW, sleep=no_sleep(delays), stop=stop
        )

    assert len(receiver.requests) == 1
    assert delays == []  # the stop's wait was used, not the sleep
    assert (result.decision, result.error) == (
        "failed",
        "HTTP 500: oops (not retried: the run is stopping)",
    )


def test_a_stop_set_during_the_backoff_ends_the_wait_at_once(tmp_path: Path) -> None:
    stop = threading.Event()
    with http_receiver([(503, {"Retry-After": "30"}, "busy")]) as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, retries=2))

        def stop_after_first_request() -> None:
            wait_for(lambda: len(receiver.requests) == 1)
            stop.set()

        stopper = threading.Thread(target=stop_after_first_request, daemon=True)
        stopper.start()
        started = time.monotonic()
        (result,) = send_notices(config, failure_notice(), now=NOW, stop=stop)
        elapsed = time.monotonic() - started
        stopper.join(timeout=30)

    assert elapsed < 15  # the wait was 30 s
    assert len(receiver.requests) == 1
    assert result.error == "HTTP 503: busy (not retried: the run is stopping)"


# --- which notices count: a recovery that failed, min_interval per kind ---------------------------


def test_a_recovery_whose_delivery_failed_is_announced_by_the_next_success(
    tmp_path: Path,
) -> None:
    answers: list[Answer] = [(200, {}, "ok"), (500, {}, "receiver down"), (200, {}, "ok")]
    with http_receiver(answers) as receiver:
        channel = slack(receiver.url, on=["failure"], retries=0)
        config = write_config(tmp_path / "base", channel)
        decisions = [
            send_notices(config, notice, now=NOW + timedelta(hours=hours))[0].decision
            for hours, notice in (
                (0, failure_notice()),
                (1, success_notice()),
                (2, success_notice()),
            )
        ]

    assert decisions == ["sent", "failed", "sent"]
    statuses = [
        next(f["value"] for f in body["attachments"][0]["fields"] if f["title"] == "Status")
        for body in receiver.bodies
    ]
    assert statuses == ["Failed (exit 1)", "Success", "Success"]


def alert_notice() -> Notice:
    return Notice(kinds=frozenset({"alert"}), alerts=(RESULTS_ALERT,), usage=usage_sample())


def test_min_interval_holds_back_only_a_notice_of_the_same_kind(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url, min_interval="6h"))
        sequence = [
            (0, alert_notice()),
            (1, failure_notice()),  # no failure sent yet: the alert holds it not back
            (2, failure_notice()),  # a failure sent an hour ago: held back
            (3, alert_notice()),  # an alert sent 3 hours ago: held back
            (8, failure_notice()),  # 7 hours after the last failure: sent, both counted
        ]
        results = [
            send_notices(config, notice, now=NOW + timedelta(hours=hours))[0]
            for hours, notice in sequence
        ]

    assert [(r.kind, r.decision, r.suppressed_before) for r in results] == [
        ("alert", "sent", 0),
        ("failure", "sent", 0),
        ("failure", "suppressed", 0),
        ("alert", "suppressed", 0),
        ("failure", "sent", 2),
    ]
    fields = {
        item["title"]: item["value"] for item in receiver.bodies[2]["attachments"][0]["fields"]
    }
    assert fields["Held back"] == "2 notices held back since 2026-01-20 14:00 UTC (min_interval 6h)"


# --- a run that could not start, mentions, filesystems ------------------------------------------

NOT_STARTED_ERROR = "paths.results: /srv/results does not exist (is its filesystem mounted?)"


def not_started_notice(error: str = NOT_STARTED_ERROR) -> Notice:
    return Notice(kinds=frozenset({"failure"}), exit_code=2, trigger="cli", error=error)


def test_a_run_that_could_not_start_posts_failed_exit_2_and_its_error(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = write_config(tmp_path / "base", slack(receiver.url))
        (result,) = send_notices(config, not_started_notice(), now=NOW)

    assert (result.decision, result.kind) == ("sent", "failure")
    host = socket.gethostname()
    assert receiver.bodies[0] == {
        "text": "EEMT Cleanup Report",
        "attachments": [
            {
                "fallback": f"EEMT Cleanup Report on {host}: Failed (exit 2), no cleanup ran",
                "color": "danger",
                "fields": [
                    {"title": "Status", "value": "Failed (exit 2)", "short": True},
                    {"title": "Error", "value": NOT_STARTED_ERROR, "short": False},
                    {"title": "Host", "value": host, "short": True},
                ],
            }
        ],
    }


def test_a_run_that_could_not_start_mails_failed_with_the_escaped_error_and_no_figures(
    tmp_path: Path, local_time_is_utc: None
) -> None:
    hostile = "database jobs.db is corrupt: \x1b[31mmalformed\n FAKE: all good"
    with smtp_server() as box:
        config = write_config(tmp_path / "base", email(box))
        send_notices(config, not_started_notice(hostile), now=NOW)

    (mail,) = box.messages
    assert mail["Subject"] == "EEMT Daily Cleanup Report - FAILED"
    assert body_lines(mail) == [
        "Daily Cleanup Report",
        "====================",
        "No cleanup ran: the run ended before cleaning anything.",
        "Error: database jobs.db is corrupt: \\x1b[31mmalformed\\n FAKE: all good",
        "Next cleanup scheduled for: 2026-01-21 02:00 UTC (in 14 hours)",
        "Status: Failed (exit 2)",
        "",
        f"Host: {socket.gethostname()}",
        "Triggered by: cli",
    ]


def test_channel_wide_mentions_from_the_data_are_broken_in_every_channel(
    tmp_path: Path,
) -> None:
    errors = ["uploads/@channel: Permission denied", "results/x: tell @everyone, @Here"]
    broken = [
        "uploads/@\u200bchannel: Permission denied",
        "results/x: tell @\u200beveryone, @\u200bHere",
    ]
    with smtp_server() as box, http_receiver() as hook, http_receiver(path="/") as other:
        channels = {
            **email(box),
            **slack(hook.url),
            "apprise": {"enabled": True, "urls": [other.url.replace("http://", "json://")]},
        }
        config = write_config(tmp_path / "base", channels)
        results = send_notices(config, failure_notice(errors), now=NOW)

    assert [r.decision for r in results] == ["sent", "sent", "sent"]
    fields = {item["title"]: item["value"] for item in hook.bodies[0]["attachments"][0]["fields"]}
    assert fields["Errors"] == "\n".join(broken)
    mail_lines = body_lines(box.messages[0])
    apprise_lines = other.bodies[0]["message"].splitlines()
    for lines in (mail_lines, apprise_lines):
        start = lines.index("Errors:")
        assert lines[start + 1 : start + 3] == [f"  - {line}" for line in broken]
    for text in (json.dumps(hook.bodies[0], ensure_ascii=False), "\n".join(mail_lines)):
        for mention in ("@channel", "@everyone", "@Here"):
            assert mention not in text


def test_roots_are_grouped_by_filesystem_device_when_it_is_known(tmp_path: Path) -> None:
    # Two filesystems of the same size and free space: only the device tells them apart.
    roots = [
        RootUsage(root=name, jobs=1, bytes=GIB, fs_size=TIB, fs_free=500 * GIB, fs_id=device)
        for name, device in (("uploads", 41), ("results", 42), ("temp", 41))
    ]
    sample = usage_sample().model_copy(update={"by_root": roots})
    unknown = [root.model_copy(update={"fs_id": None}) for root in roots]
    settings = write_config(tmp_path / "base", {}).settings

    def available(usage: UsageSample) -> list[str]:
        notice = Notice(kinds=frozenset({"alert"}), usage=usage)
        lines = build_message(notice, settings, now=NOW).body.splitlines()
        start = lines.index("Available Space:")
        return lines[start + 1 : start + 3]

    assert available(sample) == [
        "  uploads, temp: 500.0 GB free of 1.0 TB (48.8%)",
        "  results: 500.0 GB free of 1.0 TB (48.8%)",
    ]
    # Without devices, the roots of equal figures are taken for one filesystem.
    assert available(sample.model_copy(update={"by_root": unknown}))[0] == (
        "  uploads, results, temp: 500.0 GB free of 1.0 TB (48.8%)"
    )

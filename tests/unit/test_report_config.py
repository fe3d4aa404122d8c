"""The configuration of reports going out: notifications, metrics, alerts, usage."""

from __future__ import annotations

from pathlib import Path

import pytest

from eemt_cleanup.config.loader import load_config
from eemt_cleanup.config.schema import redact, redact_url
from eemt_cleanup.errors import ConfigError


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    for root in ("uploads", "results", "temp"):
        (tmp_path / root).mkdir(exist_ok=True)
    config = tmp_path / "cleanup_config.yaml"
    config.write_text(text)
    return load_config(config_path=config, environ={}, cwd=tmp_path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    return str(raised.value)


def test_a_bare_on_key_is_the_key_on_not_the_boolean_true(tmp_path: Path) -> None:
    loaded = load(tmp_path, "notifications:\n  email:\n    on: [success]\n")
    assert loaded.settings.notifications.email.on == ["success"]
    assert loaded.settings.notifications.slack.on == ["failure", "alert"]


def test_an_unknown_notice_kind_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  slack:\n    on: [sucess]\n")
    assert "notifications.slack.on.0: must be one of 'failure', 'success' or 'alert'" in message


@pytest.mark.parametrize(
    ("interval", "seconds"), [("6h", 21600), ("30m", 1800), ("1d12h", 129600), ("0", 0)]
)
def test_min_interval_reads_durations(tmp_path: Path, interval: str, seconds: float) -> None:
    loaded = load(tmp_path, f"notifications:\n  slack:\n    min_interval: '{interval}'\n")
    assert loaded.settings.notifications.slack.min_interval_seconds == seconds


def test_a_min_interval_that_is_not_a_duration_is_named(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  email:\n    min_interval: 6 hours\n")
    assert message == (
        "invalid configuration: notifications.email.min_interval: must be a duration like 6h,"
        f" 30m, 1d or 0, got '6 hours' (from file {tmp_path / 'cleanup_config.yaml'})"
    )


def test_a_password_in_the_config_file_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  email:\n    password: hunter2\n")
    assert "password: not allowed in the config file; give password_env" in message
    assert "hunter2" not in message


def test_a_login_without_tls_to_another_host_is_refused(tmp_path: Path) -> None:
    text = (
        "notifications:\n  email:\n    enabled: true\n    smtp_server: smtp.example.org\n"
        "    recipients: [ops@example.org]\n    username: eemt\n    password_env: SMTP_PASS\n"
    )
    message = error_of(tmp_path, text)
    assert "tls: 'none' would send the password in clear text to 'smtp.example.org'" in message
    assert load(tmp_path, text + "    tls: starttls\n").settings.notifications.email.tls == (
        "starttls"
    )


def test_enabled_email_needs_recipients(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  email:\n    enabled: true\n")
    assert "recipients: must name at least one address when enabled" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "notifications:\n  apprise:\n    enabled: true\n    urls: tgram://123:SECRETBOT/chat\n",
            "notifications.apprise.urls: must be a list, got 'tgram://***'",
        ),
        (
            "notifications:\n  slack:\n    webhook_url: [https://hooks.slack.com/T0/SECRETX]\n",
            "notifications.slack.webhook_url: must be text, got ['https://hooks.slack.com/***']",
        ),
        (
            "notifications:\n  slack:\n    webhook_url: hooks.slack.com/T0/SECRETX\n",
            "notifications.slack.webhook_url: must be an https:// URL",
        ),
        (
            "notifications:\n  slack:\n    webhook_url: http://chat.example.org/hooks/SECRETX\n",
            "notifications.slack.webhook_url: must be https:// (the URL is a secret; plain"
            " http:// only to this machine)",
        ),
    ],
)
def test_a_wrong_secret_is_never_echoed(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert expected in message
    assert "SECRET" not in message


def test_enabled_slack_without_a_url_names_the_url_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  slack:\n    enabled: true\n")
    assert "notifications.slack.webhook_url: must be set when notifications.slack.enabled" in (
        message
    )


def test_plain_http_to_this_machine_is_allowed(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8065/hooks/abc"
    loaded = load(tmp_path, f"notifications:\n  slack:\n    webhook_url: {url}\n")
    assert loaded.settings.notifications.slack.webhook_url == url


def test_a_timeout_of_zero_is_refused_as_must_be_positive(tmp_path: Path) -> None:
    message = error_of(tmp_path, "notifications:\n  slack:\n    timeout_seconds: 0\n")
    assert "notifications.slack.timeout_seconds: must be > 0, got 0" in message


def test_relative_textfile_and_password_file_resolve_against_the_config_file(
    tmp_path: Path,
) -> None:
    loaded = load(
        tmp_path,
        "metrics:\n  textfile: prom/eemt.prom\n"
        "notifications:\n  email:\n    password_file: secrets/smtp\n",
    )
    assert loaded.settings.metrics.textfile == str(tmp_path / "prom" / "eemt.prom")
    assert loaded.settings.notifications.email.password_file == str(tmp_path / "secrets" / "smtp")


def test_a_textfile_node_exporter_would_not_read_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "metrics:\n  textfile: /var/lib/eemt.txt\n")
    assert "metrics.textfile: must end in .prom (node_exporter reads only those)" in message


@pytest.mark.parametrize(
    ("value", "size"), [("100G", 100 * 1024**3), ("1.5T", int(1.5 * 1024**4)), (2048, 2048)]
)
def test_max_results_bytes_takes_bytes_or_a_size(tmp_path: Path, value: object, size: int) -> None:
    loaded = load(tmp_path, f"alerts:\n  max_results_bytes: {value}\n")
    assert loaded.settings.alerts.results_limit == size
    assert loaded.settings.reports_wanted


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alerts:\n  max_results_bytes: lots\n", "must be bytes or a size like 100G"),
        ("alerts:\n  max_results_bytes: 0\n", "must be positive"),
        ("alerts:\n  min_free_percent: 120\n", "alerts.min_free_percent: must be <= 100"),
    ],
)
def test_impossible_alert_thresholds_are_named(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_nothing_configured_means_no_reports(tmp_path: Path) -> None:
    assert not load(tmp_path, "").settings.reports_wanted
    assert load(tmp_path, "usage:\n  sample_after_run: true\n").settings.reports_wanted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XyZ", "https://hooks.slack.com/***"),
        ("http://127.0.0.1:8065/hooks/abc", "http://127.0.0.1/***"),
        ("tgram://123:TOKEN/chat", "tgram://***"),
        ("no scheme at all", "***"),
    ],
)
def test_secret_urls_keep_only_scheme_and_host(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact("notifications.apprise.urls", [url]) == [shown]
    assert redact("paths.database", url) == url

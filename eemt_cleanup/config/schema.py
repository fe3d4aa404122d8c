"""The one declaration of the configuration.

These pydantic models drive validation (error messages name the key path), ``config init``
(the documented default file is generated from the field descriptions) and ``config show``.
Every model forbids unknown keys and uses strict scalar types, so ``hours: "12"`` or a
misspelt key is an error that names the key rather than a silent default.
"""

from __future__ import annotations

import re
import reprlib
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eemt_cleanup.report.escape import printable
from eemt_cleanup.timeparse import resolve_zone

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_HOURS = 24 * 365 * 100
# The default schedule; a test checks it with cronsim, so validating it again at every start
# (importing cronsim costs a few ms) is skipped.
DEFAULT_CRON = "0 2 * * *"

Hours = Annotated[float, Field(ge=0, le=_MAX_HOURS, allow_inf_nan=False, strict=True)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Values echoed in messages (from the file, the environment or a flag) are cut to about this
# many characters: a message stays one readable line whatever a value holds.
MAX_QUOTED = 60
MAX_SHOWN_PATH = 240
ELLIPSIS = "..."


def _short_repr() -> reprlib.Repr:
    # reprlib never walks more than a few items and levels of a structure, so a huge (or
    # deeply shared) value costs the same to quote as a small one.
    shortened = reprlib.Repr()
    shortened.maxlevel = 3
    shortened.maxstring = MAX_QUOTED
    shortened.maxother = MAX_QUOTED
    shortened.maxlong = MAX_QUOTED
    for name in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
        setattr(shortened, name, 6)
    return shortened


_SHORT_REPR = _short_repr()


def cut(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when it was longer."""
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def quote(value: object) -> str:
    """``value`` as a message echoes it: its repr (``null`` for None, YAML's word), cut to
    about 60 characters. Control characters come out escaped (repr does that)."""
    return cut("null" if value is None else _SHORT_REPR.repr(value))


def shorten(text: object, limit: int = MAX_QUOTED) -> str:
    """Free text (a key name, a parser's complaint) for a one-line message: control
    characters escaped, cut to ``limit`` characters."""
    raw = text if isinstance(text, str) else str(text)
    return cut(printable(raw[: limit + 1]), limit)


def shown_path(path: object) -> str:
    """A path for a message: control characters escaped; a path longer than any real one
    keeps its head and its tail (the file name) around ``...``."""
    text = printable(str(path))
    if len(text) <= MAX_SHOWN_PATH:
        return text
    half = (MAX_SHOWN_PATH - len(ELLIPSIS)) // 2
    return text[:half] + ELLIPSIS + text[-half:]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


def _single_component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"must be a plain file name, got {quote(name)}")
    return name


class SuccessfulRetention(Section):
    hours: Hours = Field(
        168,
        description="Hours after completed_at before a successful job's data goes (168 = 7 days).",
    )
    keep_metadata: StrictBool = Field(
        True,
        description="Keep the job's row in the database after its data is gone (false deletes the row; the audit row remains).",
    )
    keep_logs: StrictBool = Field(
        False,
        description="Keep the log files (retention.log_files) inside results/<id>/ of successful jobs.",
    )


class FailedRetention(Section):
    hours: Hours = Field(
        12, description="Hours after completed_at before a failed (or cancelled) job's data goes."
    )
    keep_metadata: StrictBool = Field(
        True, description="Keep the job's row in the database after its data is gone."
    )
    keep_error_logs: StrictBool = Field(
        True,
        description="Keep the log files (retention.log_files) inside results/<id>/ of failed jobs, for post-mortems.",
    )


class Retention(Section):
    successful_jobs: SuccessfulRetention = Field(
        default_factory=SuccessfulRetention,
        description="Jobs whose status is one of jobs.statuses.successful.",
    )
    failed_jobs: FailedRetention = Field(
        default_factory=FailedRetention,
        description="Jobs whose status is one of jobs.statuses.failed.",
    )
    log_files: list[StrictStr] = Field(
        default_factory=lambda: ["workflow.log", "task_output.log", "sys.err", "container.log"],
        description="Names of the log files directly inside results/<id>/ that keep_logs / keep_error_logs preserve.",
    )

    _check_log_files = field_validator("log_files")(
        lambda names: [_single_component(n) for n in names]
    )


class Schedule(Section):
    enabled: StrictBool = Field(
        True,
        description="Whether eemt-cleanup daemon starts runs on the cron schedule (EEMT_ENABLE_AUTO_CLEANUP). Cron and systemd timers start runs themselves.",
    )
    cron: StrictStr = Field(
        DEFAULT_CRON,
        description="Five-field cron expression for the daemon's runs (minute hour day month weekday), read in schedule.timezone (EEMT_CLEANUP_SCHEDULE). Check it with: eemt-cleanup schedule",
    )
    timezone: StrictStr = Field(
        "local",
        description="Zone the cron expression is read in: 'local' (this machine's), 'UTC' or a name such as 'Europe/Berlin'. Daylight-saving days fire once.",
    )
    jitter: StrictStr = Field(
        "0",
        description="Start each scheduled run after a random delay of up to this duration (30s, 10m; 0 = on the minute), like systemd's RandomizedDelaySec.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from eemt_cleanup.schedule import normalise, problem

        expression = normalise(value)
        if expression == DEFAULT_CRON:
            return expression
        why = problem(expression)
        if why is None:
            return expression
        if len(expression.split()) != 5:
            raise ValueError(f"must be a five-field cron expression, got {quote(value)}")
        raise ValueError(f"must be a five-field cron expression, got {quote(value)} ({why})")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            resolve_zone(value)
        except ValueError:
            raise ValueError(f"unknown time zone {quote(value)}") from None
        return value

    _jitter_number = field_validator("jitter", mode="before")(lambda value: _seconds_text(value))
    _check_jitter = field_validator("jitter")(lambda value: _duration(value, 86400.0))

    @property
    def jitter_seconds(self) -> float:
        from eemt_cleanup.timeparse import parse_duration

        return parse_duration(self.jitter)


class DiskPressure(Section):
    enabled: StrictBool = Field(
        False,
        description="Let eemt-cleanup daemon start an early run (trigger disk_pressure) when a root's filesystem runs low on space.",
    )
    min_free_percent: Annotated[float, Field(gt=0, lt=100, allow_inf_nan=False)] = Field(
        10.0,
        description="Pressure: free space on the filesystem of a root or of the database below this percentage.",
    )
    hysteresis_percent: Annotated[float, Field(ge=0, lt=100, allow_inf_nan=False)] = Field(
        5.0,
        description="After a pressure run, the next one waits until free space has been back above min_free_percent plus this (so it cannot loop).",
    )
    cooldown: StrictStr = Field(
        "30m",
        description="At least this long between two pressure runs (30m, 2h).",
    )
    poll_interval: StrictStr = Field(
        "60s",
        description="How often free space is measured (statvfs). File events on the roots wake the check sooner where inotify works; the poll alone decides where it does not (NFS).",
    )
    successful_hours: Hours | None = Field(
        None,
        description="Retention of successful jobs in pressure runs (null: retention.successful_jobs.hours). Lower frees more.",
    )
    failed_hours: Hours | None = Field(
        None,
        description="Retention of failed jobs in pressure runs (null: retention.failed_jobs.hours).",
    )

    _numbers = field_validator("cooldown", "poll_interval", mode="before")(
        lambda value: _seconds_text(value)
    )
    _check_cooldown = field_validator("cooldown")(lambda value: _duration(value))

    @field_validator("poll_interval")
    @classmethod
    def _valid_poll(cls, value: str) -> str:
        from eemt_cleanup.timeparse import parse_duration

        checked = _duration(value, 86400.0)
        if parse_duration(checked) < 1:
            raise ValueError(f"must be at least 1s, got {quote(value)}")
        return checked

    @property
    def cooldown_seconds(self) -> float:
        from eemt_cleanup.timeparse import parse_duration

        return parse_duration(self.cooldown)

    @property
    def poll_seconds(self) -> float:
        from eemt_cleanup.timeparse import parse_duration

        return parse_duration(self.poll_interval)


class Triggers(Section):
    disk_pressure: DiskPressure = Field(
        default_factory=DiskPressure,
        description="Early runs when disk space runs low (eemt-cleanup daemon only).",
    )


class Paths(Section):
    database: StrictStr = Field("./jobs.db", description="The web interface's SQLite database.")
    uploads: StrictStr = Field(
        "./uploads", description="Root of uploaded DEMs (uploads/<uuid>_<name>.tif)."
    )
    results: StrictStr = Field(
        "./results", description="Root of job outputs (results/<id>/ and results/<id>_results.zip)."
    )
    temp: StrictStr = Field("./temp", description="Root of job working files (temp/<id>/).")
    logs: StrictStr = Field(
        "./logs", description="Where cleanup.log is written (created if missing)."
    )

    @field_validator("*", mode="before")
    @classmethod
    def _a_path(cls, value: object) -> object:
        # An empty path would resolve to the directory it is relative to (the working
        # directory, or the config file's): never a silent choice for a deletion root.
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("must not be empty")
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"must not contain a NUL character, got {quote(value)}")
        return value


class Performance(Section):
    batch_size: StrictInt = Field(
        100,
        ge=1,
        le=100_000,
        description="Jobs per batch: marks and audit rows are committed once per batch.",
    )
    parallel_delete: StrictBool = Field(
        True, description="Delete in several worker processes (false = in this process alone)."
    )
    max_workers: StrictInt = Field(
        4, ge=1, le=256, description="Deletion worker processes when parallel_delete is true."
    )
    busy_timeout_seconds: Seconds = Field(
        30,
        le=3600,
        description="How long one database write waits while another writer (the web interface) holds the database. Before anything is deleted, a database locked longer than this is exit 75.",
    )
    commit_retry_seconds: Seconds = Field(
        120,
        le=86400,
        description="How long a batch's records (marks, audit rows, run-log counts) are retried with backoff when they cannot be committed; jobs whose records still fail are not counted as cleaned, and the next run records them.",
    )


NoticeKind = Literal["failure", "success", "alert"]
TlsMode = Literal["starttls", "ssl", "none"]
_MAX_INTERVAL_SECONDS = 366 * 86400
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def _seconds_text(value: object) -> object:
    """A bare number of seconds (``jitter: 0``, ``cooldown: 1800``) as the duration text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _duration(value: str, limit: float = _MAX_INTERVAL_SECONDS) -> str:
    from eemt_cleanup.timeparse import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"must be a duration like 6h, 30m, 1d or 0, got {quote(value)}") from None
    if seconds > limit:
        most = f"{int(limit // 3600)}h" if limit < 2 * 86400 else f"{int(limit // 86400)} days"
        raise ValueError(f"must be at most {most}, got {quote(value)}")
    return value.strip()


def _web_url(value: str) -> str:
    """A webhook URL: https, or http to this machine only (the URL is the credential: over
    plain http it would cross the network in clear). Messages never echo the URL."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
    except ValueError:
        raise ValueError("must be an https:// URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an https:// URL")
    if parts.scheme == "http" and host.lower() not in _LOOPBACK_HOSTS:
        raise ValueError(
            "must be https:// (the URL is a secret; plain http:// only to this machine)"
        )
    return value.strip()


ON_HELP = "Which notices this channel sends: failure (a run that exits non-zero), success, alert (a disk alert crossed, see alerts). A change between failure and success is always sent, even when only one of them is listed."
INTERVAL_HELP = "At most one notice per this duration (6h, 30m, 1d; 0 = no limit). Notices held back are counted and mentioned in the next one; a change between failure and success is always sent."


def _default_on() -> list[NoticeKind]:
    return ["failure", "alert"]


class Channel(Section):
    """What every notification channel has (declared last in each): ``on`` and
    ``min_interval``."""

    @field_validator("min_interval", check_fields=False)
    @classmethod
    def _interval(cls, value: str) -> str:
        return _duration(value)

    @property
    def min_interval_seconds(self) -> float:
        from eemt_cleanup.timeparse import parse_duration

        return parse_duration(getattr(self, "min_interval", "0"))


class EmailNotifications(Channel):
    enabled: StrictBool = Field(False, description="Send the cleanup report by e-mail.")
    smtp_server: StrictStr = Field("localhost", description="SMTP host.")
    smtp_port: StrictInt = Field(
        25, ge=1, le=65535, description="SMTP port (25 plain, 587 starttls, 465 ssl)."
    )
    tls: TlsMode = Field(
        "none",
        description="starttls (upgrade after connecting), ssl (TLS from the start) or none. Credentials are never sent without TLS to a host other than this machine.",
    )
    sender: StrictStr = Field(
        "", description="From address (empty: eemt-cleanup@<this host's name>)."
    )
    username: StrictStr = Field("", description="SMTP login (empty: no login).")
    password_env: StrictStr = Field(
        "",
        description="Name of the environment variable holding the SMTP password (never the password itself: it does not belong in this file).",
    )
    password_file: StrictStr = Field(
        "",
        description="File holding the SMTP password (its first line), e.g. a mounted secret. Relative to this file's directory.",
    )
    recipients: list[StrictStr] = Field(default_factory=list, description="Addresses to send to.")
    timeout_seconds: PositiveSeconds = Field(
        20, le=300, description="How long one SMTP conversation may take, in all."
    )
    on: list[NoticeKind] = Field(default_factory=_default_on, description=ON_HELP)
    min_interval: StrictStr = Field("0", description=INTERVAL_HELP)

    @model_validator(mode="before")
    @classmethod
    def _no_password_here(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "password: not allowed in the config file; give password_env (an environment"
                " variable's name) or password_file"
            )
        return data

    @model_validator(mode="after")
    def _complete(self) -> EmailNotifications:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if self.password_env and not _IDENTIFIER.match(self.password_env):
            raise ValueError(
                f"password_env: must be an environment variable's name, got {quote(self.password_env)}"
            )
        if self.enabled:
            if not self.recipients:
                raise ValueError("recipients: must name at least one address when enabled")
            for address in self.recipients:
                if "@" not in address or any(c in address for c in "\r\n,;<> "):
                    raise ValueError(f"recipients: not an e-mail address: {quote(address)}")
            if (self.password_env or self.password_file) and not self.username:
                raise ValueError("username: must be set when a password is given")
            if (
                self.username
                and self.tls == "none"
                and self.smtp_server.strip().lower() not in _LOOPBACK_HOSTS
            ):
                raise ValueError(
                    f"tls: 'none' would send the password in clear text to {quote(self.smtp_server)};"
                    " use starttls or ssl"
                )
        return self


class SlackNotifications(Channel):
    enabled: StrictBool = Field(
        False,
        description="Post the cleanup report to a Slack incoming webhook (Mattermost and Rocket.Chat accept the same payload).",
    )
    webhook_url: StrictStr = Field(
        "",
        description="Incoming-webhook URL. It is a secret: config show, logs and JSON show only its host.",
    )
    timeout_seconds: PositiveSeconds = Field(
        10,
        le=300,
        description="How long one POST may take, in all (connecting, sending, the answer).",
    )
    retries: StrictInt = Field(
        2,
        ge=0,
        le=10,
        description="Retries after a failed POST (timeouts, 5xx, 429), with backoff.",
    )
    on: list[NoticeKind] = Field(default_factory=_default_on, description=ON_HELP)
    min_interval: StrictStr = Field("0", description=INTERVAL_HELP)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            if info.data.get("enabled"):
                raise ValueError("must be set when notifications.slack.enabled is true")
            return ""
        return _web_url(value)


class AppriseNotifications(Channel):
    enabled: StrictBool = Field(
        False,
        description="Send the report through apprise (ntfy, Teams, Discord, Telegram, ...; install eemt-cleanup[notify]).",
    )
    urls: list[StrictStr] = Field(
        default_factory=list,
        description="Apprise URLs (ntfy://host/topic, msteams://..., discord://...). Secrets: shown only by scheme.",
    )
    on: list[NoticeKind] = Field(default_factory=_default_on, description=ON_HELP)
    min_interval: StrictStr = Field("0", description=INTERVAL_HELP)

    @model_validator(mode="after")
    def _urls_when_enabled(self) -> AppriseNotifications:
        if self.enabled and not self.urls:
            raise ValueError("urls: must name at least one URL when enabled")
        for url in self.urls:
            if "://" not in url:
                raise ValueError("urls: each must be an apprise URL (scheme://...)")
        return self


class Notifications(Section):
    email: EmailNotifications = Field(
        default_factory=EmailNotifications, description="E-mail reports."
    )
    slack: SlackNotifications = Field(
        default_factory=SlackNotifications, description="Slack (or compatible) webhook reports."
    )
    apprise: AppriseNotifications = Field(
        default_factory=AppriseNotifications, description="Every other service, through apprise."
    )

    @property
    def any_enabled(self) -> bool:
        return self.email.enabled or self.slack.enabled or self.apprise.enabled


class Metrics(Section):
    textfile: StrictStr = Field(
        "",
        description="Write Prometheus metrics here after every run and status, atomically, for node_exporter's textfile collector (e.g. /var/lib/node_exporter/textfile/eemt_cleanup.prom; empty = off). Relative to this file's directory.",
    )

    @field_validator("textfile")
    @classmethod
    def _prom_file(cls, value: str) -> str:
        if value.strip() and not value.strip().endswith(".prom"):
            raise ValueError(
                f"must end in .prom (node_exporter reads only those), got {quote(value)}"
            )
        return value.strip()


class Alerts(Section):
    max_results_bytes: StrictInt | StrictStr | None = Field(
        None,
        description="Alert when the not-yet-cleaned job data in paths.results exceeds this (bytes, or a size such as 100G; null = off).",
    )
    min_free_percent: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = Field(
        None,
        description="Alert when the filesystem of a root (uploads, results, temp) has less free space than this percentage (null = off).",
    )

    @field_validator("max_results_bytes")
    @classmethod
    def _size(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, str):
            from eemt_cleanup.humanize_size import parse_size

            try:
                value = parse_size(value)
            except ValueError:
                raise ValueError(f"must be bytes or a size like 100G, got {quote(value)}") from None
        if value <= 0:
            raise ValueError(f"must be positive, got {quote(value)}")
        return value

    @property
    def results_limit(self) -> int | None:
        value = self.max_results_bytes
        return None if value is None else int(value)

    @property
    def enabled(self) -> bool:
        return self.max_results_bytes is not None or self.min_free_percent is not None


class Usage(Section):
    sample_after_run: StrictBool = Field(
        False,
        description="After every real run, measure the data of the jobs not yet cleaned and store a usage sample (what report draws). Always on when metrics, alerts or a notification channel are on; status always stores one. The measurement walks the remaining job data, like du.",
    )


class Statuses(Section):
    successful: list[StrictStr] = Field(
        default_factory=lambda: ["completed"],
        description="Statuses cleaned under retention.successful_jobs.",
    )
    failed: list[StrictStr] = Field(
        default_factory=lambda: ["failed"],
        description="Statuses cleaned under retention.failed_jobs (cancelled jobs are stored as failed).",
    )
    active: list[StrictStr] = Field(
        default_factory=lambda: ["pending", "running"],
        description="Statuses never touched. Any status in none of the three lists is never touched and is reported as unknown.",
    )


class Columns(Section):
    id: StrictStr = Field(
        "id", description="Column holding the job id (names results/<id>/ and temp/<id>/)."
    )
    status: StrictStr = Field("status", description="Column holding the job status.")
    created_at: StrictStr = Field("created_at", description="Column holding the creation time.")
    started_at: StrictStr = Field("started_at", description="Column holding the start time.")
    completed_at: StrictStr = Field(
        "completed_at", description="Column holding the completion time (age is measured from it)."
    )
    dem_filename: StrictStr = Field(
        "dem_filename", description="Column holding the upload's file name inside uploads/."
    )

    @field_validator("*")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"must be a plain SQL identifier, got {quote(value)}")
        return value


class Jobs(Section):
    table: StrictStr = Field("jobs", description="Name of the jobs table.")
    timezone: StrictStr = Field(
        "local",
        description="Zone of naive started_at/completed_at values ('local' = this machine's zone, or a name such as 'UTC', 'Europe/Berlin').",
    )
    created_at_timezone: StrictStr = Field(
        "UTC", description="Zone of naive created_at values (SQLite's CURRENT_TIMESTAMP is UTC)."
    )
    statuses: Statuses = Field(
        default_factory=Statuses, description="Which status values mean what."
    )
    columns: Columns = Field(
        default_factory=Columns,
        description="Column names, for job systems with the same shape but other names.",
    )

    @field_validator("table")
    @classmethod
    def _table_identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError(f"must be a plain SQL identifier, got {quote(value)}")
        return value

    @field_validator("timezone", "created_at_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            resolve_zone(value)
        except ValueError:
            raise ValueError(f"unknown time zone {quote(value)}") from None
        return value


class Logging(Section):
    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    level: LogLevel = Field(
        "INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL: for the log file and plain output.",
    )
    file: StrictStr = Field(
        "cleanup.log",
        description="Log file name inside paths.logs (reopened when logrotate moves it).",
    )

    _check_file = field_validator("file")(lambda name: _single_component(name))


class Settings(Section):
    """The whole configuration."""

    retention: Retention = Field(
        default_factory=Retention, description="How long job data is kept, by job status."
    )
    schedule: Schedule = Field(
        default_factory=Schedule,
        description="When eemt-cleanup daemon runs the cleanup (cron and systemd timers keep their own schedule).",
    )
    triggers: Triggers = Field(
        default_factory=Triggers, description="Runs the daemon starts between scheduled ones."
    )
    paths: Paths = Field(
        default_factory=Paths,
        description="Where the data lives. Relative paths in this file resolve against this file's directory.",
    )
    performance: Performance = Field(
        default_factory=Performance, description="Parallelism and batching."
    )
    notifications: Notifications = Field(
        default_factory=Notifications,
        description="Notices after a real run (and alert notices after status). A channel that fails is logged and listed in the run's JSON; it never changes the exit code. Test with: eemt-cleanup notify --test",
    )
    jobs: Jobs = Field(
        default_factory=Jobs, description="The jobs table: name, statuses, columns and time zones."
    )
    logging: Logging = Field(default_factory=Logging, description="Logging.")
    metrics: Metrics = Field(
        default_factory=Metrics, description="Prometheus metrics (see also eemt-cleanup metrics)."
    )
    alerts: Alerts = Field(
        default_factory=Alerts,
        description="Disk alerts, checked on every run and status: a line in the output, the JSON alerts list, a metric and an alert notice.",
    )
    usage: Usage = Field(
        default_factory=Usage, description="Usage history, for eemt-cleanup report."
    )

    @property
    def reports_wanted(self) -> bool:
        """Whether anything goes out after a real run (a usage sample, alerts, the metrics
        textfile, notices): when nothing is configured, a run loads none of it."""
        return (
            self.notifications.any_enabled
            or bool(self.metrics.textfile)
            or self.alerts.enabled
            or self.usage.sample_after_run
        )

    @field_validator("jobs")
    @classmethod
    def _disjoint_statuses(cls, jobs: Jobs) -> Jobs:
        groups = {
            "successful": jobs.statuses.successful,
            "failed": jobs.statuses.failed,
            "active": jobs.statuses.active,
        }
        seen: dict[str, str] = {}
        for group, names in groups.items():
            for name in names:
                if name in seen:
                    raise ValueError(
                        f"status {quote(name)} is in both statuses.{seen[name]} and"
                        f" statuses.{group}"
                    )
                seen[name] = group
        return jobs


def default_tree() -> dict[str, Any]:
    """The built-in defaults as a nested dict."""
    return Settings().model_dump()


# Keys whose values are secrets: config show, logs and JSON show only their scheme and host.
SECRET_KEYS = frozenset({"notifications.slack.webhook_url", "notifications.apprise.urls"})


def redact(key: str, value: Any) -> Any:
    """``value`` of ``key`` as it may be shown: a secret URL keeps its scheme and host."""
    if key not in SECRET_KEYS or not value:
        return value
    if isinstance(value, list):
        return [redact(key, item) for item in value]
    return redact_url(str(value))


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XyZ`` → ``https://hooks.slack.com/***``."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "***"
    if parts.scheme in ("http", "https") and host:
        return f"{parts.scheme}://{host}/***"
    return f"{parts.scheme}://***" if parts.scheme else "***"

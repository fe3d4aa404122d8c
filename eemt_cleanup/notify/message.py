"""The words of a notice: its title, the fields a chat webhook shows, and the plain-text
body of the reference's "Daily Cleanup Report" (e-mail and apprise).

Every value that came from the database, the filesystem or a server (status names, error
texts) is escaped here with :func:`~eemt_cleanup.report.escape.printable`: no control
character or newline of theirs reaches a message. Mattermost, Rocket.Chat and Discord act
on a plain ``@channel``, ``@here``, ``@all`` or ``@everyone`` in a message: the body and
subject are built with such mentions broken (:func:`break_mentions`); the fields and the
summary are broken by the channel after its own escaping (chat markup is the channel's
business: :mod:`eemt_cleanup.notify.slack` escapes ``&``, ``<`` and ``>``).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from eemt_cleanup.config.schema import Schedule, Settings, cut
from eemt_cleanup.humanize_size import human_size
from eemt_cleanup.report.dates import moment, moment_and_relative
from eemt_cleanup.report.escape import printable

if TYPE_CHECKING:
    from eemt_cleanup.notify import Notice
    from eemt_cleanup.store.usage import RootUsage, UsageSample

MAX_VALUE = 300  # characters of one error or alert line: a message stays readable
CHAT_ERRORS = 3
MAIL_ERRORS = 10

REPORT_TITLE = "EEMT Cleanup Report"
ALERT_TITLE = "EEMT Cleanup Alert"
TEST_TITLE = "EEMT Cleanup Test"
REPORT_SUBJECT = "EEMT Daily Cleanup Report"
NOT_STARTED = "No cleanup ran: the run ended before cleaning anything."

# The mentions that notify a whole channel; a zero-width space after the "@" breaks them
# while the text reads the same.
_MENTION = re.compile(r"@(?=(?:channel|here|all|everyone)\b)", re.IGNORECASE)


class NoticeError(Exception):
    """A channel could not deliver a notice. The message is safe to show and store: one
    line, escaped, naming no secret (no webhook path, apprise URL or password)."""


def one_line(text: object) -> str:
    """A value from outside for a message: control characters escaped, at most
    ``MAX_VALUE`` characters. Backslashes are left alone: texts such as the run's errors
    are escaped already, and must not be escaped twice."""
    return cut(printable(text, backslashes=False), MAX_VALUE)


def network_error(error: BaseException, where: str, timeout: float) -> str:
    """``connection refused: localhost:25``: a failed connection to ``where`` (a host and
    port, never a URL) in a few words."""
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout:g} s: {where}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused: {where}"
    if isinstance(error, socket.gaierror):
        return f"host not found: {where} ({one_line(error.strerror or error)})"
    text = one_line(getattr(error, "strerror", None) or error or type(error).__name__)
    return f"{text[:1].lower()}{text[1:]}: {where}"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret in it (a URL, its path, a password) replaced by ``***``:
    a server may echo what it was sent, and an error message must not carry it on."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) > 1:
            text = text.replace(secret, "***")
    return text


def break_mentions(text: str) -> str:
    """``text`` with every ``@channel``, ``@here``, ``@all`` and ``@everyone`` broken by a
    zero-width space after the ``@`` (``@\u200bchannel``): shown the same, pinging nobody."""
    return _MENTION.sub("@\u200b", text) if "@" in text else text


def primary_kind(notice: Notice) -> str:
    """What the notice is, in one word: ``test``, ``failure``, ``success`` or ``alert``."""
    for kind in ("test", "failure", "success"):
        if kind in notice.kinds:
            return kind
    return "alert"


@dataclass(frozen=True)
class HeldBack:
    """Notices a channel's ``min_interval`` held back since its last one sent."""

    count: int
    since: datetime | None
    interval: str  # as configured, e.g. "6h"

    @property
    def text(self) -> str:
        """``2 notices held back since 2026-01-20 13:00 UTC (min_interval 6h)``."""
        noun = "notice" if self.count == 1 else "notices"
        since = f" since {moment(self.since)}" if self.since else ""
        return f"{self.count} {noun} held back{since} (min_interval {self.interval})"


@dataclass(frozen=True)
class MessageField:
    title: str
    value: str
    short: bool = False


@dataclass(frozen=True)
class Message:
    """One notice, ready for any channel: values escaped; ``subject`` and ``body`` with
    their mentions broken, ``fields`` and ``summary`` to be broken by the channel after its
    own escaping (see the module's docstring)."""

    kind: str  # primary_kind of the notice
    title: str  # "EEMT Cleanup Report" / "... Alert" / "... Test"
    subject: str  # the e-mail's subject
    color: str  # chat attachment colour: good, warning or danger
    fields: tuple[MessageField, ...]
    body: str  # plain text, for e-mail and apprise
    summary: str  # one line (a chat client's notification text)


def build_message(
    notice: Notice, settings: Settings, *, now: datetime, held_back: HeldBack | None = None
) -> Message:
    """The words of ``notice``; ``held_back`` (when some were) is mentioned in it."""
    kind = primary_kind(notice)
    host = printable(socket.gethostname())
    title = {"test": TEST_TITLE}.get(kind, REPORT_TITLE if _is_report(notice) else ALERT_TITLE)
    return Message(
        kind=kind,
        title=title,
        subject=break_mentions(_subject(notice, kind)),
        color=_color(notice, kind),
        fields=tuple(_fields(notice, kind, host, held_back)),
        body=break_mentions(_body(notice, kind, settings, host, held_back, now)),
        summary=_summary(notice, kind, title, host),
    )


def _is_report(notice: Notice) -> bool:
    """A run's notice: its summary, or the error of a run that could not start."""
    return notice.run is not None or notice.error is not None


def _not_started(notice: Notice) -> bool:
    """A run that ended (exit 2) before cleaning anything: no figure of it is known."""
    return notice.run is None and notice.error is not None


def _subject(notice: Notice, kind: str) -> str:
    if kind == "test":
        return TEST_TITLE
    if not _is_report(notice):
        return ALERT_TITLE
    subject = REPORT_SUBJECT
    if kind == "failure":
        subject += " - FAILED"
    if notice.alerts or "alert" in notice.kinds:
        subject += " - ALERT"
    return subject


def _color(notice: Notice, kind: str) -> str:
    if kind == "failure":
        return "danger"
    if kind != "test" and (notice.alerts or "alert" in notice.kinds):
        return "warning"
    return "good"


def _status(notice: Notice, kind: str) -> str:
    if kind == "failure":
        code = notice.exit_code if notice.exit_code is not None else 1
        return f"Failed (exit {code})"
    return "Success"


def _jobs_cleaned(notice: Notice) -> str:
    if notice.run is None:
        return "-"
    cleaned = notice.run.cleaned_jobs
    return f"{cleaned.successful} completed, {cleaned.failed} failed"


def _space_freed(notice: Notice) -> str:
    return notice.run.space_freed.human_readable if notice.run else "-"


def _alert_lines(notice: Notice) -> list[str]:
    return [one_line(alert.message) for alert in notice.alerts]


def _error_lines(notice: Notice, limit: int) -> tuple[list[str], int]:
    """The first ``limit`` errors of the run (escaped) and how many there are in all."""
    errors = notice.run.errors if notice.run else []
    return [one_line(error) for error in errors[:limit]], len(errors)


def _fields(notice: Notice, kind: str, host: str, held_back: HeldBack | None) -> list[MessageField]:
    fields: list[MessageField] = []
    if kind == "test":
        fields.append(
            MessageField("Status", "Test notice from eemt-cleanup notify --test", short=False)
        )
    elif notice.run is not None:
        fields += [
            MessageField("Jobs Cleaned", _jobs_cleaned(notice), short=True),
            MessageField("Space Freed", _space_freed(notice), short=True),
            MessageField("Status", _status(notice, kind), short=True),
        ]
    elif _not_started(notice):
        fields += [
            MessageField("Status", _status(notice, kind), short=True),
            MessageField("Error", one_line(notice.error)),
        ]
    if notice.alerts:
        fields.append(MessageField("Alerts", "\n".join(_alert_lines(notice))))
    if notice.usage is not None and notice.run is None and kind != "test":
        fields.append(MessageField("Current Usage", _usage_total(notice.usage), short=True))
    fields.append(MessageField("Host", host, short=True))
    if notice.run is not None:
        fields.append(MessageField("Run", printable(notice.run.run_id), short=True))
    if notice.trigger and notice.trigger != "cli" and kind != "test":
        # Who started it, unless someone at the command line did (the reference's fields):
        # the daemon's schedule, a disk-pressure run (tighter retention), cron, the API.
        fields.append(MessageField("Trigger", printable(notice.trigger), short=True))
    if held_back is not None and held_back.count:
        fields.append(MessageField("Held back", held_back.text))
    if kind == "failure":
        shown, total = _error_lines(notice, CHAT_ERRORS)
        if shown:
            more = [f"(and {total - len(shown)} more)"] if total > len(shown) else []
            fields.append(MessageField("Errors", "\n".join(shown + more)))
    return fields


def _summary(notice: Notice, kind: str, title: str, host: str) -> str:
    if kind == "test":
        return f"{title} from {host}"
    if _not_started(notice):
        return f"{title} on {host}: {_status(notice, kind)}, no cleanup ran"
    if notice.run is None:
        first = _alert_lines(notice)[:1]
        return f"{title} on {host}: {first[0]}" if first else f"{title} on {host}"
    cleaned = notice.run.cleaned_jobs.successful + notice.run.cleaned_jobs.failed
    jobs = "1 job" if cleaned == 1 else f"{cleaned} jobs"
    return (
        f"{title} on {host}: {_status(notice, kind)}, {jobs} cleaned, {_space_freed(notice)} freed"
    )


def _usage_total(usage: UsageSample) -> str:
    jobs = sum(group.jobs for group in usage.by_status)
    return f"{human_size(usage.total_bytes)} ({'1 job' if jobs == 1 else f'{jobs} jobs'})"


def _usage_lines(usage: UsageSample | None) -> list[str]:
    """``Current Storage Usage`` and its lines per status."""
    if usage is None:
        return ["Current Storage Usage: not measured"]
    lines = [f"Current Storage Usage: {_usage_total(usage)}"]
    for group in sorted(usage.by_status, key=lambda g: g.status):
        jobs = "1 job" if group.jobs == 1 else f"{group.jobs} jobs"
        lines.append(f"  {printable(group.status)}: {jobs}, {human_size(group.bytes)}")
    return lines


def _filesystem(root: RootUsage) -> tuple[str, int | None, int | None]:
    """What tells ``root``'s filesystem apart: its device number when it was measured,
    else its size and free space (two filesystems of the same size and free space are then
    taken for one)."""
    fs_id = getattr(root, "fs_id", None)
    if fs_id is not None:
        return ("device", fs_id, None)
    return ("size", root.fs_size, root.fs_free)


def _available_lines(usage: UsageSample | None) -> list[str]:
    """``Available Space``: free bytes per filesystem of the roots (roots that share one
    are named together, as the alerts do)."""
    if usage is None or not usage.by_root:
        return ["Available Space: not measured"]
    filesystems: dict[tuple[str, int | None, int | None], list[RootUsage]] = {}
    for root in usage.by_root:
        filesystems.setdefault(_filesystem(root), []).append(root)
    lines = ["Available Space:"]
    for roots in filesystems.values():
        # Roots of one filesystem were measured moments apart: the first one's figures.
        size, free = roots[0].fs_size, roots[0].fs_free
        names = ", ".join(printable(root.root) for root in roots)
        if free is None or not size:
            lines.append(f"  {names}: unknown")
        else:
            percent = 100.0 * free / size
            lines.append(
                f"  {names}: {human_size(free)} free of {human_size(size)} ({percent:.1f}%)"
            )
    return lines


def next_scheduled(schedule: Schedule, now: datetime) -> str:
    """When the schedule next fires after ``now`` (``schedule.cron`` read in
    ``schedule.timezone``), or why nothing is scheduled."""
    if not schedule.enabled:
        return "not scheduled (schedule.enabled is false)"
    from eemt_cleanup.schedule import CronSchedule

    following = CronSchedule.of(schedule).next_after(now)
    return moment_and_relative(following, now)


def _body(
    notice: Notice,
    kind: str,
    settings: Settings,
    host: str,
    held_back: HeldBack | None,
    now: datetime,
) -> str:
    heading = {"test": "Cleanup Test"}.get(
        kind, "Daily Cleanup Report" if _is_report(notice) else "Cleanup Alert"
    )
    lines = [heading, "=" * len(heading)]
    if kind == "test":
        lines.append("A test notice from eemt-cleanup notify --test: notices reach you.")
    elif notice.run is not None:
        lines += [
            f"Jobs Cleaned: {_jobs_cleaned(notice)}",
            f"Space Freed: {_space_freed(notice)}",
        ]
    elif _not_started(notice):
        lines += [NOT_STARTED, f"Error: {one_line(notice.error)}"]
    # A run that did not start measured nothing: its usage is shown only when known.
    if (kind != "test" and not _not_started(notice)) or notice.usage is not None:
        lines += _usage_lines(notice.usage)
        lines += _available_lines(notice.usage)
    lines.append(f"Next cleanup scheduled for: {next_scheduled(settings.schedule, now)}")
    if _is_report(notice) and kind != "test":
        lines.append(f"Status: {_status(notice, kind)}")
    lines += _listed("Alerts", _alert_lines(notice), len(notice.alerts))
    if kind == "failure":
        lines += _listed("Errors", *_error_lines(notice, MAIL_ERRORS))
    if held_back is not None and held_back.count:
        lines += ["", f"Held back: {held_back.text}"]
    lines += ["", f"Host: {host}"]
    if notice.run is not None:
        lines.append(f"Run ID: {printable(notice.run.run_id)}")
    if notice.trigger:
        lines.append(f"Triggered by: {printable(notice.trigger)}")
    return "\n".join(lines) + "\n"


def _listed(title: str, shown: list[str], total: int) -> list[str]:
    if not shown:
        return []
    heading = f"{title}:" if total == len(shown) else f"{title} (first {len(shown)} of {total}):"
    return ["", heading, *(f"  - {line}" for line in shown)]


__all__ = [
    "HeldBack",
    "Message",
    "MessageField",
    "NoticeError",
    "break_mentions",
    "build_message",
    "network_error",
    "next_scheduled",
    "one_line",
    "primary_kind",
    "scrub",
]

"""Notices: the cleanup report, disk alerts and test notices, sent to every enabled channel
(``notifications.email``, ``.slack``, ``.apprise``), with a rate limit whose state lasts in
SQLite (``cleanup_notices``: a cron run is a fresh process).

A notice's *primary kind* is ``test``, else ``failure`` or ``success`` for a run's notice
(its exit code), else ``alert`` (an alert-only notice, from ``status``). For each enabled
channel, in the order email, slack, apprise:

1. The notice is *wanted* when one of its kinds is in the channel's ``on``, when it is a
   test, or when it is a *change*: a success after a failure, or a failure after a success
   (judged against the channel's last success/failure notice that was *sent*: a recovery
   whose delivery failed is still announced by the next success). A change is sent even
   when its kind is not in ``on`` (a recovery is announced) and is never rate limited.
2. A notice not wanted is recorded as ``unwanted`` and not sent.
3. A wanted notice that is neither a change nor a test, on a channel with ``min_interval``,
   whose last notice sent *of the same primary kind* is younger than that, is recorded as
   ``suppressed``, not sent (an alert does not hold back a failure, nor the reverse).
4. Otherwise it is sent; the notices held back since the channel's last one sent (of any
   kind) are counted and mentioned in it. It is recorded as ``sent`` or ``failed`` (a failed
   notice does not count as sent, for the interval or the change rule).

Test notices are recorded, but do not count for the interval and mention nothing held back.
When the state cannot be read or written (a read-only or locked database), notices are
sent without a rate limit (whether one is wanted then depends on ``on`` alone) and one
warning says so, also given as the ``note`` of every result. Each attempt is bounded as a
whole by the channel's time limit, a webhook's retries by a total budget, and a ``stop``
(the run is stopping) ends the retries. Sending never raises: a channel that fails is a
``failed`` result and one warning; it never changes what a run did or its exit code.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import pydantic

from eemt_cleanup.notify.message import (
    HeldBack,
    Message,
    NoticeError,
    build_message,
    one_line,
    primary_kind,
    scrub,
)

if TYPE_CHECKING:
    from eemt_cleanup.alerts import Alert
    from eemt_cleanup.config.loader import LoadedConfig
    from eemt_cleanup.config.schema import (
        AppriseNotifications,
        EmailNotifications,
        Settings,
        SlackNotifications,
    )
    from eemt_cleanup.models import RunSummary
    from eemt_cleanup.store.notices import ChannelHistory, NoticeRecord
    from eemt_cleanup.store.usage import UsageSample

    ChannelSettings = EmailNotifications | SlackNotifications | AppriseNotifications

# Waits ``seconds`` before a retry; True when the run is stopping (no retry then).
Waiter = Callable[[float], bool]

log = logging.getLogger("eemt_cleanup")

CHANNELS = ("email", "slack", "apprise")
OUTCOMES = ("success", "failure")
Decision = Literal["sent", "suppressed", "failed", "unwanted"]


class NoticeResult(pydantic.BaseModel):
    """What happened to one notice on one channel (an entry of the run's JSON
    ``notifications``)."""

    channel: str  # "email", "slack", "apprise"
    decision: Decision
    kind: str  # what the notice was: "success", "failure", "alert", "test"
    error: str | None = None  # escaped, never holds a secret
    suppressed_before: int = 0  # notices held back since the last one sent (mentioned in this one)
    destination: str = ""  # redacted: "https://hooks.slack.com/***", "2 recipients via host:587"
    # Why the rate limit was not applied (its state could not be used); the same on every
    # result of one send_notices call, and logged once as a warning.
    note: str | None = None


@dataclass(frozen=True)
class Notice:
    """One notice to send. A run's has ``success`` or ``failure`` (its exit code 0 or not),
    plus ``alert`` when alerts were raised; ``status`` sends ``{"alert"}``, ``notify --test``
    sends ``{"test"}``. A run that ended (exit 2) before cleaning anything, e.g. a root
    whose mount is gone, is ``{"failure"}`` with ``run=None``, its ``exit_code`` and the
    one-line ``error``."""

    kinds: frozenset[str]
    run: RunSummary | None = None
    exit_code: int | None = None
    trigger: str | None = None  # "cli", "schedule", "api", ...
    alerts: tuple[Alert, ...] = ()
    usage: UsageSample | None = None  # current usage after the run (may be None)
    error: str | None = None  # why a run could not start (then run is None)


def enabled_channels(settings: Settings) -> list[str]:
    """Names of the enabled channels, in the order email, slack, apprise."""
    return [name for name in CHANNELS if _channel(settings, name).enabled]


def send_notices(
    config: LoadedConfig,
    notice: Notice,
    *,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
) -> list[NoticeResult]:
    """Decide, send and record ``notice`` on every enabled channel (rules in the module's
    docstring); return one result per channel. ``now`` is the clock (injected by tests).
    Retries wait with ``stop.wait`` when ``stop`` is given (once it is set, as when the
    run got SIGTERM, a wait ends at once and no retry starts; each channel still gets its
    one attempt), else with ``sleep``. Never raises."""
    from eemt_cleanup.timeparse import utc_now

    moment = now or utc_now()
    wait = _waiter(sleep, stop)
    state = _State(config)
    results: list[NoticeResult] = []
    try:
        for name in enabled_channels(config.settings):
            results.append(_one_channel(config, state, name, notice, moment, wait))
    finally:
        state.close()
    for result in results:
        result.note = state.warning
    return results


def _waiter(sleep: Callable[[float], None], stop: threading.Event | None) -> Waiter:
    """What a retry waits with: answers True when the run is stopping (no retry then)."""
    if stop is not None:
        return stop.wait

    def sleeping(seconds: float) -> bool:
        sleep(seconds)
        return False

    return sleeping


def decide(
    notice: Notice,
    on: Sequence[str],
    min_interval_seconds: float,
    history: ChannelHistory | None,
    now: datetime,
) -> Literal["send", "suppressed", "unwanted"]:
    """What a channel does with ``notice`` given its ``history`` (None: unknown, so no
    change is seen and nothing is rate limited). Pure."""
    kind = primary_kind(notice)
    if kind == "test" or is_change(kind, history):
        return "send"
    if not notice.kinds & set(on):
        return "unwanted"
    # Per kind: an alert sent an hour ago holds back no failure.
    last = history.sent_at.get(kind) if history else None
    if min_interval_seconds > 0 and last is not None:
        age = (now - last).total_seconds()
        # A last notice "in the future" (the clock stepped back) holds nothing back.
        if 0 <= age < min_interval_seconds:
            return "suppressed"
    return "send"


def is_change(kind: str, history: ChannelHistory | None) -> bool:
    """A success after a failure or a failure after a success sent on this channel (one
    that failed to go, or was not wanted, announced nothing)."""
    last = history.last_outcome if history else None
    return kind in OUTCOMES and last in OUTCOMES and last != kind


def _channel(settings: Settings, name: str) -> ChannelSettings:
    channel: ChannelSettings = getattr(settings.notifications, name)
    return channel


def _one_channel(
    config: LoadedConfig,
    state: _State,
    name: str,
    notice: Notice,
    now: datetime,
    wait: Waiter,
) -> NoticeResult:
    channel = _channel(config.settings, name)
    kind = primary_kind(notice)
    result = NoticeResult(channel=name, decision="unwanted", kind=kind)
    try:
        result.destination = destination(name, channel)
        decision, history = state.decide(name, notice, channel, now)
        if decision != "send":
            result.decision = decision
            return result
        held = _held_back(kind, channel, history)
        result.suppressed_before = held.count if held else 0
        message = build_message(notice, config.settings, now=now, held_back=held)
        result.error = _deliver(name, channel, message, wait)
    except Exception as error:  # noqa: BLE001 - a notice never breaks its caller
        result.error = scrub(f"unexpected error: {one_line(error)}", _secrets(name, channel))
    result.decision = "failed" if result.error else "sent"
    if result.error:
        log.warning("%s notice failed (%s): %s", name, result.destination, result.error)
    state.record(_record(result, notice, now))
    return result


def destination(name: str, channel: Any) -> str:
    """Where ``channel`` sends, redacted (no secret)."""
    if name == "slack":
        from eemt_cleanup.config.schema import redact_url

        return redact_url(channel.webhook_url.strip())
    if name == "email":
        from eemt_cleanup.notify.email import destination as mail_destination

        return mail_destination(channel)
    from eemt_cleanup.notify.apprise_channel import destination as apprise_destination

    return apprise_destination(channel)


def _deliver(name: str, channel: Any, message: Message, wait: Waiter) -> str | None:
    """Send ``message`` through the channel ``name``: None when it went, else the error."""
    try:
        if name == "slack":
            from eemt_cleanup.notify.slack import post_message

            post_message(channel, message, wait=wait)
        elif name == "email":
            from eemt_cleanup.notify.email import send_mail

            send_mail(channel, message)
        else:
            from eemt_cleanup.notify.apprise_channel import send_apprise

            send_apprise(channel, message)
    except NoticeError as error:
        return scrub(one_line(error), _secrets(name, channel))
    return None


def _secrets(name: str, channel: Any) -> tuple[str, ...]:
    """The secret parts of a channel's URLs, scrubbed from any error as a last resort."""
    urls = [channel.webhook_url] if name == "slack" else list(getattr(channel, "urls", []))
    secrets: list[str] = []
    for url in filter(None, (u.strip() for u in urls)):
        secrets += [url, url.partition("://")[2]]
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        secrets += [parts.path, parts.query, parts.password or ""]
    return tuple(secret for secret in secrets if len(secret) > 1)


def _held_back(
    kind: str, channel: ChannelSettings, history: ChannelHistory | None
) -> HeldBack | None:
    if kind == "test" or history is None or not history.held_back:
        return None
    return HeldBack(history.held_back, history.held_back_since, channel.min_interval)


def _record(result: NoticeResult, notice: Notice, now: datetime) -> NoticeRecord:
    from eemt_cleanup.store.notices import NoticeRecord

    return NoticeRecord(
        at=now,
        channel=result.channel,
        kind=result.kind,
        decision=result.decision,
        run_id=notice.run.run_id if notice.run else None,
        error=result.error,
        suppressed_before=result.suppressed_before,
    )


class _State:
    """The rate-limit state of one ``send_notices`` call: one short write connection to the
    database, opened on first use. Once it fails (missing, read-only, locked past the busy
    timeout) it is dropped for the rest of the call, with one warning."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.conn: sqlite3.Connection | None = None
        self.unusable = False
        self.warning: str | None = None  # the one warning, once given

    def _connection(self) -> sqlite3.Connection | None:
        if self.conn is None and not self.unusable:
            from eemt_cleanup.errors import CleanupError
            from eemt_cleanup.store.db import connect
            from eemt_cleanup.store.notices import ensure_notices_table

            settings = self.config.settings
            try:
                self.conn = connect(
                    self.config.roots.database,
                    readonly=False,
                    timeout=settings.performance.busy_timeout_seconds,
                )
                ensure_notices_table(self.conn, settings.jobs)
            except (sqlite3.Error, CleanupError, OSError) as error:
                self._give_up(error)
        return self.conn

    def decide(
        self, name: str, notice: Notice, channel: ChannelSettings, now: datetime
    ) -> tuple[Literal["send", "suppressed", "unwanted"], ChannelHistory | None]:
        """The decision for ``notice`` on ``name``, with the history it was made from; an
        ``unwanted`` or ``suppressed`` one is recorded in the same transaction (a database
        that cannot take it is a state that cannot be used: the notice is then decided
        without one)."""
        from eemt_cleanup.store.db import write_transaction
        from eemt_cleanup.store.notices import channel_history, insert_notice

        on, interval = channel.on, channel.min_interval_seconds
        conn = self._connection()
        if conn is not None:
            try:
                with write_transaction(conn):
                    history = channel_history(conn, name)
                    decision = decide(notice, on, interval, history, now)
                    if decision != "send":
                        skipped = NoticeResult(
                            channel=name, decision=decision, kind=primary_kind(notice)
                        )
                        insert_notice(conn, _record(skipped, notice, now))
                return decision, history
            except sqlite3.Error as error:
                self._give_up(error)
        return decide(notice, on, interval, None, now), None

    def record(self, record: NoticeRecord) -> None:
        """Append a sent or failed notice (a failure to is the one warning)."""
        from eemt_cleanup.store.notices import record_notice

        conn = self._connection()
        if conn is None:
            return
        try:
            record_notice(conn, record)
        except sqlite3.Error as error:
            self._give_up(error)

    def _give_up(self, error: BaseException) -> None:
        from eemt_cleanup.config.schema import shown_path

        self.close()
        self.unusable = True
        self.warning = (
            f"notification state in {shown_path(self.config.roots.database)} cannot be used"
            f" ({one_line(error)}): notices are sent without a rate limit"
        )
        log.warning("%s", self.warning)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


__all__ = ["Notice", "NoticeResult", "decide", "enabled_channels", "is_change", "send_notices"]

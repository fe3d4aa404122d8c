"""Every other service (ntfy, Teams, Discord, Telegram, ...) through apprise, the optional
extra ``eemt-cleanup[notify]``, imported only when a notice is sent.

Apprise URLs carry their tokens: the logs of apprise and of the HTTP library under it
(which may quote a URL or its path) are silenced while it is imported and sends, and
errors name each URL only by :func:`redact_url`'s form.

Apprise has timeouts of its own, per socket operation. The config has no time limit for
this channel, so each URL's ``notify()`` is bounded as a whole by a fixed
``NOTIFY_TIMEOUT_SECONDS`` (30 s); one still going then is abandoned and counts as failed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from typing import Any

from eemt_cleanup.config.schema import AppriseNotifications, redact_url
from eemt_cleanup.notify.bounded import within
from eemt_cleanup.notify.message import Message, NoticeError

NOT_INSTALLED = "apprise is not installed: pip install 'eemt-cleanup[notify]'"
# apprise, and urllib3 under requests (its debug lines name each request's path).
QUIET_LOGGERS = ("apprise", "urllib3", "requests")
# No timeout key in notifications.apprise (yet): a fixed bound for one URL's notify().
NOTIFY_TIMEOUT_SECONDS = 30.0


def destination(channel: AppriseNotifications) -> str:
    """``ntfy://***, json://***``: the URLs by scheme only."""
    return ", ".join(redact_url(url) for url in channel.urls)


class _Quiet:
    """The silencing of :data:`QUIET_LOGGERS`, counted: an abandoned notify() still running
    in its thread keeps them silent until it ends, whoever else finished meanwhile."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.levels: list[int] = []

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
                self.levels = [logger.level for logger in loggers]
                for logger in loggers:
                    logger.setLevel(logging.CRITICAL + 1)
            self.depth += 1

    def leave(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                for name, level in zip(QUIET_LOGGERS, self.levels, strict=True):
                    logging.getLogger(name).setLevel(level)


_QUIET = _Quiet()


@contextlib.contextmanager
def quiet_apprise() -> Iterator[None]:
    """The loggers of apprise and its HTTP library silenced (they may quote a URL with its
    token), their levels restored when the last user is done."""
    _QUIET.enter()
    try:
        yield
    finally:
        _QUIET.leave()


def send_apprise(channel: AppriseNotifications, message: Message) -> None:
    """Notify every URL of ``channel`` with ``message``'s title and body, each on its own
    so a failure can be told apart, each within ``NOTIFY_TIMEOUT_SECONDS``. Raises
    NoticeError when apprise is missing, a URL is not understood, or a URL could not be
    notified (in time)."""
    failed: list[str] = []
    with quiet_apprise():
        try:
            import apprise
        except ImportError:
            raise NoticeError(NOT_INSTALLED) from None
    for number, url in enumerate(channel.urls, start=1):
        attempt = functools.partial(_notify_quietly, apprise, url, message)
        try:
            delivered = within(NOTIFY_TIMEOUT_SECONDS, attempt, name="apprise")
        except TimeoutError:
            limit = f"timed out after {NOTIFY_TIMEOUT_SECONDS:g} s"
            failed.append(f"URL {number} ({redact_url(url)}, {limit})")
            continue
        if not delivered:
            failed.append(f"URL {number} ({redact_url(url)})")
    if failed:
        total = len(channel.urls)
        raise NoticeError(f"apprise could not notify {len(failed)} of {total}: {', '.join(failed)}")


def _notify_quietly(apprise: Any, url: str, message: Message) -> bool:
    # Silenced in the thread that sends, for as long as it runs (even once abandoned).
    with quiet_apprise():
        return _notify_one(apprise, url, message)


def _notify_one(apprise: Any, url: str, message: Message) -> bool:
    service = apprise.Apprise()
    if not service.add(url):
        return False
    kind = {
        "failure": apprise.NotifyType.FAILURE,
        "success": apprise.NotifyType.SUCCESS,
        "alert": apprise.NotifyType.WARNING,
    }.get(message.kind, apprise.NotifyType.INFO)
    result = service.notify(
        title=message.subject,
        body=message.body,
        notify_type=kind,
        body_format=apprise.NotifyFormat.TEXT,
    )
    # apprise 1.x answers a bool, 2.x a result that is true only on success.
    return bool(result)


__all__ = ["NOT_INSTALLED", "destination", "quiet_apprise", "send_apprise"]

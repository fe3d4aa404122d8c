"""Every other service (ntfy, Teams, Discord, Telegram, ...) through apprise, the optional
extra ``eemt-cleanup[notify]``, imported only when a notice is sent.

Apprise URLs carry their tokens: the logs of apprise and of the HTTP library under it
(which may quote a URL or its path) are silenced while it is imported and sends, and
errors name each URL only by :func:`redact_url`'s form.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from eemt_cleanup.config.schema import AppriseNotifications, redact_url
from eemt_cleanup.notify.message import Message, NoticeError

NOT_INSTALLED = "apprise is not installed: pip install 'eemt-cleanup[notify]'"
# apprise, and urllib3 under requests (its debug lines name each request's path).
QUIET_LOGGERS = ("apprise", "urllib3", "requests")


def destination(channel: AppriseNotifications) -> str:
    """``ntfy://***, json://***``: the URLs by scheme only."""
    return ", ".join(redact_url(url) for url in channel.urls)


@contextlib.contextmanager
def quiet_apprise() -> Iterator[None]:
    """The loggers of apprise and its HTTP library silenced (they may quote a URL with its
    token), their levels restored afterwards."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


def send_apprise(channel: AppriseNotifications, message: Message) -> None:
    """Notify every URL of ``channel`` with ``message``'s title and body, each on its own
    so a failure can be told apart. Raises NoticeError when apprise is missing, a URL is
    not understood, or a URL could not be notified."""
    failed: list[str] = []
    with quiet_apprise():
        try:
            import apprise
        except ImportError:
            raise NoticeError(NOT_INSTALLED) from None
        for number, url in enumerate(channel.urls, start=1):
            if not _notify_one(apprise, url, message):
                failed.append(f"URL {number} ({redact_url(url)})")
    if failed:
        total = len(channel.urls)
        raise NoticeError(f"apprise could not notify {len(failed)} of {total}: {', '.join(failed)}")


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

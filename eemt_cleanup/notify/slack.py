"""Slack incoming webhooks, and the Mattermost and Rocket.Chat webhooks that accept the same
payload: the reference's attachment (Jobs Cleaned, Space Freed, Status, ...) POSTed as JSON
with the standard library, a timeout, and a bounded retry with backoff.

This module is imported only when a notice is sent (urllib costs start-up time).
The webhook URL is a secret (whoever has it can post): it never appears in a log line or an
error, which name only :func:`~eemt_cleanup.config.schema.redact_url`'s form of it.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from eemt_cleanup import __version__
from eemt_cleanup.config.schema import SlackNotifications
from eemt_cleanup.notify.bounded import within
from eemt_cleanup.notify.message import (
    Message,
    NoticeError,
    break_mentions,
    network_error,
    one_line,
    scrub,
)
from eemt_cleanup.report.escape import printable

log = logging.getLogger("eemt_cleanup")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 30.0
RETRY_BUDGET_EXTRA_SECONDS = 60.0
MAX_DETAIL = 100  # characters of a server's answer quoted in an error


def slack_text(text: str) -> str:
    """``text`` as Slack (and Mattermost) must receive it: control characters escaped,
    ``&``, ``<`` and ``>`` as entities, so a name like ``<!channel>`` pings nobody and
    ``<https://x|y>`` links nowhere, and a plain ``@channel`` (which Mattermost and
    Rocket.Chat act on) broken by a zero-width space (after the escape, which would show
    that space as ``\\u200b``)."""
    clean = printable(text, backslashes=False)
    marked = clean.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return break_mentions(marked)


def payload(message: Message) -> dict[str, Any]:
    """The reference's payload: a title text and one coloured attachment of fields."""
    return {
        "text": slack_text(message.title),
        "attachments": [
            {
                "fallback": slack_text(message.summary),
                "color": message.color,
                "fields": [
                    {
                        "title": slack_text(field.title),
                        # Our own line breaks separate lines; each line is escaped apart.
                        "value": "\n".join(slack_text(line) for line in field.value.split("\n")),
                        "short": field.short,
                    }
                    for field in message.fields
                ],
            }
        ],
    }


@dataclass(frozen=True)
class _Attempt:
    """Why one POST failed, and whether trying again may help."""

    reason: str
    retry: bool
    retry_after: float | None = None


def post_message(
    channel: SlackNotifications,
    message: Message,
    *,
    wait: Callable[[float], bool],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """POST ``message`` to ``channel.webhook_url``; retry up to ``channel.retries`` times
    on timeouts, connection errors, 429 and 5xx.

    One attempt (connect, send, the whole answer) takes at most ``timeout_seconds``. The
    backoff doubles from 1 s up to 30 s a wait (a Retry-After of up to 30 s is honoured);
    ``wait(delay)`` waits and answers True when the run is stopping, which ends the
    retries. No retry starts that would take the channel past its budget, ``timeout_seconds
    * (retries + 1) + 60`` seconds in all (attempts timed with ``clock``, waits counted as
    asked for, so an injected ``wait`` keeps the budget honest).

    Raises NoticeError (its message names no part of the URL but its host) when it fails.
    """
    url = channel.webhook_url.strip()
    body = json.dumps(payload(message), ensure_ascii=True).encode("ascii")
    attempts = channel.retries + 1
    budget = retry_budget(channel)
    used = 0.0
    for attempt in range(1, attempts + 1):
        started = clock()
        failed = _bounded_post(url, body, channel.timeout_seconds)
        used += clock() - started
        if failed is None:
            return
        tries = f", after {attempt} attempts" if attempt > 1 else ""
        if not failed.retry or attempt == attempts:
            raise NoticeError(f"{failed.reason}{tries}")
        delay = backoff(attempt, failed.retry_after)
        if used + delay + channel.timeout_seconds > budget:
            raise NoticeError(f"{failed.reason}{tries} (retry budget of {budget:g} s used up)")
        log.debug(
            "slack notice: %s (attempt %d of %d); retrying in %g s",
            failed.reason,
            attempt,
            attempts,
            delay,
        )
        used += delay
        if wait(delay):
            raise NoticeError(f"{failed.reason}{tries} (not retried: the run is stopping)")


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, 4, ... at most 30),
    or the server's Retry-After when longer (at most 30 as well)."""
    delay = min(FIRST_BACKOFF_SECONDS * 2.0 ** (attempt - 1), MAX_BACKOFF_SECONDS)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def retry_budget(channel: SlackNotifications) -> float:
    """Seconds one notice may spend on ``channel``, attempts and waits together: every
    attempt at its limit, and a minute of backoff."""
    return channel.timeout_seconds * (channel.retries + 1) + RETRY_BUDGET_EXTRA_SECONDS


def _bounded_post(url: str, body: bytes, timeout: float) -> _Attempt | None:
    """One POST bounded as a whole by ``timeout`` (the socket timeout bounds each read)."""
    try:
        return within(timeout, lambda: _post_once(url, body, timeout), name="slack")
    except TimeoutError as error:
        return _Attempt(network_error(error, _where(url), timeout), True)


def _secrets(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    return (url, parts.path, parts.query, f"{parts.path}?{parts.query}")


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _post_once(url: str, body: bytes, timeout: float) -> _Attempt | None:
    """One POST: None when the server took it (2xx), else why not."""
    request = urllib.request.Request(  # noqa: S310 - the schema allows http(s) URLs only
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"eemt-cleanup/{__version__}"},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(1024)
        return None
    except urllib.error.HTTPError as error:
        with error:
            return _http_failure(error, url)
    except urllib.error.URLError as error:
        reason = error.reason
        cause = reason if isinstance(reason, BaseException) else OSError(str(reason))
        return _Attempt(scrub(network_error(cause, _where(url), timeout), _secrets(url)), True)
    except (OSError, http.client.HTTPException) as error:
        # A timeout while reading the answer, a connection reset, a garbled status line.
        return _Attempt(scrub(network_error(error, _where(url), timeout), _secrets(url)), True)


def _http_failure(error: Any, url: str) -> _Attempt:
    status = int(error.code)
    if 300 <= status < 400:
        return _Attempt(f"HTTP {status} (the webhook redirects; redirects are not followed)", False)
    try:
        answer = error.read(MAX_DETAIL + 1).decode("utf-8", "replace").strip()
    except OSError:
        answer = ""
    # Slack explains a refusal in a word or two (invalid_payload, no_service); an HTML
    # error page from a proxy is not worth quoting.
    detail = answer if answer and len(answer) <= MAX_DETAIL and "<" not in answer else ""
    detail = detail or str(error.reason or "")
    reason = f"HTTP {status}" + (f": {one_line(detail)}" if detail else "")
    return _Attempt(
        scrub(reason, _secrets(url)),
        retry=status == 429 or status >= 500,
        retry_after=_retry_after(error.headers.get("Retry-After") if error.headers else None),
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After: 5`` header (an HTTP date is not worth the wait)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: a redirected POST is replayed as a GET, without its body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


__all__ = ["backoff", "payload", "post_message", "retry_budget", "slack_text"]

"""E-mail: the reference's "Daily Cleanup Report" through ``smtplib``.

``tls``: ``ssl`` (TLS from the first byte, port 465), ``starttls`` (upgrade after
connecting, port 587) or ``none``; the certificate is checked against the system's
authorities. The password is read only from an environment variable or a file, when the
notice is sent, and never appears in an error (a server may echo it: it is scrubbed).

``timeout_seconds`` bounds the whole conversation (connect, TLS, login, the message):
smtplib's own timeout bounds each read, which a server answering a byte at a time never
trips. A conversation still going at the limit is abandoned (it may still deliver later).

This module is imported only when a notice is sent (smtplib costs start-up time).
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from eemt_cleanup.config.schema import EmailNotifications, shown_path
from eemt_cleanup.notify.bounded import within
from eemt_cleanup.notify.message import Message, NoticeError, network_error, one_line, scrub

log = logging.getLogger("eemt_cleanup")

MAX_PASSWORD_FILE = 4096


def destination(channel: EmailNotifications) -> str:
    """``2 recipients via smtp.example.com:587`` (addresses are not shown)."""
    count = len(channel.recipients)
    noun = "recipient" if count == 1 else "recipients"
    return f"{count} {noun} via {one_line(channel.smtp_server)}:{channel.smtp_port}"


def send_mail(
    channel: EmailNotifications, message: Message, *, environ: Mapping[str, str] | None = None
) -> None:
    """Send ``message`` to ``channel.recipients`` within ``channel.timeout_seconds``.

    Raises NoticeError (naming the server, never the password) when the password cannot be
    read, the connection, TLS or login fails or times out, or every recipient is refused.
    """
    password = _password(channel, os.environ if environ is None else environ)
    mail = compose(channel, message)
    where = f"{channel.smtp_server}:{channel.smtp_port}"
    secrets = (password,) if password else ()
    try:
        refused = within(
            channel.timeout_seconds, lambda: _converse(channel, mail, password), name="email"
        )
    except NoticeError:
        raise
    except smtplib.SMTPAuthenticationError as error:
        reason = f"login refused for user {one_line(channel.username)}: {_answer(error)}"
        raise NoticeError(scrub(reason, secrets)) from None
    except smtplib.SMTPRecipientsRefused as error:
        raise NoticeError(f"every recipient was refused: {_refusals(error.recipients)}") from None
    except smtplib.SMTPResponseException as error:
        raise NoticeError(scrub(f"{where} answered {_answer(error)}", secrets)) from None
    except smtplib.SMTPServerDisconnected:
        raise NoticeError(f"the server closed the connection: {one_line(where)}") from None
    except smtplib.SMTPException as error:
        raise NoticeError(scrub(f"{one_line(error)}: {one_line(where)}", secrets)) from None
    except ssl.SSLError as error:
        reason = one_line(getattr(error, "reason", None) or error)
        raise NoticeError(f"TLS failed ({reason}): {one_line(where)}") from None
    except OSError as error:
        raise NoticeError(network_error(error, one_line(where), channel.timeout_seconds)) from None
    if refused:
        # The others have it: the notice went out. The refusals are worth a line.
        log.warning("e-mail notice: some recipients were refused: %s", _refusals(refused))


def _converse(
    channel: EmailNotifications, mail: EmailMessage, password: str | None
) -> dict[str, tuple[int, bytes]]:
    """The SMTP conversation: connect, log in, send. Returns the refused recipients."""
    with _connect(channel) as smtp:
        if channel.username:
            smtp.login(channel.username, password or "")
        return smtp.send_message(mail, to_addrs=list(channel.recipients))


def compose(channel: EmailNotifications, message: Message) -> EmailMessage:
    """The e-mail of ``message``: plain text, UTF-8, marked as sent by a machine."""
    sender = channel.sender or f"eemt-cleanup@{socket.getfqdn()}"
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = ", ".join(channel.recipients)
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    # RFC 3834: no vacation auto-replies to a janitor's report.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.body)
    return mail


def _connect(channel: EmailNotifications) -> smtplib.SMTP:
    host, port, timeout = channel.smtp_server, channel.smtp_port, channel.timeout_seconds
    if channel.tls == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    if channel.tls == "starttls":
        try:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                raise NoticeError(
                    f"the server does not offer STARTTLS: {one_line(host)}:{port}"
                    " (set notifications.email.tls)"
                )
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
    return smtp


def _password(channel: EmailNotifications, environ: Mapping[str, str]) -> str | None:
    """The SMTP password (None without a login). Raises NoticeError naming the variable
    or the file that should hold it, never a value."""
    if not channel.username:
        return None
    if channel.password_env:
        password = environ.get(channel.password_env)
        if not password:
            raise NoticeError(
                f"password_env: the environment variable {channel.password_env} is not set"
                " (or is empty)"
            )
        return password
    if channel.password_file:
        return _password_from_file(Path(channel.password_file))
    raise NoticeError(
        "username is set but no password is given: set notifications.email.password_env"
        " or notifications.email.password_file"
    )


def _password_from_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PASSWORD_FILE)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise NoticeError(f"password_file: cannot read {shown_path(path)}: {reason}") from None
    lines = raw.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise NoticeError(f"password_file: the first line of {shown_path(path)} is empty")
    return lines[0]


def _answer(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{error.smtp_code} {one_line(words)}"


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    parts = []
    for address, (code, text) in list(refused.items())[:5]:
        parts.append(f"{one_line(address)} ({code} {one_line(text.decode('utf-8', 'replace'))})")
    more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
    return "; ".join(parts) + more


__all__ = ["compose", "destination", "send_mail"]

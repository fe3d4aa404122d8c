"""Real servers on 127.0.0.1 for the tests: an SMTP server (aiosmtpd; with a login, with
STARTTLS or implicit TLS from a throw-away certificate) and an HTTP receiver that records
what it is sent and answers as it is told."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET_PATH = "/services/T000/B000/XSECRETTOKENX"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds (a loaded machine may be slow); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def self_signed_certificate(directory: Path) -> tuple[Path, Path] | None:
    """A certificate and key for 127.0.0.1 made with the openssl program, or None when it
    is not installed."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        done = subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError:
        return None
    return (cert, key) if done.returncode == 0 else None


def free_port() -> int:
    """A port nobody listens on (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


@contextmanager
def smtp_server(
    logins: dict[str, str] | None = None,
    *,
    starttls: tuple[Path, Path] | None = None,
    implicit_tls: tuple[Path, Path] | None = None,
) -> Iterator[Mailbox]:
    """An SMTP server collecting every message; with ``logins`` (user → password) it
    requires AUTH (over plain text unless TLS is on: this is 127.0.0.1). ``starttls`` or
    ``implicit_tls`` (a certificate and its key) make it offer STARTTLS or speak TLS from
    the first byte."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox("127.0.0.1", free_port())
    accounts = logins or {}

    class Collect:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            box.messages.append(message_from_bytes(envelope.original_content))
            return "250 OK"

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        user = data.login.decode() if isinstance(data, LoginPassword) else ""
        accepted = bool(user) and accounts.get(user) == data.password.decode()
        if accepted:
            box.logins.append(user)
        # handled=False: aiosmtpd answers the failure itself (535).
        return AuthResult(success=accepted, handled=False)

    auth: dict[str, Any] = (
        {"authenticator": authenticator, "auth_require_tls": False, "auth_required": True}
        if logins
        else {}
    )
    tls: dict[str, Any] = {}
    for pair, option in ((starttls, "tls_context"), (implicit_tls, "ssl_context")):
        if pair is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*pair)
            tls[option] = context
    controller = Controller(Collect(), hostname=box.host, port=box.port, **auth, **tls)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)

    @property
    def bodies(self) -> list[Any]:
        return [request.body for request in self.requests]


Answer = tuple[int, dict[str, str], str]


@contextmanager
def http_receiver(
    answers: list[Answer] | None = None, path: str = SECRET_PATH
) -> Iterator[Receiver]:
    """An HTTP server recording each POST (its JSON body); it answers with ``answers`` in
    turn, the last one for every later request (``{path}`` in an answer's text is replaced
    by the request's path, to play a server that echoes it)."""
    queue = list(answers or [(200, {}, "ok")])
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}{path}")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with lock:
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                status, headers, text = queue.pop(0) if len(queue) > 1 else queue[0]
            answer = text.replace("{path}", self.path).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def closed_url() -> str:
    """A webhook URL on a port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}{SECRET_PATH}"


@dataclass
class Trickler:
    host: str
    port: int
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{SECRET_PATH}"


SLOW_HTTP_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: "
    + b"x" * 200
    + b"\r\nContent-Length: 2\r\n\r\nok"
)
SLOW_SMTP_GREETING = b"220 " + b"x" * 200 + b" ESMTP slow\r\n"


@contextmanager
def trickling_server(
    answer: bytes, *, every: float = 0.2, for_seconds: float = 10.0
) -> Iterator[Trickler]:
    """A TCP server on 127.0.0.1 that answers each connection (without reading what it is
    sent) with ``answer``, one byte every ``every`` seconds for ``for_seconds``, then the
    rest at once. Each read of a client gets its byte well within any socket timeout: only
    a limit on the whole exchange ends it sooner. Closing the server ends every answer."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    server = Trickler("127.0.0.1", listener.getsockname()[1])
    stopped = threading.Event()

    def answer_slowly(conn: socket.socket) -> None:
        conn.settimeout(5)
        deadline = time.monotonic() + for_seconds
        sent = 0
        with conn:
            try:
                while sent < len(answer) and time.monotonic() < deadline:
                    conn.sendall(answer[sent : sent + 1])
                    sent += 1
                    if stopped.wait(every):
                        return
                conn.sendall(answer[sent:])
            except OSError:
                return  # the client gave up

    def accept() -> None:
        while not stopped.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server.connections += 1
            threading.Thread(target=answer_slowly, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stopped.set()
        acceptor.join(timeout=10)
        listener.close()

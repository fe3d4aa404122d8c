"""The HTTP API's test servers: the installed ``eemt-cleanup serve`` on 127.0.0.1, and the
router in a uvicorn server on a thread of the test process, both driven with httpx."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from conftest import DemoBase, cli_executable, guarded_env
from servers import free_port, wait_for

TOKEN = "ops-0123456789abcdef0123456789abcdef"
OTHER_TOKEN = "ci-fedcba9876543210fedcba9876543210"
ENV_TOKEN = "env-00112233445566778899aabbccddeeff"
START_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_token_file(path: Path, text: str = f"ops:{TOKEN}\nci:{OTHER_TOKEN}\n") -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def write_config(base: DemoBase, text: str = "") -> Path:
    """A config file of the base's own (so no cleanup_config.yaml of the working directory
    counts); the paths come from the command line."""
    config = base.path / "cleanup_config.yaml"
    config.write_text(text)
    return config


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    base: DemoBase
    stdout: Path
    stderr: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = TOKEN, timeout: float = RUN_TIMEOUT) -> httpx.Client:
        headers = bearer(token) if token is not None else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.clients.append(client)
        return client

    def log(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def stop(self) -> int:
        """SIGTERM, as systemd or docker stop would; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=RUN_TIMEOUT)


def healthy(url: str, process: subprocess.Popen[bytes] | None = None) -> bool:
    if process is not None and process.poll() is not None:
        raise AssertionError(f"the server exited with {process.returncode}")
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    base: DemoBase,
    *extra: str,
    config_text: str = "",
    env: dict[str, str] | None = None,
    token_file: Path | None = None,
) -> Iterator[Served]:
    """``eemt-cleanup serve`` on a free port of 127.0.0.1, for the base directory ``base``,
    with the token file ``ops:TOKEN`` / ``ci:OTHER_TOKEN`` unless ``token_file`` is given;
    ready once ``/healthz`` answers. Stopped with SIGTERM at the end."""
    config = write_config(base, config_text)
    tokens = token_file or write_token_file(tmp_path / "api-tokens")
    port = free_port()
    stdout, stderr = tmp_path / "serve.out", tmp_path / "serve.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                cli_executable(),
                "serve",
                "--port",
                str(port),
                "-c",
                str(config),
                *base.path_args(),
                "--token-file",
                str(tokens),
                *extra,
            ],
            env=guarded_env(tmp_path, **(env or {})),
            cwd="/",
            stdout=out,
            stderr=err,
        )
    served = Served(f"http://127.0.0.1:{port}", process, base, stdout, stderr)
    try:
        wait_for(lambda: healthy(served.url, process), timeout=START_TIMEOUT)
        yield served
    finally:
        for client in served.clients:
            client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_run(client: httpx.Client, url: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
    """Poll a run's status URL until it is no longer running; its last status."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        if status["state"] != "running":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the run is still running after {timeout} s: {status}")
        time.sleep(0.05)


@contextlib.contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """This process holds the run lock on the database ``path``, as a live run would."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@dataclass
class InProcess:
    url: str
    app: Any


@contextlib.contextmanager
def uvicorn_thread(app: Any) -> Iterator[InProcess]:
    """A real uvicorn server for ``app`` on a free port of 127.0.0.1, on a thread of this
    process (so a test can block a run's subscriber); stopped at the end."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.started, timeout=START_TIMEOUT)
        yield InProcess(url, app)
    finally:
        server.should_exit = True
        thread.join(timeout=RUN_TIMEOUT)

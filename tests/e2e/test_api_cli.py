"""``eemt-cleanup serve``'s refusals from the installed CLI (one line, exit 2, nothing
listening), and the optional extra: a plain run never imports FastAPI, and serve without it
says how to install it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from api_server import TOKEN, write_config, write_token_file
from conftest import DemoBase, call, error_line, guarded_env
from servers import free_port

pytestmark = pytest.mark.e2e

WEB_PACKAGES = ("fastapi", "starlette", "uvicorn", "httpx")


def serve_args(base: DemoBase, *extra: str) -> list[str]:
    config = write_config(base)
    return ["serve", "--port", str(free_port()), "-c", str(config), *base.path_args(), *extra]


def test_a_plain_run_imports_neither_fastapi_nor_uvicorn(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    config = write_config(demo_base)
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "eemt_cleanup",
            "run",
            "--dry-run",
            "-c",
            str(config),
            *demo_base.path_args(),
        ],
        env=guarded_env(tmp_path),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "eemt_cleanup" in imported  # the import trace is there...
    assert imported.isdisjoint(WEB_PACKAGES)  # ...and names none of them


def test_serve_without_the_api_extra_prints_the_install_line_and_exits_2(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    # A fastapi that cannot be imported, ahead of the installed one.
    shadow = tmp_path / "no-fastapi" / "fastapi"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n"
    )
    env = guarded_env(tmp_path)
    env["PYTHONPATH"] = f"{shadow.parent}:{env['PYTHONPATH']}"
    done = call(serve_args(demo_base), env)
    assert done.code == 2
    assert error_line(done) == "fastapi not installed: pip install 'eemt-cleanup[api]'"
    assert done.stdout == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "eemt.example.org"])
def test_serve_refuses_a_non_loopback_host_without_a_token(
    tmp_path: Path, demo_base: DemoBase, host: str
) -> None:
    done = call(serve_args(demo_base, "--host", host), guarded_env(tmp_path))
    assert done.code == 2
    assert error_line(done) == (
        f"--host {host}: refusing to listen beyond this machine without an admin token "
        "(set EEMT_CLEANUP_API_TOKEN or --token-file)"
    )


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("short\n", 0o600, "line 1: the token is 5 characters; use at least 16"),
        (f"ops:{TOKEN}\nops:{TOKEN[::-1]}\n", 0o600, "the name 'ops' is given twice"),
        (f"{TOKEN}\nci:{TOKEN[::-1]}\n", 0o600, "give each line as NAME:TOKEN"),
        (f"bad name:{TOKEN}\n", 0o600, "a token's name is 1-64 letters"),
        (f"ops:{TOKEN}\n", 0o666, "anyone may write it (mode 0666); chmod o-w it"),
        ("# only a comment\n", 0o600, "no token in the file"),
    ],
)
def test_serve_refuses_a_token_file_it_cannot_trust_naming_it(
    tmp_path: Path, demo_base: DemoBase, text: str, mode: int, message: str
) -> None:
    tokens = write_token_file(tmp_path / "tokens", text)
    tokens.chmod(mode)
    done = call(serve_args(demo_base, "--token-file", str(tokens)), guarded_env(tmp_path))
    assert done.code == 2
    line = error_line(done)
    assert line.startswith(f"--token-file {tokens}")
    assert message in line
    assert TOKEN not in done.stderr and TOKEN[::-1] not in done.stderr


def test_serve_refuses_a_short_environment_token(tmp_path: Path, demo_base: DemoBase) -> None:
    done = call(serve_args(demo_base), guarded_env(tmp_path, EEMT_CLEANUP_API_TOKEN="secret"))
    assert done.code == 2
    assert error_line(done) == (
        "EEMT_CLEANUP_API_TOKEN: the token is 6 characters; use at least 16 (e.g. the "
        "output of 'openssl rand -hex 32')"
    )


def test_serve_refuses_a_configuration_that_cannot_work_before_listening(
    tmp_path: Path, demo_base: DemoBase
) -> None:
    env = guarded_env(tmp_path, EEMT_CLEANUP_API_TOKEN=TOKEN)
    done = call(serve_args(demo_base, "--db-path", str(tmp_path / "missing.db")), env)
    assert done.code == 2
    assert error_line(done).startswith(f"database not found: {tmp_path / 'missing.db'}")

"""``eemt-cleanup serve``: the HTTP API on its own, with uvicorn.

Cheap to import (the CLI imports it at start): FastAPI and uvicorn are imported only when
the command runs, and without them it says how to install them (exit 2).
"""

from __future__ import annotations

import ipaddress
import signal
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eemt_cleanup.cli.common import (
    ConfigOption,
    DbOption,
    DebugOption,
    ResultsOption,
    TempOption,
    UploadsOption,
    examples,
    handle_errors,
)
from eemt_cleanup.errors import ConfigError

if TYPE_CHECKING:
    from eemt_cleanup.config.loader import LoadedConfig

SERVE_EPILOG = examples(
    "EEMT_CLEANUP_API_TOKEN=$(openssl rand -hex 32) eemt-cleanup serve",
    "eemt-cleanup serve --token-file /etc/eemt-cleanup/api-tokens --port 5000",
    'curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/cleanup',
    after="Every endpoint but /healthz needs an admin token (Authorization: Bearer <token>): "
    "from EEMT_CLEANUP_API_TOKEN (named 'env') or --token-file (lines NAME:TOKEN), never the "
    "config file. Listening beyond this machine (--host other than a loopback address) is "
    "refused without one. The OpenAPI document is at /docs. Exit codes: 0 stopped, 2 bad "
    "input or the [api] extra missing.",
)

HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        metavar="ADDRESS",
        help="Address to listen on. Anything but a loopback address needs an admin token.",
    ),
]
PortOption = Annotated[
    int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to listen on.")
]
TokenFileOption = Annotated[
    str | None,
    typer.Option(
        "--token-file",
        metavar="PATH",
        show_default=False,
        help="Admin tokens, one a line: NAME:TOKEN (the name is recorded as who ran a "
        "cleanup), or one bare token (named 'default').",
    ),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@handle_errors()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 5000,
    config: ConfigOption = None,
    db_path: DbOption = None,
    uploads_dir: UploadsOption = None,
    results_dir: ResultsOption = None,
    temp_dir: TempOption = None,
    token_file: TokenFileOption = None,
    debug: DebugOption = False,
) -> None:
    """Serve the HTTP API (POST /api/cleanup, runs, status, audit, /metrics, /healthz and
    the admin page /cleanup) with uvicorn, until SIGINT or SIGTERM; runs in progress are
    asked to stop after their jobs in hand and waited for."""
    from eemt_cleanup.http import require_api

    require_api(server=True)
    from eemt_cleanup.http.auth import ENV_TOKEN, load_tokens

    tokens = load_tokens(token_file)
    if not tokens and not is_loopback(host):
        raise ConfigError(
            f"--host {host}: refusing to listen beyond this machine without an admin token "
            f"(set {ENV_TOKEN} or --token-file)"
        )
    overrides: dict[str, Any] = {
        "db_path": db_path,
        "uploads_dir": uploads_dir,
        "results_dir": results_dir,
        "temp_dir": temp_dir,
    }
    import eemt_cleanup
    from eemt_cleanup.http.api import create_app

    app = create_app(config, tokens=tokens, **overrides)  # raises ConfigError now
    loaded = eemt_cleanup.load_config(config, **overrides)
    # What every request would stumble on is said now, in one line, before listening (a
    # router mounted in the web interface may start before the database exists; this
    # server has no such excuse).
    from eemt_cleanup.site import check_roots
    from eemt_cleanup.store.db import check_database_path

    check_database_path(loaded.roots.database)
    check_roots(loaded)
    _start_logging(loaded, debug)
    import logging

    logger = logging.getLogger("eemt_cleanup")
    if not tokens:
        logger.warning(
            "No admin token (%s or --token-file): every endpoint but /healthz answers 401",
            ENV_TOKEN,
        )
    else:
        logger.info("Admin tokens: %s", ", ".join(tokens.names))
    from eemt_cleanup.fs.worker import raise_fd_limit

    # This process is ours, as the CLI's is: deep trees deleted in it need a descriptor
    # per level.
    raise_fd_limit()
    import uvicorn

    # uvicorn stops gracefully on SIGINT/SIGTERM (runs asked to stop and waited for, in
    # the app's shutdown), then re-raises the signal with the handler found at start: this
    # one, so the stop ends the process with exit 0 whatever uvicorn's version does.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stopped)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            # The client address recorded for a run is the peer's: a header any client can
            # send is not trusted.
            proxy_headers=False,
            server_header=False,
            log_level="debug" if debug else "info",
        )
    finally:
        from eemt_cleanup.report.logs import close_logging

        close_logging()


def _stopped(number: int, frame: FrameType | None) -> None:
    """The signal uvicorn re-raises once it has stopped: nothing left to do."""


def _start_logging(loaded: LoadedConfig, debug: bool) -> None:
    """Log lines on stderr, and the real runs' lines in the log file, as ``run`` does."""
    from pathlib import Path

    from eemt_cleanup.report.logs import OutputMode, configure_logging

    settings = loaded.settings
    level = "DEBUG" if debug else settings.logging.level
    mode = OutputMode(rich=False, json=True, level=level)  # json: lines go to stderr
    configure_logging(mode, Path(settings.paths.logs) / settings.logging.file)

"""The HTTP API: ``POST /api/cleanup`` and its companions, for the EEMT web interface.

Two ways to serve it::

    # inside the web interface (FastAPI): one line
    from eemt_cleanup.http import create_router
    app.include_router(create_router("/srv/eemt/cleanup_config.yaml"))

    # standalone: eemt-cleanup serve --host 127.0.0.1 --port 5000

FastAPI and uvicorn are the optional extra ``[api]`` (``pip install 'eemt-cleanup[api]'``):
nothing else in the package imports them, so a cron install does not need them. Importing
this package does not import FastAPI either; the functions below do, when called.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eemt_cleanup.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from fastapi import APIRouter, FastAPI

    from eemt_cleanup.http.auth import TokenSet

INSTALL_HINT = "pip install 'eemt-cleanup[api]'"


class ApiUnavailable(ConfigError):
    """FastAPI or uvicorn (the ``[api]`` extra) is not installed."""


def missing_packages(*, server: bool = False) -> list[str]:
    """The packages of the ``[api]`` extra that cannot be imported (``server``: uvicorn
    too, which only ``serve`` needs). Imported to know: one that is there but broken is
    missing too."""
    missing = []
    for name in ["fastapi", *(["uvicorn"] if server else [])]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_api(*, server: bool = False) -> None:
    """Raise ApiUnavailable, with the line that installs them, unless the packages of the
    ``[api]`` extra can be imported."""
    missing = missing_packages(server=server)
    if missing:
        raise ApiUnavailable(f"{' and '.join(missing)} not installed: {INSTALL_HINT}")


def create_router(
    config: str | Path | None = None,
    *,
    tokens: TokenSet | Mapping[str, str] | None = None,
    token_file: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    metrics: bool = True,
    admin_page: bool = True,
    **overrides: Any,
) -> APIRouter:
    """The API as a ``fastapi.APIRouter``, to mount in an existing app
    (``app.include_router(router)``); see :func:`eemt_cleanup.http.api.create_router`."""
    require_api()
    from eemt_cleanup.http.api import create_router as make

    return make(
        config,
        tokens=tokens,
        token_file=token_file,
        on_event=on_event,
        metrics=metrics,
        admin_page=admin_page,
        **overrides,
    )


def create_app(
    config: str | Path | None = None,
    *,
    tokens: TokenSet | Mapping[str, str] | None = None,
    token_file: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    **overrides: Any,
) -> FastAPI:
    """A FastAPI app serving the router alone (what ``eemt-cleanup serve`` runs)."""
    require_api()
    from eemt_cleanup.http.api import create_app as make

    return make(config, tokens=tokens, token_file=token_file, on_event=on_event, **overrides)


__all__ = [
    "INSTALL_HINT",
    "ApiUnavailable",
    "create_app",
    "create_router",
    "missing_packages",
    "require_api",
]

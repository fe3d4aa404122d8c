"""The admin page ``GET /cleanup`` (in progress)."""

from typing import Any


def add_admin_page(router: Any, api: Any) -> None:
    """Add the admin page's routes to ``router`` (not yet: see the issue)."""

"""The one way commands make a Rich console for a terminal.

``NO_COLOR`` (https://no-color.org) removes colour and every other text style, and nothing
else: tables keep their layout and the progress bar still moves. Off a terminal commands print
plain lines and make no console (see :func:`eemt_cleanup.report.logs.use_rich`).
"""

from __future__ import annotations

import os
from typing import Any, TextIO


def make_console(stream: TextIO | None = None, **options: Any) -> Any:
    """A Rich ``Console`` for a terminal, without styles when ``NO_COLOR`` is set."""
    from rich.console import Console

    if os.environ.get("NO_COLOR"):
        options.setdefault("color_system", None)
        options.setdefault("no_color", True)
    if stream is not None:
        options.setdefault("file", stream)
    return Console(**options)

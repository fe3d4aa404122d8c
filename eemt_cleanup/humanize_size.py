"""Human sizes as operators read them from ``df -h``: 1024-based, one decimal."""

from __future__ import annotations

import humanize


def human_size(size: int) -> str:
    """``48318382080`` → ``"45.0 GB"`` (binary multiples, the SPEC's labels)."""
    return str(humanize.naturalsize(size, binary=True, format="%.1f")).replace("iB", "B")

"""Human sizes as operators read them from ``df -h``: 1024-based, one decimal."""

from __future__ import annotations

import humanize


def human_size(size: int) -> str:
    """``48318382080`` → ``"45.0 GB"`` (binary multiples, the SPEC's labels)."""
    return str(humanize.naturalsize(size, binary=True, format="%.1f")).replace("iB", "B")


_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str) -> int:
    """``10G`` → 10737418240 (1024-based; ``10GB``, ``10GiB``, ``512M``, ``1.5T``, bytes).

    Raises ``ValueError`` for anything else.
    """
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a size: {text!r} (try 100G, 500M, 1.5T)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])

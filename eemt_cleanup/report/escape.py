"""Escape at the edge: values from rows and directory entries are data, never control
characters or markup.

:func:`printable` is the one control-character escape, applied by every log formatter, by
plain output and by the one-line error messages; Rich output additionally shows values as
:class:`rich.text.Text` (never parsed as markup). JSON is not escaped here: JSON's own
escaping keeps it exact.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Backslash (so an escape in the output is never ambiguous with a name that holds one), C0
# and C1 controls, DEL, lone surrogates (bytes that were not UTF-8), and the Unicode format,
# line and paragraph separators that can reorder or split what a terminal or log viewer
# shows (U+202E, U+2028, ...).
_UNSAFE = (
    r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u2069\ufeff\ufff9-\ufffb]"
)


@lru_cache(maxsize=2)
def _pattern(backslashes: bool) -> re.Pattern[str]:
    # Compiled at the first value that needs it: most lines are plain ASCII (fast path).
    return re.compile(_UNSAFE if backslashes else _UNSAFE.replace("\\\\", "", 1))


_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@lru_cache(maxsize=256)
def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # surrogateescape: the original byte
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: object, *, backslashes: bool = True) -> str:
    """``text`` with every character that could forge a line, move the cursor or reorder
    what is shown replaced by a backslash escape (``\\n``, ``\\x1b``, ``\\u202e``).

    Printable non-ASCII text (``Mätterhorn``) stays as it is. ``backslashes=False`` leaves
    backslashes alone, for messages whose values are already quoted with ``repr``.
    """
    value = text if isinstance(text, str) else str(text)
    if value.isascii() and value.isprintable() and (not backslashes or "\\" not in value):
        return value  # the common case, without a regex pass
    escaped = _pattern(backslashes).sub(lambda match: _escape_char(match.group()), value)
    if escaped.isprintable():
        return escaped
    # Anything else str.isprintable() rejects (other format or unassigned characters).
    return "".join(
        char if char.isprintable() or unicodedata.category(char) == "Zs" else _escape_char(char)
        for char in escaped
    )


__all__ = ["printable"]

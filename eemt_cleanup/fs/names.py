"""Turn database values into single path components, or refuse them (pure, no I/O).

A deletion target is always a *direct child* of a root named by exactly one component. A
value that is not one (separators, ``.``, ``..``, empty, NUL, too long, not UTF-8, NULL, an
unexpected type) is refused and reported; it is never "normalised" into something deletable.
"""

from __future__ import annotations

NAME_MAX = 255


class NameRefused(ValueError):
    """The value cannot name a direct child of a root; the message says why."""


def component(value: object, what: str, *, suffix: str = "") -> str:
    """Return ``value`` (plus ``suffix``) as one safe path component.

    Raises NameRefused with a reason naming ``what`` (e.g. "job id").
    """
    if value is None:
        raise NameRefused(f"{what} is NULL")
    if isinstance(value, bool):
        raise NameRefused(f"{what} has an unexpected type ({type(value).__name__})")
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, bytes):
        # A BLOB is a different value from the TEXT with the same bytes: accepting it would
        # let one row name (and delete) another row's data.
        raise NameRefused(f"{what} {value!r} is stored as a BLOB, not text")
    if not isinstance(value, str):
        raise NameRefused(f"{what} has an unexpected type ({type(value).__name__})")
    _check_text(value, what)
    name = value + suffix
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise NameRefused(f"{what} {value!r} is not valid UTF-8") from None
    if len(encoded) > NAME_MAX:
        named = f"{what} with {suffix!r} appended" if suffix else what
        raise NameRefused(
            f"{named} is {len(encoded)} bytes long (a file name has at most {NAME_MAX})"
        )
    return name


def _check_text(value: str, what: str) -> None:
    if value == "":
        raise NameRefused(f"{what} is empty")
    if value.strip() == "":
        raise NameRefused(f"{what} {value!r} is only white space")
    if value in (".", ".."):
        raise NameRefused(f"{what} {value!r} names a directory itself")
    if "\0" in value:
        raise NameRefused(f"{what} {value!r} contains a NUL byte")
    if "/" in value:
        kind = "is an absolute path" if value.startswith("/") else "contains '/'"
        raise NameRefused(f"{what} {value!r} {kind}")
    if not value.isascii() and any("\udc80" <= char <= "\udcff" for char in value):
        raise NameRefused(f"{what} {value!r} is not valid UTF-8")

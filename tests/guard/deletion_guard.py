"""A test guard: refuse any unlink or rmdir outside the allowed directories.

Installed in the test process by ``tests/conftest.py`` and in every CLI subprocess the tests
start (through ``sitecustomize`` on ``PYTHONPATH``), so a bug that aims the deleter outside a
test's temporary directory fails loudly instead of deleting anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

ENV_ALLOWED = "EEMT_TEST_GUARD_ALLOWED"
_installed: dict[str, Callable[..., Any]] = {}
_allowed: list[str] = []


class GuardRefused(PermissionError):
    """The guard stopped a deletion outside the test's directories."""


def _resolve(path: Any, dir_fd: int | None) -> str:
    text = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(text):
        base = os.readlink(f"/proc/self/fd/{dir_fd}")
        if "/" not in text and text not in (".", ".."):
            # The kernel's path of an open directory has no symlink and no "..": it is
            # already what realpath() would make of it (which costs one lstat per level).
            return os.path.join(base, text)
        text = os.path.join(base, text)
    # Resolve the parent (never the final component: it may be a symlink being removed).
    parent, name = os.path.split(os.path.abspath(text))
    return os.path.join(os.path.realpath(parent), name)


def _inside(path: str) -> bool:
    return any(path == root or path.startswith(root + os.sep) for root in _allowed)


def _wrap(name: str) -> Callable[..., Any]:
    real = _installed[name]

    def guarded(path: Any, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> Any:
        target = _resolve(path, dir_fd)
        if not _inside(target):
            raise GuardRefused(f"test guard refused os.{name}({target!r}): outside {_allowed}")
        if dir_fd is None:
            return real(path, *args, **kwargs)
        return real(path, *args, dir_fd=dir_fd, **kwargs)

    guarded.__wrapped__ = real  # type: ignore[attr-defined]
    return guarded


def install(allowed: Iterable[str]) -> None:
    """Guard os.unlink, os.remove and os.rmdir; only paths inside ``allowed`` may go."""
    _allowed[:] = [os.path.realpath(path) for path in allowed]
    for name in ("unlink", "remove", "rmdir"):
        if name not in _installed:
            _installed[name] = getattr(os, name)
        setattr(os, name, _wrap(name))


def uninstall() -> None:
    for name, real in _installed.items():
        setattr(os, name, real)
    _installed.clear()
    _allowed.clear()


def install_from_environment() -> None:
    allowed = os.environ.get(ENV_ALLOWED)
    if allowed:
        install(allowed.split(os.pathsep))

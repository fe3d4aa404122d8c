"""A whole-attempt time limit for the channels.

Socket timeouts (urllib, smtplib, requests under apprise) bound each read or write, not a
request: a server that trickles one byte every half second keeps a connection alive for as
long as it likes. :func:`within` runs one attempt in a daemon thread and waits for it at
most the channel's limit; an attempt still running then is abandoned (its own socket
timeout ends it later, or the process's exit does) and counts as timed out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def within(seconds: float, attempt: Callable[[], T], *, name: str = "notice") -> T:
    """Run ``attempt()`` and return what it returns, waiting at most ``seconds`` for it.

    Raises what ``attempt`` raised, or TimeoutError when it has not finished in time (it
    is left to finish on its own: what it does then is ignored)."""
    returned: list[T] = []
    raised: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            returned.append(attempt())
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            raised.append(error)
        finally:
            done.set()

    # A daemon thread: an abandoned attempt never holds the process's exit back.
    threading.Thread(target=run, name=f"eemt-cleanup-{name}", daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError(f"not finished within {seconds:g} s")
    if raised:
        raise raised[0]
    return returned[0]


__all__ = ["within"]

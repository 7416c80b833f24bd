"""Socket helpers the network transports share."""

from __future__ import annotations

import select
import socket


def dropped(sock: socket.socket) -> bool:
    """A kept-alive connection the server has closed (or spoken on unasked): readable while
    idle. Checked before reuse, as urllib3 does, so nothing is written into a closed one."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def describe(exc: BaseException) -> str:
    """An exception in a few words (a timeout says so)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__

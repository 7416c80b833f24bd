"""Stopping on SIGTERM and SIGINT: the first signal asks for a clean stop (claim nothing more,
finish or record what is in flight, release the scheduler lock); a second one forces it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ForcedStop(BaseException):
    """A second signal: stop now. What is still with a transport is left uncertain."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"forced to stop by {signal.Signals(signum).name}")


class Stop:
    """The stop a process was asked for, and what to do when it is."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.requested = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self.signum is not None:
            callback()

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 for SIGINT, 143 for SIGTERM), 0 if none came."""
        return 128 + self.signum if self.signum is not None else 0

    def request(self, signum: int) -> None:
        if self.signum is not None:
            raise ForcedStop(signum)
        self.signum = signum
        self.requested.set()
        for callback in self._callbacks:
            callback()

    @contextmanager
    def installed(self) -> Iterator[Stop]:
        """Handle SIGTERM and SIGINT this way while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request(signum)

        previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

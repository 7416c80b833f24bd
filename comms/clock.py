"""Time as a dependency: the system clock in production, a simulated one in tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Timer(Protocol):
    def stop(self) -> None:
        """No more calls (the one under way, if any, finishes)."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, seconds: float, event: threading.Event) -> bool:
        """Wait ``seconds`` or until ``event`` is set; whether it was set."""
        ...

    def every(self, seconds: float, call: Callable[[], None]) -> Timer:
        """Call ``call`` every ``seconds``, on the clock's time, whatever the caller is doing
        (a heartbeat), until the timer is stopped."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, seconds: float, event: threading.Event) -> bool:
        return event.wait(seconds)

    def every(self, seconds: float, call: Callable[[], None]) -> Timer:
        return _Repeat(seconds, call)


class _Repeat:
    """A daemon thread calling ``call`` every ``seconds`` until stopped."""

    def __init__(self, seconds: float, call: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(seconds, call), daemon=True,
                                        name="comms-timer")
        self._thread.start()

    def _run(self, seconds: float, call: Callable[[], None]) -> None:
        while not self._stop.wait(seconds):
            call()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class ShiftedClock(SystemClock):
    """The system clock set to ``start`` when made, running on from there (``COMMS_NOW``:
    rehearse what comms would do at another moment)."""

    def __init__(self, start: datetime) -> None:
        self._offset = start.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


def human(moment: datetime, zone: ZoneInfo) -> str:
    """A moment as a person reads it, in ``zone``: ``Tue 29 Dec 2026 09:00``."""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M}"

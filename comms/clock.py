"""Time as a dependency: the system clock in production, a simulated one in tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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

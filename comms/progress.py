"""A Rich progress bar on a terminal; silence elsewhere. When a schedule's rate limit sets the
pace of a send, that is said (on a terminal or not), with the expected finish."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PACE_NOTICE = timedelta(seconds=30)  # a send the rate limit stretches past this is announced


@dataclass(frozen=True, slots=True)
class Pace:
    """A rate limit that may set the pace: its source, and the clock to say when it ends."""

    per_minute: int
    source: str  # e.g. "schedule uk-working-hours"
    now: Callable[[], datetime]
    zone: ZoneInfo


class _Bar:
    def __init__(self, progress: Progress | None, pace: Pace | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._pace = pace
        self._say = say

    def start(self, label: str, total: int) -> None:
        pace = self._pace
        if pace is not None and self._say is not None and total:
            takes = timedelta(minutes=total / pace.per_minute)
            if takes > PACE_NOTICE:
                from .clock import human

                self._say(f"{label}: {total:,} to send at {pace.per_minute:,} a minute at most "
                          f"({pace.source}'s max_per_minute): about {_duration(takes)}, done "
                          f"{human(pace.now() + takes, pace.zone)}")
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


def _duration(span: timedelta) -> str:
    minutes, seconds = divmod(round(span.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


@contextmanager
def progress_bar(pace: Pace | None = None,
                 say: Callable[[str], None] | None = None) -> Iterator[_Bar]:
    """A bar for the sends (on a terminal); ``say`` prints a line on its own (the pace)."""
    if not sys.stderr.isatty():
        yield _Bar(None, pace, say)
        return
    from rich.progress import (  # on a terminal only (20 ms to import)
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    # Not transient: the bar stays at the count it reached, and what follows starts on a line
    # of its own.
    with Progress(*columns, transient=False) as progress:
        yield _Bar(progress, pace, say and (lambda line: progress.console.print(line)))
        progress.refresh()  # the last results recorded are on the bar before it stops

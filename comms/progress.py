"""A Rich progress bar on a terminal; silence elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, label: str, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextmanager
def progress_bar() -> Iterator[_Bar]:
    if not sys.stderr.isatty():
        yield _Bar(None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        yield _Bar(progress)

"""Standard five-field cron (minute hour day-of-month month day-of-week), as users know it.

Day-of-week 0 and 7 are Sunday, 1 is Monday; names (``mon``, ``jan``) work too. When both
day-of-month and day-of-week are restricted, a day matching either is chosen (as in cron).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class CronError(ValueError):
    """A cron expression that cannot be read."""


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def times(self, start: date, end: date) -> Iterator[datetime]:
        """Naive local wall-clock times from ``start`` to ``end`` (inclusive), in order."""
        day = start
        while day <= end:
            if self.day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        yield datetime.combine(day, time(hour, minute))
            day += timedelta(days=1)


def parse(expression: str) -> Cron:
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"cron needs five fields (minute hour day month weekday), got "
                        f"{len(fields)}: {expression!r}")
    minute, hour, dom, month, dow = fields
    weekdays = {d % 7 for d in _field(dow, 0, 7, _DAYS, "weekday")}
    return Cron(
        minutes=tuple(sorted(_field(minute, 0, 59, None, "minute"))),
        hours=tuple(sorted(_field(hour, 0, 23, None, "hour"))),
        days=frozenset(_field(dom, 1, 31, None, "day of month")),
        months=frozenset(_field(month, 1, 12, _MONTHS, "month", offset=1)),
        weekdays=frozenset(weekdays), any_day=dom == "*", any_weekday=dow == "*")


def _field(text: str, low: int, high: int, names: list[str] | None, what: str, *,
           offset: int = 0) -> set[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        step = _number(step_text, names, offset, what) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, names, offset, what), _number(b, names, offset, what)
        else:
            first = _number(base, names, offset, what)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last or step < 1:
            raise CronError(f"{what} {part!r} is out of range {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def _number(text: str, names: list[str] | None, offset: int, what: str) -> int:
    if names and text in names:
        return names.index(text) + offset
    if not text.isdigit():
        raise CronError(f"{what} {text!r} is not a number" + (
            f" or a name ({', '.join(names)})" if names else ""))
    return int(text)

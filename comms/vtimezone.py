"""VTIMEZONE components for IANA zones, read from Python's zoneinfo and written by RFC 5545.

RFC 5545 section 3.6.5 puts each STANDARD/DAYLIGHT onset (DTSTART, and the instances of its
RRULE) in the local time of the offset in use *before* the change, TZOFFSETFROM. So London's
spring change, 01:00 UTC on the last Sunday of March, is ``DTSTART:20270328T010000`` with
``TZOFFSETFROM:+0000``, and the autumn one (01:00 UTC) is ``DTSTART:20271031T020000`` with
``TZOFFSETFROM:+0100``.

The zone's changes are found by sampling zoneinfo every two days, from a year before the range
to a year after it, and bisecting to the second wherever the UTC offset, DST amount or
abbreviation differs. Changes that repeat year after year on the same weekday rule ("last
Sunday of March", "second Sunday of March", "first Sunday of April"), at the same local time
and between the same offsets, become one sub-component with
``RRULE:FREQ=YEARLY;BYMONTH=..;BYDAY=..`` (with COUNT when zoneinfo shows the rule ending, not
UNTIL, which RFC 5545 wants in UTC here and dateutil's tzical, so icalendar, reads as local
time); any other change gets a sub-component of its own with its exact DTSTART. A zone with
no change in the range or the year before it (UTC, Asia/Kolkata) gets a single STANDARD whose
TZOFFSETFROM and TZOFFSETTO are equal, starting a year before the range (zoneinfo shows the
offset unchanged since then at least).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

__all__ = ["vtimezone"]

_DAY = 86_400
#: How often zoneinfo is sampled, in seconds (changes are then bisected to the second).
_STEP = 2 * _DAY
#: Looked at before and after the range, in seconds: more than the 371 days that can separate
#: two yearly changes ("last Sunday of March" 2029 to 2030), so every yearly rule shows up at
#: least once before the range and once after it.
_LOOK = 380 * _DAY
_EPOCH = datetime(1970, 1, 1)
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def vtimezone(zone_name: str, first: date, last: date) -> Timezone:
    """A VTIMEZONE for the IANA zone ``zone_name``, right at every instant of the local days
    ``first`` to ``last`` (a day of slack each side covers any UTC offset).

    Yearly rules become RRULEs whose DTSTART is their last instance on or before ``first`` (so
    a DST zone always has both STANDARD and DAYLIGHT); they are open-ended, extending the zone's
    current rules past ``last`` as every VTIMEZONE does, unless zoneinfo shows them ending
    (then COUNT). Any other change in effect at ``first`` or made in the range gets a
    sub-component of its own. TZID is ``zone_name``; TZNAME is zoneinfo's abbreviation. The
    work is cached per (zone, first, last); each call returns a new component.

    Raises ``zoneinfo.ZoneInfoNotFoundError`` for an unknown zone and ValueError when ``last``
    is before ``first``.
    """
    if last < first:
        raise ValueError(f"last ({last}) is before first ({first})")
    component = Timezone()
    component.add("TZID", zone_name)
    for observance in _observances(zone_name, first, last):
        component.add_component(observance.component())
    return component


class _State(NamedTuple):
    offset: timedelta
    dst: timedelta
    name: str


@dataclass(frozen=True, slots=True)
class _Change:
    """One change of the zone's local time: the UTC instant (epoch seconds) and both sides."""

    at: int
    before: _State
    after: _State

    @property
    def local(self) -> datetime:
        """The onset as RFC 5545 writes it: local time in the offset before the change."""
        return _EPOCH + timedelta(seconds=self.at) + self.before.offset

    @property
    def daylight(self) -> bool:
        """DAYLIGHT when the DST amount grows (so Dublin's IST is DAYLIGHT despite tzdata's
        negative winter DST), or stays positive; STANDARD otherwise."""
        if self.after.dst != self.before.dst:
            return self.after.dst > self.before.dst
        return self.after.dst > timedelta(0)


@dataclass(frozen=True, slots=True)
class _Observance:
    """One STANDARD or DAYLIGHT sub-component, immutable so a range's result can be cached."""

    daylight: bool
    start: datetime  # naive: local time in offset_from
    offset_from: timedelta
    offset_to: timedelta
    name: str
    byday: tuple[int, str] | None = None  # (BYMONTH, BYDAY) of a yearly RRULE
    count: int | None = None  # instances of the RRULE; None: it has no end

    def component(self) -> TimezoneStandard | TimezoneDaylight:
        sub = TimezoneDaylight() if self.daylight else TimezoneStandard()
        sub.add("DTSTART", self.start)
        sub.add("TZOFFSETFROM", self.offset_from)
        sub.add("TZOFFSETTO", self.offset_to)
        sub.add("TZNAME", self.name)
        if self.byday is not None:
            month, byday = self.byday
            rule: dict[str, object] = {"FREQ": "YEARLY", "BYMONTH": month, "BYDAY": byday}
            if self.count is not None:
                rule["COUNT"] = self.count
            sub.add("RRULE", rule)
        return sub


@lru_cache(maxsize=512)
def _observances(zone_name: str, first: date, last: date) -> tuple[_Observance, ...]:
    zone = ZoneInfo(zone_name)
    lo = _seconds(first) - _DAY
    hi = _seconds(last) + 2 * _DAY
    scan_start, scan_end = lo - _LOOK, hi + _LOOK
    changes = _changes(zone, scan_start, scan_end)
    in_effect = [change.at for change in changes if change.at <= lo]
    current = in_effect[-1] if in_effect else None

    observances: list[_Observance] = []
    if current is None:  # the offset at the start has held for over a year: onset a year back
        state = _state(zone, scan_start)
        start = datetime.combine((_EPOCH + timedelta(seconds=scan_start) + state.offset).date(),
                                 datetime.min.time()) + timedelta(days=1)
        observances.append(_Observance(daylight=False, start=start, offset_from=state.offset,
                                       offset_to=state.offset, name=state.name))
    for run, byday in _runs(changes):
        earlier = [i for i, change in enumerate(run) if change.at <= lo]
        run = run[earlier[-1]:] if earlier else run  # start at the one just before the range
        if run[0].at > hi or (current is not None and run[-1].at < current):
            continue  # after the range, or superseded before it
        head = run[0]
        observance = _Observance(daylight=head.daylight, start=head.local,
                                 offset_from=head.before.offset, offset_to=head.after.offset,
                                 name=head.after.name)
        if len(run) > 1 and byday is not None:
            # Open-ended when the scan ends before the rule's next instance could be seen.
            ended = _occurrence(run[-1], byday, run[-1].local.year + 1) <= scan_end
            observance = replace(observance, byday=(head.local.month, byday),
                                 count=len(run) if ended else None)
        observances.append(observance)
    observances.sort(key=lambda o: o.start - o.offset_from)
    return tuple(observances)


def _seconds(day: date) -> int:
    return (day - _EPOCH.date()).days * _DAY


def _state(zone: ZoneInfo, at: int) -> _State:
    return _State._make(_probe(zone, at))


def _probe(zone: ZoneInfo, at: int) -> tuple[timedelta, timedelta, str]:
    """(UTC offset, DST amount, abbreviation) at an instant; a plain tuple, as it is hot."""
    local = datetime.fromtimestamp(at, zone)
    offset, dst, name = local.utcoffset(), local.dst(), local.tzname()
    if offset is None or dst is None or name is None:  # pragma: no cover - zoneinfo always knows
        raise ValueError(f"{zone.key} gives no offset at {at}")
    return offset, dst, name


def _changes(zone: ZoneInfo, start: int, end: int) -> list[_Change]:
    """Every change in (start, end], sampled every _STEP and pinned to the second by bisection.

    Several changes in one step are all found unless the last undoes the first; tzdata's
    quickest such reversal since 1970 took about 7 days (Brazil, October 2000), over 3 steps.
    """
    found: list[_Change] = []
    at, state = start, _probe(zone, start)
    while at < end:
        step = min(at + _STEP, end)
        stepped = _probe(zone, step)
        while state != stepped:  # one change (or more) in (at, step]
            low, high = at, step  # the state at low is `state`; at high it is not
            while high - low > 1:
                middle = (low + high) // 2
                if _probe(zone, middle) == state:
                    low = middle
                else:
                    high = middle
            after = _probe(zone, high)
            found.append(_Change(high, _State._make(state), _State._make(after)))
            at, state = high, after
        at, state = step, stepped
    return found


def _runs(changes: list[_Change]) -> list[tuple[list[_Change], str | None]]:
    """Group changes into runs that one yearly RRULE reproduces exactly, with that rule's BYDAY.

    A run is the same change (kind, offsets, abbreviation, month, local time) in consecutive
    years on a weekday rule all its members share; a lone change is a run of one (BYDAY None).
    """
    runs: list[tuple[list[_Change], set[str]]] = []
    latest: dict[tuple[object, ...], int] = {}
    for change in changes:
        local = change.local
        key = (change.daylight, change.before.offset, change.after.offset, change.after.name,
               local.month, local.time())
        rules = _bydays(local.date())
        index = latest.get(key)
        if index is not None:
            members, shared = runs[index]
            if members[-1].local.year == local.year - 1 and shared & rules:
                members.append(change)
                runs[index] = (members, shared & rules)
                continue
        latest[key] = len(runs)
        runs.append(([change], rules))
    return [(members, _prefer(shared) if len(members) > 1 else None) for members, shared in runs]


def _bydays(day: date) -> set[str]:
    """The BYDAY values ("2SU", "-1SU") that pick this day out of its month."""
    weekday = _WEEKDAYS[day.weekday()]
    nth = (day.day - 1) // 7 + 1
    rules = {f"{nth}{weekday}"} if nth <= 4 else set()
    if day.day + 7 > calendar.monthrange(day.year, day.month)[1]:
        rules.add(f"-1{weekday}")
    return rules


def _prefer(rules: set[str]) -> str | None:
    """"Last" wins when a run fits both (the 25th-28th of March are 4th and last): "last Sunday"
    rules are far commoner than "fourth Sunday" ones, and keep holding on the 29th-31st."""
    return min(rules, key=lambda rule: (not rule.startswith("-"), rule)) if rules else None


def _occurrence(change: _Change, byday: str, year: int) -> int:
    """Epoch seconds of the rule's instance in ``year`` (same month and local time as change)."""
    local = change.local
    nth, weekday = int(byday[:-2]), _WEEKDAYS.index(byday[-2:])
    days = calendar.monthrange(year, local.month)[1]
    matching = [d for d in range(1, days + 1) if date(year, local.month, d).weekday() == weekday]
    onset = datetime.combine(date(year, local.month, matching[nth - 1 if nth > 0 else nth]),
                             local.time())
    return int((onset - change.before.offset - _EPOCH).total_seconds())

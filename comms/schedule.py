"""Schedule files: named sending policies (days, daily window, time zone, bank holidays, rate)."""

from __future__ import annotations

import functools
import os
import re
from datetime import UTC, date, datetime, time, timedelta
from importlib import metadata
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import _yaml
from ._types import Slug, TimeZone

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class Schedule(BaseModel):
    """A sending policy: due times outside it move forward to its next allowed moment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    timezone: TimeZone = "Europe/London"
    days: list[Day] = Field(list(DAYS), description="allowed days; at least one")
    window: str = Field("00:00-24:00", description='daily window, "HH:MM-HH:MM" local time')
    skip_holidays: Literal["england", "scotland", "northern_ireland", "wales"] | None = None
    max_per_minute: int | None = Field(None, gt=0, le=1_000_000)
    catch_up_hours: float = Field(24, ge=0, le=87_660, allow_inf_nan=False,
                                  description="send what fell due while down, if this recent "
                                  "(at most 10 years)")

    @field_validator("days")
    @classmethod
    def _some_day(cls, value: list[Day]) -> list[Day]:
        if not value:
            raise ValueError("days must name at least one day (mon, tue, wed, thu, fri, sat, sun); "
                             "leave it out to allow every day")
        return value

    @field_validator("window")
    @classmethod
    def _window_shape(cls, value: str) -> str:
        match = _WINDOW.match(value)
        if not match or (match[1], match[2]) >= (match[3], match[4]):
            raise ValueError(f'window must look like "09:00-17:30" with start before end, not {value!r}')
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def window_times(self) -> tuple[time, time | None]:
        """(start, end); end None means midnight at the end of the day."""
        start, end = self.window.split("-")
        h, m = map(int, start.split(":"))
        eh, em = map(int, end.split(":"))
        return time(h, m), (None if eh == 24 else time(eh, em))


_SUBDIVISIONS = {"england": "ENG", "scotland": "SCT", "northern_ireland": "NIR", "wales": "WLS"}


@functools.lru_cache(maxsize=16)
def bank_holidays(region: str, year: int) -> frozenset[date]:
    """UK bank holidays of one nation for one year, from the ``holidays`` package. Importing
    and asking it costs about 0.1 s, so a machine asks once per release of the package and
    keeps the answer in its cache folder (a file that cannot be read or written is asked anew)."""
    try:
        return frozenset(date.fromisoformat(day) for day in _cached(region, year).read_text("ascii").split())
    except (OSError, RuntimeError, ValueError):  # RuntimeError: no home folder
        pass
    import holidays

    days = frozenset(holidays.country_holidays("GB", subdiv=_SUBDIVISIONS[region], years=year))
    try:
        cached = _cached(region, year)
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{os.getpid()}")
        partial.write_text("".join(f"{day.isoformat()}\n" for day in sorted(days)), "ascii")
        os.replace(partial, cached)  # whole or not at all, for a process reading it meanwhile
    except (OSError, RuntimeError):
        pass
    return days


def _cached(region: str, year: int) -> Path:
    """Where a machine keeps one nation's year, for one release of ``holidays``."""
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(home) / "comms" / "bank-holidays" / f"{metadata.version('holidays')}-{region}-{year}.txt"


def localise(naive: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone``: an ambiguous one (autumn) is its first occurrence; one that
    does not exist (spring) is moved forward across the gap."""
    aware = naive.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) != naive:  # in the spring gap
        return aware.astimezone(UTC).astimezone(zone)
    return aware


def exists_locally(naive: datetime, zone: ZoneInfo) -> bool:
    """False for wall-clock times skipped by a spring clock change."""
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def next_allowed(due: datetime, schedule: Schedule | None) -> datetime:
    """The first moment at or after ``due`` that the policy allows (never earlier than due)."""
    if schedule is None:
        return due
    zone = schedule.zone
    local = due.astimezone(zone)
    for _ in range(800):
        day = local.date()
        window = _window(day, schedule)
        if window is not None:
            opens, closes = window
            if local < opens:
                return opens
            if local < closes:
                return local
        local = localise(datetime.combine(day + timedelta(days=1), time()), zone)
    raise ValueError(f"schedule '{schedule.id}' allows no time in the next two years")


def last_allowed_before(moment: datetime, schedule: Schedule | None) -> datetime:
    """Where the policy's time before ``moment`` ends: ``moment`` itself inside a window, else
    when the last window before it closed. Something due before this has had its chance."""
    if schedule is None or next_allowed(moment, schedule) == moment:
        return moment
    local = moment.astimezone(schedule.zone)
    day = local.date()
    for _ in range(800):
        window = _window(day, schedule)
        if window is not None and window[1] <= local:
            return window[1]
        day -= timedelta(days=1)
    raise ValueError(f"schedule '{schedule.id}' allowed no time in the two years before")


def _window(day: date, schedule: Schedule) -> tuple[datetime, datetime] | None:
    """When sending opens and closes on ``day`` (None: a day the policy leaves out)."""
    if DAYS[day.weekday()] not in schedule.days or (
            schedule.skip_holidays and day in bank_holidays(schedule.skip_holidays, day.year)):
        return None
    zone = schedule.zone
    start, end = schedule.window_times
    opens = localise(datetime.combine(day, start), zone)
    closes = (localise(datetime.combine(day, end), zone) if end
              else localise(datetime.combine(day + timedelta(days=1), time()), zone))
    return opens, closes


def load_schedule(path: Path, display: Path | None = None) -> tuple[Schedule, _yaml.Located]:
    return _yaml.load_model(Schedule, path, display)


def json_schema() -> dict[str, object]:
    return _yaml.json_schema(Schedule, "comms schedule")

"""Cron as users know it: Monday is 1 (or mon), never APScheduler's 0."""

from __future__ import annotations

from datetime import date

import pytest

from comms.cron import CronError, parse


def first(expression: str, start: date = date(2026, 11, 30), n: int = 3) -> list[str]:
    out = []
    for moment in parse(expression).times(start, date(2027, 12, 31)):
        out.append(moment.strftime("%a %Y-%m-%d %H:%M"))
        if len(out) == n:
            break
    return out


def test_monday_is_one_as_in_standard_cron() -> None:
    assert first("0 9 * * 1") == ["Mon 2026-11-30 09:00", "Mon 2026-12-07 09:00",
                                  "Mon 2026-12-14 09:00"]
    assert first("0 9 * * mon") == first("0 9 * * 1")
    assert first("0 9 * * 0", n=1) == first("0 9 * * 7", n=1) == ["Sun 2026-12-06 09:00"]


def test_monthly_and_ranges_and_steps() -> None:
    assert first("0 9 1 * *") == ["Tue 2026-12-01 09:00", "Fri 2027-01-01 09:00",
                                  "Mon 2027-02-01 09:00"]
    assert first("*/30 9-10 1 jan *", n=5) == ["Fri 2027-01-01 09:00", "Fri 2027-01-01 09:30",
                                               "Fri 2027-01-01 10:00", "Fri 2027-01-01 10:30"]
    assert first("0 12 * * mon-fri", n=6)[-1] == "Mon 2026-12-07 12:00"


def test_day_of_month_or_day_of_week() -> None:
    assert first("0 9 13 * fri", n=3) == ["Fri 2026-12-04 09:00", "Fri 2026-12-11 09:00",
                                          "Sun 2026-12-13 09:00"]


@pytest.mark.parametrize(("expression", "message"), [
    ("0 9 * *", "cron needs five fields"),
    ("61 9 * * *", "minute '61' is out of range 0-59"),
    ("0 9 * * funday", "weekday 'funday' is not a number or a name"),
    ("0 25 * * *", "hour '25' is out of range 0-23"),
])
def test_bad_expressions(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse(expression)

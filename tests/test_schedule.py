"""Sending policies: days, windows, UK bank holidays, clock changes — never earlier than due."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from comms.schedule import (
    Schedule,
    bank_holidays,
    exists_locally,
    load_schedule,
    localise,
    next_allowed,
)

LONDON = ZoneInfo("Europe/London")
WORKING = Schedule(id="uk-working-hours", days=["mon", "tue", "wed", "thu", "fri"],
                   window="09:00-17:30", skip_holidays="england")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON)


@pytest.mark.parametrize(("due", "allowed"), [
    ("2026-12-01 10:00", "2026-12-01 10:00"),  # Tuesday, inside the window
    ("2026-12-01 07:00", "2026-12-01 09:00"),  # before opening: same day
    ("2026-12-01 18:00", "2026-12-02 09:00"),  # after closing: next morning
    ("2026-12-04 17:30", "2026-12-07 09:00"),  # Friday at closing → Monday
    ("2026-12-24 18:00", "2026-12-29 09:00"),  # Christmas Eve evening → after 25, 26, 28 Dec
    ("2026-12-25 10:00", "2026-12-29 09:00"),  # Christmas Day itself
    ("2026-12-31 17:45", "2027-01-04 09:00"),  # New Year's Day is a holiday, then the weekend
    ("2027-03-26 10:00", "2027-03-30 09:00"),  # Good Friday → past Easter Monday
])
def test_shifts_forward_to_the_next_allowed_moment(due: str, allowed: str) -> None:
    assert next_allowed(at(due), WORKING) == at(allowed)


def test_never_earlier_and_none_means_unchanged() -> None:
    due = at("2026-12-02 12:34")
    assert next_allowed(due, WORKING) == due
    assert next_allowed(due, None) is due


def test_scotland_keeps_its_own_holidays() -> None:
    scotland = WORKING.model_copy(update={"skip_holidays": "scotland"})
    assert next_allowed(at("2027-01-04 10:00"), scotland) == at("2027-01-05 09:00")  # 2 Jan sub.
    assert next_allowed(at("2027-01-04 10:00"), WORKING) == at("2027-01-04 10:00")


def test_bank_holidays_are_asked_once_per_machine(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's answer is kept in the cache folder: a later process reads it without
    importing ``holidays``; a damaged file is asked anew and rewritten."""
    import holidays

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    asked = frozenset(holidays.country_holidays("GB", subdiv="NIR", years=2027))
    bank_holidays.cache_clear()
    assert bank_holidays("northern_ireland", 2027) == asked
    [kept] = (tmp_path / "comms" / "bank-holidays").iterdir()
    assert kept.name == f"{holidays.__version__}-northern_ireland-2027.txt"
    later = subprocess.run(
        [sys.executable, "-c", "import sys; from comms.schedule import bank_holidays; "
         "print(len(bank_holidays('northern_ireland', 2027)), 'holidays' in sys.modules)"],
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}, capture_output=True, text=True,
        check=True)
    assert later.stdout.split() == [str(len(asked)), "False"]
    kept.write_text("2027-13-45\n", "ascii")  # not a date
    bank_holidays.cache_clear()
    assert bank_holidays("northern_ireland", 2027) == asked
    assert kept.read_text("ascii").split() == sorted(day.isoformat() for day in asked)
    bank_holidays.cache_clear()


def test_both_2026_clock_changes() -> None:
    # Spring: 01:00-02:00 on 29 March 2026 does not exist in London.
    assert not exists_locally(datetime(2026, 3, 29, 1, 30), LONDON)
    assert localise(datetime(2026, 3, 29, 1, 30), LONDON).isoformat() == "2026-03-29T02:30:00+01:00"
    # Autumn: 01:00-02:00 on 25 October 2026 happens twice; the first one is meant.
    first = localise(datetime(2026, 10, 25, 1, 30), LONDON)
    assert first.isoformat() == "2026-10-25T01:30:00+01:00"
    night = Schedule(id="nights", window="01:00-03:00")
    assert next_allowed(at("2026-10-25 00:10"), night).isoformat() == "2026-10-25T01:00:00+01:00"
    assert next_allowed(at("2026-03-29 00:10"), night).isoformat() == "2026-03-29T02:00:00+01:00"


def test_example_schedule_loads(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    schedule, _ = load_schedule(root / "schedules" / "uk-working-hours.yaml")
    assert schedule == WORKING.model_copy(update={"max_per_minute": 600})


def schedule_problems(tmp_path: Path, text: str) -> list[str]:
    from comms import _yaml

    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_schedule(path, Path("schedules/s.yaml"))
    except _yaml.ValidationErrors as exc:
        return [e.location_message() for e in exc.errors]
    return []


@pytest.mark.parametrize(("line", "message"), [
    ("days: []", "schedules/s.yaml:2: days: days must name at least one day (mon, tue, wed, thu, "
                 "fri, sat, sun); leave it out to allow every day"),
    ("timezone: Mars/Base", "schedules/s.yaml:2: timezone: unknown time zone 'Mars/Base' (use an "
                            "IANA name like Europe/London)"),
    ("catch_up_hours: 1e300", "schedules/s.yaml:2: catch_up_hours: Input should be less than or "
                              "equal to 87660"),
    ("catch_up_hours: .nan", "schedules/s.yaml:2: catch_up_hours: Input should be a finite number"),
    ("max_per_minute: 0", "schedules/s.yaml:2: max_per_minute: Input should be greater than 0"),
])
def test_bad_values_are_refused_at_their_line(tmp_path: Path, line: str, message: str) -> None:
    assert schedule_problems(tmp_path, f"id: s\n{line}\n") == [message]

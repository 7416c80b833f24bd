"""VTIMEZONE from zoneinfo: read back by icalendar, by RFC 5545 itself, and by Mozilla ical.js.

The truth is Python's zoneinfo. Each VTIMEZONE is checked three ways at every hour of its range
and around every change: icalendar's tzinfo built from the component (not its TZID), a direct
RFC 5545 reading (each onset is DTSTART or an RRULE instance in TZOFFSETFROM's local time; the
latest onset gives TZOFFSETTO), and ical.js on whole invitations from build_calendar.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar, Timezone

from comms.campaign import Event, load_campaign
from comms.invite import build_calendar
from comms.settings import Settings
from comms.vtimezone import vtimezone
from tests.conftest import ROOT
from tests.icaljs import icaljs_instants
from tests.test_invite import build, make_event

HOUR = timedelta(hours=1)
ZONES = ["Europe/London", "Europe/Dublin", "America/New_York", "Australia/Sydney",
         "Asia/Kolkata", "UTC"]
FIRST, LAST = date(2026, 1, 1), date(2028, 12, 31)
#: Zones and years whose changes are irregular or whose rules change: exact components, COUNTs,
#: offset changes between two STANDARDs, an abbreviation-only change, 30-minute DST.
IRREGULAR = [
    ("Africa/Casablanca", 2026, 2028),  # DST suspended for Ramadan, on a moving date
    ("America/Sao_Paulo", 2017, 2020),  # Brazil ended DST in 2019
    ("Europe/Moscow", 2010, 2015),  # permanent +04 from 2011, back to +03 in 2014
    ("America/Whitehorse", 2019, 2021),  # PDT to permanent MST in 2020: same offset
    ("Asia/Jerusalem", 2028, 2031),  # "Friday before the last Sunday": 4th Friday, then last
    ("Australia/Lord_Howe", 2026, 2028),  # half-hour DST
]
SPRING = datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # London: 02:30 BST, an hour into summer time
AUTUMN = [datetime(2027, 10, 31, 0, 30, tzinfo=UTC), datetime(2027, 10, 31, 1, 30, tzinfo=UTC)]
#: ical.js's Time#convertToZone looks the offset up with the UTC wall-clock time as if it were
#: local (kewisch/ical.js#847, open), so it can be off by the DST amount for as many hours as the
#: zone's UTC offset (14 at most) before or after a change, whatever the VTIMEZONE says.
ICALJS_847 = timedelta(hours=15)


# --- zoneinfo, the truth ---------------------------------------------------------------------


def state(zone: ZoneInfo, at: datetime) -> tuple[timedelta, str]:
    local = at.astimezone(zone)
    offset = local.utcoffset()
    assert offset is not None
    return offset, str(local.tzname())


def zoneinfo_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Hour by hour, then bisected to the second: the first instant of each new offset or
    abbreviation."""
    found = []
    at, current = start, state(zone, start)
    while at < end:
        following = state(zone, at + HOUR)
        if following != current:
            low, high = at, at + HOUR
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if state(zone, middle) == current:
                    low = middle
                else:
                    high = middle
            found.append(high)
        at, current = at + HOUR, following
    return found


def span(first: date, last: date) -> tuple[datetime, datetime]:
    """The UTC instants from the start of ``first`` to the end of ``last`` (local days)."""
    return (datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(hours=14),
            datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(hours=36))


def instants(zone: ZoneInfo, first: date, last: date) -> list[datetime]:
    """Every hour of the range, and each change of it -1 s, +0, +1 s, -30 min, +30 min."""
    start, end = span(first, last)
    hourly = [start + HOUR * n for n in range(int((end - start) / HOUR) + 1)]
    near = [change + delta for change in zoneinfo_changes(zone, start, end)
            for delta in (timedelta(seconds=-1), timedelta(0), timedelta(seconds=1),
                          timedelta(minutes=-30), timedelta(minutes=30))]
    special = [moment for moment in (SPRING, *AUTUMN) if start <= moment <= end]
    return sorted({*hourly, *near, *special})


def wall(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None, fold=0)


# --- RFC 5545, read directly -----------------------------------------------------------------


@dataclass(frozen=True)
class Onset:
    at: datetime  # UTC
    offset_from: timedelta
    offset_to: timedelta
    name: str


def parse_vtimezone(component: Timezone) -> Timezone:
    parsed = Timezone.from_ical(component.to_ical())
    assert isinstance(parsed, Timezone)
    return parsed


def parts(component: Timezone) -> list[Any]:
    """The STANDARD and DAYLIGHT sub-components (typed Any: icalendar's values are a wide union)."""
    return list(component.subcomponents)


def onsets(component: Timezone, until: datetime) -> list[Onset]:
    """Each sub-component's DTSTART and RRULE instances, local in TZOFFSETFROM, up to ``until``."""
    found = []
    for sub in parts(component):
        start = sub["DTSTART"].dt
        assert isinstance(start, datetime) and start.tzinfo is None, "DTSTART must be local time"
        offset_from, offset_to = sub["TZOFFSETFROM"].td, sub["TZOFFSETTO"].td
        limit = wall(until) + offset_from
        locals_: Iterable[datetime] = [start]
        if "RRULE" in sub:
            rule = rrulestr(sub["RRULE"].to_ical().decode(), dtstart=start)
            locals_ = itertools.takewhile(limit.__ge__, rule)
        for local in locals_:
            found.append(Onset((local - offset_from).replace(tzinfo=UTC), offset_from, offset_to,
                               str(sub["TZNAME"])))
    return sorted(found, key=lambda onset: onset.at)


def rfc5545_state(found: list[Onset], at: datetime) -> tuple[timedelta, str] | None:
    latest = [onset for onset in found if onset.at <= at]
    return (latest[-1].offset_to, latest[-1].name) if latest else None


# --- the VTIMEZONE alone ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ZONES)
def test_icalendar_reads_the_wall_time_zoneinfo_gives(name: str) -> None:
    zone = ZoneInfo(name)
    tz = parse_vtimezone(vtimezone(name, FIRST, LAST)).to_tz(lookup_tzid=False)
    assert not isinstance(tz, ZoneInfo)  # built from the component, not looked up by TZID

    wrong = []
    for moment in instants(zone, FIRST, LAST):
        theirs, ours = moment.astimezone(tz), moment.astimezone(zone)
        if wall(theirs) != wall(ours) or theirs.utcoffset() != ours.utcoffset():
            wrong.append(f"{moment:%Y-%m-%dT%H:%M:%SZ}: {theirs} != {ours}")
    assert wrong[:5] == []


@pytest.mark.parametrize(("name", "first", "last"),
                         [(name, FIRST, LAST) for name in ZONES]
                         + [(name, date(a, 1, 1), date(b, 12, 31)) for name, a, b in IRREGULAR])
def test_rfc5545_reading_gives_zoneinfo_offsets_and_names(name: str, first: date,
                                                          last: date) -> None:
    zone = ZoneInfo(name)
    found = onsets(parse_vtimezone(vtimezone(name, first, last)), span(first, last)[1])

    wrong = [moment for moment in instants(zone, first, last)
             if rfc5545_state(found, moment) != state(zone, moment)]
    assert wrong[:5] == []


@pytest.mark.parametrize(("name", "first", "last"),
                         [(name, FIRST, LAST) for name in ZONES]
                         + [(name, date(a, 1, 1), date(b, 12, 31)) for name, a, b in IRREGULAR])
def test_each_onset_in_its_from_offset_is_the_real_change(name: str, first: date,
                                                         last: date) -> None:
    zone = ZoneInfo(name)
    start, end = span(first, last)
    found = onsets(parse_vtimezone(vtimezone(name, first, last)), end)
    changes = zoneinfo_changes(zone, start - timedelta(days=400), end)
    second = timedelta(seconds=1)

    for onset in found:  # DTSTART and every RRULE instance, before the range and in it
        assert state(zone, onset.at - second)[0] == onset.offset_from, onset
        assert state(zone, onset.at) == (onset.offset_to, onset.name), onset
    real = [onset for onset in found if state(zone, onset.at - second) != state(zone, onset.at)]
    assert [onset.at for onset in real if onset.at >= start] == [
        change for change in changes if change >= start]  # none missed, none made up
    assert found[0].at <= start  # the state at the start of the range has its onset
    unchanged = [onset for onset in found if onset not in real]  # UTC's, Kolkata's one onset
    assert all(onset.offset_from == onset.offset_to for onset in unchanged)
    assert len(unchanged) <= 1


@pytest.mark.parametrize(
    ("moment", "local"),
    [
        (datetime(2027, 3, 28, 0, 59, 59, tzinfo=UTC), datetime(2027, 3, 28, 0, 59, 59)),
        (datetime(2027, 3, 28, 1, 0, tzinfo=UTC), datetime(2027, 3, 28, 2, 0)),
        (SPRING, datetime(2027, 3, 28, 2, 30)),
        (AUTUMN[0], datetime(2027, 10, 31, 1, 30)),  # BST, the first 01:30
        (AUTUMN[1], datetime(2027, 10, 31, 1, 30)),  # GMT, the repeated 01:30
        (datetime(2027, 10, 31, 2, 0, tzinfo=UTC), datetime(2027, 10, 31, 2, 0)),
    ],
)
def test_london_changes_of_2027(moment: datetime, local: datetime) -> None:
    zone = ZoneInfo("Europe/London")
    component = vtimezone("Europe/London", date(2027, 1, 1), date(2027, 12, 31))
    tz = parse_vtimezone(component).to_tz(lookup_tzid=False)
    found = onsets(parse_vtimezone(component), datetime(2028, 1, 1, tzinfo=UTC))

    assert wall(moment.astimezone(zone)) == local
    assert wall(moment.astimezone(tz)) == local
    assert moment.astimezone(tz).utcoffset() == moment.astimezone(zone).utcoffset()
    offset = rfc5545_state(found, moment)
    assert offset is not None and wall(moment) + offset[0] == local


def test_london_is_two_yearly_rules_with_dtstart_in_the_from_offset() -> None:
    text = vtimezone("Europe/London", date(2027, 1, 1), date(2027, 12, 31)).to_ical().decode()

    assert text == "\r\n".join([
        "BEGIN:VTIMEZONE", "TZID:Europe/London",
        "BEGIN:DAYLIGHT", "DTSTART:20260329T010000", "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
        "TZNAME:BST", "TZOFFSETFROM:+0000", "TZOFFSETTO:+0100", "END:DAYLIGHT",
        "BEGIN:STANDARD", "DTSTART:20261025T020000", "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
        "TZNAME:GMT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0000", "END:STANDARD",
        "END:VTIMEZONE", "",
    ])


@pytest.mark.parametrize(
    ("name", "rules"),
    [
        ("America/New_York", {("DAYLIGHT", "2SU", 3, "EDT"), ("STANDARD", "1SU", 11, "EST")}),
        ("Australia/Sydney", {("DAYLIGHT", "1SU", 10, "AEDT"), ("STANDARD", "1SU", 4, "AEST")}),
        # tzdata has negative DST in winter; written the usual way, IST as DAYLIGHT
        ("Europe/Dublin", {("DAYLIGHT", "-1SU", 3, "IST"), ("STANDARD", "-1SU", 10, "GMT")}),
    ],
)
def test_yearly_rules(name: str, rules: set[tuple[str, str, int, str]]) -> None:
    component = parse_vtimezone(vtimezone(name, FIRST, LAST))

    found = set()
    for sub in parts(component):
        rule = sub["RRULE"]
        assert set(rule) == {"FREQ", "BYDAY", "BYMONTH"} and rule["FREQ"] == ["YEARLY"]
        found.add((sub.name, rule["BYDAY"][0], rule["BYMONTH"][0], str(sub["TZNAME"])))
        assert datetime(2025, 1, 1) < sub["DTSTART"].dt < datetime(2026, 1, 1)  # just before
    assert found == rules


@pytest.mark.parametrize(("name", "offset", "tzname"),
                         [("Asia/Kolkata", timedelta(hours=5, minutes=30), "IST"),
                          ("UTC", timedelta(0), "UTC")])
def test_zones_without_changes_have_one_standard(name: str, offset: timedelta,
                                                 tzname: str) -> None:
    (sub,) = parts(vtimezone(name, FIRST, LAST))

    assert sub.name == "STANDARD"
    assert sub["TZOFFSETFROM"].td == sub["TZOFFSETTO"].td == offset
    assert str(sub["TZNAME"]) == tzname
    assert "RRULE" not in sub


def test_irregular_changes_get_one_component_each_and_ended_rules_a_count() -> None:
    casablanca = vtimezone("Africa/Casablanca", FIRST, LAST)
    moscow = vtimezone("Europe/Moscow", date(2010, 1, 1), date(2015, 12, 31)).to_ical().decode()

    assert all("RRULE" not in sub for sub in casablanca.subcomponents)
    assert len(casablanca.subcomponents) >= 6  # two a year, Ramadan moving 11 days a year
    assert "RRULE:FREQ=YEARLY;COUNT=2;BYDAY=-1SU;BYMONTH=3" in moscow
    assert "UNTIL" not in moscow


def test_nothing_but_the_rfc5545_properties() -> None:
    for name in ZONES:
        text = vtimezone(name, FIRST, LAST).to_ical().decode()
        assert "COMMENT" not in text and "X-" not in text
        assert f"TZID:{name}\r\n" in text


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="before first"):
        vtimezone("Europe/London", date(2027, 2, 1), date(2027, 1, 31))
    with pytest.raises(ZoneInfoNotFoundError):
        vtimezone("Europe/Londres", FIRST, LAST)


def test_each_call_gives_a_fresh_equal_component() -> None:
    one = vtimezone("Europe/London", FIRST, LAST)
    expected = one.to_ical()
    one.subcomponents.clear()
    one["TZID"] = "changed"

    assert vtimezone("Europe/London", FIRST, LAST).to_ical() == expected


# --- in the invitation -----------------------------------------------------------------------


def test_invitation_has_its_vtimezone_before_the_vevent() -> None:
    calendar = build(make_event(starts="2027-03-28T00:30", ends="2027-03-28T03:30"))
    ics = calendar.for_attendee("a@borough.example", "A")
    parsed = Calendar.from_ical(ics)

    assert ics.index(b"BEGIN:VTIMEZONE\r\n") < ics.index(b"BEGIN:VEVENT\r\n")
    assert b"END:VTIMEZONE\r\n" in calendar.head
    assert ics.count(b"BEGIN:VTIMEZONE") == 1
    assert b"DTSTART:20260329T010000\r\n" in ics  # spring, in the from offset (+0000)
    assert isinstance(parsed, Calendar) and not parsed.get_missing_tzids()
    assert b"COMMENT" not in ics


def test_utc_events_need_no_vtimezone() -> None:
    ics = build(make_event(timezone="UTC")).for_attendee("a@borough.example", "A")

    assert b"VTIMEZONE" not in ics
    assert b"DTSTART:20260320T100000Z\r\n" in ics


# --- Mozilla ical.js -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    label: str
    event: Event
    zone: ZoneInfo
    probes: list[datetime]


def case(label: str, event: Event, default_timezone: str = "Europe/London",
         spring: bool = True) -> Case:
    """An event and its probes: each hour of its year, each change of that year -1 s/+0/+1 s/
    +-30 min, and (when ``spring``) London's 2027-03-28T01:30Z."""
    zone = ZoneInfo(event.timezone or default_timezone)
    first, last = date(event.starts.year, 1, 1), date(event.ends.year, 12, 31)
    probes = [moment for moment in instants(zone, first, last)
              if datetime(first.year, 1, 1, tzinfo=UTC) <= moment
              < datetime(last.year + 1, 1, 1, tzinfo=UTC)]
    return Case(label, event, zone, sorted({*probes, SPRING} if spring else set(probes)))


def timed(zone: str, starts: str, ends: str) -> Event:
    return make_event(timezone=zone, starts=starts, ends=ends)


#: label: (zone, starts, ends); built into cases by the fixture, not at collection.
EVENTS = {
    "london-spring-day": ("Europe/London", "2027-03-28T00:30", "2027-03-28T03:30"),
    "london-autumn-day": ("Europe/London", "2027-10-31T00:15", "2027-10-31T03:00"),
    "new-york-spring-day": ("America/New_York", "2027-03-14T01:00", "2027-03-14T04:00"),
    "new-york-summer": ("America/New_York", "2026-07-01T09:00", "2026-07-01T10:30"),
    "sydney-autumn-day": ("Australia/Sydney", "2027-04-04T01:00", "2027-04-04T04:00"),
    "sydney-spring-day": ("Australia/Sydney", "2027-10-03T01:00", "2027-10-03T04:00"),
    "london-new-year": ("Europe/London", "2027-12-31T22:00", "2028-01-01T01:00"),
}
#: Zones whose VTIMEZONE has exact components or ended rules; probed over the event's year only.
IRREGULAR_EVENTS = {
    "casablanca-ramadan": ("Africa/Casablanca", "2027-02-10T09:00", "2027-02-10T10:00"),
    "moscow-2011": ("Europe/Moscow", "2011-03-27T09:00", "2011-03-27T10:00"),
    "whitehorse-2020": ("America/Whitehorse", "2020-11-01T09:00", "2020-11-01T10:00"),
    "sao-paulo-2019": ("America/Sao_Paulo", "2019-02-17T09:00", "2019-02-17T10:00"),
}


def campaign_cases() -> Iterator[Case]:
    default = Settings.model_fields["timezone"].default
    for path in sorted((ROOT / "campaigns").glob("*.yaml")):
        campaign, _ = load_campaign(path, Path("campaigns") / path.name)
        for event in campaign.events:
            yield case(f"{campaign.id}/{event.id}", event, default)


def invitation(item: Case) -> bytes:
    built = build_calendar(item.event, method="REQUEST", sequence=0,
                           uid=f"{item.label.replace('/', '.')}@comms.example",
                           dtstamp=datetime(2026, 2, 1, 9, 30, tzinfo=UTC),
                           default_timezone=item.zone.key)
    return built.for_attendee("a@borough.example", "A")


@pytest.fixture(scope="module")
def icaljs() -> dict[str, tuple[Case, dict[str, Any]]]:
    """ical.js's reading of every case's invitation, from one run of node."""
    cases = [*(case(label, timed(*spec)) for label, spec in EVENTS.items()),
             *(case(label, timed(*spec), spring=False) for label, spec in IRREGULAR_EVENTS.items()),
             *campaign_cases()]
    results = icaljs_instants([(invitation(item), item.probes) for item in cases])
    return {item.label: (item, result) for item, result in zip(cases, results, strict=True)}


def utc(moment: datetime, zone: ZoneInfo) -> datetime:
    """As build_calendar reads event times: naive ones are local to the event's zone."""
    return (moment.replace(tzinfo=zone) if moment.tzinfo is None else moment).astimezone(UTC)


def check_events(item: Case, result: dict[str, Any]) -> None:
    (event,) = result["events"]
    start, end = utc(item.event.starts, item.zone), utc(item.event.ends, item.zone)
    assert (event["start"], event["end"]) == (f"{start:%Y-%m-%dT%H:%M:%SZ}",
                                              f"{end:%Y-%m-%dT%H:%M:%SZ}")
    assert event["start_tzid"] == event["end_tzid"] == item.zone.key
    assert list(result["zones"]) == [item.zone.key]


def expected_locals(item: Case) -> list[str]:
    return [f"{wall(moment.astimezone(item.zone)):%Y-%m-%dT%H:%M:%S}" for moment in item.probes]


def far_from_changes(item: Case, moments: list[datetime]) -> list[datetime]:
    """The moments more than ICALJS_847 away from every change of the zone."""
    start, end = item.probes[0] - ICALJS_847, item.probes[-1] + ICALJS_847
    changes = zoneinfo_changes(item.zone, start, end)
    return [moment for moment in moments
            if all(abs(at - moment) > ICALJS_847 for at in changes)]


@pytest.mark.parametrize("label", [*EVENTS, *IRREGULAR_EVENTS])
def test_icaljs_reads_invitations_as_zoneinfo_does(
        label: str, icaljs: dict[str, tuple[Case, dict[str, Any]]]) -> None:
    item, result = icaljs[label]
    check_events(item, result)
    zone = result["zones"][item.zone.key]
    expected = expected_locals(item)

    assert [(str(p), got) for p, got, want in zip(item.probes, zone["locals"], expected,
                                                  strict=True) if got != want][:5] == []
    wrong = [p for p, got, want in zip(item.probes, zone["converted"], expected, strict=True)
             if got != want]
    if item.zone.key == "Europe/London":  # UTC wall time is London's, so no ical.js#847 here
        assert wrong == []
    else:
        assert far_from_changes(item, wrong) == []


def test_icaljs_converts_the_london_spring_instant() -> None:
    item = Case("london", timed(*EVENTS["london-spring-day"]), ZoneInfo("Europe/London"), [])
    (result,) = icaljs_instants([invitation(item)], [SPRING, *AUTUMN])
    zone = result["zones"]["Europe/London"]

    expected = ["2027-03-28T02:30:00", "2027-10-31T01:30:00", "2027-10-31T01:30:00"]
    assert zone["locals"] == zone["converted"] == expected


def test_icaljs_reads_every_event_of_the_example_project(
        icaljs: dict[str, tuple[Case, dict[str, Any]]]) -> None:
    cases = list(campaign_cases())
    assert cases, "the example project has no events"
    for item in cases:
        _, result = icaljs[item.label]
        check_events(item, result)
        zone = result["zones"][item.zone.key]
        expected = expected_locals(item)
        assert [str(p) for p, got, want in zip(item.probes, zone["locals"], expected,
                                               strict=True) if got != want] == [], item.label
        wrong = [p for p, got, want in zip(item.probes, zone["converted"], expected, strict=True)
                 if got != want]
        assert (wrong if item.zone.key == "Europe/London" else far_from_changes(item, wrong)
                ) == [], item.label

"""Invitations: REQUEST/UPDATE/CANCEL calendars, the spliced ATTENDEE line, REPLY parsing."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime, timedelta
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar

from comms.campaign import Event
from comms.invite import (
    EventCalendar,
    attendee_line,
    build_calendar,
    event_changed_fingerprint,
    event_uid,
    fold,
)
from comms.tracking.replies import Reply, parse_reply, replies_in_message
from comms.transports.base import CalendarPart

UID = "nmdi.ws1@comms.example"
STAMP = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
TRICKY_NAMES = [
    "Siobhán O'Connor",
    "Zoë Adébáyọ̀",
    'Smith, Jane; "JJ": Esq.',
    "Caret ^ and ^n literally",
    "Ngozi Okonjo-Iweala-Adébáyọ̀ of the Very Long Named Borough Partnership Board",
    "李小龍",
]


def make_event(**changes: Any) -> Event:
    data: dict[str, Any] = {
        "id": "ws1",
        "title": "Net-zero workshop: Camden; phase 2",
        "starts": "2026-03-20T10:00",
        "ends": "2026-03-20T12:00",
        "location": "Town Hall, Room 3",
        "online_url": "https://meet.example/j/123?pwd=a;b",
        "description": "Bring your borough's data.",
        "capacity": 40,
        "organiser": {"email": "programme@comms.example", "name": "Programme Office, NMDI"},
        "reminder_minutes": 30,
    }
    data.update(changes)
    return Event.model_validate(data)


def build(event: Event | None = None, **kwargs: Any) -> EventCalendar:
    options: dict[str, Any] = {
        "method": "REQUEST",
        "sequence": 0,
        "uid": UID,
        "dtstamp": STAMP,
        "default_timezone": "Europe/London",
    }
    options.update(kwargs)
    return build_calendar(event or make_event(), **options)


def parse(ics: bytes) -> Calendar:
    calendar = Calendar.from_ical(ics)
    assert isinstance(calendar, Calendar)
    return calendar


def only_vevent(calendar: Calendar) -> Any:
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return events[0]


def attendees(vevent: Any) -> list[Any]:
    found = vevent.get("ATTENDEE")
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


def unfold(ics: bytes) -> list[bytes]:
    return ics.replace(b"\r\n ", b"").split(b"\r\n")


# --- REQUEST, update, CANCEL ----------------------------------------------------------------


def test_request_calendar_has_every_required_property() -> None:
    ics = build().for_attendee("siobhan@borough.example", "Siobhán O'Connor")
    calendar = parse(ics)

    assert str(calendar["METHOD"]) == "REQUEST"
    assert str(calendar["PRODID"]) == "-//comms//EN"
    assert str(calendar["VERSION"]) == "2.0"
    assert "UID" not in calendar
    vevent = only_vevent(calendar)
    assert str(vevent["UID"]) == UID
    assert vevent["DTSTAMP"].dt == STAMP
    assert vevent["SEQUENCE"] == 0
    assert str(vevent["SUMMARY"]) == "Net-zero workshop: Camden; phase 2"
    assert str(vevent["LOCATION"]) == "Town Hall, Room 3"
    assert str(vevent["URL"]) == "https://meet.example/j/123?pwd=a;b"
    assert "Bring your borough's data." in str(vevent["DESCRIPTION"])
    assert "https://meet.example/j/123?pwd=a;b" in str(vevent["DESCRIPTION"])
    assert str(vevent["STATUS"]) == "CONFIRMED"
    assert str(vevent["ORGANIZER"]) == "mailto:programme@comms.example"
    assert vevent["ORGANIZER"].params["CN"] == "Programme Office, NMDI"


def test_times_are_in_the_default_zone_with_tzid_and_a_small_vtimezone() -> None:
    ics = build().for_attendee("a@borough.example", "A")
    calendar = parse(ics)
    vevent = only_vevent(calendar)

    assert vevent["DTSTART"].params["TZID"] == "Europe/London"
    assert vevent["DTEND"].params["TZID"] == "Europe/London"
    assert vevent.start == datetime(2026, 3, 20, 10, tzinfo=vevent.start.tzinfo)
    assert vevent.start.utcoffset() == timedelta(0)
    assert vevent.end - vevent.start == timedelta(hours=2)
    assert b"DTSTART;TZID=Europe/London:20260320T100000\r\n" in ics
    (vtimezone,) = calendar.walk("VTIMEZONE")
    assert str(vtimezone["TZID"]) == "Europe/London"
    assert len(vtimezone.to_ical()) < 1000
    assert {c.name for c in vtimezone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    assert not calendar.get_missing_tzids()


def test_event_timezone_wins_over_the_default() -> None:
    event = make_event(timezone="America/New_York", starts="2026-07-01T09:00",
                       ends="2026-07-01T10:30")
    calendar = parse(build(event).for_attendee("a@borough.example", "A"))
    vevent = only_vevent(calendar)

    assert vevent["DTSTART"].params["TZID"] == "America/New_York"
    assert vevent.start.utcoffset() == timedelta(hours=-4)
    assert [str(t["TZID"]) for t in calendar.walk("VTIMEZONE")] == ["America/New_York"]


def test_request_has_a_display_alarm_before_the_start() -> None:
    vevent = only_vevent(parse(build().for_attendee("a@borough.example", "A")))
    (alarm,) = vevent.walk("VALARM")

    assert str(alarm["ACTION"]) == "DISPLAY"
    assert alarm["TRIGGER"].dt == -timedelta(minutes=30)
    assert str(alarm["DESCRIPTION"])


def test_update_keeps_uid_and_bumps_sequence_and_dtstamp() -> None:
    first = only_vevent(parse(build().for_attendee("a@borough.example", "A")))
    later = STAMP + timedelta(days=3)
    moved = make_event(starts="2026-03-21T14:00", ends="2026-03-21T16:00")
    update = parse(build(moved, sequence=1, dtstamp=later).for_attendee("a@borough.example", "A"))
    second = only_vevent(update)

    assert str(update["METHOD"]) == "REQUEST"
    assert str(second["UID"]) == str(first["UID"]) == UID
    assert second["SEQUENCE"] == first["SEQUENCE"] + 1
    assert second["DTSTAMP"].dt == later > first["DTSTAMP"].dt
    assert second.start.replace(tzinfo=None) == datetime(2026, 3, 21, 14)


def test_cancel_has_method_status_and_next_sequence_and_no_alarm() -> None:
    cancelled = make_event(status="cancelled")
    stamp = STAMP + timedelta(days=5)
    calendar = build(cancelled, method="CANCEL", sequence=2, dtstamp=stamp)
    parsed = parse(calendar.for_attendee("a@borough.example", "A"))
    vevent = only_vevent(parsed)

    assert calendar.method == "CANCEL"
    assert str(parsed["METHOD"]) == "CANCEL"
    assert str(vevent["STATUS"]) == "CANCELLED"
    assert str(vevent["UID"]) == UID
    assert vevent["SEQUENCE"] == 2
    assert vevent["DTSTAMP"].dt == stamp
    assert vevent.walk("VALARM") == []
    assert len(attendees(vevent)) == 1


def test_no_url_without_an_online_link_and_link_as_location_when_only_online() -> None:
    offline = build(make_event(online_url=None)).for_attendee("a@b.example", "")
    online_only = build(make_event(location=None)).for_attendee("a@b.example", "")
    offline, online_only = only_vevent(parse(offline)), only_vevent(parse(online_only))

    assert "URL" not in offline
    assert str(offline["LOCATION"]) == "Town Hall, Room 3"
    assert str(online_only["URL"]) == "https://meet.example/j/123?pwd=a;b"
    assert str(online_only["LOCATION"]) == "https://meet.example/j/123?pwd=a;b"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event": make_event(status="cancelled")}, "send a CANCEL"),
        ({"dtstamp": datetime(2026, 2, 1)}, "aware"),
        ({"default_timezone": "Europe/Londres"}, "unknown time zone 'Europe/Londres'"),
        ({"method": "PUBLISH"}, "REQUEST or CANCEL"),
        ({"sequence": -1}, "0 or more"),
    ],
)
def test_build_refuses_bad_input_with_the_fix(changes: dict[str, Any], message: str) -> None:
    event = changes.pop("event", None)
    with pytest.raises(ValueError, match=message):
        build(event, **changes)


# --- the ATTENDEE line ----------------------------------------------------------------------


def test_exactly_one_attendee_with_rsvp_params() -> None:
    calendar = build()
    part = calendar.part_for("Siobhan@Borough.example", "Siobhán O'Connor")
    vevent = only_vevent(parse(part.ics))
    (attendee,) = attendees(vevent)

    assert isinstance(part, CalendarPart)
    assert part.method == "REQUEST"
    assert str(attendee) == "mailto:Siobhan@Borough.example"
    assert attendee.params["CN"] == "Siobhán O'Connor"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["RSVP"] == "TRUE"
    assert attendee.params["CUTYPE"] == "INDIVIDUAL"
    assert part.ics.count(b"\r\nATTENDEE") == 1


def test_attendees_differ_only_in_their_attendee_line() -> None:
    calendar = build()
    one = calendar.for_attendee("one@borough.example", "One")
    two = calendar.for_attendee("two@borough.example", "Two")

    strip_one = one.replace(attendee_line("one@borough.example", "One"), b"")
    strip_two = two.replace(attendee_line("two@borough.example", "Two"), b"")
    assert strip_one == strip_two == calendar.head + calendar.tail


def test_attendee_line_sits_among_the_event_properties_before_the_alarm() -> None:
    lines = unfold(build().for_attendee("a@borough.example", "A"))
    attendee = next(i for i, line in enumerate(lines) if line.startswith(b"ATTENDEE"))

    assert lines.index(b"BEGIN:VEVENT") < attendee < lines.index(b"BEGIN:VALARM")


def test_empty_name_gives_no_cn() -> None:
    (attendee,) = attendees(only_vevent(parse(build().for_attendee("a@borough.example", " "))))

    assert "CN" not in attendee.params


@pytest.mark.parametrize("address", ["", "a b@borough.example", "a@borough.example\r\nX:1"])
def test_unusable_attendee_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="not a usable attendee address"):
        build().for_attendee(address, "A")


def test_organiser_cannot_be_an_attendee() -> None:
    with pytest.raises(ValueError, match="Programme@comms.example organises this event"):
        build().for_attendee("Programme@comms.example", "Programme Office")


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_tricky_names_round_trip(name: str) -> None:
    ics = build().for_attendee("person@borough.example", name)
    (attendee,) = attendees(only_vevent(parse(ics)))

    assert attendee.params["CN"] == name
    if any(c in name for c in ",;:"):
        line = next(x for x in unfold(ics) if x.startswith(b"ATTENDEE"))
        assert line.startswith(b'ATTENDEE;CN="')


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_lines_are_crlf_folded_at_75_octets_and_unfold_to_the_original(name: str) -> None:
    address = "a.very.long.local.part.for.testing.folding@some-borough-council.example"
    ics = build().for_attendee(address, name)
    raw_lines = ics.split(b"\r\n")

    assert ics.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in ics.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw_lines)
    for line in raw_lines:
        line.decode("utf-8")  # no UTF-8 sequence split across a fold
    expected = attendee_line(address, name).replace(b"\r\n ", b"").rstrip(b"\r\n")
    assert expected in unfold(ics)
    assert expected.endswith(b":mailto:" + address.encode())


@given(st.text(min_size=0, max_size=300).filter(lambda s: "\r" not in s and "\n" not in s))
def test_fold_never_exceeds_75_octets_or_splits_characters(text: str) -> None:
    line = ("X-TEST:" + text).encode()
    folded = fold(line)
    pieces = folded[:-2].split(b"\r\n")

    assert folded.endswith(b"\r\n")
    assert all(len(piece) <= 75 for piece in pieces)
    assert all(piece.startswith(b" ") for piece in pieces[1:])
    assert [piece.decode() for piece in pieces]
    assert folded[:-2].replace(b"\r\n ", b"") == line


@given(st.text(min_size=1, max_size=120).filter(lambda s: s.strip() and "\r" not in s
                                                and "\n" not in s and "\x00" not in s))
def test_any_header_safe_name_round_trips(name: str) -> None:
    (attendee,) = attendees(only_vevent(parse(build().for_attendee("p@borough.example", name))))
    expected = "".join(" " if ord(c) < 32 and c != "\t" or c == "\x7f" else c for c in name)

    assert attendee.params["CN"] == expected


# --- identity and change detection ----------------------------------------------------------


def test_event_uid_is_stable_and_checked() -> None:
    assert event_uid("nmdi", "ws1", "Comms.Example") == "nmdi.ws1@comms.example"
    assert event_uid("nmdi", "ws1", "comms.example") == event_uid("nmdi", "ws1", "comms.example")
    with pytest.raises(ValueError, match="domain 'comms example' cannot go in a UID"):
        event_uid("nmdi", "ws1", "comms example")


@pytest.mark.parametrize(
    "change",
    [
        {"starts": "2026-03-20T11:00"},
        {"ends": "2026-03-20T13:00"},
        {"timezone": "Europe/Dublin"},
        {"location": "Library, Room 1"},
        {"online_url": "https://meet.example/j/456"},
        {"online_url": None},
        {"title": "Net-zero workshop (moved)"},
        {"status": "cancelled"},
    ],
)
def test_fingerprint_changes_with_what_attendees_must_know(change: dict[str, Any]) -> None:
    assert event_changed_fingerprint(make_event(**change)) != event_changed_fingerprint(
        make_event()
    )


@pytest.mark.parametrize(
    "change", [{"capacity": 80}, {"capacity": None}, {"description": "New notes"},
               {"reminder_minutes": 15}],
)
def test_fingerprint_ignores_what_attendees_need_not_be_told(change: dict[str, Any]) -> None:
    assert event_changed_fingerprint(make_event(**change)) == event_changed_fingerprint(
        make_event()
    )


def test_fingerprint_is_stable_across_instances() -> None:
    fingerprint = event_changed_fingerprint(make_event())
    assert fingerprint == event_changed_fingerprint(make_event())
    assert len(fingerprint) == 64


# --- replies --------------------------------------------------------------------------------

OUTLOOK_REPLY = """\
BEGIN:VCALENDAR
METHOD:REPLY
PRODID:Microsoft Exchange Server 2010
VERSION:2.0
BEGIN:VTIMEZONE
TZID:GMT Standard Time
BEGIN:STANDARD
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0000
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T010000
TZOFFSETFROM:+0000
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
ORGANIZER;CN="Programme Office, NMDI":mailto:programme@comms.example
ATTENDEE;PARTSTAT=ACCEPTED;CN="Siobhán O'Connor":MAILTO:Siobhan.OConnor@Borough
 .Example
COMMENT;LANGUAGE=en-GB:\\n
SUMMARY;LANGUAGE=en-GB:Accepted: Net-zero workshop: Camden\\; phase 2
DTSTART;TZID=GMT Standard Time:20260320T100000
DTEND;TZID=GMT Standard Time:20260320T120000
UID:nmdi.ws1@comms.example
CLASS:PUBLIC
PRIORITY:5
DTSTAMP:20260302T091500Z
TRANSP:OPAQUE
STATUS:CONFIRMED
SEQUENCE:1
LOCATION;LANGUAGE=en-GB:Town Hall\\, Room 3
X-MICROSOFT-CDO-APPT-SEQUENCE:1
X-MICROSOFT-CDO-OWNERAPPTID:2122862127
X-MICROSOFT-CDO-REPLYTIME:20260302T091500Z
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")

GMAIL_REPLY = """\
BEGIN:VCALENDAR
PRODID:-//Google Inc//Google Calendar 70.9054//EN
VERSION:2.0
CALSCALE:GREGORIAN
METHOD:REPLY
BEGIN:VEVENT
DTSTART:20260320T100000Z
DTEND:20260320T120000Z
DTSTAMP:20260303T120000Z
ORGANIZER;CN=Programme Office:mailto:programme@comms.example
UID:nmdi.ws1@comms.example
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=TENTATIVE;CN=Zoë
  Adébáyọ̀;X-NUM-GUESTS=0:mailto:zoe@partner.example
SEQUENCE:0
STATUS:CONFIRMED
SUMMARY:Net-zero workshop
TRANSP:OPAQUE
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_outlook_reply_is_parsed() -> None:
    reply = parse_reply(OUTLOOK_REPLY.encode())

    assert reply == Reply(
        uid=UID,
        attendee_email="siobhan.oconnor@borough.example",
        partstat="accepted",
        sequence=1,
        dtstamp=datetime(2026, 3, 2, 9, 15, tzinfo=UTC),
    )


def test_reply_from_str_and_declined() -> None:
    reply = parse_reply(OUTLOOK_REPLY.replace("PARTSTAT=ACCEPTED", "PARTSTAT=DECLINED"))

    assert reply is not None
    assert reply.partstat == "declined"


def test_outlook_style_email_with_calendar_alternative() -> None:
    msg = MIMEMultipart("alternative")
    msg["Subject"] = "Accepted: Net-zero workshop"
    msg.attach(MIMEText("Siobhán accepted.", "plain", "utf-8"))
    msg.attach(MIMEText("<p>Siobhán accepted.</p>", "html", "utf-8"))
    calendar = MIMEText(OUTLOOK_REPLY, "calendar", "utf-8")
    calendar.set_param("method", "REPLY")
    msg.attach(calendar)
    parsed = email.message_from_bytes(msg.as_bytes())

    (reply,) = replies_in_message(parsed)
    assert reply.partstat == "accepted"
    assert reply.attendee_email == "siobhan.oconnor@borough.example"


def gmail_message(ics: str) -> bytes:
    encoded = base64.encodebytes(ics.encode()).decode()
    return f"""\
From: =?UTF-8?Q?Zo=C3=AB?= <zoe@partner.example>
To: programme@comms.example
Subject: Tentatively accepted: Net-zero workshop
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="000000000000outer"

--000000000000outer
Content-Type: multipart/alternative; boundary="000000000000inner"

--000000000000inner
Content-Type: text/plain; charset="UTF-8"

Zoë has tentatively accepted this invitation.
--000000000000inner
Content-Type: text/calendar; charset="UTF-8"; method=REPLY
Content-Transfer-Encoding: base64

{encoded}
--000000000000inner--
--000000000000outer
Content-Type: application/ics; name="invite.ics"
Content-Disposition: attachment; filename="invite.ics"
Content-Transfer-Encoding: base64

{encoded}
--000000000000outer--
""".replace("\n", "\r\n").encode()


def test_gmail_style_email_base64_part_and_attachment_deduplicated() -> None:
    msg = email.message_from_bytes(gmail_message(GMAIL_REPLY))

    assert replies_in_message(msg) == [
        Reply(
            uid=UID,
            attendee_email="zoe@partner.example",
            partstat="tentative",
            sequence=0,
            dtstamp=datetime(2026, 3, 3, 12, tzinfo=UTC),
        )
    ]


def test_octet_stream_ics_attachment_is_read() -> None:
    msg = MIMEMultipart("mixed")
    msg.attach(MIMEText("see attached", "plain"))
    attachment = MIMEText(OUTLOOK_REPLY, "octet-stream", "utf-8")
    attachment.replace_header("Content-Type", "application/octet-stream")
    attachment.add_header("Content-Disposition", "attachment", filename="reply.ics")
    msg.attach(attachment)

    (reply,) = replies_in_message(email.message_from_bytes(msg.as_bytes()))
    assert reply.partstat == "accepted"


def test_message_without_calendar_has_no_replies() -> None:
    assert replies_in_message(MIMEText("Thanks, see you there", "plain")) == []


def test_message_with_only_a_broken_calendar_raises() -> None:
    msg = MIMEText("BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n", "calendar")
    with pytest.raises(ValueError):
        replies_in_message(msg)


def test_other_methods_are_not_replies() -> None:
    request = build().for_attendee("a@borough.example", "A")
    assert parse_reply(request) is None
    assert parse_reply(OUTLOOK_REPLY.replace("METHOD:REPLY", "METHOD:COUNTER")) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not iCalendar data"),
        (b"hello, I'll be there", "not iCalendar data"),
        (b"\xff\xfe\x00garbage", "not iCalendar data"),
        (b"BEGIN:VCALENDAR\r\nMETHOD:REPLY\r\n", "unreadable iCalendar data"),
        (OUTLOOK_REPLY.replace("UID:nmdi.ws1@comms.example\r\n", ""), "no UID"),
        (OUTLOOK_REPLY.replace("PARTSTAT=ACCEPTED", "PARTSTAT=NEEDS-ACTION"), "PARTSTAT"),
        (GMAIL_REPLY.replace("ATTENDEE;", "X-ATTENDEE;"), "no ATTENDEE"),
        ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REPLY\r\nEND:VCALENDAR\r\n", "no VEVENT"),
    ],
)
def test_garbage_raises_a_clear_value_error(data: bytes | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_reply(data)

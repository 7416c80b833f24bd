"""iCalendar invitations: REQUEST/CANCEL built once per event, personalised per attendee; REPLYs.

The VCALENDAR for one (event, method, sequence) is built and serialised once with icalendar;
each recipient's copy is those bytes with one ATTENDEE content line spliced in, which costs
microseconds instead of the milliseconds of a full build.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._types import email_key
from .campaign import Event
from .transports.base import CalendarPart

Method = Literal["REQUEST", "CANCEL"]

FOLD_LIMIT = 75
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LENIENT_ESCAPE = re.compile(r"\\(?=[\\,;:])")  # a backslash a lenient parser would unescape


# --- building -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EventCalendar:
    """One serialised VCALENDAR, split where each recipient's ATTENDEE line goes."""

    method: Method
    uid: str
    sequence: int
    organiser: str
    head: bytes
    tail: bytes

    def for_attendee(self, email: str, name: str) -> bytes:
        """The calendar with exactly one ATTENDEE: this recipient, asked to reply."""
        if email_key(email) == self.organiser:
            raise ValueError(
                f"{email} organises this event: Outlook shows no Accept/Decline to the organiser"
            )
        return b"".join((self.head, attendee_line(email, name), self.tail))

    def part_for(self, email: str, name: str) -> CalendarPart:
        return CalendarPart(method=self.method, ics=self.for_attendee(email, name))


def build_calendar(
    event: Event,
    *,
    method: Method,
    sequence: int,
    uid: str,
    dtstamp: datetime,
    default_timezone: str,
    prodid: str = "-//comms//EN",
    whole_event: bool = True,
) -> EventCalendar:
    """Build the REQUEST or CANCEL calendar of one event at one SEQUENCE (once per send step).

    A CANCEL of ``whole_event`` says STATUS:CANCELLED; otherwise it removes only its attendee
    (RFC 5546 §3.2.5: the event itself stays confirmed)."""
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"method must be REQUEST or CANCEL, not {method!r}")
    if method == "REQUEST" and event.status == "cancelled":
        raise ValueError(f"event '{event.id}' is cancelled: send a CANCEL, not a REQUEST")
    if sequence < 0:
        raise ValueError(f"sequence must be 0 or more, not {sequence}")
    if dtstamp.tzinfo is None:
        raise ValueError("dtstamp must be an aware datetime (UTC)")
    # icalendar is imported by the first invitation, not by every command (40 ms)
    from icalendar import Alarm, Calendar, vCalAddress
    from icalendar import Event as VEvent
    from icalendar.enums import STATUS

    from .vtimezone import vtimezone

    zone = _zone(event.timezone or default_timezone, event.id)
    start, end = _localise(event.starts, zone), _localise(event.ends, zone)

    calendar = Calendar.new(method=method, prodid=prodid)
    del calendar["UID"]
    vevent = VEvent.new(
        uid=uid,
        stamp=dtstamp.astimezone(UTC),
        sequence=sequence,
        start=start,
        end=end,
        summary=event.title,
        location=_location(event),
        url=str(event.online_url) if event.online_url else None,
        description=_description(event),
        status=STATUS.CANCELLED if method == "CANCEL" and whole_event else STATUS.CONFIRMED,
        organizer=vCalAddress.new(event.organiser.email, cn=event.organiser.name or None),
    )
    if method == "REQUEST":
        vevent.add_component(
            Alarm.new_display(event.title, -timedelta(minutes=event.reminder_minutes))
        )
    calendar.add_component(vevent)
    if zone.key in calendar.get_missing_tzids():  # not for UTC, which is written with Z
        # Right for the whole year(s) of the event, so every event of a year shares one build.
        first, last = date(start.year, 1, 1), date(end.year, 12, 31)
        calendar.subcomponents.insert(0, vtimezone(zone.key, first, last))
    head, tail = _split_for_attendee(calendar.to_ical())
    return EventCalendar(
        method=method,
        uid=uid,
        sequence=sequence,
        organiser=email_key(event.organiser.email),
        head=head,
        tail=tail,
    )


def _zone(name: str, event_id: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"event '{event_id}': unknown time zone {name!r} (use an IANA name like Europe/London)"
        ) from None


def _localise(moment: datetime, zone: ZoneInfo) -> datetime:
    """Naive times are local to the event's zone; aware ones are converted to it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone)
    return moment.astimezone(zone)


def _location(event: Event) -> str | None:
    if event.location:
        return event.location
    return str(event.online_url) if event.online_url else None


def _description(event: Event) -> str:
    text = (event.description or "").strip()
    if event.online_url and str(event.online_url) not in text:
        link = f"Join online: {event.online_url}"
        text = f"{text}\n\n{link}" if text else link
    return text or event.title


def _split_for_attendee(ics: bytes) -> tuple[bytes, bytes]:
    """Split at the end of the VEVENT's properties (before its VALARM, or before END:VEVENT)."""
    start = ics.index(b"\r\nBEGIN:VEVENT\r\n")
    end = ics.index(b"\r\nEND:VEVENT\r\n", start)
    alarm = ics.find(b"\r\nBEGIN:VALARM\r\n", start, end)
    cut = (alarm if alarm != -1 else end) + 2
    return ics[:cut], ics[cut:]


# --- the ATTENDEE line ----------------------------------------------------------------------


def attendee_line(email: str, name: str) -> bytes:
    """One folded, CRLF-terminated ATTENDEE content line asking this recipient to RSVP."""
    address = email.strip()
    if address[:7].lower() == "mailto:":
        address = address[7:]
    if not address or _CONTROL.search(address) or any(c in address for c in ' "<>'):
        raise ValueError(f"not a usable attendee address: {email!r}")
    params = "CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE"
    cn = f";CN={_param_value(name)}" if name.strip() else ""
    return fold(f"ATTENDEE{cn};{params}:mailto:{address}".encode())


def _param_value(value: str) -> str:
    """RFC 6868 escapes (^ " newline), no control characters, always in double quotes.

    Quoting is required when the value holds ``,`` ``;`` or ``:`` and harmless otherwise. RFC
    5545 has no backslash escapes in parameter values, but lenient parsers (Python's icalendar
    among them) read ``\\,`` ``\\;`` ``\\:`` ``\\`` there as escapes; a backslash before one of
    those is doubled, so every parser reads the name as written.
    """
    value = _LENIENT_ESCAPE.sub(r"\\\\", value)
    value = value.replace("^", "^^").replace('"', "^'")
    value = _CONTROL.sub(" ", value.replace("\r\n", "^n").replace("\n", "^n").replace("\r", "^n"))
    return f'"{value}"'


def fold(line: bytes, limit: int = FOLD_LIMIT) -> bytes:
    """Fold one content line at ``limit`` octets (RFC 5545 3.1), never inside a UTF-8 sequence.

    Continuation lines start with one space, so they carry ``limit - 1`` octets of content.
    """
    if len(line) <= limit:
        return line + b"\r\n"
    pieces = []
    start, width = 0, limit
    while len(line) - start > width:
        cut = start + width
        while line[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: step back to its lead byte
            cut -= 1
        if line[cut - 1] == 0x5E and cut - 1 > start:  # keep an RFC 6868 ^x escape together
            cut -= 1
        pieces.append(line[start:cut])
        start, width = cut, limit - 1
    pieces.append(line[start:])
    return b"\r\n ".join(pieces) + b"\r\n"


# --- identity and change detection ----------------------------------------------------------


def event_uid(campaign_id: str, event_id: str, domain: str) -> str:
    """The stable UID of an event's invitations: ``<campaign>.<event>@<domain>``."""
    parts = {"campaign_id": campaign_id, "event_id": event_id, "domain": domain}
    for label, value in parts.items():
        if not value or not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError(f"{label} {value!r} cannot go in a UID (letters, digits, . _ - only)")
    return f"{campaign_id}.{event_id}@{domain.lower()}"


def event_changed_fingerprint(event: Event) -> str:
    """A stable hash of what attendees must be told about when it changes (then SEQUENCE + 1).

    Covers start, end, time zone, location, online link, title and status; not capacity,
    description, reminder or organiser.
    """
    fields = [
        "v1",
        event.starts.isoformat(),
        event.ends.isoformat(),
        event.timezone or "",
        event.location or "",
        str(event.online_url) if event.online_url else "",
        event.title,
        event.status,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

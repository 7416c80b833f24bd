"""What attendees' calendars mail back, read from a message: METHOD:REPLY answers, METHOD:COUNTER
proposals of another time (Outlook's "propose new time"), and what cannot be read (Outlook's
TNEF-only ``winmail.dat``, broken calendar data) so that nothing is dropped in silence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import Message
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from icalendar import Calendar, Component, vCalAddress

from .._types import email_key

PartStat = Literal["accepted", "declined", "tentative"]
_PARTSTATS: dict[str, PartStat] = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}
_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar")
_TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")
MAX_COMPONENTS = 50  # calendar components in one message: a reply holds one or two


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An attendee's answer to an invitation (a METHOD:REPLY)."""

    uid: str
    attendee_email: str
    partstat: PartStat
    sequence: int
    dtstamp: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """An attendee proposing another time (a METHOD:COUNTER): the organiser decides."""

    uid: str
    attendee_email: str
    starts: datetime | None
    ends: datetime | None
    comment: str
    sequence: int
    dtstamp: datetime


@dataclass(slots=True)
class Found:
    """Everything calendar-like in one message."""

    replies: list[Reply]
    proposals: list[Proposal]
    not_understood: list[str]  # why a calendar part, or a TNEF-only reply, could not be read


def parse_reply(data: bytes | str) -> Reply | None:
    """Parse the .ics text of a METHOD:REPLY; None for other methods; ValueError for garbage."""
    answer = parse_answer(data)
    return answer if isinstance(answer, Reply) else None


def parse_answer(data: bytes | str) -> Reply | Proposal | None:
    """A METHOD:REPLY or METHOD:COUNTER; None for other methods; ValueError for garbage."""
    calendar = _parse_calendar(data)
    method = str(calendar.get("METHOD", "")).strip().upper()
    if method not in ("REPLY", "COUNTER"):
        return None
    events = calendar.walk("VEVENT")
    if not events:
        raise ValueError(f"iCalendar {method} has no VEVENT")
    vevent = events[0]
    uid = str(vevent.get("UID", "")).strip()
    if not uid:
        raise ValueError(f"iCalendar {method} has no UID")
    if method == "COUNTER":
        attendee = _one_attendee(vevent)
        return Proposal(uid=uid, attendee_email=_address(str(attendee)),
                        starts=_moment(vevent, "DTSTART"), ends=_moment(vevent, "DTEND"),
                        comment=str(vevent.get("COMMENT", "") or "").strip()[:2000],
                        sequence=_sequence(vevent, uid), dtstamp=_dtstamp(vevent, uid))
    attendee = _one_attendee(vevent)
    partstat = str(attendee.params.get("PARTSTAT", "")).upper()
    if partstat not in _PARTSTATS:
        raise ValueError(
            f"iCalendar REPLY for {uid}: PARTSTAT {partstat or '(none)'!r} is not "
            "ACCEPTED, DECLINED or TENTATIVE"
        )
    return Reply(
        uid=uid,
        attendee_email=_address(str(attendee)),
        partstat=_PARTSTATS[partstat],
        sequence=_sequence(vevent, uid),
        dtstamp=_dtstamp(vevent, uid),
    )


def replies_in_message(msg: Message) -> list[Reply]:
    """Every distinct REPLY in an email: text/calendar parts and .ics attachments, in order.

    Parts that are not REPLYs are ignored. Unparseable calendar parts are skipped when another
    part of the message carried a reply; when none did, the first error is raised.
    """
    found = read_message(msg)
    if not found.replies and found.not_understood:
        raise ValueError(found.not_understood[0])
    return found.replies


def read_message(msg: Message) -> Found:
    """The replies and proposals in an email (each once, in order), and what could not be read:
    a calendar part that does not parse, when no other part of the message answered, or an
    Outlook reply that came only as TNEF (``winmail.dat``)."""
    found = Found([], [], [])
    errors: list[str] = []
    tnef = False
    parts = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        if _is_tnef(part):
            tnef = True
            continue
        if not _is_calendar_part(part):
            continue
        parts += 1
        if parts > MAX_COMPONENTS:
            errors.append(f"more than {MAX_COMPONENTS} calendar parts in one message")
            break
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            answer = parse_answer(payload)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if isinstance(answer, Reply) and answer not in found.replies:
            found.replies.append(answer)
        elif isinstance(answer, Proposal) and answer not in found.proposals:
            found.proposals.append(answer)
    if not found.replies and not found.proposals:
        found.not_understood += errors
        if tnef:
            found.not_understood.append("an Outlook reply sent only as TNEF (winmail.dat), "
                                        "which holds no readable calendar answer")
    return found


def _is_tnef(part: Message) -> bool:
    return (part.get_content_type() in _TNEF_TYPES
            or (part.get_filename() or "").lower() == "winmail.dat")


def _is_calendar_part(part: Message) -> bool:
    if part.get_content_type() in _CALENDAR_TYPES:
        return True
    filename = part.get_filename() or ""
    return filename.lower().endswith((".ics", ".ical", ".ifb", ".icalendar"))


def _parse_calendar(data: bytes | str) -> Calendar:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if "BEGIN:VCALENDAR" not in text.upper():
        raise ValueError("not iCalendar data (no BEGIN:VCALENDAR)")
    if text.upper().count("BEGIN:") > MAX_COMPONENTS * 4:
        raise ValueError(f"iCalendar data with more than {MAX_COMPONENTS * 4} components")
    from icalendar import Calendar  # loaded by the first reply read, not by every command

    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as exc:
        raise ValueError(f"unreadable iCalendar data: {exc}") from None
    for calendar in calendars:
        if isinstance(calendar, Calendar):
            return calendar
    raise ValueError("unreadable iCalendar data: no complete VCALENDAR (BEGIN to END)")


def _one_attendee(vevent: Component) -> vCalAddress:
    attendees = vevent.get("ATTENDEE")
    if attendees is None:
        raise ValueError("iCalendar REPLY has no ATTENDEE")
    if not isinstance(attendees, list):
        return attendees
    answered = [a for a in attendees if str(a.params.get("PARTSTAT", "")).upper() in _PARTSTATS]
    return (answered or attendees)[0]


def _address(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "mailto:":
        value = value[7:]
    return email_key(value)


def _sequence(vevent: Component, uid: str) -> int:
    try:
        return int(vevent.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        raise ValueError(f"iCalendar REPLY for {uid}: SEQUENCE is not a number") from None


def _moment(vevent: Component, name: str) -> datetime | None:
    value = getattr(vevent.get(name), "dt", None)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None


def _dtstamp(vevent: Component, uid: str) -> datetime:
    prop = vevent.get("DTSTAMP")
    stamp = getattr(prop, "dt", None)
    if not isinstance(stamp, datetime):
        if isinstance(stamp, date):
            return datetime(stamp.year, stamp.month, stamp.day, tzinfo=UTC)
        raise ValueError(f"iCalendar REPLY for {uid} has no DTSTAMP")
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)

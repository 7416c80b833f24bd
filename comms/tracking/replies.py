"""Calendar replies: the METHOD:REPLY an attendee's client mails back, read from a message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import Message
from typing import Literal

from icalendar import Calendar, Component, vCalAddress

from .._types import email_key

PartStat = Literal["accepted", "declined", "tentative"]
_PARTSTATS: dict[str, PartStat] = {
    "ACCEPTED": "accepted",
    "DECLINED": "declined",
    "TENTATIVE": "tentative",
}
_CALENDAR_TYPES = ("text/calendar", "application/ics", "text/x-vcalendar")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An attendee's answer to an invitation (a METHOD:REPLY)."""

    uid: str
    attendee_email: str
    partstat: PartStat
    sequence: int
    dtstamp: datetime


def parse_reply(data: bytes | str) -> Reply | None:
    """Parse the .ics text of a METHOD:REPLY; None for other methods; ValueError for garbage."""
    calendar = _parse_calendar(data)
    method = str(calendar.get("METHOD", "")).strip().upper()
    if method != "REPLY":
        return None
    events = calendar.walk("VEVENT")
    if not events:
        raise ValueError("iCalendar REPLY has no VEVENT")
    vevent = events[0]
    uid = str(vevent.get("UID", "")).strip()
    if not uid:
        raise ValueError("iCalendar REPLY has no UID")
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
    replies: list[Reply] = []
    first_error: ValueError | None = None
    for part in msg.walk():
        if part.is_multipart() or not _is_calendar_part(part):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            reply = parse_reply(payload)
        except ValueError as exc:
            first_error = first_error or exc
            continue
        if reply is not None and reply not in replies:
            replies.append(reply)
    if not replies and first_error is not None:
        raise first_error
    return replies


def _is_calendar_part(part: Message) -> bool:
    if part.get_content_type() in _CALENDAR_TYPES:
        return True
    filename = part.get_filename() or ""
    return filename.lower().endswith((".ics", ".ical", ".ifb", ".icalendar"))


def _parse_calendar(data: bytes | str) -> Calendar:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if "BEGIN:VCALENDAR" not in text.upper():
        raise ValueError("not iCalendar data (no BEGIN:VCALENDAR)")
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
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

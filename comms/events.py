"""Events in the store: UID and SEQUENCE kept across changes of the YAML, seats, roster, attendance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, and_, func, insert, select, update

from ._types import email_key
from .campaign import Campaign, Event, Step
from .errors import ConfigError, ConfigErrors, NotFound
from .invite import event_changed_fingerprint, event_uid
from .store import tables
from .store.sends import any_sent
from .store.upsert import insert_ignore


@dataclass(frozen=True, slots=True)
class EventState:
    """What attendees' calendars hold: the UID, the SEQUENCE of the last change, the status."""

    uid: str
    sequence: int
    status: str
    changed: bool  # this sync raised the sequence (an update or cancellation is due)


def sync_event(conn: Connection, campaign: Campaign, event: Event, *, timezone: str,
               now: datetime, cancel: bool = False) -> EventState:
    """Record the event; a change of time, place, link, title or status raises SEQUENCE.

    An event is cancelled by ``status: cancelled`` in its file, by ``cancel`` (a cancel step
    being sent), or for good once any of its cancel steps has been sent."""
    e = tables.events
    cancel_steps = [s.id for s in campaign.steps if s.kind == "cancel" and s.event == event.id]
    cancelled = (cancel or event.status == "cancelled"
                 or bool(cancel_steps and any_sent(conn, campaign.id, cancel_steps)))
    status = "cancelled" if cancelled else "confirmed"
    fingerprint = event_changed_fingerprint(event.model_copy(update={"status": status}))
    zone = ZoneInfo(event.timezone or timezone)
    values = {"capacity": event.capacity, "starts_at": event.starts.replace(tzinfo=zone),
              "ends_at": event.ends.replace(tzinfo=zone), "updated_at": now}
    row = conn.execute(select(e.c.uid, e.c.sequence, e.c.fingerprint, e.c.status).where(
        e.c.campaign == campaign.id, e.c.event == event.id).with_for_update()).first()
    if row is None:
        uid = event_uid(campaign.id, event.id, event.organiser.email.rpartition("@")[2])
        conn.execute(insert(e).values(campaign=campaign.id, event=event.id, uid=uid, sequence=0,
                                      fingerprint=fingerprint, status=status, **values))
        return EventState(uid, 0, status, changed=False)
    changed = row.fingerprint != fingerprint
    sequence = row.sequence + 1 if changed else row.sequence
    conn.execute(update(e).where(e.c.campaign == campaign.id, e.c.event == event.id).values(
        sequence=sequence, fingerprint=fingerprint, status=status, **values))
    return EventState(row.uid, sequence, status, changed)


def seats_left(conn: Connection, campaign: str, event: Event) -> int | None:
    if event.capacity is None:
        return None
    r = tables.rsvps
    taken = conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event.id, r.c.status == "accepted")).scalar() or 0
    return max(0, event.capacity - taken)


def find_event(campaigns: dict[str, Campaign], name: str) -> tuple[Campaign, Event]:
    """An event by ``EVENT`` or ``CAMPAIGN/EVENT``; ambiguous or unknown names are refused."""
    campaign_id, _, event_id = name.rpartition("/")
    found = [(c, e) for c in campaigns.values() for e in c.events
             if e.id == event_id and (not campaign_id or c.id == campaign_id)]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(f"{c.id}/{e.id}" for c in campaigns.values() for e in c.events)
        raise NotFound(f"unknown event '{name}' (events are: {known or 'none'})")
    raise NotFound(f"event '{name}' is in several campaigns: name it as CAMPAIGN/{event_id}")


def roster(conn: Connection, campaign: Campaign, event: Event) -> list[dict[str, Any]]:
    """Everyone invited to (or answering for) the event, with their answer, its source and time."""
    s, st, r, a = tables.sends, tables.stakeholders, tables.rsvps, tables.attendance
    invite_steps = [step.id for step in campaign.steps
                    if step.kind == "invite" and step.event == event.id]
    invited = select(s.c.stakeholder_id).where(
        s.c.campaign == campaign.id, s.c.step.in_(invite_steps or [""]), s.c.status == "sent")
    answered = select(r.c.stakeholder_id).where(r.c.campaign == campaign.id, r.c.event == event.id)
    where_rsvp = and_(r.c.stakeholder_id == st.c.id, r.c.campaign == campaign.id,
                      r.c.event == event.id)
    where_att = and_(a.c.stakeholder_id == st.c.id, a.c.campaign == campaign.id,
                     a.c.event == event.id)
    rows = conn.execute(
        select(st.c.display_email, st.c.first_name, st.c.last_name, st.c.organisation,
               st.c.borough, r.c.status, r.c.source, r.c.answered_at, a.c.recorded_at)
        .outerjoin(r, where_rsvp).outerjoin(a, where_att)
        .where(st.c.id.in_(invited.union(answered)))
        .order_by(st.c.last_name, st.c.first_name)).all()
    return [{"email": row.display_email, "name": f"{row.first_name} {row.last_name}".strip(),
             "organisation": row.organisation, "borough": row.borough,
             "status": row.status or "no response", "source": row.source,
             "answered_at": row.answered_at, "attended": row.recorded_at is not None}
            for row in rows]


@dataclass(frozen=True, slots=True)
class AttendanceImport:
    recorded: int
    unknown: list[str]


def import_attendance(conn: Connection, campaign: Campaign, event: Event, sheet: Path, *,
                      now: datetime) -> AttendanceImport:
    """A sign-in sheet (CSV with an ``email`` column) marks people as having attended."""
    emails = _sheet_emails(sheet)
    st = tables.stakeholders
    ids = dict(conn.execute(select(st.c.email, st.c.id).where(
        st.c.email.in_([email_key(e) for e in emails]))).all())
    rows = [{"campaign": campaign.id, "event": event.id, "stakeholder_id": ids[email_key(e)],
             "recorded_at": now, "source": sheet.name} for e in emails if email_key(e) in ids]
    insert_ignore(conn, tables.attendance, rows, ["campaign", "event", "stakeholder_id"])
    return AttendanceImport(len(rows), [e for e in emails if email_key(e) not in ids])


def _sheet_emails(sheet: Path) -> list[str]:
    import csv
    import io

    from email_validator import EmailNotValidError, validate_email

    try:
        text = sheet.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read sign-in sheet: {exc}", path=sheet) from None
    first = text.split("\n", 1)[0]
    reader = csv.DictReader(io.StringIO(text), delimiter=max((";", ",", "\t"), key=first.count))
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    if "email" not in columns:
        raise ConfigError("the sign-in sheet needs an 'email' column", path=sheet, line=1)
    emails, problems = [], []
    for row in reader:
        value = (row.get(columns["email"]) or "").strip()
        if not value:
            continue
        try:
            emails.append(validate_email(value, check_deliverability=False).normalized)
        except EmailNotValidError as exc:
            problems.append(ConfigError(f"invalid email address {value!r}: {exc}", path=sheet,
                                        line=reader.line_num))
    if problems:
        raise ConfigErrors(problems)
    return emails


def calendar_steps(campaign: Campaign, event: Event) -> list[str]:
    """Every step id whose sends put this event in someone's calendar."""
    ids = [s.id for s in campaign.steps if s.kind == "invite" and s.event == event.id]
    return ids + [change_step(event, cancelled=False).id]


def not_organiser(event: Event) -> ColumnElement[bool]:
    """Organisers are never sent their own invitation (Outlook breaks on it)."""
    return tables.stakeholders.c.email != email_key(event.organiser.email)


def invited_not_declined(campaign: Campaign, event: Event, *,
                         below: int | None = None) -> ColumnElement[bool]:
    """People who were sent an invitation and have not declined; with ``below``, only those whose
    calendar holds a SEQUENCE lower than that."""
    st, s, r = tables.stakeholders, tables.sends, tables.rsvps
    steps = calendar_steps(campaign, event)
    sent = select(s.c.id).where(s.c.campaign == campaign.id, s.c.step.in_(steps),
                                s.c.stakeholder_id == st.c.id, s.c.status == "sent")
    declined = select(r.c.id).where(r.c.campaign == campaign.id, r.c.event == event.id,
                                    r.c.stakeholder_id == st.c.id, r.c.status == "declined")
    conds = [sent.exists(), ~declined.exists()]
    if below is not None:
        conds.append(~sent.where(s.c.sequence >= below).exists())
    return and_(*conds)


def change_step(event: Event, *, cancelled: bool) -> Step:
    """The built-in step that tells attendees of a change (templates/comms/event-*.html.j2)."""
    if cancelled:
        return Step.model_construct(
            id=f"{event.id}:cancelled", kind="cancel", event=event.id, now=True,
            template="comms/event-cancelled", subject="Cancelled: {{ event.title }}")
    return Step.model_construct(
        id=f"{event.id}:update", kind="invite", event=event.id, now=True,
        template="comms/event-update", subject="Updated: {{ event.title }}")


NOTICES = {"waitlisted": "You are on the waiting list: {{ event.title }}",
           "promoted": "A place is yours: {{ event.title }}"}


def notice_step(event: Event, kind: str) -> Step:
    """The built-in step telling someone what their RSVP did (templates/comms/rsvp-*.html.j2)."""
    return Step.model_construct(id=f"{event.id}:{kind}", kind="email", event=event.id, now=True,
                                template=f"comms/rsvp-{kind}", subject=NOTICES[kind])


def step_for(campaign: Campaign, step_id: str) -> Step | None:
    """A step of the campaign by id, built-in ones (``ws1:update``, ``ws1:waitlisted``) too."""
    found = campaign.step(step_id)
    if found is not None or ":" not in step_id:
        return found
    event_id, _, kind = step_id.partition(":")
    event = campaign.event(event_id)
    if event is None:
        return None
    if kind in ("update", "cancelled"):
        return change_step(event, cancelled=kind == "cancelled")
    return notice_step(event, kind) if kind in NOTICES else None

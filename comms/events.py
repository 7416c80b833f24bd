"""Events: the calendar a step carries, the built-in change and notice steps, roster, attendance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._types import email_key
from .campaign import Campaign, Event, Step
from .errors import CommsError, ConfigError, ConfigErrors, NotFound, suggestion
from .invite import Method
from .store import attendance, feedback, rsvps, sends
from .store.events import EventState

if TYPE_CHECKING:
    from .store import Store


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """Which calendar an invitation step carries: the event's UID and SEQUENCE, and the method."""

    uid: str
    sequence: int
    method: Method
    whole_event: bool = True  # False: a CANCEL of one person's copy only


def calendar_spec(state: EventState, step: Step) -> CalendarSpec | None:
    """The calendar a step of ``kind: invite`` or ``cancel`` carries in this state (None for
    other steps): a REQUEST, or a CANCEL (of the event, or of one person's copy for the
    waitlisted notice). A REQUEST for a cancelled event is :class:`EventCancelled`."""
    if step.kind not in ("invite", "cancel"):
        return None
    cancelled = state.status == "cancelled"
    if step.kind == "invite" and cancelled:
        raise EventCancelled("the event is cancelled: no invitations are sent")
    method: Method = "CANCEL" if cancelled or step.kind == "cancel" else "REQUEST"
    return CalendarSpec(state.uid, state.sequence, method,
                        whole_event=cancelled or cancels_event(step))


def cancels_event(step: Step) -> bool:
    """Whether sending the step cancels the event for everyone (a cancel step, the built-in
    cancellation), not only one person's copy (the waitlisted notice)."""
    return step.kind == "cancel" and not step.id.endswith(":waitlisted")


class EventCancelled(CommsError):
    """An invitation to, or an answer for, an event that has been cancelled."""


def find_event(campaigns: dict[str, Campaign], name: str) -> tuple[Campaign, Event]:
    """An event by ``EVENT`` or ``CAMPAIGN/EVENT``; ambiguous or unknown names are refused."""
    campaign_id, _, event_id = name.rpartition("/")
    found = [(c, e) for c in campaigns.values() for e in c.events
             if e.id == event_id and (not campaign_id or c.id == campaign_id)]
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(f"{c.id}/{e.id}" for c in campaigns.values() for e in c.events)
        raise NotFound(f"unknown event '{name}' (events are: {known or 'none'})"
                       + suggestion(event_id, [e.id for c in campaigns.values() for e in c.events]))
    raise NotFound(f"event '{name}' is in several campaigns: name it as CAMPAIGN/{event_id}")


def roster(store: Store, campaign: Campaign, event: Event) -> list[dict[str, Any]]:
    """Everyone invited to (or answering for) the event, with their answer, its source and time."""
    with store.read() as conn:
        return rsvps.roster(conn, campaign.id, event.id, calendar_steps(campaign, event))


@dataclass(frozen=True, slots=True)
class AttendanceImport:
    recorded: int
    unknown: list[str]


def import_attendance(store: Store, campaign: Campaign, event: Event, sheet: Path, *,
                      now: datetime) -> AttendanceImport:
    """A sign-in sheet (CSV with an ``email`` column) marks people as having attended."""
    emails = _sheet_emails(sheet)
    keys = {email_key(e): e for e in emails}
    with store.write() as conn:
        unknown = attendance.record(conn, campaign.id, event.id, list(keys), source=sheet.name,
                                    now=now)
    return AttendanceImport(len(keys) - len(unknown), [keys[k] for k in unknown])


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


def calendar_steps(campaign: Campaign, event: Event) -> tuple[str, ...]:
    """Every step whose sends put this event in someone's calendar: its invitations and the
    built-in update step."""
    ids = [s.id for s in campaign.steps if s.kind == "invite" and s.event == event.id]
    return (*ids, change_step(event, cancelled=False).id)


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
#: What a notice does to the person's calendar: off it while waiting, back on with a seat.
_NOTICE_KINDS = {"waitlisted": "cancel", "promoted": "invite"}


def notice_step(event: Event, kind: str) -> Step:
    """The built-in step telling someone what their RSVP did (templates/comms/rsvp-*.html.j2),
    with a calendar part so that their calendar shows what is true: a CANCEL of their copy
    while they wait, a fresh REQUEST once a seat is theirs."""
    return Step.model_construct(id=f"{event.id}:{kind}", kind=_NOTICE_KINDS[kind],
                                event=event.id, now=True, template=f"comms/rsvp-{kind}",
                                subject=NOTICES[kind])


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


def feedback_summary(store: Store, campaign: Campaign, event: Event, *,
                     by: str = "borough") -> dict[str, Any]:
    """The ratings of an event (``comms events feedback``): the rate is over the people sent a
    feedback step of it."""
    asking = [s.id for s in campaign.steps if s.kind == "feedback" and s.event == event.id]
    with store.read() as conn:
        asked = sends.people_sent(conn, campaign.id, asking)
        return feedback.summary(conn, campaign.id, event.id, asked=asked, by=by)

"""RSVPs: one answer per person and event, seats up to capacity, a waitlist promoted in order."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection, func, insert, select, update

from .. import events
from .._types import email_key
from ..campaign import Campaign, Event
from ..errors import CommsError
from ..invite import Reply
from ..store import tables
from .responses import Kind
from .tokens import InvalidToken

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)

Answer = Literal["accepted", "declined", "tentative"]
Source = Literal["link", "calendar", "manual"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an answer did: the person's status now, and who was promoted from the waitlist."""

    status: str
    previous: str | None
    promoted: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status != self.previous


def record_answer(conn: Connection, *, campaign: str, event: str, stakeholder_id: int,
                  answer: Answer, source: Source, now: datetime,
                  send_id: int | None = None) -> Outcome:
    """Record an answer in the caller's write transaction (the event row is locked first, so
    concurrent accepts queue up and never overfill the event)."""
    e, r = tables.events, tables.rsvps
    capacity = conn.execute(select(e.c.capacity).where(e.c.campaign == campaign, e.c.event == event)
                            .with_for_update()).scalar()
    current = conn.execute(select(r.c.status, r.c.queued_at).where(
        r.c.campaign == campaign, r.c.event == event, r.c.stakeholder_id == stakeholder_id)).first()
    previous = current.status if current else None
    status: str = answer
    queued_at = None
    if answer == "accepted":
        if previous == "accepted":
            status = "accepted"
        elif capacity is not None and _accepted(conn, campaign, event) >= capacity:
            status = "waitlisted"
            queued_at = current.queued_at if current and current.queued_at else now
    values = {"status": status, "source": source, "answered_at": now, "queued_at": queued_at}
    if current is None:
        conn.execute(insert(r).values(campaign=campaign, event=event,
                                      stakeholder_id=stakeholder_id, **values))
    else:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == stakeholder_id).values(**values))
    _response(conn, campaign, event, stakeholder_id, Kind(f"rsvp_{status}"), source, now, send_id)
    promoted = []
    if previous == "accepted" and status != "accepted" and capacity is not None:
        promoted = _promote(conn, campaign, event, capacity, now)
    return Outcome(status, previous, promoted)


def _accepted(conn: Connection, campaign: str, event: str) -> int:
    r = tables.rsvps
    return conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "accepted")).scalar() or 0


def _promote(conn: Connection, campaign: str, event: str, capacity: int,
             now: datetime) -> list[int]:
    """Fill free seats from the waitlist, earliest first."""
    r = tables.rsvps
    free = capacity - _accepted(conn, campaign, event)
    if free <= 0:
        return []
    waiting = conn.execute(select(r.c.stakeholder_id).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "waitlisted")
        .order_by(r.c.queued_at, r.c.id).limit(free)).scalars().all()
    for person in waiting:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == person)
                     .values(status="accepted", answered_at=now, queued_at=None))
        _response(conn, campaign, event, person, Kind.RSVP_PROMOTED, "waitlist", now, None)
    return list(waiting)


def _response(conn: Connection, campaign: str, event: str, stakeholder_id: int, kind: Kind,
              source: str, now: datetime, send_id: int | None) -> None:
    conn.execute(insert(tables.responses).values(
        send_id=send_id, stakeholder_id=stakeholder_id, campaign=campaign, event=event, kind=kind,
        detail=source, occurred_at=now, received_at=now, raw=json.dumps({"source": source})))


# --- answers arriving from outside: signed links and calendar replies -------------------------


@dataclass(frozen=True, slots=True)
class Invitation:
    """Who a link or a reply speaks for, and where they stand."""

    campaign: Campaign
    event: Event
    stakeholder_id: int
    first_name: str
    email: str
    send_id: int | None
    step: str | None
    status: str  # their answer so far, or "no response"


class UnknownInvitation(Exception):
    """A reply or link that matches no event or no invited person."""


class EventCancelled(Exception):
    """An answer to an event that has been cancelled: nothing is recorded."""


class Rsvps:
    """Answers by link and by calendar reply, with waitlist and promotion emails."""

    def __init__(self, app: App) -> None:
        self.app = app

    def by_token(self, token: str) -> tuple[Invitation, Answer]:
        """The invitation and the answer a link carries (InvalidToken if forged or expired)."""
        uid, answer = self.app.tokens.read_rsvp(token, self.app.clock.now())
        s, st = tables.sends, tables.stakeholders
        with self.app.store.read() as conn:
            row = conn.execute(select(s.c.id, s.c.campaign, s.c.step, st.c.id.label("person"),
                                      st.c.first_name, st.c.display_email)
                               .join(st, st.c.id == s.c.stakeholder_id).where(s.c.uid == uid)).first()
        if row is None:
            raise InvalidToken("this RSVP link is not known here")
        campaign = self.app.project.campaigns.get(row.campaign)
        step = campaign.step(row.step.partition(":")[0]) if campaign else None
        event_id = step.event_id if step else row.step.partition(":")[0]
        event = campaign.event(event_id) if campaign and event_id else None
        if campaign is None or event is None:
            raise InvalidToken("this RSVP link is for an event that no longer exists")
        invitation = Invitation(campaign, event, row.person, row.first_name, row.display_email,
                                row.id, row.step, self._status(campaign.id, event.id, row.person))
        return invitation, answer

    def by_reply(self, reply: Reply) -> Invitation:
        """The invitation a calendar REPLY answers: matched by UID and attendee (any case)."""
        e, st = tables.events, tables.stakeholders
        with self.app.store.read() as conn:
            event_row = conn.execute(select(e.c.campaign, e.c.event).where(
                e.c.uid == reply.uid)).first()
            person = conn.execute(select(st.c.id, st.c.first_name, st.c.display_email).where(
                st.c.email == email_key(reply.attendee_email))).first()
        campaign = self.app.project.campaigns.get(event_row.campaign) if event_row else None
        event = campaign.event(event_row.event) if campaign and event_row else None
        if campaign is None or event is None:
            raise UnknownInvitation(f"a calendar reply for an unknown event (UID {reply.uid})")
        if person is None:
            raise UnknownInvitation(f"a calendar reply from someone not in the directory for "
                                    f"{campaign.id}/{event.id}")
        return Invitation(campaign, event, person.id, person.first_name, person.display_email,
                          None, None, self._status(campaign.id, event.id, person.id))

    def answer(self, invitation: Invitation, answer: Answer, source: Source) -> Outcome:
        """Record the answer; tell the waitlisted and the promoted by email. A cancelled event
        (in its file, or by a cancel step that went) takes no answers: EventCancelled."""
        now = self.app.clock.now()
        with self.app.store.write() as conn:
            state = events.sync_event(conn, invitation.campaign, invitation.event,
                                      timezone=self.app.settings.timezone, now=now)
            if state.status == "cancelled":
                raise EventCancelled(f"{invitation.campaign.id}/{invitation.event.id} is cancelled")
            outcome = record_answer(conn, campaign=invitation.campaign.id,
                                    event=invitation.event.id,
                                    stakeholder_id=invitation.stakeholder_id, answer=answer,
                                    source=source, now=now, send_id=invitation.send_id)
        log.info("rsvp %s/%s: %s via %s", invitation.campaign.id, invitation.event.id,
                 outcome.status, source)
        notices = []
        if outcome.changed and outcome.status == "waitlisted":
            notices.append(("waitlisted", [invitation.stakeholder_id]))
        if outcome.promoted:
            notices.append(("promoted", outcome.promoted))
        for kind, people in notices:
            try:
                self.app.notify(invitation.campaign, invitation.event, kind, people)
            except CommsError as exc:  # the answer is recorded; the notice goes on a later run
                log.error("rsvp %s/%s: %s notice not sent: %s", invitation.campaign.id,
                          invitation.event.id, kind, type(exc).__name__)
        return outcome

    def seats_left(self, invitation: Invitation) -> int | None:
        with self.app.store.read() as conn:
            return events.seats_left(conn, invitation.campaign.id, invitation.event)

    def _status(self, campaign: str, event: str, person: int) -> str:
        r = tables.rsvps
        with self.app.store.read() as conn:
            status = conn.execute(select(r.c.status).where(
                r.c.campaign == campaign, r.c.event == event, r.c.stakeholder_id == person)).scalar()
        return status or "no response"

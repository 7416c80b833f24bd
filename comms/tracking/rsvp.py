"""Answers to invitations arriving from outside: signed links and calendar replies.

The rules of an answer (one per person and event, seats up to capacity, the waitlist promoted in
order) live in the store (comms/store/rsvps.py); this module finds whom an answer speaks for,
refuses answers to cancelled events, and asks the notifier to tell the waitlisted and the
promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from .._types import email_key
from ..campaign import Campaign, Event
from ..clock import Clock
from ..errors import CommsError
from ..events import EventCancelled
from ..store import Store, events, rsvps, sends, stakeholders
from ..store.rsvps import Outcome
from ..tokens import InvalidToken, Tokens
from .replies import Reply

log = logging.getLogger(__name__)

Answer = Literal["accepted", "declined", "tentative"]
Source = Literal["link", "calendar", "manual"]


class Notifier(Protocol):
    """Sends a built-in RSVP message (``waitlisted`` or ``promoted``) to these people."""

    def __call__(self, campaign: Campaign, event: Event, kind: str,
                 stakeholder_ids: list[int]) -> None: ...


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


class Rsvps:
    """Answers by link and by calendar reply, with waitlist and promotion emails."""

    def __init__(self, *, store: Store, clock: Clock, tokens: Tokens,
                 campaigns: Callable[[], Mapping[str, Campaign]], timezone: str,
                 notifier: Notifier) -> None:
        self.store = store
        self.clock = clock
        self.tokens = tokens
        self._campaigns = campaigns
        self._timezone = timezone
        self._notify = notifier

    def by_token(self, token: str) -> tuple[Invitation, Answer]:
        """The invitation and the answer a link carries (InvalidToken if forged or expired)."""
        uid, answer = self.tokens.read_rsvp(token, self.clock.now())
        with self.store.read() as conn:
            send = sends.by_uid(conn, uid)
        if send is None:
            raise InvalidToken("this RSVP link is not known here")
        campaign = self._campaigns().get(send.campaign)
        step = campaign.step(send.step.partition(":")[0]) if campaign else None
        event_id = step.event_id if step else send.step.partition(":")[0]
        event = campaign.event(event_id) if campaign and event_id else None
        if campaign is None or event is None:
            raise InvalidToken("this RSVP link is for an event that no longer exists")
        invitation = Invitation(campaign, event, send.stakeholder_id, send.first_name,
                                send.display_email, send.id, send.step,
                                self._status(campaign.id, event.id, send.stakeholder_id))
        return invitation, answer

    def by_reply(self, reply: Reply) -> Invitation:
        """The invitation a calendar REPLY answers: matched by UID and attendee (any case)."""
        with self.store.read() as conn:
            found = events.by_uid(conn, reply.uid)
            person = stakeholders.by_email(conn, email_key(reply.attendee_email))
        campaign = self._campaigns().get(found[0]) if found else None
        event = campaign.event(found[1]) if campaign and found else None
        if campaign is None or event is None:
            raise UnknownInvitation(f"a calendar reply for an unknown event (UID {reply.uid})")
        if person is None:
            raise UnknownInvitation(f"a calendar reply from someone not in the directory for "
                                    f"{campaign.id}/{event.id}")
        return Invitation(campaign, event, person["id"], person["first_name"],
                          person["display_email"], None, None,
                          self._status(campaign.id, event.id, person["id"]))

    def answer(self, invitation: Invitation, answer: Answer, source: Source) -> Outcome:
        """Record the answer; tell the waitlisted and the promoted by email. A cancelled event
        (in its file, or by a cancel step that went) takes no answers: EventCancelled."""
        now = self.clock.now()
        campaign, event = invitation.campaign, invitation.event
        with self.store.write() as conn:
            state = events.sync(conn, campaign, event, timezone=self._timezone, now=now)
            if state.status == "cancelled":
                raise EventCancelled(f"{campaign.id}/{event.id} is cancelled")
            outcome = rsvps.record_answer(conn, campaign=campaign.id, event=event.id,
                                          stakeholder_id=invitation.stakeholder_id, answer=answer,
                                          source=source, now=now, send_id=invitation.send_id)
        log.info("rsvp %s/%s: %s via %s", campaign.id, event.id, outcome.status, source)
        notices = []
        if outcome.changed and outcome.status == "waitlisted":
            notices.append(("waitlisted", [invitation.stakeholder_id]))
        if outcome.promoted:
            notices.append(("promoted", outcome.promoted))
        for kind, people in notices:
            try:
                self._notify(campaign, event, kind, people)
            except CommsError as exc:  # the answer is recorded; the notice goes on a later run
                log.error("rsvp %s/%s: %s notice not sent: %s", campaign.id, event.id, kind,
                          type(exc).__name__)
        return outcome

    def seats_left(self, invitation: Invitation) -> int | None:
        with self.store.read() as conn:
            return rsvps.seats_left(conn, invitation.campaign.id, invitation.event)

    def _status(self, campaign: str, event: str, person: int) -> str:
        with self.store.read() as conn:
            return rsvps.status_of(conn, campaign, event, person) or "no response"

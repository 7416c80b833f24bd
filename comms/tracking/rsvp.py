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
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from .._types import email_key
from ..campaign import Campaign, Event
from ..clock import Clock
from ..errors import CommsError
from ..events import EventCancelled, calendar_steps
from ..store import Store, events, rsvps, sends, stakeholders
from ..store.rsvps import Outcome
from ..tokens import InvalidToken, Tokens
from .replies import Proposal, Reply

log = logging.getLogger(__name__)

Answer = Literal["accepted", "declined", "tentative"]
Source = Literal["link", "calendar", "manual", "on behalf"]


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
    holds: int | None = None  # the SEQUENCE their calendar holds (None: never sent the event)
    on_behalf: bool = False  # answered by a colleague of the same organisation


class UnknownInvitation(Exception):
    """A reply or link that matches no event or no invited person."""


class NotInvited(UnknownInvitation):
    """A calendar reply from someone never sent the invitation (a forwarded one)."""


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

    def by_reply(self, reply: Reply | Proposal, sender: str | None = None) -> Invitation:
        """The invitation a calendar REPLY (or COUNTER) answers: the event by UID, the person by
        ATTENDEE (any letter case), or by the From address when the ATTENDEE is not in the
        directory (an alias of the invited address). Only people sent the invitation answer
        (:class:`NotInvited`); a reply from someone other than the ATTENDEE counts, as
        answered on their behalf, only from a colleague of the same organisation."""
        with self.store.read() as conn:
            found = events.by_uid(conn, reply.uid)
            campaign = self._campaigns().get(found[0]) if found else None
            event = campaign.event(found[1]) if campaign and found else None
            if campaign is None or event is None:
                raise UnknownInvitation(f"a calendar reply for an unknown event (UID {reply.uid})")
            steps = calendar_steps(campaign, event)
            attendee = stakeholders.by_email(conn, email_key(reply.attendee_email))
            author = stakeholders.by_email(conn, email_key(sender)) if sender else None

            def holds(person: dict[str, Any] | None) -> int | None:
                return (sends.calendar_held(conn, campaign.id, steps, int(person["id"]))
                        if person else None)

            person, on_behalf = attendee, False
            if holds(attendee) is None:
                if attendee is None and author is not None and holds(author) is not None:
                    person = author  # the ATTENDEE is an alias of the invited address
                elif attendee is not None or author is not None:
                    raise NotInvited(f"not invited: a calendar reply for {campaign.id}/"
                                     f"{event.id} from someone never sent the invitation")
                else:
                    raise UnknownInvitation(f"a calendar reply from someone not in the directory "
                                            f"for {campaign.id}/{event.id}")
            elif author is not None and attendee is not None and author["id"] != attendee["id"]:
                same = author["organisation"] and author["organisation"] == \
                    attendee["organisation"]
                if not same:
                    raise UnknownInvitation(f"a calendar reply for {campaign.id}/{event.id} sent "
                                            "by someone outside the invitee's organisation")
                on_behalf = True
            assert person is not None
            pid = int(person["id"])
            return Invitation(campaign, event, pid, str(person["first_name"]),
                              str(person["display_email"]), None, None,
                              rsvps.status_of(conn, campaign.id, event.id, pid) or "no response",
                              holds(person), on_behalf)

    def answer(self, invitation: Invitation, answer: Answer, source: Source, *,
               reply: Reply | None = None) -> Outcome:
        """Record the answer; tell the waitlisted and the promoted by email. A calendar
        ``reply`` is ordered by its DTSTAMP and SEQUENCE (RFC 5546): older than the answer held,
        or for an older SEQUENCE than the person's calendar holds, it is stale and changes
        nothing. A cancelled event (in its file, or by a cancel step that went) takes no
        answers: EventCancelled."""
        now = self.clock.now()
        campaign, event = invitation.campaign, invitation.event
        if invitation.on_behalf:
            source = "on behalf"
        with self.store.write() as conn:
            state = events.sync(conn, campaign, event, timezone=self._timezone, now=now)
            if state.status == "cancelled":
                raise EventCancelled(f"{campaign.id}/{event.id} is cancelled")
            holds = sends.calendar_held(conn, campaign.id, calendar_steps(campaign, event),
                                        invitation.stakeholder_id)
            outcome = rsvps.record_answer(
                conn, campaign=campaign.id, event=event.id,
                stakeholder_id=invitation.stakeholder_id, answer=answer, source=source, now=now,
                send_id=invitation.send_id, answered_at=reply.dtstamp if reply else None,
                sequence=reply.sequence if reply else None, holds=holds,
                offer_hours=event.waitlist.offer_hours if event.waitlist else None)
        log.info("rsvp %s/%s: %s via %s%s", campaign.id, event.id, outcome.status, source,
                 " (stale: nothing changed)" if outcome.stale else "")
        notices = []
        if outcome.changed and outcome.status == "waitlisted":
            notices.append(("waitlisted", [invitation.stakeholder_id]))
        if outcome.promoted:
            notices.append(("promoted", outcome.promoted))
        self._tell(campaign, event, notices)
        return outcome

    def propose(self, invitation: Invitation, proposal: Proposal) -> None:
        """Keep a time the person proposed (METHOD:COUNTER) for the organiser; nothing changes."""
        zone = ZoneInfo(invitation.event.timezone or self._timezone)
        when = " to ".join(f"{t.astimezone(zone):%Y-%m-%d %H:%M}" for t in
                           (proposal.starts, proposal.ends) if t is not None) or "another time"
        detail = f"{when}{': ' + proposal.comment if proposal.comment else ''}"
        with self.store.write() as conn:
            rsvps.proposal(conn, campaign=invitation.campaign.id, event=invitation.event.id,
                           stakeholder_id=invitation.stakeholder_id, detail=detail[:500],
                           now=self.clock.now(), occurred_at=proposal.dtstamp)

    def expire_offers(self, campaign: Campaign) -> list[int]:
        """Offered seats not confirmed in time pass to the next in the queue, who is told."""
        promoted_all = []
        for event in campaign.events:
            if event.waitlist is None or event.capacity is None:
                continue
            with self.store.write() as conn:
                _, promoted = rsvps.expire_offers(conn, campaign.id, event.id, event.capacity,
                                                  self.clock.now(), event.waitlist.offer_hours)
            self._tell(campaign, event, [("promoted", promoted)] if promoted else [])
            promoted_all += promoted
        return promoted_all

    def _tell(self, campaign: Campaign, event: Event, notices: list[tuple[str, list[int]]]
              ) -> None:
        for kind, people in notices:
            try:
                self._notify(campaign, event, kind, people)
            except CommsError as exc:  # the answer is recorded; the notice goes on a later run
                log.error("rsvp %s/%s: %s notice not sent: %s", campaign.id, event.id, kind,
                          type(exc).__name__)

    def seats_left(self, invitation: Invitation) -> int | None:
        with self.store.read() as conn:
            return rsvps.seats_left(conn, invitation.campaign.id, invitation.event)

    def _status(self, campaign: str, event: str, person: int) -> str:
        with self.store.read() as conn:
            return rsvps.status_of(conn, campaign, event, person) or "no response"

"""One vocabulary for everything that comes back, whoever reports it.

Provider words (SendGrid's ``bounce``, ``open`` …), RSVPs, calendar replies and replies by mail
map onto ``Kind``; the raw payload is kept beside the normalised row. A send's delivery state is
the highest-ranked state any of its events reported, so duplicates and arrival order do not
matter, a late ``processed`` never overwrites ``delivered``, and bounces, drops and spam reports
are final.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"  # detail: "hard" or "soft"
    DROPPED = "dropped"
    OPENED = "opened"  # machine=True for privacy pre-fetches (Apple Mail)
    CLICKED = "clicked"  # detail: the URL
    SPAM_REPORTED = "spam_reported"
    UNSUBSCRIBED = "unsubscribed"
    GROUP_UNSUBSCRIBED = "group_unsubscribed"
    GROUP_RESUBSCRIBED = "group_resubscribed"
    REPLIED = "replied"  # detail: the reply's text
    RSVP_ACCEPTED = "rsvp_accepted"
    RSVP_DECLINED = "rsvp_declined"
    RSVP_TENTATIVE = "rsvp_tentative"
    RSVP_WAITLISTED = "rsvp_waitlisted"
    RSVP_PROMOTED = "rsvp_promoted"
    RSVP_STALE = "rsvp_stale"  # an answer older than the one held, or for an older SEQUENCE
    RSVP_PROPOSED = "rsvp_proposed"  # a new time proposed (METHOD:COUNTER); detail: the time
    PAIR_MET = "pair_met"  # a mentoring check-in: the pair has met; detail: the round
    PAIR_NOT_YET = "pair_not_yet"  # … has not met yet
    FEEDBACK = "feedback"  # a rating after an event; detail: the rating (1-5)


#: The ratings a feedback step asks for (1 poor … 5 excellent).
RATINGS = (1, 2, 3, 4, 5)

#: SendGrid Event Webhook words → ours (bounces: ``type`` bounce = hard, blocked = soft).
SENDGRID: dict[str, Kind] = {
    "processed": Kind.PROCESSED,
    "delivered": Kind.DELIVERED,
    "deferred": Kind.DEFERRED,
    "bounce": Kind.BOUNCED,
    "dropped": Kind.DROPPED,
    "open": Kind.OPENED,
    "click": Kind.CLICKED,
    "spamreport": Kind.SPAM_REPORTED,
    "unsubscribe": Kind.UNSUBSCRIBED,
    "group_unsubscribe": Kind.GROUP_UNSUBSCRIBED,
    "group_resubscribe": Kind.GROUP_RESUBSCRIBED,
}

#: Delivery states of a send, by rank: a send shows the highest it has reached.
DELIVERY_RANK: dict[str, int] = {
    Kind.PROCESSED: 1,
    Kind.DEFERRED: 2,
    Kind.DELIVERED: 3,
    Kind.DROPPED: 4,  # final from here on
    Kind.BOUNCED: 5,
    Kind.SPAM_REPORTED: 6,
}

#: Responses that show a person acted. Opens are not among them: image blocking and privacy
#: pre-fetch make them unreliable.
HUMAN = frozenset({Kind.CLICKED, Kind.REPLIED, Kind.RSVP_ACCEPTED, Kind.RSVP_DECLINED,
                   Kind.RSVP_TENTATIVE, Kind.RSVP_WAITLISTED, Kind.PAIR_MET,
                   Kind.PAIR_NOT_YET, Kind.FEEDBACK})

#: Responses that put an address on the suppression list.
SUPPRESSING: dict[str, str] = {
    Kind.UNSUBSCRIBED: "unsubscribed",
    Kind.GROUP_UNSUBSCRIBED: "unsubscribed",
    Kind.SPAM_REPORTED: "spam",
}


def later(current: str | None, new: str) -> str | None:
    """The delivery state after ``new`` arrives (None: not a delivery state, nothing changes)."""
    if new not in DELIVERY_RANK:
        return current
    if current is None or DELIVERY_RANK[new] > DELIVERY_RANK.get(current, 0):
        return new
    return current


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """One thing that came back, whoever reported it: the only shape a response is stored in.

    ``provider_event_id`` is the provider's own id (SendGrid's ``sg_event_id``): a second
    response with the same id is a duplicate and is not stored again.
    """

    kind: Kind
    occurred_at: datetime
    send_id: int | None = None
    stakeholder_id: int | None = None
    campaign: str | None = None
    step: str | None = None
    event: str | None = None
    detail: str | None = None
    machine: bool = False
    machine_reason: str | None = None  # why it is a machine's (a scanner, a pre-fetch)
    provider_event_id: str | None = None
    raw: str | None = None

    def row(self, received_at: datetime) -> dict[str, Any]:
        return {"send_id": self.send_id, "stakeholder_id": self.stakeholder_id,
                "campaign": self.campaign, "step": self.step, "event": self.event,
                "kind": str(self.kind), "detail": self.detail, "machine": self.machine,
                "machine_reason": self.machine_reason,
                "provider_event_id": self.provider_event_id, "occurred_at": self.occurred_at,
                "received_at": received_at, "raw": self.raw}

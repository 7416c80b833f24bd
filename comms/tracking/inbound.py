"""Mail that comes back: calendar REPLYs (Accept / Decline / Tentative) matched to invitations."""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..invite import replies_in_message
from .rsvp import Rsvps, UnknownInvitation

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InboundResult:
    """What a batch of inbound mail did: answers recorded, and what matched nothing."""

    recorded: list[str] = field(default_factory=list)  # "campaign/event: status"
    unmatched: list[str] = field(default_factory=list)  # reasons, without addresses
    messages: int = 0


def process_message(app: App, raw: bytes, result: InboundResult | None = None) -> InboundResult:
    """Record every calendar reply in one raw RFC 5322 message. Unknown events or people are
    logged and counted, never raised: a webhook must not retry them forever."""
    result = result or InboundResult()
    result.messages += 1
    message = email.message_from_bytes(raw, policy=email.policy.default)
    try:
        replies = replies_in_message(message)
    except ValueError as exc:
        result.unmatched.append(f"unreadable calendar part: {exc}")
        log.warning("inbound: unreadable calendar part: %s", exc)
        return result
    rsvps = Rsvps(app)
    for reply in replies:
        try:
            invitation = rsvps.by_reply(reply)
        except UnknownInvitation as exc:
            result.unmatched.append(str(exc))
            log.info("inbound: %s", exc)
            continue
        outcome = rsvps.answer(invitation, reply.partstat, "calendar")
        result.recorded.append(f"{invitation.campaign.id}/{invitation.event.id}: {outcome.status}")
    return result

"""Mail that comes back: calendar REPLYs (Accept / Decline / Tentative) matched to invitations."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import cast

from .._text import html_to_text
from ..events import EventCancelled
from ..responses import Kind, Response
from ..store import responses as stored_responses
from ..store import sends
from .replies import replies_in_message
from .rsvp import Rsvps, UnknownInvitation

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InboundResult:
    """What a batch of inbound mail did: answers recorded, and what matched nothing."""

    recorded: list[str] = field(default_factory=list)  # "campaign/event: status"
    unmatched: list[str] = field(default_factory=list)  # reasons, without addresses
    messages: int = 0


def process_message(rsvps: Rsvps, raw: bytes, result: InboundResult | None = None
                    ) -> InboundResult:
    """Record every calendar reply in one raw RFC 5322 message. Unknown events or people are
    logged and counted, never raised: a webhook must not retry them forever."""
    result = result or InboundResult()
    result.messages += 1
    message = cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))
    try:
        replies = replies_in_message(message)
    except ValueError as exc:
        result.unmatched.append(f"unreadable calendar part: {exc}")
        log.warning("inbound: unreadable calendar part: %s", exc)
        return result
    if not replies:
        _record_reply(rsvps, message, result)
        return result
    for reply in replies:
        try:
            invitation = rsvps.by_reply(reply)
        except UnknownInvitation as exc:
            result.unmatched.append(str(exc))
            log.info("inbound: %s", exc)
            continue
        try:
            outcome = rsvps.answer(invitation, reply.partstat, "calendar")
        except EventCancelled as exc:
            result.unmatched.append(f"an answer to a cancelled event ({exc})")
            continue
        result.recorded.append(f"{invitation.campaign.id}/{invitation.event.id}: {outcome.status}")
    return result


_MESSAGE_ID = re.compile(r"<([0-9a-f]{32})@[^>]+>")
MAX_REPLY_TEXT = 20_000


def _record_reply(rsvps: Rsvps, message: EmailMessage, result: InboundResult) -> None:
    """A reply to a campaign email: a ``replied`` response on the send it answers, matched by
    In-Reply-To or References (our Message-IDs are ``<send id@domain>``), its text kept."""
    wanted = " ".join(str(message.get(h, "")) for h in ("In-Reply-To", "References"))
    uids = _MESSAGE_ID.findall(wanted)
    if not uids:
        return  # ordinary mail in the mailbox: none of comms' business
    now = rsvps.clock.now()
    with rsvps.store.write() as conn:
        send = sends.newest_of(conn, uids)
        if send is None:
            result.unmatched.append("a reply to an email this store did not send")
            return
        stored_responses.insert(conn, [Response(
            kind=Kind.REPLIED, occurred_at=_date(message) or now, send_id=send.id,
            stakeholder_id=send.stakeholder_id, campaign=send.campaign, step=send.step,
            detail=_text_of(message)[:MAX_REPLY_TEXT])], received_at=now)
    result.recorded.append(f"{send.campaign}/{send.step}: replied")


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain", "html"))
    if body is None:
        return ""
    content = body.get_content()
    return html_to_text(content) if body.get_content_type() == "text/html" else content


def _date(message: EmailMessage) -> datetime | None:
    try:
        value = message["Date"]
        when = value.datetime if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
    return when if when is not None and when.tzinfo is not None else None

"""Mail that comes back: calendar answers matched to invitations, and replies to campaign emails."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import cast

from .._text import html_to_text
from ..events import EventCancelled
from ..responses import Kind, Response
from ..store import responses as stored_responses
from ..store import sends
from .replies import Proposal, Reply, read_message
from .rsvp import NotInvited, Rsvps, UnknownInvitation

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InboundResult:
    """What a batch of inbound mail did, in the words ``comms inbox import`` prints."""

    recorded: list[str] = field(default_factory=list)  # "campaign/event: status"
    stale: list[str] = field(default_factory=list)  # older than the answer held: nothing changed
    not_invited: list[str] = field(default_factory=list)  # from someone never sent the invitation
    not_understood: list[str] = field(default_factory=list)  # "where: why" (TNEF, broken data)
    unmatched: list[str] = field(default_factory=list)  # unknown events or people (no addresses)
    messages: int = 0

    def line(self) -> str:
        """``N message(s): R answer(s) recorded, [S stale, I not invited, U not understood,]
        M not matched`` (the middle three when there are any)."""
        words = [f"{len(self.recorded)} answer(s) recorded"]
        words += [f"{len(found)} {word}" for word, found in (
            ("stale", self.stale), ("not invited", self.not_invited),
            ("not understood", self.not_understood)) if found]
        return f"{self.messages} message(s): {', '.join(words)}, {len(self.unmatched)} not matched"


def process_message(rsvps: Rsvps, raw: bytes, result: InboundResult | None = None, *,
                    where: str | None = None) -> InboundResult:
    """Record every calendar answer in one raw RFC 5322 message: REPLYs by the rules of
    comms/tracking/rsvp.py, COUNTER proposals for the organiser, a reply to a campaign email as
    ``replied``. What matches nothing, or cannot be read, is counted and listed (``where``:
    the file, else the Message-ID), never raised: a webhook must not retry it forever."""
    result = result or InboundResult()
    result.messages += 1
    message = parse(raw)
    found = read_message(message)
    label = where or str(message.get("Message-ID", "") or "(no Message-ID)")
    for reason in found.not_understood:
        result.not_understood.append(f"{label}: {reason}")
        log.warning("inbound: not understood: %s", reason)
    if not found.replies and not found.proposals:
        if not found.not_understood:
            _record_reply(rsvps, message, result)
        return result
    sender = _sender(message)
    answers: list[Reply | Proposal] = [*found.replies, *found.proposals]
    for answer in answers:
        try:
            invitation = rsvps.by_reply(answer, sender)
        except NotInvited as exc:
            result.not_invited.append(str(exc))
            log.info("inbound: %s", exc)
            continue
        except UnknownInvitation as exc:
            result.unmatched.append(str(exc))
            log.info("inbound: %s", exc)
            continue
        where_to = f"{invitation.campaign.id}/{invitation.event.id}"
        if isinstance(answer, Proposal):
            rsvps.propose(invitation, answer)
            result.recorded.append(f"{where_to}: proposed another time")
            continue
        try:
            outcome = rsvps.answer(invitation, answer.partstat, "calendar", reply=answer)
        except EventCancelled as exc:
            result.unmatched.append(f"an answer to a cancelled event ({exc})")
            continue
        if outcome.stale:
            result.stale.append(f"{where_to}: {answer.partstat} (SEQUENCE {answer.sequence}), "
                                "older than the answer held")
        else:
            result.recorded.append(f"{where_to}: {outcome.status}")
    return result


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


def answered_at(raw: bytes) -> datetime:
    """When the earliest calendar answer in a message was made (its DTSTAMP): a batch is applied
    in this order, whatever order its files or messages come in. Mail without one sorts last."""
    found = read_message(parse(raw))
    stamps = [a.dtstamp for a in found.replies] + [p.dtstamp for p in found.proposals]
    return min(stamps, default=_LAST)


_LAST = datetime.max.replace(tzinfo=UTC)


def _sender(message: EmailMessage) -> str | None:
    try:
        addresses = message["From"].addresses if message["From"] is not None else ()
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return addresses[0].addr_spec if addresses else None


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

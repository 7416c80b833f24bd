"""The transport Protocol and the message every transport takes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import TransportError


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    email: str
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarPart:
    """An iCalendar object carried by an invitation; ``method`` is REQUEST or CANCEL."""

    method: str
    ics: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file the message carries (a report's HTML and CSV)."""

    filename: str  # plain: letters, digits, . - _
    content_type: str  # e.g. text/html; charset=utf-8
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One rendered message to one recipient, ready for any transport.

    ``send_id`` is the opaque id of the send (the only thing passed to providers as a custom arg);
    ``message_id`` is the RFC 5322 Message-ID, angle brackets included.
    """

    send_id: str
    message_id: str
    sender: Address
    to: Address
    subject: str
    text: str
    html: str
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    calendar: CalendarPart | None = None
    also_to: tuple[Address, ...] = ()  # a message to a pair: the other person, also in To
    attachments: tuple[Attachment, ...] = ()
    track_opens: bool = False  # what the provider may track (SendGrid: tracking_settings)
    track_clicks: bool = False

    @property
    def recipients(self) -> tuple[Address, ...]:
        return (self.to, *self.also_to)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a configured transport allows, beyond what the dispatcher's policy says.

    ``max_in_flight`` set: the dispatcher adapts its concurrency to the provider's latency and
    errors, up to this many sends in flight (the most a crash can leave uncertain); None keeps
    it at ``COMMS_CONCURRENCY`` (SMTP relays limit sessions per account; the outbox is one).
    ``per_minute`` and ``per_day`` cap what every process sharing the store sends through it."""

    max_in_flight: int | None = None
    per_minute: int | None = None
    per_day: int | None = None


NO_LIMITS = Limits()


@runtime_checkable
class Transport(Protocol):
    """Hands messages to a mail system. ``send`` is safe to call from several threads at once."""

    name: str

    def send(self, message: Message) -> str:
        """Deliver one message; return the provider's message id.

        Raises ``TransientError`` (retry later, maybe with ``retry_after``) or ``PermanentError``.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class AsyncSender(Protocol):
    """A transport's sender for one event loop, for transports that offer one
    (``open_async()``): many sends in flight on one thread, each over its own connection."""

    async def send(self, message: Message) -> str:
        """As :meth:`Transport.send`."""
        ...

    async def close(self) -> None:
        """Release this sender's connections (on its loop)."""
        ...


_TOKENS = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
                     r"|\bSG\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each secret (and each of its ``.``/``:``-separated parts of 8 characters
    or more: a key echoed without its prefix), and anything shaped like a bearer token or a
    SendGrid API key, replaced by ``[redacted]``."""
    pieces = {p for secret in secrets if secret
              for p in (secret, *re.split(r"[.:]", secret)) if len(p) >= 8 or p == secret}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, "[redacted]")
    return _TOKENS.sub("[redacted]", text)


def redacted(exc: TransportError, secrets: Sequence[str]) -> TransportError:
    """The error with no secret in its text or body, whatever the provider echoed back (a proxy
    repeating the Authorization header, a server quoting the login): transports raise this, so
    nothing secret reaches the ledger, a log or the terminal."""
    text, body = redact(str(exc), secrets), redact(exc.body, secrets) if exc.body else exc.body
    if text == str(exc) and body == exc.body:
        return exc
    copy = type(exc)(text, body=body, retry_after=exc.retry_after)
    copy.status = exc.status
    copy.args = (text,)
    return copy

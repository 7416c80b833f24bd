"""The transport Protocol and the message every transport takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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

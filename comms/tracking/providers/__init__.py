"""Providers' webhooks: each verifies its requests and parses them into ``ProviderEvent``s."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ...responses import Kind


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderEvent:
    """One provider event in our vocabulary, with the payload as it came."""

    send_uid: str  # our opaque send id, carried by the provider as a custom arg
    kind: Kind
    event_id: str  # the provider's id of the event: a second one with it is a duplicate
    occurred_at: datetime
    detail: str | None = None  # a bounce's hard/soft, a click's URL
    machine: bool = False  # a privacy pre-fetch, not a person
    machine_reason: str | None = None
    suppress: str | None = None  # the suppression reason this event gives the address
    raw: str = ""


@dataclass(slots=True)
class Batch:
    """A parsed webhook post: usable events, and how many were left out and why."""

    provider: str  # its name, e.g. ``sendgrid``: the source of what it suppresses
    events: list[ProviderEvent] = field(default_factory=list)
    received: int = 0
    unknown: int = 0  # an event word not in our vocabulary
    invalid: int = 0  # not an object, or without an event id or a timestamp
    unmatched: int = 0  # no send id of ours

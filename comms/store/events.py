"""The events table: what attendees' calendars hold of each event (UID, SEQUENCE, status).

``sync`` records the event as its file now says, raising SEQUENCE on a change: an explicit step
of a real send. ``current`` computes the same state without writing anything, for dry runs and
previews, so both show the calendar a real send would carry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, update

from ..campaign import Campaign, Event
from ..invite import event_changed_fingerprint, event_uid
from . import sends, tables

e = tables.events


@dataclass(frozen=True, slots=True)
class EventState:
    """What attendees' calendars hold: the UID, the SEQUENCE of the last change, the status."""

    uid: str
    sequence: int
    status: str
    changed: bool  # this sync raised the sequence (an update or cancellation is due)


def next_state(row: Any, campaign: Campaign, event: Event, *, cancelled: bool
               ) -> tuple[EventState, str]:
    """The event's state given its stored row (None: never recorded) and what its file says now,
    with the fingerprint to store. A change of time, place, link, title or status raises
    SEQUENCE by one."""
    status = "cancelled" if cancelled else "confirmed"
    fingerprint = event_changed_fingerprint(event.model_copy(update={"status": status}))
    if row is None:  # a random part: UIDs are neither guessed nor reissued by a fresh store
        uid = event_uid(campaign.id, f"{event.id}.{_uid_part()}",
                        event.organiser.email.rpartition("@")[2])
        return EventState(uid, 0, status, changed=False), fingerprint
    changed = row.fingerprint != fingerprint
    return EventState(row.uid, row.sequence + changed, status, changed), fingerprint


def _uid_part() -> str:
    return secrets.token_hex(8)


def sync(conn: Connection, campaign: Campaign, event: Event, *, timezone: str, now: datetime,
         cancel: bool = False) -> EventState:
    """Record the event; a change of time, place, link, title or status raises SEQUENCE.

    An event is cancelled by ``status: cancelled`` in its file, by ``cancel`` (a cancel step
    being sent), or for good once any of its cancel steps has been sent."""
    row = _row(conn, campaign, event, lock=True)
    state, fingerprint = next_state(row, campaign, event, cancelled=_cancelled(conn, campaign, event,
                                                                               cancel))
    zone = ZoneInfo(event.timezone or timezone)
    values = {"sequence": state.sequence, "fingerprint": fingerprint, "status": state.status,
              "capacity": event.capacity, "starts_at": event.starts.replace(tzinfo=zone),
              "ends_at": event.ends.replace(tzinfo=zone), "updated_at": now}
    if row is None:
        conn.execute(insert(e).values(campaign=campaign.id, event=event.id, uid=state.uid, **values))
    else:
        conn.execute(update(e).where(e.c.campaign == campaign.id, e.c.event == event.id)
                     .values(**values))
    return state


def current(conn: Connection, campaign: Campaign, event: Event, *, cancel: bool = False
            ) -> EventState:
    """The state ``sync`` would record now, computed without writing."""
    row = _row(conn, campaign, event, lock=False)
    state, _ = next_state(row, campaign, event, cancelled=_cancelled(conn, campaign, event, cancel))
    return state


def stored(conn: Connection, campaign: str, event: str) -> EventState | None:
    """The state last recorded, if any."""
    row = conn.execute(select(e.c.uid, e.c.sequence, e.c.status).where(
        e.c.campaign == campaign, e.c.event == event)).first()
    return EventState(row.uid, row.sequence, row.status, changed=False) if row else None


def by_uid(conn: Connection, uid: str) -> tuple[str, str] | None:
    """(campaign, event) of the event whose calendars carry this UID."""
    row = conn.execute(select(e.c.campaign, e.c.event).where(e.c.uid == uid)).first()
    return (row.campaign, row.event) if row else None


def lock(conn: Connection, campaign: str, event: str) -> int | None:
    """Lock the event's row (concurrent answers queue here); its capacity."""
    capacity: int | None = conn.execute(select(e.c.capacity).where(
        e.c.campaign == campaign, e.c.event == event).with_for_update()).scalar()
    return capacity


def _row(conn: Connection, campaign: Campaign, event: Event, *, lock: bool) -> Any:
    query = select(e.c.uid, e.c.sequence, e.c.fingerprint, e.c.status).where(
        e.c.campaign == campaign.id, e.c.event == event.id)
    return conn.execute(query.with_for_update() if lock else query).first()


def _cancelled(conn: Connection, campaign: Campaign, event: Event, cancel: bool) -> bool:
    cancel_steps = [s.id for s in campaign.steps if s.kind == "cancel" and s.event == event.id]
    return (cancel or event.status == "cancelled"
            or bool(cancel_steps and sends.any_sent(conn, campaign.id, cancel_steps)))

"""RSVPs: one answer per person and event, seats up to capacity, a waitlist promoted in order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, func, insert, select, update

from ..store import tables

Answer = Literal["accepted", "declined", "tentative"]
Source = Literal["link", "calendar", "manual"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an answer did: the person's status now, and who was promoted from the waitlist."""

    status: str
    previous: str | None
    promoted: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.status != self.previous


def record_answer(conn: Connection, *, campaign: str, event: str, stakeholder_id: int,
                  answer: Answer, source: Source, now: datetime,
                  send_id: int | None = None) -> Outcome:
    """Record an answer in the caller's write transaction (the event row is locked first, so
    concurrent accepts queue up and never overfill the event)."""
    e, r = tables.events, tables.rsvps
    capacity = conn.execute(select(e.c.capacity).where(e.c.campaign == campaign, e.c.event == event)
                            .with_for_update()).scalar()
    current = conn.execute(select(r.c.status, r.c.queued_at).where(
        r.c.campaign == campaign, r.c.event == event, r.c.stakeholder_id == stakeholder_id)).first()
    previous = current.status if current else None
    status: str = answer
    queued_at = None
    if answer == "accepted":
        if previous == "accepted":
            status = "accepted"
        elif capacity is not None and _accepted(conn, campaign, event) >= capacity:
            status = "waitlisted"
            queued_at = current.queued_at if current and current.queued_at else now
    values = {"status": status, "source": source, "answered_at": now, "queued_at": queued_at}
    if current is None:
        conn.execute(insert(r).values(campaign=campaign, event=event,
                                      stakeholder_id=stakeholder_id, **values))
    else:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == stakeholder_id).values(**values))
    _response(conn, campaign, event, stakeholder_id, f"rsvp_{status}", source, now, send_id)
    promoted = []
    if previous == "accepted" and status != "accepted" and capacity is not None:
        promoted = _promote(conn, campaign, event, capacity, now)
    return Outcome(status, previous, promoted)


def _accepted(conn: Connection, campaign: str, event: str) -> int:
    r = tables.rsvps
    return conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "accepted")).scalar() or 0


def _promote(conn: Connection, campaign: str, event: str, capacity: int,
             now: datetime) -> list[int]:
    """Fill free seats from the waitlist, earliest first."""
    r = tables.rsvps
    free = capacity - _accepted(conn, campaign, event)
    if free <= 0:
        return []
    waiting = conn.execute(select(r.c.stakeholder_id).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "waitlisted")
        .order_by(r.c.queued_at, r.c.id).limit(free)).scalars().all()
    for person in waiting:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == person)
                     .values(status="accepted", answered_at=now, queued_at=None))
        _response(conn, campaign, event, person, "rsvp_promoted", "waitlist", now, None)
    return list(waiting)


def _response(conn: Connection, campaign: str, event: str, stakeholder_id: int, kind: str,
              source: str, now: datetime, send_id: int | None) -> None:
    conn.execute(insert(tables.responses).values(
        send_id=send_id, stakeholder_id=stakeholder_id, campaign=campaign, event=event, kind=kind,
        detail=source, occurred_at=now, received_at=now, raw=json.dumps({"source": source})))

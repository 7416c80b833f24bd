"""The rsvps table: one answer per person and event, seats up to capacity, a waitlist promoted
in order. Every answer is also a response (comms/store/responses.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from ..campaign import Event
from ..responses import Kind, Response
from . import events, responses, tables

r = tables.rsvps


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
                  answer: str, source: str, now: datetime,
                  send_id: int | None = None) -> Outcome:
    """Record an answer in the caller's write transaction (the event row is locked first, so
    concurrent accepts queue up and never overfill the event)."""
    capacity = events.lock(conn, campaign, event)
    current = conn.execute(select(r.c.status, r.c.queued_at).where(
        r.c.campaign == campaign, r.c.event == event, r.c.stakeholder_id == stakeholder_id)).first()
    previous = current.status if current else None
    status = answer
    queued_at = None
    if answer == "accepted" and previous != "accepted" and capacity is not None \
            and accepted(conn, campaign, event) >= capacity:
        status = "waitlisted"
        queued_at = current.queued_at if current and current.queued_at else now
    values = {"status": status, "source": source, "answered_at": now, "queued_at": queued_at}
    if current is None:
        conn.execute(insert(r).values(campaign=campaign, event=event,
                                      stakeholder_id=stakeholder_id, **values))
    else:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == stakeholder_id).values(**values))
    _respond(conn, campaign, event, stakeholder_id, Kind(f"rsvp_{status}"), source, now, send_id)
    promoted = []
    if previous == "accepted" and status != "accepted" and capacity is not None:
        promoted = _promote(conn, campaign, event, capacity, now)
    return Outcome(status, previous, promoted)


def accepted(conn: Connection, campaign: str, event: str) -> int:
    return int(conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "accepted")).scalar() or 0)


def seats_left(conn: Connection, campaign: str, event: Event) -> int | None:
    if event.capacity is None:
        return None
    return max(0, event.capacity - accepted(conn, campaign, event.id))


def status_of(conn: Connection, campaign: str, event: str, stakeholder_id: int) -> str | None:
    value: str | None = conn.execute(select(r.c.status).where(
        r.c.campaign == campaign, r.c.event == event,
        r.c.stakeholder_id == stakeholder_id)).scalar()
    return value


def _promote(conn: Connection, campaign: str, event: str, capacity: int,
             now: datetime) -> list[int]:
    """Fill free seats from the waitlist, earliest first."""
    free = capacity - accepted(conn, campaign, event)
    if free <= 0:
        return []
    waiting = conn.execute(select(r.c.stakeholder_id).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "waitlisted")
        .order_by(r.c.queued_at, r.c.id).limit(free)).scalars().all()
    for person in waiting:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == person)
                     .values(status="accepted", answered_at=now, queued_at=None))
        _respond(conn, campaign, event, person, Kind.RSVP_PROMOTED, "waitlist", now, None)
    return list(waiting)


def _respond(conn: Connection, campaign: str, event: str, stakeholder_id: int, kind: Kind,
             source: str, now: datetime, send_id: int | None) -> None:
    responses.insert(conn, [Response(
        kind=kind, occurred_at=now, send_id=send_id, stakeholder_id=stakeholder_id,
        campaign=campaign, event=event, detail=source, raw=json.dumps({"source": source}))],
        received_at=now)


def roster(conn: Connection, campaign: str, event: str, invite_steps: list[str]
           ) -> list[dict[str, Any]]:
    """Everyone sent one of ``invite_steps`` (or answering for the event), with their answer, its
    source and time, and whether they attended."""
    s, st, a = tables.sends, tables.stakeholders, tables.attendance
    invited = select(s.c.stakeholder_id).where(
        s.c.campaign == campaign, s.c.step.in_(invite_steps or [""]), s.c.status == "sent")
    answered = select(r.c.stakeholder_id).where(r.c.campaign == campaign, r.c.event == event)
    where_rsvp = and_(r.c.stakeholder_id == st.c.id, r.c.campaign == campaign, r.c.event == event)
    where_att = and_(a.c.stakeholder_id == st.c.id, a.c.campaign == campaign, a.c.event == event)
    rows = conn.execute(
        select(st.c.display_email, st.c.first_name, st.c.last_name, st.c.organisation,
               st.c.borough, r.c.status, r.c.source, r.c.answered_at, a.c.recorded_at)
        .outerjoin(r, where_rsvp).outerjoin(a, where_att)
        .where(st.c.id.in_(invited.union(answered)))
        .order_by(st.c.last_name, st.c.first_name)).all()
    return [{"email": row.display_email, "name": f"{row.first_name} {row.last_name}".strip(),
             "organisation": row.organisation, "borough": row.borough,
             "status": row.status or "no response", "source": row.source,
             "answered_at": row.answered_at, "attended": row.recorded_at is not None}
            for row in rows]

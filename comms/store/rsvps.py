"""The rsvps table: one answer per person and event, seats up to capacity, a waitlist promoted
in order. Every answer is also a response (comms/store/responses.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from ..campaign import Event
from ..responses import Kind, Response
from . import events, responses, tables

r = tables.rsvps


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an answer did: the person's status now, who was promoted from the waitlist, and
    whether the answer was stale (older than the one held, or for an older SEQUENCE)."""

    status: str
    previous: str | None
    promoted: list[int] = field(default_factory=list)
    stale: bool = False

    @property
    def changed(self) -> bool:
        return self.status != self.previous


TAKING = ("accepted", "offered")  # statuses that hold a seat


def record_answer(conn: Connection, *, campaign: str, event: str, stakeholder_id: int,
                  answer: str, source: str, now: datetime, send_id: int | None = None,
                  answered_at: datetime | None = None, sequence: int | None = None,
                  holds: int | None = None, offer_hours: float | None = None) -> Outcome:
    """Record an answer in the caller's write transaction (the event row is locked first, so
    concurrent accepts queue up and never overfill the event).

    RFC 5546 ordering: an answer given at ``answered_at`` (a calendar reply's DTSTAMP; default
    now) for ``sequence`` is stale, and changes nothing, when it is older than the answer held,
    or when ``sequence`` is older than the SEQUENCE the person's calendar ``holds`` (the last
    one sent to them). With ``offer_hours``, a seat freed is offered to the next in the queue
    for that long instead of given."""
    answered_at = answered_at or now
    capacity = events.lock(conn, campaign, event)
    where = and_(r.c.campaign == campaign, r.c.event == event, r.c.stakeholder_id == stakeholder_id)
    current = conn.execute(select(r.c.status, r.c.queued_at, r.c.answered_at).where(where)).first()
    previous = current.status if current else None
    if (current is not None and answered_at < current.answered_at) or (
            sequence is not None and holds is not None and sequence < holds):
        _respond(conn, campaign, event, stakeholder_id, Kind.RSVP_STALE,
                 f"{answer} (SEQUENCE {sequence}) by {source}", now, send_id)
        return Outcome(previous or "no response", previous, [], stale=True)
    status = answer
    queued_at = None
    if answer == "accepted" and previous not in TAKING and capacity is not None \
            and taken(conn, campaign, event) >= capacity:
        status = "waitlisted"
        queued_at = current.queued_at if current and current.queued_at else now
    values = {"status": status, "source": source, "answered_at": answered_at,
              "queued_at": queued_at, "offer_expires_at": None,
              "sequence": sequence if sequence is not None else holds}
    if current is None:
        conn.execute(insert(r).values(campaign=campaign, event=event,
                                      stakeholder_id=stakeholder_id, **values))
    else:
        conn.execute(update(r).where(where).values(**values))
    _respond(conn, campaign, event, stakeholder_id, Kind(f"rsvp_{status}"), source, now, send_id)
    promoted = []
    if previous in TAKING and status not in TAKING and capacity is not None:
        promoted = _promote(conn, campaign, event, capacity, now, offer_hours)
    return Outcome(status, previous, promoted)


def taken(conn: Connection, campaign: str, event: str) -> int:
    """Seats held: accepted, or offered and not lapsed yet."""
    return int(conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status.in_(TAKING))).scalar() or 0)


def accepted(conn: Connection, campaign: str, event: str) -> int:
    return int(conn.execute(select(func.count()).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "accepted")).scalar() or 0)


def seats_left(conn: Connection, campaign: str, event: Event) -> int | None:
    if event.capacity is None:
        return None
    return max(0, event.capacity - taken(conn, campaign, event.id))


def status_of(conn: Connection, campaign: str, event: str, stakeholder_id: int) -> str | None:
    value: str | None = conn.execute(select(r.c.status).where(
        r.c.campaign == campaign, r.c.event == event,
        r.c.stakeholder_id == stakeholder_id)).scalar()
    return value


def expire_offers(conn: Connection, campaign: str, event: str, capacity: int, now: datetime,
                  offer_hours: float) -> tuple[list[int], list[int]]:
    """Offers not confirmed in time lapse and their seats go to the next in the queue:
    (who lapsed, who is offered a seat now)."""
    lapsed = list(conn.execute(select(r.c.stakeholder_id).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "offered",
        r.c.offer_expires_at < now)).scalars())
    if not lapsed:
        return [], []
    events.lock(conn, campaign, event)
    conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                 r.c.stakeholder_id.in_(lapsed))
                 .values(status="lapsed", answered_at=now, offer_expires_at=None))
    return lapsed, _promote(conn, campaign, event, capacity, now, offer_hours)


def _promote(conn: Connection, campaign: str, event: str, capacity: int, now: datetime,
             offer_hours: float | None) -> list[int]:
    """Fill free seats from the waitlist, earliest first (as offers, with ``offer_hours``)."""
    free = capacity - taken(conn, campaign, event)
    if free <= 0:
        return []
    waiting = conn.execute(select(r.c.stakeholder_id).where(
        r.c.campaign == campaign, r.c.event == event, r.c.status == "waitlisted")
        .order_by(r.c.queued_at, r.c.id).limit(free)).scalars().all()
    status = "accepted" if offer_hours is None else "offered"
    expires = None if offer_hours is None else now + timedelta(hours=offer_hours)
    for person in waiting:
        conn.execute(update(r).where(r.c.campaign == campaign, r.c.event == event,
                                     r.c.stakeholder_id == person)
                     .values(status=status, answered_at=now, queued_at=None,
                             offer_expires_at=expires))
        _respond(conn, campaign, event, person, Kind.RSVP_PROMOTED, "waitlist", now, None)
    return list(waiting)


def _respond(conn: Connection, campaign: str, event: str, stakeholder_id: int, kind: Kind,
             source: str, now: datetime, send_id: int | None) -> None:
    responses.insert(conn, [Response(
        kind=kind, occurred_at=now, send_id=send_id, stakeholder_id=stakeholder_id,
        campaign=campaign, event=event, detail=source, raw=json.dumps({"source": source}))],
        received_at=now)


def roster(conn: Connection, campaign: str, event: str, calendar_steps: Sequence[str]
           ) -> list[dict[str, Any]]:
    """Everyone sent the event's calendar by one of ``calendar_steps`` (or answering for it),
    with their answer, its source and time, whether it was for an older SEQUENCE than their
    calendar now holds (``reconfirm``: the update asks them again), a time they proposed, and
    whether they attended."""
    s, st, a, resp = tables.sends, tables.stakeholders, tables.attendance, tables.responses
    sent = and_(s.c.campaign == campaign, s.c.step.in_(list(calendar_steps) or [""]),
                s.c.status == "sent")
    invited = select(s.c.stakeholder_id).where(sent)
    holds = (select(func.max(s.c.sequence)).where(sent, s.c.stakeholder_id == st.c.id)
             .scalar_subquery())
    proposed = (select(resp.c.detail).where(
        resp.c.stakeholder_id == st.c.id, resp.c.campaign == campaign, resp.c.event == event,
        resp.c.kind == Kind.RSVP_PROPOSED).order_by(resp.c.id.desc()).limit(1)
        .scalar_subquery())
    answered = select(r.c.stakeholder_id).where(r.c.campaign == campaign, r.c.event == event)
    where_rsvp = and_(r.c.stakeholder_id == st.c.id, r.c.campaign == campaign, r.c.event == event)
    where_att = and_(a.c.stakeholder_id == st.c.id, a.c.campaign == campaign, a.c.event == event)
    rows = conn.execute(
        select(st.c.display_email, st.c.first_name, st.c.last_name, st.c.organisation,
               st.c.borough, r.c.status, r.c.source, r.c.answered_at, r.c.sequence,
               r.c.offer_expires_at, holds.label("holds"), proposed.label("proposed"),
               a.c.recorded_at)
        .outerjoin(r, where_rsvp).outerjoin(a, where_att)
        .where(st.c.id.in_(invited.union(answered)))
        .order_by(st.c.last_name, st.c.first_name)).all()
    return [{"email": row.display_email, "name": f"{row.first_name} {row.last_name}".strip(),
             "organisation": row.organisation, "borough": row.borough,
             "status": row.status or "no response", "source": row.source,
             "answered_at": row.answered_at,
             "reconfirm": bool(row.status and row.sequence is not None and row.holds is not None
                               and row.sequence < row.holds),
             "offer_expires_at": row.offer_expires_at, "proposed": row.proposed,
             "attended": row.recorded_at is not None}
            for row in rows]


def proposal(conn: Connection, *, campaign: str, event: str, stakeholder_id: int,
             detail: str, now: datetime, occurred_at: datetime) -> None:
    """A time the person proposed (METHOD:COUNTER), kept for the organiser; nothing changes."""
    responses.insert(conn, [Response(
        kind=Kind.RSVP_PROPOSED, occurred_at=occurred_at, stakeholder_id=stakeholder_id,
        campaign=campaign, event=event, detail=detail)], received_at=now)

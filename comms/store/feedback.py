"""Ratings after an event: one answer per person and event, a later one replacing it (every
answer is kept in responses), and the figures ``comms events feedback`` and reports show."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from ..responses import Kind, Response
from . import responses, tables
from .upsert import upsert

f, st = tables.feedback, tables.stakeholders
GROUPINGS = {"borough": st.c.borough, "organisation": st.c.organisation}


def record(conn: Connection, *, campaign: str, event: str, stakeholder_id: int, rating: int,
           comment: str, send_id: int, now: datetime) -> None:
    upsert(conn, f, [{"campaign": campaign, "event": event, "stakeholder_id": stakeholder_id,
                      "rating": rating, "comment": comment, "answered_at": now}],
           ["campaign", "event", "stakeholder_id"], ["rating", "comment", "answered_at"])
    responses.insert(conn, [Response(
        kind=Kind.FEEDBACK, occurred_at=now, send_id=send_id, stakeholder_id=stakeholder_id,
        campaign=campaign, event=event, detail=str(rating),
        raw=json.dumps({"rating": rating, "comment": comment}, ensure_ascii=False))],
        received_at=now)


def held(conn: Connection, campaign: str, event: str, stakeholder_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(f.c.rating, f.c.comment).where(
        f.c.campaign == campaign, f.c.event == event,
        f.c.stakeholder_id == stakeholder_id)).mappings().first()
    return dict(row) if row else None


def summary(conn: Connection, campaign: str, event: str, *, asked: int,
            by: str = "borough") -> dict[str, Any]:
    """Count, response rate (over the people asked), mean, distribution (rating → people), the
    same by group, and the comments."""
    of_event = (f.c.campaign == campaign, f.c.event == event)
    distribution = {n: 0 for n in range(1, 6)}
    distribution.update(conn.execute(select(f.c.rating, func.count()).where(*of_event)
                                     .group_by(f.c.rating)).all())
    count = sum(distribution.values())
    mean = (round(sum(n * k for n, k in distribution.items()) / count, 2) if count else None)
    group = GROUPINGS[by]
    by_group = [{"group": name or "(none)", "count": n, "mean": round(float(avg), 2)}
                for name, n, avg in conn.execute(
                    select(group, func.count(), func.avg(f.c.rating))
                    .join(st, st.c.id == f.c.stakeholder_id).where(*of_event)
                    .group_by(group).order_by(group))]
    comments = [{"rating": rating, "comment": comment} for rating, comment in conn.execute(
        select(f.c.rating, f.c.comment).where(*of_event, f.c.comment != "")
        .order_by(f.c.answered_at, f.c.id))]
    return {"campaign": campaign, "event": event, "asked": asked, "count": count,
            "response_rate": round(count / asked, 4) if asked else None, "mean": mean,
            "distribution": {str(n): k for n, k in distribution.items()},
            "by": by, "by_group": by_group, "comments": comments}


def mean(conn: Connection, campaign: str, event: str) -> float | None:
    """The mean rating of an event (None: none yet)."""
    found = conn.execute(select(func.avg(f.c.rating)).where(
        f.c.campaign == campaign, f.c.event == event)).scalar()
    return round(float(found), 2) if found is not None else None

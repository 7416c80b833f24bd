"""The occurrences table: which step occurrences the service has processed (sent or missed),
and when a ``now: true`` step was first seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from ..plan import Processed
from . import tables
from .upsert import insert_ignore, upsert

o = tables.occurrences
KEY = ["campaign", "step", "occurrence"]
SEEN = "seen"  # a now-step's first sighting; not processed yet


def processed(conn: Connection) -> dict[tuple[str, str, str], Processed]:
    """Every processed occurrence by (campaign, step, occurrence)."""
    rows = conn.execute(select(o.c.campaign, o.c.step, o.c.occurrence, o.c.status, o.c.reason)
                        .where(o.c.status != SEEN))
    return {(r.campaign, r.step, r.occurrence): Processed(r.status, r.reason) for r in rows}


def now_steps_seen(conn: Connection) -> dict[tuple[str, str], datetime]:
    """When each ``now: true`` step was first seen (its one occurrence falls due then)."""
    rows = conn.execute(select(o.c.campaign, o.c.step, o.c.due_at).where(o.c.occurrence == "once"))
    return {(r.campaign, r.step): r.due_at for r in rows}


def see_now_step(conn: Connection, campaign: str, step: str, now: datetime) -> datetime:
    """Record that a ``now: true`` step was seen (if not yet); when it first was."""
    insert_ignore(conn, o, [{"campaign": campaign, "step": step, "occurrence": "once",
                             "due_at": now, "status": SEEN}], KEY)
    seen: datetime = conn.execute(select(o.c.due_at).where(
        o.c.campaign == campaign, o.c.step == step, o.c.occurrence == "once")).scalar_one()
    return seen


def mark(conn: Connection, campaign: str, step: str, occurrence: str, *, due_at: datetime,
         status: str, reason: str | None, now: datetime) -> None:
    """Record an occurrence as ``done`` (sent) or ``missed`` (with the reason)."""
    upsert(conn, o, [{"campaign": campaign, "step": step, "occurrence": occurrence,
                      "due_at": due_at, "status": status, "reason": reason,
                      "processed_at": now}], KEY, ["status", "reason", "processed_at"])


def missed(conn: Connection, campaign: str | None = None) -> list[dict[str, Any]]:
    query = select(o.c.campaign, o.c.step, o.c.occurrence, o.c.due_at, o.c.reason).where(
        o.c.status == "missed").order_by(o.c.due_at)
    if campaign:
        query = query.where(o.c.campaign == campaign)
    return [dict(r) for r in conn.execute(query).mappings()]

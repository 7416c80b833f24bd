"""The campaign_state table: when the service first saw each campaign, and whether it is paused."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from . import tables
from .upsert import insert_ignore

c = tables.campaign_state


def first_seen(conn: Connection, campaign: str, now: datetime) -> datetime:
    """When the campaign was first seen, recorded as ``now`` if never (cron steps count from it)."""
    insert_ignore(conn, c, [{"campaign": campaign, "first_seen": now}], ["campaign"])
    seen: datetime = conn.execute(select(c.c.first_seen).where(c.c.campaign == campaign)).scalar_one()
    return seen


def states(conn: Connection) -> dict[str, tuple[datetime, datetime | None]]:
    """Every recorded campaign: (first seen, paused at or None)."""
    return {row.campaign: (row.first_seen, row.paused_at)
            for row in conn.execute(select(c.c.campaign, c.c.first_seen, c.c.paused_at))}


def paused_at(conn: Connection, campaign: str) -> datetime | None:
    value: datetime | None = conn.execute(
        select(c.c.paused_at).where(c.c.campaign == campaign)).scalar()
    return value


def set_paused(conn: Connection, campaign: str, paused: bool, now: datetime) -> bool:
    """Pause (nothing is sent) or resume (what fell due meanwhile goes, within catch-up);
    False when it already was so."""
    insert_ignore(conn, c, [{"campaign": campaign, "first_seen": now}], ["campaign"])
    result = conn.execute(update(c).where(
        c.c.campaign == campaign,
        c.c.paused_at.is_(None) if paused else c.c.paused_at.is_not(None))
        .values(paused_at=now if paused else None))
    return (result.rowcount or 0) > 0


def paused(conn: Connection) -> set[str]:
    """The campaigns paused now."""
    return set(conn.execute(select(c.c.campaign).where(c.c.paused_at.is_not(None))).scalars())

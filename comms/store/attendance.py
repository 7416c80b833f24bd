"""The attendance table: who signed in at each event."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from . import stakeholders, tables
from .upsert import insert_ignore


def record(conn: Connection, campaign: str, event: str, emails: Sequence[str], *, source: str,
           now: datetime) -> list[str]:
    """Mark these people as having attended; the addresses not in the directory."""
    ids = stakeholders.ids_by_email(conn, emails)
    rows = [{"campaign": campaign, "event": event, "stakeholder_id": ids[e], "recorded_at": now,
             "source": source} for e in emails if e in ids]
    insert_ignore(conn, tables.attendance, rows, ["campaign", "event", "stakeholder_id"])
    return [e for e in emails if e not in ids]

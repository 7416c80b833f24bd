"""The suppressions table: addresses never mailed again (a keyed hash stays after erasure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from . import tables
from .upsert import insert_ignore, upsert

sup = tables.suppressions


def add(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Suppress: rows of ``email_hash``, ``email``, ``reason``, ``source``, ``created_at``; an
    address already on the list keeps its entry."""
    insert_ignore(conn, sup, rows, ["email_hash"])


def forget(conn: Connection, email_hash: str, now: datetime) -> None:
    """The address is erased: only its hash stays, as ``forgotten``."""
    upsert(conn, sup, [{"email_hash": email_hash, "email": None, "reason": "forgotten",
                        "source": "erasure request", "created_at": now}], ["email_hash"],
           ["email", "reason", "source"])


def remove(conn: Connection, email_hash: str) -> bool:
    """Allow an address again (never one erased on request)."""
    result = conn.execute(delete(sup).where(sup.c.email_hash == email_hash,
                                            sup.c.reason != "forgotten"))
    return (result.rowcount or 0) > 0


def reasons(conn: Connection, hashes: Sequence[str], source: str) -> dict[str, str]:
    """The reason recorded for each of these hashes that ``source`` suppressed."""
    return dict(conn.execute(select(sup.c.email_hash, sup.c.reason)
                             .where(sup.c.email_hash.in_(sorted(hashes)), sup.c.source == source)
                             ).all())


def set_reasons(conn: Connection, reasons: dict[str, str]) -> None:
    """Change the reason of these hashes (in hash order: concurrent writers cannot deadlock)."""
    if reasons:
        conn.execute(update(sup).where(sup.c.email_hash == bindparam("b_hash"))
                     .values(reason=bindparam("b_reason")),
                     [{"b_hash": h, "b_reason": reasons[h]} for h in sorted(reasons)])


def forgotten_hashes(conn: Connection) -> set[str]:
    """Hashes of erased people: their addresses must not come back by a later import."""
    return set(conn.execute(select(sup.c.email_hash).where(sup.c.reason == "forgotten")).scalars())


def listing(conn: Connection) -> list[tuple[str | None, str, str, datetime]]:
    rows = conn.execute(select(sup.c.email, sup.c.reason, sup.c.source, sup.c.created_at)
                        .order_by(sup.c.created_at, sup.c.id))
    return [(row.email, row.reason, row.source, row.created_at) for row in rows]


def of_email(conn: Connection, email: str) -> dict[str, Any] | None:
    row = conn.execute(select(sup.c.reason, sup.c.source, sup.c.created_at)
                       .where(sup.c.email == email)).mappings().first()
    return dict(row) if row else None

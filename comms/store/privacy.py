"""A person's rows across the store: everything held about them (a subject access request) and
their erasure, with the database compacted so that deleted content is gone from its files."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, and_, case, delete, func, or_, select, text, update

from . import Store, tables


def export(conn: Connection, key: str) -> dict[str, Any] | None:
    """Everything held about the person with this case-folded address (None: nothing)."""
    st, s = tables.stakeholders, tables.sends
    person = conn.execute(select(st).where(st.c.email == key)).mappings().first()
    suppression = conn.execute(select(
        tables.suppressions.c.reason, tables.suppressions.c.source,
        tables.suppressions.c.created_at).where(tables.suppressions.c.email == key)
    ).mappings().first()
    if person is None and suppression is None:
        return None
    data: dict[str, Any] = {"stakeholder": _plain(person), "suppression": _plain(suppression)}
    if person is not None:
        pid = person["id"]
        data["sends"] = _rows(conn, select(
            s.c.campaign, s.c.step, s.c.occurrence, s.c.status, s.c.delivery, s.c.sent_at,
            s.c.error).where(s.c.stakeholder_id == pid).order_by(s.c.id))
        data["attempts"] = _rows(conn, select(
            tables.attempts.c.at, tables.attempts.c.outcome, tables.attempts.c.status_code,
            tables.attempts.c.detail).join(s, s.c.id == tables.attempts.c.send_id)
            .where(s.c.stakeholder_id == pid).order_by(tables.attempts.c.id))
        r = tables.responses
        data["responses"] = _rows(conn, select(
            r.c.campaign, r.c.step, r.c.event, r.c.kind, r.c.detail, r.c.machine,
            r.c.occurred_at).where(r.c.stakeholder_id == pid).order_by(r.c.id))
        for name in ("rsvps", "attendance", "feedback"):
            table = tables.metadata.tables[name]
            data[name] = _rows(conn, select(*[c for c in table.c if c.name not in (
                "id", "stakeholder_id")]).where(table.c.stakeholder_id == pid))
        p = tables.pairs
        data["pairs"] = _rows(conn, select(
            p.c.round, case((p.c.mentor_id == pid, "mentor"), else_="mentee").label("as"),
            p.c.note, p.c.active, p.c.answer, p.c.answered_at)
            .where(or_(p.c.mentor_id == pid, p.c.mentee_id == pid)).order_by(p.c.id))
    return data


def erase(conn: Connection, key: str) -> tuple[int, list[str]]:
    """Delete the person with this case-folded address and everything that hangs on them;
    (rows deleted, the uids of their sends)."""
    st, s, r = tables.stakeholders, tables.sends, tables.responses
    pid = conn.execute(select(st.c.id).where(st.c.email == key)).scalar()
    uids = list(conn.execute(select(s.c.uid).where(s.c.stakeholder_id == pid)).scalars())
    # Provider events that matched no send may still carry the address in their payload.
    conn.execute(delete(r).where(and_(r.c.stakeholder_id.is_(None), r.c.send_id.is_(None),
                                      func.lower(r.c.raw).contains(key))))
    deleted = conn.execute(delete(st).where(st.c.email == key)).rowcount or 0
    _scrub(conn, key)
    return deleted, uids


def _scrub(conn: Connection, key: str) -> None:
    """The address taken out of what other people's stored responses say (a provider event or a
    reply that mentions it), as written or percent-encoded (a link's query)."""
    r = tables.responses
    forms = sorted({key, quote(key, safe=""), quote(key, safe="@")}, key=len, reverse=True)
    mentions = or_(*(func.lower(column).contains(form.lower())
                     for column in (r.c.raw, r.c.detail) for form in forms))
    pattern = re.compile("|".join(re.escape(form) for form in forms), re.IGNORECASE)
    for row in conn.execute(select(r.c.id, r.c.raw, r.c.detail).where(mentions)).all():
        conn.execute(update(r).where(r.c.id == row.id).values(
            raw=pattern.sub("[erased]", row.raw) if row.raw else row.raw,
            detail=pattern.sub("[erased]", row.detail) if row.detail else row.detail))


def compact(store: Store) -> None:
    """Leave no copy of deleted rows in the database files (VACUUM runs outside transactions)."""
    if store.dialect == "sqlite":
        raw = store.engine.raw_connection()  # the driver connection is in autocommit mode here
        try:
            cursor = raw.cursor()
            for statement in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM",
                              "PRAGMA wal_checkpoint(TRUNCATE)"):
                cursor.execute(statement)
            cursor.close()
        finally:
            raw.close()
        return
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("stakeholders", "sends", "attempts", "responses", "rsvps", "attendance",
                      "suppressions"):
            conn.execute(text(f"VACUUM {table}"))


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [_plain(row) or {} for row in conn.execute(query).mappings()]


def _plain(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    out = {}
    for k, v in dict(row).items():
        if k == "id":
            continue
        out[k] = v.isoformat() if isinstance(v, datetime) else (
            json.loads(v) if k == "attributes" else v)
    return out

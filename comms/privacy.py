"""People's rights (UK GDPR): everything held about a person, and erasure on request.

Erasure deletes the person from every table and file comms keeps and leaves only a keyed hash of
the address on the suppression list, so a later import of the same address is skipped. On
SQLite, deleted content is overwritten (``secure_delete``), the write-ahead log is checkpointed
and truncated, and the database is vacuumed: scanning the files finds the address nowhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, text

from ._types import email_key
from .errors import NotFound
from .store import Store, tables
from .store.upsert import upsert
from .suppression import AddressHasher


def export_person(store: Store, email: str) -> dict[str, Any]:
    """Everything comms holds about one person, as plain JSON-ready data."""
    key = email_key(email)
    st, s = tables.stakeholders, tables.sends
    with store.read() as conn:
        person = conn.execute(select(st).where(st.c.email == key)).mappings().first()
        suppression = conn.execute(select(
            tables.suppressions.c.reason, tables.suppressions.c.source,
            tables.suppressions.c.created_at).where(tables.suppressions.c.email == key)
        ).mappings().first()
        if person is None and suppression is None:
            raise NotFound(f"comms holds nothing about {email}")
        data: dict[str, Any] = {"email": email, "stakeholder": _plain(person),
                                "suppression": _plain(suppression)}
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
            for name in ("rsvps", "attendance"):
                table = tables.metadata.tables[name]
                data[name] = _rows(conn, select(*[c for c in table.c if c.name not in (
                    "id", "stakeholder_id")]).where(table.c.stakeholder_id == pid))
    return data


@dataclass(frozen=True, slots=True)
class Erasure:
    rows: int  # stakeholder rows deleted (with everything that hangs on them)
    files: int  # outbox and preview files deleted


def forget_person(store: Store, email: str, *, now: datetime, outbox: Path) -> Erasure:
    """Erase a person everywhere comms keeps data; keep only a keyed hash to refuse them later."""
    key = email_key(email)
    hasher = AddressHasher(store)
    st, s, r = tables.stakeholders, tables.sends, tables.responses
    with store.write() as conn:
        pid = conn.execute(select(st.c.id).where(st.c.email == key)).scalar()
        uids = list(conn.execute(select(s.c.uid).where(s.c.stakeholder_id == pid)).scalars())
        # Provider events that matched no send may still carry the address in their payload.
        conn.execute(delete(r).where(and_(r.c.stakeholder_id.is_(None), r.c.send_id.is_(None),
                                          func.lower(r.c.raw).contains(key))))
        deleted = conn.execute(delete(st).where(st.c.email == key)).rowcount or 0
        upsert(conn, tables.suppressions, [{
            "email_hash": hasher(key), "email": None, "reason": "forgotten",
            "source": "erasure request", "created_at": now}], ["email_hash"],
            ["email", "reason", "source"])
    files = _delete_files(outbox, uids, key)
    _compact(store)
    return Erasure(deleted, files)


def _delete_files(outbox: Path, uids: list[str], key: str) -> int:
    count = 0
    candidates = [outbox / f"{uid}.eml" for uid in uids]
    previews = outbox / "previews"
    if previews.is_dir():
        candidates += [p for p in previews.iterdir() if key in p.name.lower()]
    for path in candidates:
        if path.is_file():
            path.unlink()
            count += 1
    return count


def _compact(store: Store) -> None:
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

"""Mirror the stakeholder directory into the store, one source file at a time."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, func, select, update

from ..audience import Stakeholder, to_row
from . import Store, tables, targets
from .suppressions import forgotten_hashes
from .upsert import upsert

_BATCH = 1000

if TYPE_CHECKING:
    from ..targeting import Target


@dataclass(slots=True)
class SyncResult:
    upserted: int = 0
    deactivated: int = 0
    forgotten: list[Stakeholder] = field(default_factory=list)  # erased people, not re-imported


def fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path).encode() + b"\0")
        with open(path, "rb") as file:  # a piece at a time: not a copy of a large directory
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def sync(store: Store, people: Sequence[Stakeholder], *, now: datetime,
         fingerprint_key: str | None = None, fingerprint_value: str | None = None) -> SyncResult:
    """Upsert ``people``; deactivate people of the same sources that are gone from them.

    With a fingerprint (of the source files), a directory that has not changed since the last
    sync costs one query.
    """
    result = SyncResult()
    m = tables.meta
    if fingerprint_key:
        with store.read() as conn:
            seen = conn.execute(select(m.c.value).where(m.c.key == fingerprint_key)).scalar()
        if seen == fingerprint_value:
            return result
    from ..suppression import AddressHasher

    hasher = AddressHasher(store)
    s = tables.stakeholders
    by_source: dict[str, set[str]] = defaultdict(set)
    with store.write() as conn:
        forgotten = forgotten_hashes(conn)
        rows: list[dict[str, Any]] = []  # a batch at a time, not the whole directory's rows
        for person in people:
            by_source[person.source].add(person.key)
            if forgotten and not forgotten.isdisjoint(hasher.candidates(person.email)):
                result.forgotten.append(person)
                continue
            rows.append(to_row(person) | {"active": True, "updated_at": now})
            if len(rows) == _BATCH:
                result.upserted += _upsert(conn, rows)
                rows = []
        if rows:
            result.upserted += _upsert(conn, rows)
        for source, keys in by_source.items():
            gone = sorted(email for email in conn.execute(
                select(s.c.email).where(s.c.source == source, s.c.active)).scalars()
                if email not in keys)
            for i in range(0, len(gone), _BATCH):
                conn.execute(update(s).where(and_(s.c.source == source,
                                                  s.c.email.in_(gone[i:i + _BATCH])))
                             .values(active=False, updated_at=now))
            result.deactivated += len(gone)
        if fingerprint_key and fingerprint_value:
            upsert(conn, m, [{"key": fingerprint_key, "value": fingerprint_value}], ["key"],
                   ["value"])
    return result


def _upsert(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """One batch of the directory's rows written; how many."""
    upsert(conn, tables.stakeholders, rows, ["email"], [c for c in rows[0] if c != "email"])
    return len(rows)


def listing(conn: Connection, *, role: str | None = None,
            borough: str | None = None) -> list[dict[str, object]]:
    s = tables.stakeholders
    query = select(s).where(s.c.active).order_by(s.c.borough, s.c.last_name, s.c.first_name)
    if role:
        query = query.where(s.c.role == role.lower())
    if borough:
        query = query.where(func.lower(s.c.borough) == borough.lower())
    rows = []
    for row in conn.execute(query).mappings():
        rows.append(dict(row) | {"email": row["display_email"],
                                 "tags": [t for t in row["tags"].split(";") if t]})
    return rows


def ids_by_email(conn: Connection, emails: Sequence[str]) -> dict[str, int]:
    """Stakeholder ids by case-folded address, for those of ``emails`` in the store."""
    s = tables.stakeholders
    found: dict[str, int] = {}
    for i in range(0, len(emails), _BATCH):
        found.update((row.email, row.id) for row in conn.execute(select(s.c.email, s.c.id).where(
            s.c.email.in_(emails[i:i + _BATCH]))))
    return found


def by_email(conn: Connection, email: str) -> dict[str, Any] | None:
    """The stakeholder's row (by case-folded address), or None."""
    s = tables.stakeholders
    row = conn.execute(select(s).where(s.c.email == email)).mappings().first()
    return dict(row) if row else None


def count(conn: Connection, target: Target) -> int:
    """How many people a target reaches (sends or suppression aside)."""
    s = tables.stakeholders
    return int(conn.execute(select(func.count()).select_from(s).where(targets.reach(target)))
               .scalar_one())


def reached(conn: Connection, target: Target) -> Any:
    """The rows of everyone a target reaches, in id order (sends or suppression aside)."""
    s = tables.stakeholders
    return conn.execute(select(s).where(targets.reach(target)).order_by(s.c.id)).mappings()


def is_reached(conn: Connection, target: Target, email: str) -> bool:
    s = tables.stakeholders
    return conn.execute(select(s.c.id).where(targets.reach(target), s.c.email == email)
                        ).first() is not None

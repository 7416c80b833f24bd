"""The suppression list: addresses never mailed again, in any campaign, whatever the files say."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from ._types import email_key
from .store import Store, tables
from .store.upsert import insert_ignore
from .tracking.responses import Kind


@dataclass(frozen=True, slots=True)
class Suppression:
    email: str | None
    reason: str
    source: str
    created_at: datetime


class AddressHasher:
    """Keyed hash of an address: kept after erasure so a re-import can be refused."""

    def __init__(self, store: Store) -> None:
        self._key = store.secret("address-hash").encode()

    def __call__(self, email: str) -> str:
        return hmac.new(self._key, email_key(email).encode(), hashlib.sha256).hexdigest()


def suppress(conn: Connection, hasher: AddressHasher, emails: Iterable[str], *, reason: str,
             source: str, now: datetime) -> None:
    rows = [{"email_hash": hasher(e), "email": email_key(e), "reason": reason, "source": source,
             "created_at": now} for e in emails]
    insert_ignore(conn, tables.suppressions, rows, ["email_hash"])


def unsuppress(conn: Connection, hasher: AddressHasher, email: str) -> bool:
    s = tables.suppressions
    result = conn.execute(delete(s).where(s.c.email_hash == hasher(email), s.c.reason != "forgotten"))
    return result.rowcount > 0


def forgotten_hashes(conn: Connection) -> set[str]:
    """Hashes of erased people: their addresses must not come back by a later import."""
    s = tables.suppressions
    return set(conn.execute(select(s.c.email_hash).where(s.c.reason == "forgotten")).scalars())


def list_suppressions(conn: Connection) -> list[Suppression]:
    s = tables.suppressions
    rows = conn.execute(select(s.c.email, s.c.reason, s.c.source, s.c.created_at)
                        .order_by(s.c.created_at, s.c.id))
    return [Suppression(*row) for row in rows]


def unsubscribe_send(store: Store, hasher: AddressHasher, send_uid: str, *, now: datetime,
                     source: str) -> bool:
    """The person a send went to asked to stop: suppress the address (idempotent) and record an
    ``unsubscribed`` response on that send. False when the send is unknown (erased, or never)."""
    s, st = tables.sends, tables.stakeholders
    with store.write() as conn:
        row = conn.execute(select(s.c.id, s.c.campaign, s.c.step, st.c.id.label("person"),
                                  st.c.email).join(st, s.c.stakeholder_id == st.c.id)
                           .where(s.c.uid == send_uid)).first()
        if row is None:
            return False
        suppress(conn, hasher, [row.email], reason="unsubscribed", source=source, now=now)
        already = conn.execute(select(tables.responses.c.id).where(
            tables.responses.c.send_id == row.id,
            tables.responses.c.kind == Kind.UNSUBSCRIBED)).first()
        if already is None:
            conn.execute(insert(tables.responses).values(
                send_id=row.id, stakeholder_id=row.person, campaign=row.campaign, step=row.step,
                kind=Kind.UNSUBSCRIBED, detail=source, occurred_at=now, received_at=now))
    return True

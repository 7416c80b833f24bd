"""The suppression list: addresses never mailed again, in any campaign, whatever the files say."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, select

from ._types import email_key
from .store import Store, tables
from .store.upsert import insert_ignore

REASONS = ("unsubscribed", "bounced", "spam", "manual", "forgotten")


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

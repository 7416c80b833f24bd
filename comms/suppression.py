"""The suppression list: addresses never mailed again, in any campaign, whatever the files say."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from ._types import email_key
from .keys import keyed_hash
from .responses import Kind, Response
from .store import Conn, Store, meta, responses, sends, suppressions

LEGACY_KEY = "legacy:address-hash"  # the old stored key: useless without the secret key


@dataclass(frozen=True, slots=True)
class Suppression:
    email: str | None
    reason: str
    source: str
    created_at: datetime


class AddressHasher:
    """Keyed hash of an address: kept after erasure so a re-import can be refused. The key is
    derived from the secret key, never stored beside the hashes."""

    def __init__(self, store: Store) -> None:
        self._key = store.secret("address-hash").encode()
        with store.read() as conn:
            legacy = meta.get(conn, LEGACY_KEY)
        self._legacy = legacy.encode() if legacy else None

    def __call__(self, email: str) -> str:
        return keyed_hash(self._key, email_key(email))

    def candidates(self, email: str) -> Iterator[str]:
        """Every hash an erasure of ``email`` may have left: this one, and for people erased
        while the key was kept in the store, that old hash re-keyed (see migration 0008)."""
        yield self(email)
        if self._legacy is not None:
            yield keyed_hash(self._key, keyed_hash(self._legacy, email_key(email)))


def suppress(conn: Conn, hasher: AddressHasher, emails: Iterable[str], *, reason: str,
             source: str, now: datetime) -> None:
    suppressions.add(conn, [{"email_hash": hasher(e), "email": email_key(e), "reason": reason,
                             "source": source, "created_at": now} for e in emails])


def unsuppress(conn: Conn, hasher: AddressHasher, email: str) -> bool:
    return suppressions.remove(conn, hasher(email))


def list_suppressions(conn: Conn) -> list[Suppression]:
    return [Suppression(*row) for row in suppressions.listing(conn)]


def unsubscribe_send(store: Store, hasher: AddressHasher, send_uid: str, *, now: datetime,
                     source: str) -> bool:
    """The person a send went to asked to stop: suppress the address (idempotent) and record an
    ``unsubscribed`` response on that send. False when the send is unknown (erased, or never)."""
    with store.write() as conn:
        send = sends.by_uid(conn, send_uid)
        if send is None:
            return False
        suppress(conn, hasher, [send.email], reason="unsubscribed", source=source, now=now)
        if not responses.has(conn, send.id, Kind.UNSUBSCRIBED):
            responses.insert(conn, [Response(
                kind=Kind.UNSUBSCRIBED, occurred_at=now, send_id=send.id,
                stakeholder_id=send.stakeholder_id, campaign=send.campaign, step=send.step,
                detail=source)], received_at=now)
    return True

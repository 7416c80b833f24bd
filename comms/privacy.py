"""People's rights (UK GDPR): everything held about a person, and erasure on request.

Erasure deletes the person from every table and file comms keeps and leaves only a keyed hash of
the address on the suppression list, so a later import of the same address is skipped. On
SQLite, deleted content is overwritten (``secure_delete``), the write-ahead log is checkpointed
and truncated, and the database is vacuumed: scanning the files finds the address nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ._types import email_key, file_safe
from .errors import NotFound
from .store import Store, suppressions
from .store import privacy as stored
from .suppression import AddressHasher


def export_person(store: Store, email: str) -> dict[str, Any]:
    """Everything comms holds about one person, as plain JSON-ready data."""
    with store.read() as conn:
        data = stored.export(conn, email_key(email))
    if data is None:
        raise NotFound(f"comms holds nothing about {email}")
    return {"email": email, **data}


@dataclass(frozen=True, slots=True)
class Erasure:
    rows: int  # stakeholder rows deleted (with everything that hangs on them)
    files: int  # outbox and preview files deleted


def forget_person(store: Store, email: str, *, now: datetime, outbox: Path) -> Erasure:
    """Erase a person everywhere comms keeps data; keep only a keyed hash to refuse them later."""
    key = email_key(email)
    hasher = AddressHasher(store)
    with store.write() as conn:
        deleted, uids = stored.erase(conn, key)
        suppressions.forget(conn, hasher(key), now)
    files = _delete_files(outbox, uids, key)
    stored.compact(store)
    return Erasure(deleted, files)


def _delete_files(outbox: Path, uids: list[str], key: str) -> int:
    count = 0
    candidates = [outbox / f"{uid}.eml" for uid in uids]
    previews = outbox / "previews"
    if previews.is_dir():  # named by comms/preview.py, the address made file-safe
        candidates += [p for p in previews.iterdir() if file_safe(key) in p.name]
    for path in candidates:
        if path.is_file():
            path.unlink()
            count += 1
    return count

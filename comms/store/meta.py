"""The meta table: small named values (the service's last run, the directory's fingerprint)."""

from __future__ import annotations

from sqlalchemy import Connection, select

from . import tables
from .upsert import insert_ignore, upsert

m = tables.meta


def get(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(m.c.value).where(m.c.key == key)).scalar()
    return None if value is None else str(value)


def put(conn: Connection, key: str, value: str) -> None:
    upsert(conn, m, [{"key": key, "value": value}], ["key"], ["value"])


def put_if_absent(conn: Connection, key: str, value: str) -> str:
    """Store ``value`` unless the key exists; the stored value either way (processes racing to
    create it agree on one)."""
    insert_ignore(conn, m, [{"key": key, "value": value}], ["key"])
    return str(conn.execute(select(m.c.value).where(m.c.key == key)).scalar_one())

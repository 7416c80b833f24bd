"""INSERT ... ON CONFLICT for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

from sqlalchemy import Connection, Table


def insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]],
                  key: Sequence[str]) -> None:
    """Insert rows, skipping those whose ``key`` columns already exist."""
    if rows:
        conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(index_elements=list(key)), rows)


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str],
           update: Sequence[str]) -> None:
    """Insert rows; where ``key`` exists already, overwrite the ``update`` columns."""
    if not rows:
        return
    stmt = dialect_insert(conn, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt, rows)


def dialect_insert(conn: Connection | str, table: Table) -> Any:
    """The dialect's INSERT (for a connection or a dialect name), which knows ON CONFLICT."""
    name = conn if isinstance(conn, str) else conn.dialect.name
    # imported when used: a SQLite store need not load the PostgreSQL dialect (25 ms)
    dialect = "postgresql" if name == "postgresql" else "sqlite"
    return import_module(f"sqlalchemy.dialects.{dialect}").insert(table)

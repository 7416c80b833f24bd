"""The responses table: everything that came back, in one row shape, written by one inserter.

The webhook, RSVPs, calendar replies, replies by mail and unsubscribes all hand
:class:`~comms.responses.Response` values to :func:`insert`; a response whose
``provider_event_id`` is already stored is a duplicate and is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, func, select, update

from ..responses import Kind, Response
from . import tables
from .upsert import dialect_insert

r = tables.responses
_KEYS = ("send_id", "stakeholder_id", "campaign", "step", "event", "kind", "detail", "machine",
         "machine_reason", "provider_event_id", "occurred_at", "received_at", "raw")


def insert(conn: Connection, responses: Sequence[Response], *, received_at: datetime) -> None:
    """INSERT … ON CONFLICT (provider_event_id) DO NOTHING, as one executemany.

    The statement is compiled once per dialect and each value converted once by its column's
    type (timestamps repeat across a webhook batch), then handed to the driver directly:
    SQLAlchemy's per-row parameter handling was half the cost of a batch.
    """
    if not responses:
        return
    sql, positional, processors = _compiled(conn.dialect)
    order = positional or _KEYS
    converting = [(i, process) for i, k in enumerate(order) if (process := processors[k])]
    cache: dict[tuple[int, Any], Any] = {}
    params: list[Any] = []
    for response in responses:
        row = response.row(received_at)
        values = [row[k] for k in order]
        for i, process in converting:
            raw = values[i]
            if raw is not None:
                done = cache.get((i, raw))
                if done is None:
                    done = cache[(i, raw)] = process(raw)
                values[i] = done
        params.append(tuple(values) if positional else dict(zip(order, values, strict=True)))
    conn.exec_driver_sql(sql, params)


@lru_cache(maxsize=4)
def _compiled(dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    stmt = dialect_insert(dialect.name, r).on_conflict_do_nothing(
        index_elements=["provider_event_id"])
    compiled = stmt.compile(dialect=dialect, column_keys=list(_KEYS))
    names = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    processors = {k: r.c[k].type.bind_processor(dialect) for k in _KEYS}
    return compiled.string, names, processors


def stored_event_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of these provider event ids are stored already."""
    if not event_ids:
        return set()
    return set(conn.execute(select(r.c.provider_event_id).where(
        r.c.provider_event_id.in_(sorted(set(event_ids))))).scalars())


def clicks_of(conn: Connection, send_ids: Sequence[int]) -> list[tuple[int, int, datetime,
                                                                       str, str]]:
    """(send id, row id, time, URL, payload) of every click stored for these sends."""
    if not send_ids:
        return []
    return [tuple(row) for row in conn.execute(
        select(r.c.send_id, r.c.id, r.c.occurred_at, r.c.detail, r.c.raw)
        .where(r.c.send_id.in_(sorted(set(send_ids))), r.c.kind == Kind.CLICKED))]


def set_machine(conn: Connection, reasons: dict[int, str | None]) -> None:
    """Mark response rows as a machine's (with the reason) or a person's (None)."""
    if reasons:
        conn.execute(update(r).where(r.c.id == bindparam("b_id")).values(
            machine=bindparam("b_machine"), machine_reason=bindparam("b_reason")),
            [{"b_id": i, "b_machine": why is not None, "b_reason": why}
             for i, why in reasons.items()])


def has(conn: Connection, send_id: int, kind: Kind) -> bool:
    return conn.execute(select(r.c.id).where(r.c.send_id == send_id, r.c.kind == kind)
                        .limit(1)).first() is not None


def delivery_events(conn: Connection, send_ids: Sequence[int], kinds: Sequence[str]
                    ) -> list[tuple[int, str, datetime]]:
    """(send id, kind, first time) for each delivery kind stored for these sends."""
    if not send_ids:
        return []
    rows = conn.execute(select(r.c.send_id, r.c.kind, func.min(r.c.occurred_at))
                        .where(r.c.send_id.in_(list(send_ids)), r.c.kind.in_(list(kinds)))
                        .group_by(r.c.send_id, r.c.kind))
    return [(int(a), str(b), c) for a, b, c in rows]


def of_person(conn: Connection, stakeholder_id: int) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(select(
        r.c.campaign, r.c.step, r.c.event, r.c.kind, r.c.detail, r.c.machine, r.c.occurred_at)
        .where(r.c.stakeholder_id == stakeholder_id).order_by(r.c.id)).mappings()]

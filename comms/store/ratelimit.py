"""Rate limits shared by every process on one store: one token bucket row per limit.

A bucket is taken in a short write transaction (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite
has one writer at a time), refilled from the elapsed time of the clock the caller passes in, so
every process sharing the store draws on the same tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select, update

from . import tables
from .upsert import dialect_insert

b = tables.rate_buckets


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket: ``capacity`` sends, refilled at ``per_second`` (a per-minute limit), or in
    full at each UTC midnight (``per_second`` None: a daily quota)."""

    name: str
    capacity: int
    per_second: float | None

    @classmethod
    def per_minute(cls, name: str, n: int) -> Limit:
        """At most ``n`` in any 60 seconds: a burst of one second's worth, refilled at the rest
        of ``n`` a minute (burst + 60 s of refill = ``n``; a full minute sends within 2% of
        ``n`` from 50 a minute up)."""
        burst = max(1, math.ceil(n / 60))
        return cls(name, burst, max(n - burst, 1) / 60)

    @classmethod
    def per_day(cls, name: str, n: int) -> Limit:
        """At most ``n`` in each UTC day."""
        return cls(name, n, None)

    def refilled(self, tokens: float, since: datetime, now: datetime) -> float:
        if self.per_second is None:
            return float(self.capacity) if now.date() > since.date() else min(tokens,
                                                                                self.capacity)
        elapsed = max(0.0, (now - since).total_seconds())  # another process's clock behind
        return min(float(self.capacity), tokens + elapsed * self.per_second)

    def seconds_to_next(self, tokens: float, now: datetime) -> float:
        """How long until this bucket holds a whole token."""
        if tokens >= 1:
            return 0.0
        if self.per_second is None:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            return (midnight - now).total_seconds()
        return (1 - tokens) / self.per_second


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    wait: float  # when nothing was granted: seconds until every bucket holds a token


def take(conn: Connection, limits: Sequence[Limit], wanted: int, now: datetime) -> Grant:
    """Up to ``wanted`` sends allowed by every one of ``limits`` at once, taken from them all."""
    now = now.astimezone(UTC)
    if not limits or wanted <= 0:
        return Grant(max(0, wanted), 0.0)
    rows = _locked(conn, limits, now)
    tokens = {limit.name: limit.refilled(*rows[limit.name], now) for limit in limits}
    granted = max(0, min(wanted, *(math.floor(t) for t in tokens.values())))
    for limit in limits:
        since = rows[limit.name][1]
        conn.execute(update(b).where(b.c.name == limit.name).values(
            tokens=tokens[limit.name] - granted, updated_at=max(since, now)))
    wait = 0.0 if granted else max(limit.seconds_to_next(tokens[limit.name], now)
                                   for limit in limits)
    return Grant(granted, wait)


def give_back(conn: Connection, limits: Sequence[Limit], unused: int, now: datetime) -> None:
    """Tokens taken and not used (fewer sends were left to claim) go back."""
    if not limits or unused <= 0:
        return
    rows = _locked(conn, limits, now.astimezone(UTC))
    for limit in limits:
        tokens, _ = rows[limit.name]
        conn.execute(update(b).where(b.c.name == limit.name).values(
            tokens=min(float(limit.capacity), tokens + unused)))


def _locked(conn: Connection, limits: Sequence[Limit], now: datetime
            ) -> dict[str, tuple[float, datetime]]:
    """Each bucket's (tokens, updated_at), created full when missing, locked in name order."""
    names = sorted({limit.name for limit in limits})
    query = select(b.c.name, b.c.tokens, b.c.updated_at).where(b.c.name.in_(names)).order_by(
        b.c.name).with_for_update()
    rows = {name: (float(tokens), at) for name, tokens, at in conn.execute(query)}
    missing = [limit for limit in limits if limit.name not in rows]
    if missing:
        conn.execute(dialect_insert(conn, b).on_conflict_do_nothing(index_elements=["name"]),
                     [{"name": m.name, "tokens": float(m.capacity), "updated_at": now}
                      for m in missing])
        rows = {name: (float(tokens), at) for name, tokens, at in conn.execute(query)}
    return rows

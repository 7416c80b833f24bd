"""Rate limits shared by every process on one store.

A per-minute limit is a sliding window: what it granted in the last 60 seconds is kept in
``rate_grants``, so no 60 seconds ever hold more than the limit, and a full minute holds all of
it (a minute's worth may go at once, then the next as the first grow a minute old). A taker
whose sends leave up to a ``lag`` after their grant has each grant held that much longer, so
that no 60 seconds of sends hold more than the limit either. A daily cap is
a bucket refilled at each UTC midnight. Every take runs in a short write transaction that first
locks the limits' ``rate_buckets`` rows (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one
writer at a time), with the clock the caller passes in, so every process sharing the store draws
on the same allowance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from . import tables
from .upsert import dialect_insert

b = tables.rate_buckets
g = tables.rate_grants
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``capacity`` sends in any minute (``daily`` False), or in each UTC day; a
    per-minute grant keeps its place in the window for ``hold``."""

    name: str
    capacity: int
    daily: bool = False
    hold: timedelta = MINUTE

    @classmethod
    def per_minute(cls, name: str, n: int, *, lag: timedelta = timedelta(0)) -> Limit:
        """At most ``n`` in any 60 seconds of sends made at most ``lag`` after their grant
        (each grant is held a minute and ``lag``)."""
        return cls(name, n, hold=MINUTE + lag)

    @classmethod
    def per_day(cls, name: str, n: int) -> Limit:
        """At most ``n`` in each UTC day."""
        return cls(name, n, daily=True)


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    wait: float  # when nothing was granted: seconds until every limit allows one


def take(conn: Connection, limits: Sequence[Limit], wanted: int, now: datetime) -> Grant:
    """Up to ``wanted`` sends allowed by every one of ``limits`` at once, taken from them all."""
    now = now.astimezone(UTC)
    if not limits or wanted <= 0:
        return Grant(max(0, wanted), 0.0)
    buckets = _locked(conn, limits, now)
    windows = {limit.name: _window(conn, limit, now) for limit in limits if not limit.daily}
    left = {limit.name: (_day_tokens(limit, *buckets[limit.name], now) if limit.daily else
                         limit.capacity - sum(n for _, n in windows[limit.name]))
            for limit in limits}
    granted = max(0, min(wanted, *(math.floor(n) for n in left.values())))
    for limit in limits:
        if limit.daily:
            since = buckets[limit.name][1]
            conn.execute(update(b).where(b.c.name == limit.name).values(
                tokens=left[limit.name] - granted, updated_at=max(since, now)))
            continue
        conn.execute(delete(g).where(g.c.name == limit.name, g.c.at <= now - limit.hold))
        if granted:
            conn.execute(insert(g).values(name=limit.name, at=now, n=granted))
    if granted:
        return Grant(granted, 0.0)
    return Grant(0, max(_day_wait(now) if limit.daily else
                        _minute_wait(limit, windows[limit.name], now)
                        for limit in limits if left[limit.name] < 1))


def give_back(conn: Connection, limits: Sequence[Limit], unused: int, now: datetime) -> None:
    """Sends taken and not used (fewer were left to claim) go back: taken off the newest grants
    of each per-minute limit (which leave its window last, so the window never holds more)."""
    if not limits or unused <= 0:
        return
    now = now.astimezone(UTC)
    buckets = _locked(conn, limits, now)
    for limit in limits:
        if limit.daily:
            tokens, _ = buckets[limit.name]
            conn.execute(update(b).where(b.c.name == limit.name).values(
                tokens=min(float(limit.capacity), tokens + unused)))
            continue
        owed = unused
        newest = select(g.c.id, g.c.n).where(g.c.name == limit.name, g.c.at > now - limit.hold
                                              ).order_by(g.c.at.desc(), g.c.id.desc())
        for row_id, n in conn.execute(newest).all():
            if owed <= 0:
                break
            back = min(n, owed)
            conn.execute(update(g).where(g.c.id == row_id).values(n=n - back))
            owed -= back


def _window(conn: Connection, limit: Limit, now: datetime) -> list[tuple[datetime, int]]:
    """This limit's grants still held, oldest first."""
    return [(at, n) for at, n in conn.execute(
        select(g.c.at, func.sum(g.c.n)).where(g.c.name == limit.name, g.c.at > now - limit.hold)
        .group_by(g.c.at).order_by(g.c.at))]


def _minute_wait(limit: Limit, window: list[tuple[datetime, int]], now: datetime) -> float:
    """Seconds until enough of the window's grants are no longer held for one more send."""
    over = sum(n for _, n in window) - (limit.capacity - 1)
    if over <= 0:
        return 0.0
    for at, n in window:
        over -= n
        if over <= 0:
            return max(0.0, (at + limit.hold - now).total_seconds())
    return 0.0


def _day_tokens(limit: Limit, tokens: float, since: datetime, now: datetime) -> float:
    return float(limit.capacity) if now.date() > since.date() else min(tokens, limit.capacity)


def _day_wait(now: datetime) -> float:
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


def _locked(conn: Connection, limits: Sequence[Limit], now: datetime
            ) -> dict[str, tuple[float, datetime]]:
    """Each limit's bucket row (tokens, updated_at: a daily cap's state; for every limit, the
    lock that puts takers in turn), created full when missing, locked in name order."""
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

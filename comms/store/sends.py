"""The send ledger: one row per (campaign, step, occurrence, stakeholder), moved through states.

pending → claimed → sent | failed; claimed rows of a dead process become uncertain;
pending rows of suppressed addresses become suppressed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    update,
)

from . import tables
from .upsert import dialect_insert

ONCE = "once"  # the occurrence of a step that happens once (all but cron steps)
STATES = ("pending", "claimed", "sent", "failed", "uncertain", "suppressed", "skipped",
          "missed")
s, st = tables.sends, tables.stakeholders


@dataclass(frozen=True, slots=True)
class Key:
    campaign: str
    step: str
    occurrence: str

    def where(self) -> ColumnElement[bool]:
        return and_(s.c.campaign == self.campaign, s.c.step == self.step,
                    s.c.occurrence == self.occurrence)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    uid: str
    stakeholder: dict[str, Any]


def _random_uid(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        return literal_column("replace(gen_random_uuid()::text, '-', '')")
    return literal_column("lower(hex(randomblob(16)))")


def materialise(conn: Connection, key: Key, audience: ColumnElement[bool], now: datetime, *,
                after: tuple[str, timedelta | None] | None = None,
                condition: ColumnElement[bool] | None = None,
                missed_before: datetime | None = None) -> int:
    """Create sends for everyone in the audience who has none for this key yet: ``pending``,
    or ``skipped`` for those who do not meet ``condition`` now (final for this occurrence).

    With ``after=(step, delay)``, only people whose send of that step (same campaign) went out
    at least ``delay`` ago (any time, with ``delay`` None); those whose own due time
    (sent + delay) is before ``missed_before`` are recorded as ``missed`` instead.
    """
    whens: list[Any] = []
    parent = s.alias("parent")
    if after is not None and after[1] is not None and missed_before is not None:
        whens.append((parent.c.sent_at < missed_before - after[1], literal("missed")))
    if condition is not None:
        whens.append((~condition, literal("skipped")))
    status: Any = case(*whens, else_=literal("pending")) if whens else literal("pending")
    query = select(_random_uid(conn), literal(key.campaign), literal(key.step),
                   literal(key.occurrence), st.c.id, status,
                   literal(now, tables.UtcDateTime())).where(audience)
    if after is not None:
        parent_step, delay = after
        query = query.join_from(st, parent, and_(
            parent.c.stakeholder_id == st.c.id, parent.c.campaign == key.campaign,
            parent.c.step == parent_step, parent.c.status == "sent"))
        if delay is not None:
            query = query.where(parent.c.sent_at <= now - delay)
    query = query.where(~select(s.c.id).where(key.where(), s.c.stakeholder_id == st.c.id).exists())
    columns = ["uid", "campaign", "step", "occurrence", "stakeholder_id", "status", "created_at"]
    # Another process may be materialising the same key right now: skip what it inserted.
    stmt = dialect_insert(conn, s).from_select(columns, query).on_conflict_do_nothing(
        index_elements=["campaign", "step", "occurrence", "stakeholder_id"])
    result = conn.execute(stmt)
    return result.rowcount or 0


def any_sent(conn: Connection, campaign: str, steps: Sequence[str]) -> bool:
    return conn.execute(select(s.c.id).where(s.c.campaign == campaign, s.c.step.in_(steps),
                                             s.c.status == "sent").limit(1)).first() is not None


def pending_keys(conn: Connection) -> list[Key]:
    rows = conn.execute(select(s.c.campaign, s.c.step, s.c.occurrence).where(
        s.c.status == "pending").distinct())
    return [Key(*row) for row in rows]


def reopen_retryable(conn: Connection, key: Key) -> int:
    """Sends that failed for a passing reason go back to pending for another run."""
    result = conn.execute(update(s).where(key.where(), s.c.status == "failed", s.c.retryable)
                          .values(status="pending", retryable=False))
    return result.rowcount or 0


def reopen_uncertain(conn: Connection, key: Key) -> int:
    """On explicit request: uncertain sends go again (a recipient may get a duplicate)."""
    result = conn.execute(update(s).where(key.where(), s.c.status == "uncertain")
                          .values(status="pending", run_id=None, claimed_at=None))
    return result.rowcount or 0


def mark_suppressed(conn: Connection, key: Key) -> int:
    sup = tables.suppressions
    ids = select(st.c.id).where(st.c.email.in_(
        select(sup.c.email).where(sup.c.email.is_not(None))))
    result = conn.execute(update(s).where(key.where(), s.c.status == "pending",
                                          s.c.stakeholder_id.in_(ids))
                          .values(status="suppressed"))
    return result.rowcount or 0


# The statements of the sending loop, built once: per call only their parameters change.
_CLAIM_SELECT = (
    select(s.c.id, s.c.uid, st).join(st, st.c.id == s.c.stakeholder_id)
    .where(s.c.campaign == bindparam("campaign"), s.c.step == bindparam("step"),
           s.c.occurrence == bindparam("occurrence"), s.c.status == "pending")
    .order_by(s.c.id).limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True, of=s))
_CLAIM_UPDATE = (
    update(s).where(s.c.id.in_(bindparam("ids", expanding=True)), s.c.status == "pending")
    .values(status="claimed", run_id=bindparam("run_id"),
            claimed_at=bindparam("now", type_=tables.UtcDateTime()),
            sequence=bindparam("sequence", type_=Integer)))
_RECORD = (
    update(s).where(s.c.id == bindparam("b_id"), s.c.run_id == bindparam("b_run")).values(
        status=bindparam("b_status"), attempts=s.c.attempts + bindparam("b_attempts"),
        provider_id=bindparam("b_provider"), error=bindparam("b_error"),
        retryable=bindparam("b_retryable"),
        sent_at=bindparam("b_sent_at", type_=tables.UtcDateTime())))
_ATTEMPT = insert(tables.attempts)


def claim(conn: Connection, key: Key, run_id: str, limit: int, now: datetime, *,
          sequence: int | None = None) -> list[Claimed]:
    """Take up to ``limit`` pending sends for this run (others skip them: SKIP LOCKED);
    ``sequence`` records which calendar SEQUENCE an invitation carries."""
    rows = conn.execute(_CLAIM_SELECT, {"campaign": key.campaign, "step": key.step,
                                        "occurrence": key.occurrence, "limit": limit}
                        ).mappings().all()
    if not rows:
        return []
    conn.execute(_CLAIM_UPDATE, {"ids": [r["id"] for r in rows], "run_id": run_id, "now": now,
                                 "sequence": sequence})
    return [Claimed(r["id"], r["uid"], dict(r)) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    send_id: int
    status: str  # sent | failed
    attempts: int
    provider_id: str | None = None
    error: str | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    send_id: int
    at: datetime
    outcome: str  # sent | transient | permanent
    status_code: int | None = None
    detail: str | None = None


def record(conn: Connection, run_id: str, outcomes: Sequence[Outcome],
           attempts: Sequence[Attempt], now: datetime) -> None:
    """Write a batch of results in one go (executemany)."""
    if outcomes:
        conn.execute(_RECORD, [
            {"b_id": o.send_id, "b_run": run_id, "b_status": o.status, "b_attempts": o.attempts,
             "b_provider": o.provider_id, "b_error": o.error, "b_retryable": o.retryable,
             "b_sent_at": now if o.status == "sent" else None} for o in outcomes])
    if attempts:
        conn.execute(_ATTEMPT, [
            {"send_id": a.send_id, "run_id": run_id, "at": a.at, "outcome": a.outcome,
             "status_code": a.status_code, "detail": a.detail} for a in attempts])


def release(conn: Connection, run_id: str, send_ids: Sequence[int]) -> None:
    """Claims never handed to a transport go back to pending."""
    if send_ids:
        conn.execute(update(s).where(s.c.id.in_(send_ids), s.c.run_id == run_id,
                                     s.c.status == "claimed")
                     .values(status="pending", run_id=None, claimed_at=None))


def mark_uncertain(conn: Connection, run_ids: Sequence[str]) -> int:
    """Claims of runs that died: maybe sent, maybe not. Never re-sent without being asked."""
    if not run_ids:
        return 0
    result = conn.execute(update(s).where(s.c.status == "claimed", s.c.run_id.in_(run_ids))
                          .values(status="uncertain"))
    return result.rowcount or 0


def counts(conn: Connection, campaign: str | None = None) -> dict[tuple[str, str], Counter[str]]:
    """Per (campaign, step): how many sends in each state."""
    query = select(s.c.campaign, s.c.step, s.c.status, func.count()).group_by(
        s.c.campaign, s.c.step, s.c.status)
    if campaign:
        query = query.where(s.c.campaign == campaign)
    out: dict[tuple[str, str], Counter[str]] = {}
    for camp, step, status, n in conn.execute(query):
        out.setdefault((camp, step), Counter())[status] += n
    return out


def key_counts(conn: Connection, key: Key) -> Counter[str]:
    rows = conn.execute(select(s.c.status, func.count()).where(key.where()).group_by(s.c.status))
    return Counter(dict(rows.all()))


def uncertain(conn: Connection, campaign: str | None = None) -> list[dict[str, Any]]:
    query = (select(s.c.campaign, s.c.step, s.c.occurrence, s.c.uid, s.c.claimed_at,
                    st.c.display_email.label("email"))
             .join(st, st.c.id == s.c.stakeholder_id).where(s.c.status == "uncertain")
             .order_by(s.c.campaign, s.c.step, s.c.id))
    if campaign:
        query = query.where(s.c.campaign == campaign)
    return [dict(r) for r in conn.execute(query).mappings()]


def unsent_audience(conn: Connection, key: Key, audience: ColumnElement[bool]) -> Any:
    """People in the audience without a send for this key (for dry runs)."""
    return conn.execute(select(st).where(audience, ~select(s.c.id).where(
        key.where(), s.c.stakeholder_id == st.c.id).exists()).order_by(st.c.id)).mappings()



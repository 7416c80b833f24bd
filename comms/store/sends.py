"""The send ledger: one row per (campaign, step, occurrence, stakeholder), moved through states.

pending → claimed → sent | failed; claimed rows of a dead process become uncertain;
pending rows of suppressed addresses become suppressed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    or_,
    select,
    update,
)

from . import tables, targets
from .upsert import dialect_insert

if TYPE_CHECKING:
    from ..targeting import Target

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


def materialise(conn: Connection, target: Target, now: datetime) -> int:
    """Create a send for everyone the target reaches who has none for its key yet, in the state
    :func:`comms.store.targets.selection` gives (``pending``, ``skipped``, ``missed`` or
    ``suppressed``; nobody whose ``after`` delay has not passed). Final for this occurrence."""
    chosen = targets.selection(target, now).subquery("chosen")
    query = (select(_random_uid(conn), literal(target.key.campaign), literal(target.key.step),
                    literal(target.key.occurrence), chosen.c.stakeholder_id, chosen.c.state,
                    literal(now, tables.UtcDateTime()))
             .where(chosen.c.state != targets.WAITING))
    columns = ["uid", "campaign", "step", "occurrence", "stakeholder_id", "status", "created_at"]
    # Another process may be materialising the same key right now: skip what it inserted.
    stmt = dialect_insert(conn, s).from_select(columns, query).on_conflict_do_nothing(
        index_elements=["campaign", "step", "occurrence", "stakeholder_id"])
    return conn.execute(stmt).rowcount or 0


@dataclass(frozen=True, slots=True)
class Forecast:
    """What sending a target now does: the counts a real run reports, known before it runs."""

    would_send: int = 0
    already_sent: int = 0
    suppressed: int = 0
    skipped: int = 0
    missed: int = 0
    waiting: int = 0
    failed: int = 0
    uncertain: int = 0
    claimed: int = 0  # being sent by another process right now


def forecast(conn: Connection, target: Target, now: datetime, *,
             resend_uncertain: bool = False) -> Forecast:
    """The outcome of :func:`materialise` plus the run that follows, computed without writing:
    new sends by the state they would get, and the key's existing sends by where they go
    (pending, retryable failures and, on request, uncertain sends are sent unless suppressed)."""
    chosen = targets.selection(target, now).subquery("chosen")
    new = Counter({state: int(n) for state, n in conn.execute(
        select(chosen.c.state, func.count()).group_by(chosen.c.state))})
    goes = or_(s.c.status == "pending", and_(s.c.status == "failed", s.c.retryable))
    if resend_uncertain:
        goes = or_(goes, s.c.status == "uncertain")
    fate = case((and_(goes, targets.suppressed()), literal("suppressed")),
                (goes, literal("pending")), else_=s.c.status)
    old = Counter({state: int(n) for state, n in conn.execute(
        select(fate, func.count()).select_from(s.join(st, st.c.id == s.c.stakeholder_id))
        .where(target.key.where()).group_by(fate))})
    return Forecast(would_send=new["pending"] + old["pending"], already_sent=old["sent"],
                    suppressed=new["suppressed"] + old["suppressed"],
                    skipped=new["skipped"] + old["skipped"], missed=new["missed"] + old["missed"],
                    waiting=new[targets.WAITING], failed=old["failed"],
                    uncertain=old["uncertain"], claimed=old["claimed"])


def would_send(conn: Connection, target: Target, now: datetime) -> Any:
    """The people a run would send to now that have no send yet (for a dry run to render)."""
    chosen = targets.selection(target, now).subquery("chosen")
    return conn.execute(select(st).join(chosen, chosen.c.stakeholder_id == st.c.id)
                        .where(chosen.c.state == "pending").order_by(st.c.id)).mappings()


def people_sent(conn: Connection, campaign: str, steps: Sequence[str]) -> int:
    """How many people were sent any of these steps."""
    if not steps:
        return 0
    return conn.execute(select(func.count(func.distinct(s.c.stakeholder_id))).where(
        s.c.campaign == campaign, s.c.step.in_(steps), s.c.status == "sent")).scalar_one()


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
    """Pending sends of addresses suppressed since they were created are never sent."""
    ids = select(st.c.id).where(targets.suppressed())
    result = conn.execute(update(s).where(key.where(), s.c.status == "pending",
                                          s.c.stakeholder_id.in_(ids))
                          .values(status="suppressed"))
    return result.rowcount or 0


# The statements of the sending loop, built once: per call only their parameters change.
_CLAIM_SELECT = (
    select(s.c.id, s.c.uid, s.c.stakeholder_id, st).join(st, st.c.id == s.c.stakeholder_id)
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


@dataclass(frozen=True, slots=True)
class SendRef:
    """A send and who it went to."""

    id: int
    campaign: str
    step: str
    stakeholder_id: int
    email: str  # case-folded
    first_name: str
    display_email: str


def by_uid(conn: Connection, uid: str) -> SendRef | None:
    """The send whose opaque uid a link, a reply or a provider event carries."""
    row = conn.execute(select(s.c.id, s.c.campaign, s.c.step, s.c.stakeholder_id, st.c.email,
                              st.c.first_name, st.c.display_email)
                       .join(st, st.c.id == s.c.stakeholder_id).where(s.c.uid == uid)).first()
    return SendRef(*row) if row else None


def newest_of(conn: Connection, uids: Sequence[str]) -> SendRef | None:
    """The newest of the sends with these uids (a reply's References may name several)."""
    row = conn.execute(select(s.c.id, s.c.campaign, s.c.step, s.c.stakeholder_id, st.c.email,
                              st.c.first_name, st.c.display_email)
                       .join(st, st.c.id == s.c.stakeholder_id)
                       .where(s.c.uid.in_(list(uids))).order_by(s.c.id.desc())).first()
    return SendRef(*row) if row else None


def settle_sent(conn: Connection, send_ids: Sequence[int]) -> int:
    """Uncertain sends that the provider reported on were accepted by it: they are ``sent``."""
    if not send_ids:
        return 0
    result = conn.execute(update(s).where(s.c.id.in_(list(send_ids)), s.c.status == "uncertain")
                          .values(status="sent", sent_at=func.coalesce(s.c.sent_at, s.c.claimed_at)))
    return result.rowcount or 0


def set_delivery(conn: Connection, changes: Sequence[tuple[int, str, datetime]]) -> None:
    """Record (send id, delivery state, since when) for each send."""
    if changes:
        conn.execute(update(s).where(s.c.id == bindparam("b_id"))
                     .values(delivery=bindparam("b_delivery"), delivery_at=bindparam("b_at")),
                     [{"b_id": i, "b_delivery": d, "b_at": at} for i, d, at in changes])


@dataclass(frozen=True, slots=True)
class Delivery:
    """A send as the provider's events settle it."""

    id: int
    stakeholder_id: int
    campaign: str
    step: str
    status: str
    delivery: str | None
    delivery_at: datetime | None
    email: str


def lock_by_uid(conn: Connection, uids: set[str]) -> dict[str, Delivery]:
    """Our sends by uid, locked in id order (PostgreSQL) so concurrent webhook batches touching
    the same sends take turns, and each recomputes over what the other committed."""
    if not uids:
        return {}
    query = (select(s.c.uid, s.c.id, s.c.stakeholder_id, s.c.campaign, s.c.step, s.c.status,
                    s.c.delivery, s.c.delivery_at, st.c.email)
             .join(st, st.c.id == s.c.stakeholder_id)
             .where(s.c.uid.in_(sorted(uids))).order_by(s.c.id))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=s)
    return {row[0]: Delivery(*row[1:]) for row in conn.execute(query)}


def sent_counts(conn: Connection) -> dict[tuple[str, str, str], int]:
    """Per (campaign, step, occurrence): how many sends went."""
    rows = conn.execute(select(s.c.campaign, s.c.step, s.c.occurrence, func.count())
                        .where(s.c.status == "sent")
                        .group_by(s.c.campaign, s.c.step, s.c.occurrence))
    return {(c, st_, o): int(n) for c, st_, o, n in rows}


def after_parents(conn: Connection, campaign: str, step: str, parent: str
                  ) -> tuple[int, datetime | None, datetime | None]:
    """For an ``after`` step: how many people were sent ``parent`` and have no send of ``step``
    (nor are suppressed), and when the parent first reached the first and the last of them."""
    child = s.alias("child")
    firsts = (select(s.c.stakeholder_id, func.min(s.c.sent_at).label("sent_at"))
              .where(s.c.campaign == campaign, s.c.step == parent, s.c.status == "sent")
              .group_by(s.c.stakeholder_id).subquery("firsts"))
    waiting = and_(~select(child.c.id).where(child.c.campaign == campaign, child.c.step == step,
                                             child.c.stakeholder_id == firsts.c.stakeholder_id
                                             ).exists(),
                   firsts.c.stakeholder_id.in_(select(st.c.id).where(~targets.suppressed())))
    n, first, last = conn.execute(select(func.count(), func.min(firsts.c.sent_at),
                                         func.max(firsts.c.sent_at)).where(waiting)).one()
    utc = tables.UtcDateTime()
    return int(n), utc.process_result_value(first, conn.dialect), utc.process_result_value(
        last, conn.dialect)


def high_water(conn: Connection) -> int:
    """The newest send's id (0 for an empty ledger): what existed at a moment."""
    return int(conn.execute(select(func.coalesce(func.max(s.c.id), 0))).scalar_one())


def resolve_uncertain(conn: Connection, *, older_than: datetime) -> int:
    """Uncertain sends the provider has reported nothing about since before ``older_than``
    never reached it: they go again, once (a send uncertain a second time stays listed)."""
    r = tables.responses
    quiet = ~select(r.c.id).where(r.c.send_id == s.c.id).exists()
    result = conn.execute(update(s).where(
        s.c.status == "uncertain", s.c.resent == 0, s.c.claimed_at < older_than, quiet)
        .values(status="pending", run_id=None, resent=s.c.resent + 1))
    return result.rowcount or 0


def reopen_failed(conn: Connection, campaign: str, steps: Sequence[str]) -> int:
    """On request, after a fix: failed sends of these steps (any occurrence) go again."""
    result = conn.execute(update(s).where(s.c.campaign == campaign, s.c.step.in_(list(steps)),
                                          s.c.status == "failed")
                          .values(status="pending", run_id=None, retryable=False))
    return result.rowcount or 0


def failed(conn: Connection, campaign: str | None = None) -> list[dict[str, Any]]:
    """Every failed send, with who it was for and why."""
    query = (select(s.c.campaign, s.c.step, s.c.occurrence, st.c.display_email.label("email"),
                    s.c.attempts, s.c.retryable, s.c.error)
             .join(st, st.c.id == s.c.stakeholder_id).where(s.c.status == "failed")
             .order_by(s.c.campaign, s.c.step, s.c.id))
    if campaign:
        query = query.where(s.c.campaign == campaign)
    return [dict(r) for r in conn.execute(query).mappings()]


def calendar_held(conn: Connection, campaign: str, steps: Sequence[str], stakeholder_id: int
                  ) -> int | None:
    """The SEQUENCE of the event the person's calendar holds: the highest one of ``steps`` sent
    to them (None: they were never sent the event)."""
    value = conn.execute(select(func.max(s.c.sequence)).where(
        s.c.campaign == campaign, s.c.step.in_(list(steps)), s.c.stakeholder_id == stakeholder_id,
        s.c.status == "sent")).scalar()
    if value is not None:
        return int(value)
    sent = conn.execute(select(s.c.id).where(
        s.c.campaign == campaign, s.c.step.in_(list(steps)), s.c.stakeholder_id == stakeholder_id,
        s.c.status == "sent").limit(1)).first()
    return 0 if sent else None

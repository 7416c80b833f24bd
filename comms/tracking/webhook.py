"""SendGrid's Event Webhook: verify a signed batch, then record its events in one transaction.

SendGrid retries a batch for 24 hours until it gets a 2xx, sends duplicates and promises no
order. So each event is stored once (keyed by ``sg_event_id``), a send's delivery state is
recomputed from all its stored events (the highest-ranked wins, whatever arrived first), and the
caller acknowledges only after :func:`ingest` has committed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from ..errors import CommsError, StoreError
from ..store import Store, tables
from ..store.upsert import dialect_insert
from ..suppression import AddressHasher, suppress
from .responses import DELIVERY_RANK, SENDGRID, SUPPRESSING, Kind, later

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = timedelta(minutes=5)
SOURCE = "sendgrid"  # the suppression list's source for what the webhook reported

_ECDSA = ec.ECDSA(hashes.SHA256())
_DELIVERY = tuple(DELIVERY_RANK)
_YEAR_3000 = 32_503_680_000
#: SQLite has one writer at a time; batches arriving together queue here rather than in SQLite's
#: busy handler, which sleeps and polls (seconds of latency under concurrent posts).
_SQLITE_TURNS = threading.Lock()
#: When one batch gives an address several reasons, the strongest is recorded.
_REASON_ORDER = {"spam": 0, "unsubscribed": 1, "bounced": 2}


class WebhookRefused(CommsError):
    """A webhook request whose signature, timestamp or key does not check out."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"webhook refused: {reason}")


# --- signature -----------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    """The verification key (base64 DER SubjectPublicKeyInfo, as SendGrid shows it), loaded once."""
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64.strip(), validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise WebhookRefused("the configured public key is not base64 DER "
                             "(copy it again from SendGrid's Mail Settings)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise WebhookRefused("the configured public key is not an ECDSA P-256 key")
    return key


def verify(public_key_b64: str, body: bytes, signature: str | None, timestamp: str | None, *,
           now: datetime, max_age: timedelta = MAX_AGE) -> None:
    """Raise :class:`WebhookRefused` unless ``signature`` is SendGrid's ECDSA P-256/SHA-256
    signature of ``timestamp + body`` and the timestamp lies within ``max_age`` of ``now``.

    Matches ``sendgrid.helpers.eventwebhook.EventWebhook.verify_signature``, plus what it leaves
    out: a replay window, and only the one canonical base64 spelling of a signature.
    """
    key = public_key(public_key_b64)
    if not signature or not timestamp:
        raise WebhookRefused("unsigned request")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise WebhookRefused("malformed timestamp")
    try:
        der = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise WebhookRefused("malformed signature") from None
    if base64.b64encode(der).decode("ascii") != signature:  # spare bits set, or padding changed
        raise WebhookRefused("malformed signature")
    signed_at = datetime.fromtimestamp(int(timestamp), UTC)
    if abs(now - signed_at) > max_age:
        raise WebhookRefused("stale timestamp" if signed_at < now else "timestamp in the future")
    try:
        key.verify(der, timestamp.encode("ascii") + body, _ECDSA)
    except InvalidSignature:
        raise WebhookRefused("bad signature") from None


# --- ingestion -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What became of a batch. ``matched`` events are stored (or were already, as duplicates)."""

    received: int = 0
    matched: int = 0
    unmatched: int = 0  # no send_id, or one we do not hold (another sender, an erased person)
    unknown: int = 0  # an event word not in our vocabulary
    invalid: int = 0  # not an object, or without sg_event_id or timestamp
    sends_updated: int = 0  # sends whose delivery state or status changed
    suppressed: int = 0  # addresses handed to the suppression list (already there or not)


@dataclass(frozen=True, slots=True)
class _Send:
    id: int
    stakeholder_id: int
    campaign: str
    step: str
    status: str
    delivery: str | None
    delivery_at: datetime | None
    email: str


def parse(body: bytes) -> list[Any]:
    """The JSON array of a webhook body; ValueError when it is not one."""
    events = json.loads(body)
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    return events


def ingest(store: Store, events: Sequence[Any], *, now: datetime, hasher: AddressHasher
           ) -> IngestResult:
    """Record a batch of webhook events in one write transaction; :class:`StoreError` if the store
    fails, in which case nothing is recorded and the sender should retry.

    Events that do not carry one of our send ids are counted and dropped: the webhook receives
    every event of the SendGrid account, and a send we no longer hold may be an erased person's.
    """
    counts: dict[str, int] = defaultdict(int)
    usable: list[tuple[dict[str, Any], Kind, str, int]] = []
    for event in events:
        checked = _check(event)
        if isinstance(checked, str):
            counts[checked] += 1
        else:
            usable.append(checked)
    try:
        with _SQLITE_TURNS if store.dialect == "sqlite" else nullcontext(), store.write() as conn:
            sends = _lock_sends(conn, {e[2] for e in usable})
            rows, reasons = _rows(usable, sends, now, counts)
            _insert_responses(conn, rows)
            updated = _settle(conn, rows, sends.values())
            _suppress(conn, hasher, reasons, now)
    except DBAPIError as exc:  # Store maps OperationalError; schema faults come here
        raise StoreError(f"store error: {type(exc).__name__}") from None
    result = IngestResult(received=len(events), matched=counts["matched"],
                          unmatched=counts["unmatched"], unknown=counts["unknown"], invalid=counts["invalid"],
                          sends_updated=updated, suppressed=len(reasons))
    log.info("sendgrid webhook: %d events, %d matched, %d unmatched, %d unknown, %d invalid; "
             "%d sends updated, %d addresses suppressed", result.received, result.matched,
             result.unmatched, result.unknown, result.invalid, result.sends_updated,
             result.suppressed)
    return result


def _check(event: Any) -> tuple[dict[str, Any], Kind, str, int] | str:
    """(event, kind, send uid, unix time), or why the event is left out."""
    if not isinstance(event, dict):
        return "invalid"
    word = event.get("event")
    kind = SENDGRID.get(word) if isinstance(word, str) else None
    if kind is None:
        return "unknown"
    event_id, at = event.get("sg_event_id"), event.get("timestamp")
    if not isinstance(event_id, str) or not event_id or type(at) is not int or not 0 < at < _YEAR_3000:
        return "invalid"
    uid = event.get("send_id")
    if not isinstance(uid, str) or not uid:
        return "unmatched"
    return event, kind, uid, at


def _lock_sends(conn: Connection, uids: set[str]) -> dict[str, _Send]:
    """Our sends by uid, locked in id order (PostgreSQL) so concurrent batches touching the same
    sends take turns, and each recomputes over what the other committed."""
    if not uids:
        return {}
    s, st = tables.sends, tables.stakeholders
    query = (select(s.c.uid, s.c.id, s.c.stakeholder_id, s.c.campaign, s.c.step, s.c.status,
                    s.c.delivery, s.c.delivery_at, st.c.email)
             .join(st, st.c.id == s.c.stakeholder_id)
             .where(s.c.uid.in_(sorted(uids))).order_by(s.c.id))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=s)
    return {row[0]: _Send(*row[1:]) for row in conn.execute(query)}


def _rows(usable: Iterable[tuple[dict[str, Any], Kind, str, int]], sends: dict[str, _Send],
          now: datetime, counts: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Response rows (one per distinct sg_event_id), and the addresses to suppress with reasons."""
    rows: dict[str, dict[str, Any]] = {}
    reasons: dict[str, str] = {}
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for event, kind, uid, at in usable:
        send = sends.get(uid)
        if send is None:
            counts["unmatched"] += 1
            continue
        counts["matched"] += 1
        detail: str | None = None
        if kind is Kind.BOUNCED:
            detail = "soft" if event.get("type") == "blocked" else "hard"
        elif kind is Kind.CLICKED:
            url = event.get("url")
            detail = url if isinstance(url, str) else None
        rows[event["sg_event_id"]] = {
            "send_id": send.id, "stakeholder_id": send.stakeholder_id, "campaign": send.campaign,
            "step": send.step, "event": None, "kind": kind.value, "detail": detail,
            "machine": kind is Kind.OPENED and event.get("sg_machine_open") is True,
            "provider_event_id": event["sg_event_id"],
            "occurred_at": datetime.fromtimestamp(at, UTC), "received_at": now,
            "raw": dumps(event)}
        # group_resubscribe changes nothing here: SendGrid's groups are SendGrid's, we keep our
        # own list, and only `comms suppress remove` takes an address off it.
        reason = "bounced" if detail == "hard" else SUPPRESSING.get(kind)
        if reason is not None and _REASON_ORDER[reason] < _REASON_ORDER.get(
                reasons.get(send.email, ""), 99):
            reasons[send.email] = reason
    return list(rows.values()), reasons


def _insert_responses(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT (provider_event_id) DO NOTHING of ``rows``: a duplicate is skipped.

    The statement is compiled once per dialect and each value converted once by its column's
    type (timestamps repeat across a batch), then handed to the driver's executemany: SQLAlchemy's
    per-row parameter handling was half the cost of a batch.
    """
    if not rows:
        return
    keys = tuple(rows[0])
    sql, positional, processors = _compiled_insert(conn.dialect.name, keys, conn)
    order = positional or keys
    converting = [(i, process) for i, k in enumerate(order) if (process := processors[k])]
    cache: dict[tuple[int, Any], Any] = {}
    params: list[Any] = []
    for row in rows:
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


@lru_cache(maxsize=8)
def _compiled_insert(dialect: str, keys: tuple[str, ...], conn: Connection
                     ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
    r = tables.responses
    stmt = dialect_insert(conn, r).on_conflict_do_nothing(index_elements=["provider_event_id"])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    processors = {k: r.c[k].type.bind_processor(conn.dialect) for k in keys}
    return compiled.string, names, processors


def _settle(conn: Connection, rows: list[dict[str, Any]], held: Iterable[_Send]) -> int:
    """Recompute the delivery state of the sends that ``rows`` bring delivery events for, from all
    their stored events; an ``uncertain`` send that SendGrid reports on was accepted by it, so it
    is ``sent``. Returns how many sends changed."""
    touched = {row["send_id"] for row in rows}
    delivering = {row["send_id"] for row in rows if row["kind"] in DELIVERY_RANK}
    held = list(held)
    uncertain = [x.id for x in held if x.status == "uncertain" and x.id in touched]
    sends = [x for x in held if x.id in delivering]
    r, s = tables.responses, tables.sends
    best: dict[int, tuple[str, datetime]] = {}
    found = conn.execute(
        select(r.c.send_id, r.c.kind, func.min(r.c.occurred_at))
        .where(r.c.send_id.in_([x.id for x in sends]), r.c.kind.in_(_DELIVERY))
        .group_by(r.c.send_id, r.c.kind)) if sends else ()
    for send_id, kind, at in found:
        top = best.get(send_id)
        if top is None or DELIVERY_RANK[kind] > DELIVERY_RANK[top[0]]:
            best[send_id] = (kind, at)
    changes = []
    for send in sends:
        if send.id not in best:
            continue
        kind, at = best[send.id]
        state = later(send.delivery, kind)
        if state != send.delivery:
            changes.append({"b_id": send.id, "b_delivery": state, "b_at": at})
        elif state == kind and (send.delivery_at is None or at < send.delivery_at):
            changes.append({"b_id": send.id, "b_delivery": state, "b_at": at})
    if changes:
        conn.execute(update(s).where(s.c.id == bindparam("b_id"))
                     .values(delivery=bindparam("b_delivery"), delivery_at=bindparam("b_at")),
                     changes)
    if uncertain:
        conn.execute(update(s).where(s.c.id.in_(uncertain), s.c.status == "uncertain")
                     .values(status="sent", sent_at=func.coalesce(s.c.sent_at, s.c.claimed_at)))
    return len({c["b_id"] for c in changes} | set(uncertain))


def _suppress(conn: Connection, hasher: AddressHasher, reasons: dict[str, str],
              now: datetime) -> None:
    """Suppress in address order (so concurrent batches on PostgreSQL cannot deadlock); an
    address already suppressed by an earlier batch takes the stronger reason (spam, unsubscribed,
    bounced), so the list does not depend on the order events arrived in."""
    if not reasons:
        return
    run: list[str] = []
    for email in sorted(reasons):
        if run and reasons[run[0]] != reasons[email]:
            suppress(conn, hasher, run, reason=reasons[run[0]], source=SOURCE, now=now)
            run = []
        run.append(email)
    suppress(conn, hasher, run, reason=reasons[run[0]], source=SOURCE, now=now)
    s = tables.suppressions
    wanted = {hasher(email): reason for email, reason in reasons.items()}
    held = conn.execute(select(s.c.email_hash, s.c.reason)
                        .where(s.c.email_hash.in_(sorted(wanted)), s.c.source == SOURCE))
    stronger = sorted(({"b_hash": h, "b_reason": wanted[h]} for h, reason in held
                       if _REASON_ORDER[wanted[h]] < _REASON_ORDER.get(reason, 99)),
                      key=lambda row: row["b_hash"])
    if stronger:
        conn.execute(update(s).where(s.c.email_hash == bindparam("b_hash"))
                     .values(reason=bindparam("b_reason")), stronger)


# --- configuration -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Gate:
    """How the endpoint treats posts: checked against ``key``; unsigned accepted when ``key`` is
    None (insecure mode); or all refused for the ``problem`` (answered 503, so SendGrid retries
    once the configuration is fixed)."""

    key: str | None
    problem: str | None = None


def gate(public_key_b64: str | None, *, insecure: bool) -> Gate:
    """The gate for the configured key, warning once (at startup) about what is not right."""
    if public_key_b64:
        try:
            public_key(public_key_b64)
        except WebhookRefused as exc:
            log.error("sendgrid webhook: %s; the endpoint refuses every post until it is fixed",
                      exc.reason)
            return Gate(None, exc.reason)
        return Gate(public_key_b64)
    if insecure:
        log.warning("sendgrid webhook: COMMS_SENDGRID_WEBHOOK_INSECURE is set, so unsigned posts "
                    "are accepted: anyone can post events. For local testing only.")
        return Gate(None)
    return Gate(None, "no webhook public key: set COMMS_SENDGRID_WEBHOOK_PUBLIC_KEY to the "
                      "verification key of SendGrid's signed Event Webhook")

"""Provider events into the store: each stored once, sends settled, addresses suppressed.

Providers retry, duplicate and reorder their posts, so each event is stored once (keyed by the
provider's event id), a send's delivery state is recomputed from all its stored events (the
highest-ranked wins, whatever arrived first), an ``uncertain`` send the provider reports on is
``sent``, and only events stored by this batch suppress an address. The caller acknowledges the
post only once :func:`ingest` has committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from ..responses import DELIVERY_RANK, Kind, Response, later
from ..store import Conn, Store, responses, sends, suppressions
from ..suppression import AddressHasher, suppress
from .machines import Click, classify
from .providers import Batch, ProviderEvent

log = logging.getLogger(__name__)

_DELIVERY = tuple(DELIVERY_RANK)
#: SQLite has one writer at a time; batches arriving together queue here rather than in SQLite's
#: busy handler, which sleeps and polls (seconds of latency under concurrent posts).
_SQLITE_TURNS = threading.Lock()
#: When one batch gives an address several reasons, the strongest is recorded.
_REASON_ORDER = {"spam": 0, "unsubscribed": 1, "bounced": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What became of a batch. ``matched`` events are stored (or were already, as duplicates)."""

    received: int = 0
    matched: int = 0
    unmatched: int = 0  # no send id, or one we do not hold (another sender, an erased person)
    unknown: int = 0  # an event word not in our vocabulary
    invalid: int = 0  # not an object, or without an event id or timestamp
    sends_updated: int = 0  # sends whose delivery state or status changed
    suppressed: int = 0  # addresses handed to the suppression list (already there or not)


def ingest(store: Store, batch: Batch, *, now: datetime, hasher: AddressHasher,
           machine_click_seconds: float = 10.0, honeypot: str | None = None) -> IngestResult:
    """Record a parsed batch in one write transaction (:class:`StoreError` if the store fails:
    then nothing is recorded and the provider should retry). The clicks of every message the
    batch reports a click for are classified again, human or machine (comms/tracking/machines.py:
    ``machine_click_seconds`` after delivery, the ``honeypot`` URL prefix)."""
    with _SQLITE_TURNS if store.dialect == "sqlite" else nullcontext(), store.write() as conn:
        held = sends.lock_by_uid(conn, {e.send_uid for e in batch.events})
        matched = {e.event_id: e for e in batch.events if e.send_uid in held}  # one per event id
        new = set(matched) - responses.stored_event_ids(conn, list(matched))
        responses.insert(conn, [_response(e, held[e.send_uid]) for e in matched.values()],
                         received_at=now)
        updated = _settle(conn, matched.values(), held)
        _classify(conn, {held[e.send_uid].id for e in matched.values()
                         if e.kind in (Kind.CLICKED, Kind.DELIVERED)},
                  within=machine_click_seconds, honeypot=honeypot)
        reasons = _strongest((held[e.send_uid].email, e.suppress) for e in matched.values()
                             if e.event_id in new and e.suppress)
        _suppress(conn, hasher, reasons, now, source=batch.provider)
    count = sum(e.send_uid in held for e in batch.events)
    result = IngestResult(received=batch.received, matched=count,
                          unmatched=batch.unmatched + len(batch.events) - count,
                          unknown=batch.unknown, invalid=batch.invalid, sends_updated=updated,
                          suppressed=len(reasons))
    log.info("%s webhook: %d events, %d matched, %d unmatched, %d unknown, %d invalid; "
             "%d sends updated, %d addresses suppressed", batch.provider, result.received,
             result.matched,
             result.unmatched, result.unknown, result.invalid, result.sends_updated,
             result.suppressed)
    return result


def _response(event: ProviderEvent, send: sends.Delivery) -> Response:
    return Response(kind=event.kind, occurred_at=event.occurred_at, send_id=send.id,
                    stakeholder_id=send.stakeholder_id, campaign=send.campaign, step=send.step,
                    detail=event.detail, machine=event.machine,
                    machine_reason=event.machine_reason, provider_event_id=event.event_id,
                    raw=event.raw)


def _settle(conn: Conn, events: Iterable[ProviderEvent], held: dict[str, sends.Delivery]) -> int:
    """Recompute the delivery state of the sends these events bring delivery news of, from all
    their stored events; an ``uncertain`` send the provider reports on was accepted by it, so it
    is ``sent``. Returns how many sends changed."""
    events = list(events)
    touched = {held[e.send_uid].id for e in events}
    delivering = {held[e.send_uid].id for e in events if e.kind in DELIVERY_RANK}
    uncertain = [x.id for x in held.values() if x.status == "uncertain" and x.id in touched]
    settling = [x for x in held.values() if x.id in delivering]
    best: dict[int, tuple[str, datetime]] = {}
    for send_id, kind, at in responses.delivery_events(conn, [x.id for x in settling], _DELIVERY):
        top = best.get(send_id)
        if top is None or DELIVERY_RANK[kind] > DELIVERY_RANK[top[0]]:
            best[send_id] = (kind, at)
    changes = []
    for send in settling:
        if send.id not in best:
            continue
        kind, at = best[send.id]
        state = later(send.delivery, kind)
        if state is not None and (state != send.delivery or (
                state == kind and (send.delivery_at is None or at < send.delivery_at))):
            changes.append((send.id, state, at))
    sends.set_delivery(conn, changes)
    sends.settle_sent(conn, uncertain)
    return len({c[0] for c in changes} | set(uncertain))


def _classify(conn: Conn, send_ids: set[int], *, within: float, honeypot: str | None) -> None:
    """Each click of these sends marked a person's or a machine's, with the reason."""
    if not send_ids:
        return
    delivered = {send_id: at for send_id, _, at in
                 responses.delivery_events(conn, sorted(send_ids), (Kind.DELIVERED,))}
    by_send: dict[int, list[Click]] = {}
    for send_id, row_id, at, url, raw in responses.clicks_of(conn, sorted(send_ids)):
        by_send.setdefault(send_id, []).append(Click(row_id, at, url or "", raw or ""))
    reasons: dict[int, str | None] = {}
    for send_id, clicks in by_send.items():
        reasons.update(classify(clicks, delivered_at=delivered.get(send_id), within=within,
                                honeypot=honeypot))
    responses.set_machine(conn, reasons)


def _strongest(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Per address, the strongest suppression reason among (address, reason) pairs."""
    out: dict[str, str] = {}
    for email, reason in pairs:
        if _REASON_ORDER[reason] < _REASON_ORDER.get(out.get(email, ""), 99):
            out[email] = reason
    return out


def _suppress(conn: Conn, hasher: AddressHasher, reasons: dict[str, str], now: datetime, *,
              source: str) -> None:
    """Suppress in address order (so concurrent batches on PostgreSQL cannot deadlock); an
    address already suppressed by an earlier batch takes the stronger reason (spam, unsubscribed,
    bounced), so the list does not depend on the order events arrived in."""
    if not reasons:
        return
    run: list[str] = []
    for email in sorted(reasons):
        if run and reasons[run[0]] != reasons[email]:
            suppress(conn, hasher, run, reason=reasons[run[0]], source=source, now=now)
            run = []
        run.append(email)
    suppress(conn, hasher, run, reason=reasons[run[0]], source=source, now=now)
    wanted = {hasher(email): reason for email, reason in reasons.items()}
    held = suppressions.reasons(conn, list(wanted), source)
    suppressions.set_reasons(conn, {h: wanted[h] for h, reason in held.items()
                                    if _REASON_ORDER[wanted[h]] < _REASON_ORDER.get(reason, 99)})

"""SendGrid's Event Webhook: verify a signed post and parse its events into ours.

SendGrid posts JSON arrays of events, signed with ECDSA P-256 over ``timestamp + body``. It
retries a batch for 24 hours until it gets a 2xx, sends duplicates and promises no order;
comms/tracking/ingest.py stores what this module parses so that none of that matters.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ...errors import CommsError
from ...responses import SUPPRESSING, Kind
from . import Batch, ProviderEvent

log = logging.getLogger(__name__)

#: SendGrid Event Webhook words → ours (bounces: ``type`` bounce = hard, blocked = soft).
WORDS: dict[str, Kind] = {
    "processed": Kind.PROCESSED,
    "delivered": Kind.DELIVERED,
    "deferred": Kind.DEFERRED,
    "bounce": Kind.BOUNCED,
    "dropped": Kind.DROPPED,
    "open": Kind.OPENED,
    "click": Kind.CLICKED,
    "spamreport": Kind.SPAM_REPORTED,
    "unsubscribe": Kind.UNSUBSCRIBED,
    "group_unsubscribe": Kind.GROUP_UNSUBSCRIBED,
    "group_resubscribe": Kind.GROUP_RESUBSCRIBED,
}

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE = timedelta(minutes=5)

_ECDSA = ec.ECDSA(hashes.SHA256())
_YEAR_3000 = 32_503_680_000


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


# --- parsing -------------------------------------------------------------------------------------

def parse(body: bytes) -> list[Any]:
    """The JSON array of a webhook body; ValueError when it is not one."""
    try:
        events = json.loads(body)
    except RecursionError:
        raise ValueError("the JSON is nested too deep") from None
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    return events


def parse_events(events: Sequence[Any]) -> Batch:
    """Our events from SendGrid's: each matched to our send by the ``send_id`` custom arg.

    Events without one are counted and dropped: the webhook receives every event of the
    SendGrid account, and comms keeps nothing about mail it did not send."""
    batch = Batch(provider="sendgrid", received=len(events))
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for event in events:
        checked = _check(event)
        if isinstance(checked, str):
            setattr(batch, checked, getattr(batch, checked) + 1)
            continue
        kind, uid, at = checked
        detail: str | None = None
        if kind is Kind.BOUNCED:
            detail = "soft" if event.get("type") == "blocked" else "hard"
        elif kind is Kind.CLICKED:
            url = event.get("url")
            detail = url if isinstance(url, str) else None
        # group_resubscribe suppresses nothing and lifts nothing: SendGrid's groups are
        # SendGrid's; comms keeps its own list, and only `comms suppress remove` changes it.
        batch.events.append(ProviderEvent(
            send_uid=uid, kind=kind, event_id=event["sg_event_id"],
            occurred_at=datetime.fromtimestamp(at, UTC), detail=detail,
            machine=(machine := kind is Kind.OPENED and event.get("sg_machine_open") is True),
            machine_reason="sg_machine_open" if machine else None,
            suppress="bounced" if detail == "hard" else SUPPRESSING.get(kind), raw=dumps(event)))
    return batch


def _check(event: Any) -> tuple[Kind, str, int] | str:
    """(kind, send uid, unix time), or the Batch counter the event is left out under."""
    if not isinstance(event, dict):
        return "invalid"
    word = event.get("event")
    kind = WORDS.get(word) if isinstance(word, str) else None
    if kind is None:
        return "unknown"
    event_id, at = event.get("sg_event_id"), event.get("timestamp")
    if not isinstance(event_id, str) or not event_id or type(at) is not int or not 0 < at < _YEAR_3000:
        return "invalid"
    uid = event.get("send_id")
    if not isinstance(uid, str) or not uid:
        return "unmatched"
    return kind, uid, at


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

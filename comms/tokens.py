"""Signed link tokens: one key per purpose, only the opaque send id inside, never personal data.

A token is ``<payload>.<signature>``: the payload is the send id (plus, for RSVP, the answer and
the expiry), the signature a truncated HMAC-SHA256 under a key derived once per purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Literal

Answer = Literal["accepted", "declined", "tentative"]
ANSWERS: tuple[Answer, ...] = ("accepted", "declined", "tentative")
_SIG_BYTES = 16


class InvalidToken(Exception):
    """A token that was tampered with, made with another key, or has expired."""


class _Signer:
    """Signs with the current key; verifies with it or any older one (key rotation)."""

    def __init__(self, secret: str, purpose: str, fallbacks: tuple[str, ...] = ()) -> None:
        self._keys = [hmac.new(key.encode(), f"comms.{purpose}".encode(), hashlib.sha256).digest()
                      for key in (secret, *fallbacks)]

    def sign(self, payload: str, key: bytes | None = None) -> str:
        digest = hmac.new(key or self._keys[0], payload.encode(),
                          hashlib.sha256).digest()[:_SIG_BYTES]
        return f"{payload}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"

    def unsign(self, token: str) -> str | None:
        """The payload of a token made with one of the keys; None for anything else (a token
        that is not ASCII included: it was never ours)."""
        if not token.isascii():
            return None
        payload, _, signature = token.rpartition(".")
        if not payload:
            return None
        given = token.encode("ascii")
        if not any(hmac.compare_digest(self.sign(payload, key).encode("ascii"), given)
                   for key in self._keys):
            return None
        return payload


class Tokens:
    def __init__(self, secret: str, base_url: str, *, fallbacks: tuple[str, ...] = ()) -> None:
        self.base_url = base_url.rstrip("/")
        self._unsubscribe = _Signer(secret, "unsubscribe", fallbacks)
        self._rsvp = _Signer(secret, "rsvp", fallbacks)
        self._answer = _Signer(secret, "answer", fallbacks)

    def unsubscribe_url(self, send_uid: str) -> str:
        return f"{self.base_url}/u/{self._unsubscribe.sign(send_uid)}"

    def read_unsubscribe(self, token: str) -> str:
        """The send uid in an unsubscribe token."""
        uid = self._unsubscribe.unsign(token)
        if uid is None:
            raise InvalidToken("this unsubscribe link is not valid")
        return uid

    def rsvp_url(self, send_uid: str, answer: Answer, expires: datetime) -> str:
        payload = f"{send_uid}.{answer[0]}.{int(expires.timestamp()):x}"
        return f"{self.base_url}/rsvp/{self._rsvp.sign(payload)}"

    def read_rsvp(self, token: str, now: datetime) -> tuple[str, Answer]:
        """The send uid and answer in an RSVP token; expired tokens are refused."""
        payload = self._rsvp.unsign(token)
        try:
            uid, letter, expires = (payload or "").split(".")
            answer = next(a for a in ANSWERS if a[0] == letter)
            expiry = int(expires, 16)
        except (ValueError, StopIteration):
            raise InvalidToken("this RSVP link is not valid") from None
        if now.timestamp() > expiry:
            raise InvalidToken("this RSVP link has expired: the event is over")
        return uid, answer

    def answer_url(self, send_uid: str, what: str, value: str) -> str:
        """A one-click answer to a send: a pair's check-in (``pair``: met, not_yet) or a
        feedback rating (``rating``: 1-5, or ``-`` for the form without one)."""
        return f"{self.base_url}/a/{self._answer.sign(f'{send_uid}.{what}.{value}')}"

    def read_answer(self, token: str) -> tuple[str, str, str]:
        """(send uid, what, value) of an answer token."""
        try:
            uid, what, value = (self._answer.unsign(token) or "").split(".")
        except ValueError:
            raise InvalidToken("this link is not valid") from None
        return uid, what, value

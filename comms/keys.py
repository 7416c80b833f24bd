"""The keys comms signs and hashes with, kept outside the data.

One secret, ``COMMS_SECRET_KEY``, from the environment: link tokens are signed with keys derived
from it per purpose, and the address-hash key (what stays of an erased person) is derived from it
with HKDF under its own label, so nothing that could re-identify anyone is stored beside the
hashes. Older keys in ``COMMS_SECRET_KEY_FALLBACKS`` still verify links already sent. With the
outbox and no key set, a key is generated once into a file of mode 600 beside the store.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_BITS = 256  # a secret key carries at least 32 bytes of entropy


@dataclass(frozen=True, slots=True)
class Keys:
    """The secret key, and the older ones that still verify links."""

    secret: str
    fallbacks: tuple[str, ...] = ()

    def derived(self, label: str) -> bytes:
        """A key for one purpose (HKDF-SHA256 with ``label``): knowing it reveals no other."""
        return _hkdf(self.secret, label)

    @classmethod
    def generated_in(cls, path: Path) -> Keys:
        """The key in ``path`` (made there, mode 600, if there is none yet: processes starting
        together agree on one)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_text(encoding="ascii").strip())
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        return cls(path.read_text(encoding="ascii").strip())

    @classmethod
    def ephemeral(cls) -> Keys:
        """Keys that live as long as this process (a store opened by a test or a tool)."""
        return cls(secrets.token_urlsafe(32))


def keyed_hash(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under ``key``, in hex (what stays of an erased address)."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


ALPHABETS = (string.digits + "abcdef", string.digits + string.ascii_letters + "-_",
             string.printable.strip())


def entropy_bits(key: str) -> float:
    """An estimate of a random key's entropy: its length times the bits of the smallest usual
    alphabet it could have been drawn from (hex, base64url, printable ASCII). A key of fewer than
    16 different characters is no random key."""
    chars = set(key)
    if len(chars) < 16:
        return 0.0
    for alphabet in ALPHABETS:
        if chars <= set(alphabet):
            return len(key) * math.log2(len(alphabet))
    return len(key) * 8.0


def _hkdf(secret: str, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"comms {label}".encode()).derive(secret.encode())

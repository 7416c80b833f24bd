"""RFC 5322 message bytes from a ``Message``, assembled by hand (CRLF, quoted-printable bodies).

The stdlib ``email`` package builds the same structure at ~50x the cost, so the bytes are put
together directly. Every header value is checked for CR, LF and NUL (header injection) and
``ValueError`` is raised when one is found.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transports.base import Address, Attachment, Message

CRLF = "\r\n"
_UNSAFE = re.compile(r"[\r\n\x00]")
# atext (RFC 5322 3.2.3) plus space: a display name made of these needs no quoting.
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
# No quoted local parts, no comments: whatever could end the address or start another is refused.
_ADDR_SPEC = re.compile(r"[^\s<>(),;:\"\\\[\]@]+@[^\s<>(),;:\"\\\[\]@]+")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_MESSAGE_ID = re.compile(r"<[^\s<>]+@[^\s<>]+>")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
# Headers this module writes itself, and ones that must never come from ``Message.headers``.
RESERVED_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender",
    "return-path", "mime-version", "content-type", "content-transfer-encoding",
    "content-disposition",
})
_FOLD_AT = 78
_MAX_LINE = 998
_ENCODED_WORD_BYTES = 39  # 39 bytes -> 52 base64 chars -> 64-char encoded word (limit 75)


def build_mime(message: Message, *, date: datetime | None = None) -> bytes:
    """The message as RFC 5322 bytes with CRLF line endings, ready for SMTP ``DATA``.

    Raises ``ValueError`` when a header value holds CR, LF or NUL, or an address, header name,
    Message-ID or calendar method is malformed.
    """
    when = date if date is not None else datetime.now(UTC)
    head = [
        "From: " + format_address(message.sender),
        "To: " + ", ".join(format_address(a) for a in message.recipients),
        "Subject: " + encode_unstructured("Subject", message.subject),
        "Date: " + format_datetime(when),
        "Message-ID: " + check_message_id(message.message_id),
    ]
    if message.reply_to:
        head.append("Reply-To: " + format_reply_to(message.reply_to))
    head.append("MIME-Version: 1.0")
    for name, value in extra_headers(message.headers):
        head.append(f"{name}: " + encode_unstructured(name, value))

    alt = _boundary()
    parts = [_qp_part("text/plain", message.text), _qp_part("text/html", message.html)]
    calendar = message.calendar
    if calendar is None and message.attachments:
        mixed = _boundary()
        head.append(f'Content-Type: multipart/mixed; boundary="{mixed}"')
        alternative = f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'
        body = _multipart(mixed, [alternative + _multipart(alt, parts),
                                  *(_attachment(a) for a in message.attachments)])
    elif calendar is None:
        head.append(f'Content-Type: multipart/alternative; boundary="{alt}"')
        body = _multipart(alt, parts)
    else:
        method = check_method(calendar.method)
        parts.append(
            f"Content-Type: text/calendar; method={method}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + _base64(calendar.ics)
        )
        mixed = _boundary()
        head.append(f'Content-Type: multipart/mixed; boundary="{mixed}"')
        attachment = (
            'Content-Type: application/ics; name="invite.ics"\r\n'
            'Content-Disposition: attachment; filename="invite.ics"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + _base64(calendar.ics)
        )
        alternative = f'Content-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'
        body = _multipart(mixed, [alternative + _multipart(alt, parts), attachment])
    return (CRLF.join(head) + "\r\n\r\n" + body).encode("utf-8")


def _attachment(attachment: Attachment) -> str:
    name = check_filename(attachment.filename)
    content_type = check_header_value(attachment.content_type, "content type")
    return (f'Content-Type: {content_type}; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n" + _base64(attachment.data))


def check_filename(name: str) -> str:
    """A plain attachment file name (letters, digits, ``. - _``): nothing to quote or encode."""
    if not _FILENAME.fullmatch(name):
        raise ValueError(f"attachment: not a plain file name: {name[:60]!r}")
    return name


def check_header_value(value: str, what: str = "header") -> str:
    """``value`` unchanged, or ``ValueError`` when it holds CR, LF or NUL."""
    if _UNSAFE.search(value):
        raise ValueError(f"{what}: line breaks and NUL characters are not allowed "
                         f"(header injection): {value[:60]!r}")
    return value


def check_address(email: str) -> str:
    """A bare ``local@domain`` with nothing that could end it or start another address."""
    check_header_value(email, "address")
    if not _ADDR_SPEC.fullmatch(email):
        raise ValueError(f"address: not a plain local@domain address: {email[:80]!r}")
    return email


def header_address(email: str) -> str:
    """The address as written in headers and the SMTP envelope (IDNA domain)."""
    check_address(email)
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"address: domain cannot be IDNA-encoded: {email!r}") from exc
    return f"{local}@{domain}"


def format_address(address: Address) -> str:
    """``Name <email>``: the name RFC 2047-encoded when non-ASCII, quoted when it needs it."""
    return _name_addr(address.name, address.email)


def _name_addr(name: str, email: str) -> str:
    email = header_address(email)
    check_header_value(name, "display name")
    if not name:
        return email
    if name.isascii() and "=?" not in name:
        if _ATOM_PHRASE.fullmatch(name) and name.strip() == name and "  " not in name:
            return f"{name} <{email}>"
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{email}>'
    words = _encoded_words(name)
    last_line = words.rsplit("\n", 1)[-1]
    if "\n" in words and len(last_line) + len(email) + 3 > _FOLD_AT:
        return f"{words}\r\n <{email}>"
    return f"{words} <{email}>"


def format_reply_to(value: str) -> str:
    """A Reply-To given as ``email`` or ``Name <email>``."""
    name, email = split_mailbox(value, "Reply-To")
    return _name_addr(name, email)


def split_mailbox(value: str, what: str = "address") -> tuple[str, str]:
    """``(name, email)`` from ``email`` or ``Name <email>``; the email is checked."""
    check_header_value(value, what)
    value = value.strip()
    name, email = "", value
    if value.endswith(">") and "<" in value:
        name, _, email = value[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
    return name, check_address(email.strip())


def check_message_id(value: str) -> str:
    check_header_value(value, "Message-ID")
    if not _MESSAGE_ID.fullmatch(value):
        raise ValueError(f"Message-ID: expected <id@domain>, got {value[:80]!r}")
    return value


def check_method(method: str) -> str:
    """The iTIP method (REQUEST, CANCEL, ...) upper-cased, or ``ValueError``."""
    if not _TOKEN.fullmatch(method):
        raise ValueError(f"calendar method: expected a word such as REQUEST, got {method!r}")
    return method.upper()


def extra_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """``Message.headers`` checked: valid names, none we write ourselves, safe values."""
    checked = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name[:60]!r} is not a valid field name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by comms and cannot be given in headers")
        checked.append((name, check_header_value(value, name)))
    return checked


def encode_unstructured(name: str, value: str) -> str:
    """An unstructured header value: RFC 2047 when it must be, folded so lines stay short."""
    check_header_value(value, name)
    if value.isascii() and "=?" not in value and value.strip() == value:
        if len(name) + 2 + len(value) <= _FOLD_AT:
            return value
        return _fold(name, value)
    return _encoded_words(value)


def _fold(name: str, value: str) -> str:
    """Break before spaces so lines stay <= 78 where words allow, and never exceed 998."""
    lines: list[str] = []
    current = ""
    width = len(name) + 2
    for i, word in enumerate(value.split(" ")):
        piece = word if i == 0 else " " + word
        if current and width + len(current) + len(piece) > _FOLD_AT and current.strip():
            lines.append(current)
            current, width = piece, 0
        else:
            current += piece
    lines.append(current)
    if any(len(line) > _MAX_LINE - len(name) - 2 for line in lines):
        return _encoded_words(value)  # a word too long for any line: encoded-words can be split
    return CRLF.join(lines)


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words, each <= 75 chars, split after spaces where possible.

    Readers join adjacent encoded-words without the folding space between them (RFC 2047 6.2).
    """
    data = text.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _ENCODED_WORD_BYTES, len(data))
        if end < len(data):
            space = data.rfind(b" ", start + 1, end)
            if space > start:  # split after a space, so a reader joining words loses nothing
                end = space + 1
            while (data[end] & 0xC0) == 0x80:  # never split inside a character
                end -= 1
        chunk = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{chunk}?=")
        start = end
    return "\r\n ".join(words)


def _boundary() -> str:
    # "=_" can occur in neither quoted-printable nor base64 output, so no body can contain it.
    return "=_" + os.urandom(12).hex()


def _multipart(boundary: str, parts: list[str]) -> str:
    delimiter = f"\r\n--{boundary}\r\n"
    return f"--{boundary}\r\n" + delimiter.join(parts) + f"\r\n--{boundary}--\r\n"


def _qp_part(content_type: str, text: str) -> str:
    return (f"Content-Type: {content_type}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + quoted_printable(text))


def quoted_printable(text: str) -> str:
    """UTF-8 quoted-printable with CRLF line ends; lines <= 76; ``From `` and ``.`` at a line
    start hidden (so no line of a message ever needs SMTP dot-stuffing).

    Encoding is line by line (a line's encoding depends on that line alone), and the lines of
    a step's messages repeat from one person to the next: each line is encoded once and kept,
    up to ``_QP_KEPT`` lines, so only the lines holding a person's own values cost anything."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = _QP_LINES
    encoded = []
    for line in text.split("\n"):
        done = kept.get(line)
        if done is None:
            done = _qp_line(line)
            if len(kept) >= _QP_KEPT:
                kept.clear()
            kept[line] = done
        encoded.append(done)
    return CRLF.join(encoded)


_QP_LINES: dict[str, str] = {}
_QP_KEPT = 4096


def _qp_line(line: str) -> str:
    """One line (no line break in it) as ``quoted_printable`` has it."""
    encoded = binascii.b2a_qp(line.encode("utf-8"), istext=True).decode("ascii")
    if encoded.startswith("From "):
        encoded = "=46" + encoded[1:]
    elif encoded.startswith("."):
        encoded = "=2E" + encoded[1:]
    if "\n" in encoded:  # soft line breaks: a continuation may start the same way
        encoded = encoded.replace("\nFrom ", "\n=46rom ").replace("\n.", "\n=2E")
        return encoded.replace("\n", CRLF)
    return encoded


def _base64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii").replace("\n", CRLF).removesuffix(CRLF)

"""Mailboxes read for calendar replies: exported files (.eml, folders, mbox, Maildir) and IMAP."""

from __future__ import annotations

import imaplib
import logging
import mailbox
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CommsError, ConfigError
from ..safety import imap_problems
from .inbound import InboundResult, answered_at, process_message
from .rsvp import Rsvps

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

IMAP_TIMEOUT = 30.0
MESSAGE_SUFFIXES = (".eml",)
MBOX_SUFFIXES = (".mbox", ".mbx")


# --- files ----------------------------------------------------------------------------------


def import_path(rsvps: Rsvps, path: Path | str) -> InboundResult:
    """Record the calendar replies in a .eml file, an mbox file, or a folder of either (searched
    recursively; a Maildir folder is read as one)."""
    result = InboundResult()
    found = list(messages_in(Path(path)))
    for where, raw in sorted(found, key=lambda item: answered_at(item[1])):  # stable
        process_message(rsvps, raw, result, where=where)
    return result


def messages_in(path: Path) -> Iterator[tuple[str, bytes]]:
    """Where each message under ``path`` is (its file, or mbox and number) and its raw bytes,
    in a stable order."""
    if not path.exists():
        raise ConfigError("no such file or folder", path=path)
    if path.is_dir():
        yield from _folder(path)
    elif is_mbox(path):
        yield from _mbox(path)
    else:
        yield str(path), _read(path)


def is_mbox(path: Path) -> bool:
    """An mbox file: named ``*.mbox`` or starting with a ``From `` separator line."""
    if path.suffix.lower() in MBOX_SUFFIXES:
        return True
    try:
        with path.open("rb") as file:
            return file.read(5) == b"From "
    except OSError as exc:
        raise CommsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _folder(folder: Path) -> Iterator[tuple[str, bytes]]:
    if _is_maildir(folder):
        yield from _maildir(folder)
        return
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _folder(entry)
        elif entry.suffix.lower() in MBOX_SUFFIXES:
            yield from _mbox(entry)
        elif entry.suffix.lower() in MESSAGE_SUFFIXES:
            yield str(entry), _read(entry)


def _is_maildir(folder: Path) -> bool:
    return (folder / "cur").is_dir() and (folder / "new").is_dir()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _mbox(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        box = mailbox.mbox(path, create=False)
        keys = box.keys()
    except (OSError, mailbox.Error) as exc:
        raise CommsError(f"{path}: cannot read as an mbox file: {exc}") from None
    try:
        for n, key in enumerate(keys, 1):
            yield f"{path} message {n}", box.get_bytes(key)
    finally:
        box.close()


def _maildir(folder: Path) -> Iterator[tuple[str, bytes]]:
    box = mailbox.Maildir(folder, create=False)
    for key in sorted(box.keys()):
        yield f"{folder} {key}", box.get_bytes(key)


# --- IMAP -----------------------------------------------------------------------------------


def poll_imap(rsvps: Rsvps, settings: Settings) -> InboundResult:
    """Fetch the unread messages of the IMAP folder, record their calendar replies, mark each
    message read once it has been processed (a crash leaves the rest unread for the next poll)."""
    if not settings.imap_host:
        raise ConfigError("no IMAP mailbox is set: set COMMS_IMAP_HOST, COMMS_IMAP_USERNAME and "
                          "COMMS_IMAP_PASSWORD (or imap_host, ... in comms.toml)", key="imap_host")
    password = settings.imap_password.get_secret_value() if settings.imap_password else ""
    if not settings.imap_username or not password:
        raise ConfigError("IMAP needs a login: set COMMS_IMAP_USERNAME and COMMS_IMAP_PASSWORD",
                          key="imap_username")
    for problem in imap_problems(settings):
        raise problem  # before connecting: a cleartext login is refused, not attempted
    where = f"IMAP {settings.imap_host}:{settings.imap_port}"
    result = InboundResult()
    conn = _connect(settings.imap_host, settings.imap_port, tls=settings.imap_ssl, where=where)
    if settings.imap_starttls and not settings.imap_ssl:
        try:
            conn.starttls(ssl_context=ssl.create_default_context())
        except (imaplib.IMAP4.error, OSError) as exc:
            _logout(conn)
            raise CommsError(f"{where}: STARTTLS failed: {_reason(exc)}") from None
    try:
        try:
            conn.login(settings.imap_username, password)
        except imaplib.IMAP4.error as exc:
            raise CommsError(f"{where}: login as {settings.imap_username!r} refused: "
                             f"{_reason(exc, password)}") from None
        _select(conn, settings.imap_folder, where)
        fetched = [(uid, _fetch(conn, uid, where)) for uid in _unseen(conn, where)]
        for uid, raw in sorted(fetched, key=lambda item: answered_at(item[1] or b"")):
            if raw is not None:
                process_message(rsvps, raw, result, where=f"IMAP message {uid}")
            _check(conn.uid("STORE", uid, "+FLAGS", r"(\Seen)"), where, "mark as read")
    except (imaplib.IMAP4.error, OSError) as exc:
        raise CommsError(f"{where}: {_reason(exc, password)}") from None
    finally:
        _logout(conn)
    return result


def _connect(host: str, port: int, *, tls: bool, where: str) -> imaplib.IMAP4:
    try:
        if tls:
            return imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context(),
                                     timeout=IMAP_TIMEOUT)
        return imaplib.IMAP4(host, port, timeout=IMAP_TIMEOUT)
    except ssl.SSLCertVerificationError as exc:
        raise CommsError(f"{where}: TLS certificate not trusted: {exc.verify_message}") from None
    except (imaplib.IMAP4.error, OSError) as exc:
        hint = " (check COMMS_IMAP_HOST, COMMS_IMAP_PORT and COMMS_IMAP_SSL)"
        raise CommsError(f"{where}: cannot connect: {_reason(exc)}{hint}") from None


def _select(conn: imaplib.IMAP4, folder: str, where: str) -> None:
    typ, data = conn.select(_quote(folder))
    if typ != "OK":
        raise CommsError(f"{where}: cannot open folder {folder!r}: {_text(data)} "
                         "(check COMMS_IMAP_FOLDER)")


def _unseen(conn: imaplib.IMAP4, where: str) -> list[str]:
    data = _check(conn.uid("SEARCH", "UNSEEN"), where, "search for unread mail")
    found = data[0] if data and isinstance(data[0], bytes) else b""
    return [uid.decode("ascii") for uid in found.split()]


def _fetch(conn: imaplib.IMAP4, uid: str, where: str) -> bytes | None:
    """One message's bytes, without setting \\Seen (that waits until it has been processed)."""
    data = _check(conn.uid("FETCH", uid, "(BODY.PEEK[])"), where, f"fetch message {uid}")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    log.warning("inbound: %s returned no body for message %s", where, uid)
    return None


def _check(response: tuple[str, list[object]], where: str, what: str) -> list[object]:
    typ, data = response
    if typ != "OK":
        raise CommsError(f"{where}: cannot {what}: {_text(data)}")
    return data


def _logout(conn: imaplib.IMAP4) -> None:
    try:
        conn.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


_ATOM = re.compile(r"[A-Za-z0-9._/-]+")


def _quote(folder: str) -> str:
    """A mailbox name as an IMAP atom or quoted string (``Sent Items`` needs the quotes)."""
    if _ATOM.fullmatch(folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: object) -> str:
    if isinstance(data, list | tuple):
        return " ".join(_text(item) for item in data if item is not None) or "no details"
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _reason(exc: BaseException, secret: str = "") -> str:
    """The exception's text, server replies decoded, never showing ``secret``."""
    text = _text(exc.args[0]) if len(exc.args) == 1 else (str(exc) or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        text = "timed out"
    if secret:
        text = text.replace(secret, "[redacted]")
    return text

"""SMTP transport: kept-alive connections (one per thread, or many sessions on the dispatcher's
event loop), replies mapped onto the error tree."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from functools import partial

from ..errors import AmbiguousError, PermanentError, TransientError, TransportError
from ..mime import build_mime, header_address
from ._net import describe, dropped
from ._smtp import Session
from .base import Message, redacted


class Redacted(str):
    """A secret that works as a ``str`` but shows as ``'[redacted]'`` in reprs (and dict reprs)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'[redacted]'"


class SmtpTransport:
    """Sends ``build_mime`` bytes over SMTP, reusing each thread's connection between messages.

    The provider id is the message's own Message-ID.
    """

    name = "smtp"

    def __init__(self, host: str = "localhost", port: int = 25, username: str | None = None,
                 password: str | None = None, starttls: bool = False, ssl: bool = False,
                 timeout: float = 30.0, *, ssl_context: ssl.SSLContext | None = None,
                 allow_plaintext_auth: bool = False) -> None:
        if starttls and ssl:
            raise ValueError("choose STARTTLS or implicit SSL, not both")
        self.allow_plaintext_auth = allow_plaintext_auth
        self.host = host
        self.port = port
        self.username = username
        self._password = Redacted(password or "")
        self.starttls = starttls
        self.ssl = ssl
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[smtplib.SMTP] = set()

    def __repr__(self) -> str:
        security = "ssl" if self.ssl else "starttls" if self.starttls else "plain"
        user = f", username={self.username!r}" if self.username else ""
        return f"SmtpTransport({self.host!r}, {self.port}, {security}{user})"

    def send(self, message: Message) -> str:
        try:
            return self._send(message)
        except TransportError as exc:
            raise redacted(exc, [self._password]) from None

    def _send(self, message: Message) -> str:
        sender, recipients, raw, options = self._prepare(message)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                _transmit(conn, sender, recipients, raw, options, self._where())
            except smtplib.SMTPServerDisconnected as exc:  # before the final dot: not taken
                self._discard(conn)
                if attempt == 2:
                    raise TransientError(f"{self._where()} disconnected: {exc}") from None
                continue  # a kept-alive connection the server dropped: reconnect once
            except (smtplib.SMTPException, OSError) as exc:
                raise self._failure(exc, sender, partial(self._discard, conn)) from None
            return message.message_id
        raise AssertionError("unreachable")

    def open_async(self) -> _AsyncSender:
        """The sender the dispatcher's event loop uses: each message over one of its own
        kept-alive sessions, as many as are in flight (``COMMS_CONCURRENCY``)."""
        return _AsyncSender(self)

    def _prepare(self, message: Message) -> tuple[str, list[str], bytes, list[str]]:
        """The envelope and the bytes: ``PermanentError`` if the message cannot be built."""
        try:
            raw = build_mime(message)
            sender = header_address(message.sender.email)
            recipients = [header_address(a.email) for a in message.recipients]
        except ValueError as exc:
            raise PermanentError(f"message not built: {exc}") from None
        options = [] if (sender + "".join(recipients)).isascii() else ["SMTPUTF8"]
        return sender, recipients, raw, options

    def _failure(self, exc: BaseException, sender: str,
                 discard: Callable[[], None]) -> TransportError:
        """What an ``smtplib`` exception from a transaction means; ``discard`` drops the
        connection when it cannot go on."""
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            [(recipient, (code, reply))] = list(exc.recipients.items())[:1]
            return self._reply_error(discard, f"recipient {recipient} refused", code, reply)
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return self._reply_error(discard, f"sender {sender} refused", exc.smtp_code,
                                     exc.smtp_error)
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._reply_error(discard, "message refused", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentError(f"{self._where()}: {exc}")
        discard()
        return TransientError(f"{self._where()}: {describe(exc)}")

    def close(self) -> None:
        """Quit every thread's connection."""
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            _quit(conn)

    # connections

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and not dropped(conn.sock):
            return conn
        if conn is not None:
            self._discard(conn)  # closed by the server while idle: nothing was written to it
        conn = self._open()
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn

    def _login(self) -> tuple[str, str] | None:
        """The credentials to AUTH with, if any; never in clear unless allowed."""
        if not self.username:
            return None
        if not (self.ssl or self.starttls or self.allow_plaintext_auth):
            raise PermanentError(f"{self._where()}: refusing to send the password in clear: "
                                 "use STARTTLS or implicit TLS")
        return self.username, self._password

    def _open(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = None
        login = self._login()
        try:
            if self.ssl:
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=self._context())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=self._context())
                conn.ehlo()
            if login is not None:
                conn.login(*login)
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            raise self._open_error(exc) from None

    def _open_error(self, exc: BaseException) -> BaseException:
        where = self._where()
        if isinstance(exc, PermanentError):
            return exc
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return PermanentError(f"{where}: login as {self.username!r} refused: "
                                  f"{_text(exc.smtp_error)}", status=exc.smtp_code)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentError(f"{where}: {exc} (check the STARTTLS/SSL settings)")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(f"{where}: TLS certificate not trusted: {exc.verify_message}")
        if isinstance(exc, smtplib.SMTPResponseException):
            cls = PermanentError if 500 <= exc.smtp_code < 600 else TransientError
            return cls(f"{where}: {_text(exc.smtp_error)}", status=exc.smtp_code)
        if isinstance(exc, (smtplib.SMTPException, OSError)):
            return TransientError(f"{where}: cannot connect: {describe(exc)}")
        return exc

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _discard(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._connections.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.close()

    def _reply_error(self, discard: Callable[[], None], what: str, code: int,
                     reply: bytes | str) -> TransportError:
        text = _text(reply)
        if code == 421:  # the server is closing this connection
            discard()
        cls = PermanentError if 500 <= code < 600 else TransientError
        return cls(f"{self._where()}: {what}: {code} {text}", status=code, body=text)

    def _where(self) -> str:
        return f"SMTP {self.host}:{self.port}"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()


def _transmit(conn: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes,
              options: list[str], where: str) -> None:
    """MAIL, RCPT, DATA for one prepared message: ``smtplib.sendmail`` without its per-message
    address re-parsing and dot-stuffing pass (``build_mime`` never starts a line with a dot).
    Raises the exceptions ``sendmail`` raises, so callers map them the same way, and
    :class:`AmbiguousError` when the reply to the final dot is lost: the server may have taken
    the message."""
    if not conn.does_esmtp and conn.helo_resp is None:
        conn.ehlo_or_helo_if_needed()
    suffix = "".join(f" {option}" for option in options)
    code, reply = conn.docmd("mail", f"FROM:<{sender}>{suffix}")
    if code != 250:
        _reset(conn, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    for recipient in recipients:  # a message to a pair goes to both or to neither
        code, reply = conn.docmd("rcpt", f"TO:<{recipient}>")
        if code not in (250, 251):
            _reset(conn, code)
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = conn.docmd("data")
    if code != 354:
        _reset(conn, code)
        raise smtplib.SMTPDataError(code, reply)
    # One write: a separate small write for the final dot would wait on Nagle's algorithm. If
    # the write fails, the dot did not go and the server cannot have the message.
    conn.send(raw + (b".\r\n" if raw.endswith(b"\r\n") else b"\r\n.\r\n"))
    try:
        code, reply = conn.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        conn.close()
        raise AmbiguousError(f"{where}: no reply after the message was sent "
                             f"({describe(exc)}): it may have been accepted") from None
    if code != 250:
        _reset(conn, code)
        raise smtplib.SMTPDataError(code, reply)


def _reset(conn: smtplib.SMTP, code: int) -> None:
    """After a refusal: RSET, or close on 421 (the server is going away), as smtplib does."""
    if code == 421:
        conn.close()
        return
    try:
        conn.rset()
    except smtplib.SMTPServerDisconnected:
        pass


class _AsyncSender:
    """``SmtpTransport.send`` on an event loop: each message over an idle session of this
    sender's own, or a new one (as many as are in flight)."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._idle: list[Session] = []
        self._local_name: str | None = None

    async def send(self, message: Message) -> str:
        transport = self._transport
        try:
            sender, recipients, raw, options = transport._prepare(message)
            for attempt in (1, 2):
                session = await self._take()
                try:
                    await session.transmit(sender, recipients, raw, options, transport._where(),
                                           transport.timeout)
                except smtplib.SMTPServerDisconnected as exc:  # before the final dot
                    session.close()
                    if attempt == 2:
                        raise TransientError(f"{transport._where()} disconnected: {exc}") from None
                    continue  # a kept-alive session the server dropped: reconnect once
                except (smtplib.SMTPException, OSError) as exc:
                    error = transport._failure(exc, sender, session.close)
                    if not session.closed:  # a refusal, after RSET: the session goes on
                        self._idle.append(session)
                    raise error from None
                except BaseException:
                    session.close()
                    raise
                self._idle.append(session)
                return message.message_id
            raise AssertionError("unreachable")
        except TransportError as exc:
            raise redacted(exc, [transport._password]) from None

    async def _take(self) -> Session:
        while self._idle:
            session = self._idle.pop()
            if not session.dropped():
                return session
            session.close()  # closed by the server while idle: nothing was written to it
        transport = self._transport
        login = transport._login()
        if self._local_name is None:  # as smtplib names this host, asked once
            self._local_name = await asyncio.get_running_loop().run_in_executor(
                None, socket.getfqdn)
        try:
            async with asyncio.timeout(transport.timeout):
                return await Session.open(
                    transport.host, transport.port, local_name=self._local_name,
                    implicit_tls=transport.ssl, starttls=transport.starttls,
                    context=transport._context() if transport.ssl or transport.starttls
                    else None, login=login)
        except Exception as exc:
            raise transport._open_error(exc) from None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit(self._transport.timeout) for session in idle))

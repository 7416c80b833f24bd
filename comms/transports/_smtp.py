"""An SMTP client session on an asyncio stream: what ``smtplib.SMTP`` does for comms, on one
event loop with many sessions at once.

``smtplib`` on a thread per connection costs comms most of a message's CPU in handing the GIL
between threads (over a hundred futex calls a message with eight sessions). This speaks the
same commands on asyncio streams and raises the same ``smtplib`` exceptions, so both senders
map replies alike.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import ssl

from ..errors import AmbiguousError
from ._net import describe, dropped

MAX_LINE = 8192  # smtplib's _MAXLINE


class Session:
    """One connection: greeted, EHLO'd, maybe TLS and AUTH, then a transaction at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.features: dict[str, str] = {}

    @classmethod
    async def open(cls, host: str, port: int, *, local_name: str, implicit_tls: bool,
                   starttls: bool, context: ssl.SSLContext | None,
                   login: tuple[str, str] | None) -> Session:
        """Connect and get ready to send. Raises what ``smtplib`` raises for the same fault
        (``SMTPConnectError``, ``SMTPNotSupportedError``, ``SMTPAuthenticationError``,
        ``OSError``, ``ssl.SSLError``)."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context if implicit_tls else None, limit=MAX_LINE + 1,
            server_hostname=host if implicit_tls else None)
        session = cls(reader, writer)
        try:
            code, text = await session.reply()
            if code != 220:
                raise smtplib.SMTPConnectError(code, text)
            await session.hello(local_name)
            if starttls:
                if "starttls" not in session.features:
                    raise smtplib.SMTPNotSupportedError(
                        "STARTTLS extension not supported by server.")
                code, text = await session.command("STARTTLS")
                if code != 220:
                    raise smtplib.SMTPResponseException(code, text)
                await writer.start_tls(context or ssl.create_default_context(),
                                       server_hostname=host)
                await session.hello(local_name)
            if login is not None:
                await session.login(*login)
        except BaseException:
            session.close()
            raise
        return session

    def dropped(self) -> bool:
        """Whether the server closed (or reset) this kept-alive session while it was idle:
        what the loop has seen of it, or else the socket itself, as the blocking path asks."""
        if self._reader.at_eof() or self._reader.exception() is not None:
            return True
        sock = self._writer.get_extra_info("socket")
        return sock is None or dropped(sock)

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        self._writer.close()

    async def quit(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.command("QUIT")
        except (smtplib.SMTPException, OSError):  # TimeoutError among them
            pass
        self.close()

    async def reply(self) -> tuple[int, bytes]:
        """One reply, of one line or many, as ``smtplib.SMTP.getreply`` reads it."""
        lines = []
        while True:
            try:
                line = await self._reader.readline()
            except ValueError:  # beyond the stream's limit
                self.close()
                raise smtplib.SMTPResponseException(500, "Line too long.") from None
            except OSError as exc:  # reset: as smtplib.SMTP.getreply has it
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"Connection unexpectedly closed: {describe(exc)}") from None
            if not line:
                self.close()
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
                break
            if line[3:4] != b"-":
                break
        return code, b"\n".join(lines)

    async def command(self, line: str, encoding: str = "ascii") -> tuple[int, bytes]:
        self._writer.write(line.encode(encoding) + b"\r\n")
        return await self.reply()

    async def hello(self, local_name: str) -> None:
        code, text = await self.command(f"EHLO {local_name}")
        if code != 250:
            code, text = await self.command(f"HELO {local_name}")
            if code != 250:
                raise smtplib.SMTPHeloError(code, text)
            self.features = {}
            return
        self.features = {}
        for line in text.decode("latin-1").split("\n")[1:]:
            keyword, _, params = line.partition(" ")
            self.features[keyword.lower()] = params.strip()

    async def login(self, user: str, password: str) -> None:
        """AUTH PLAIN, else LOGIN (what relays offer over TLS), as ``smtplib.SMTP.login``."""
        if "auth" not in self.features:
            raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
        offered = self.features["auth"].upper().split()
        if "PLAIN" in offered:
            secret = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
            code, text = await self.command(f"AUTH PLAIN {secret}")
        elif "LOGIN" in offered:
            code, text = await self.command(
                "AUTH LOGIN " + base64.b64encode(user.encode()).decode("ascii"))
            if code == 334:
                code, text = await self.command(
                    base64.b64encode(password.encode()).decode("ascii"))
        else:
            raise smtplib.SMTPException("No suitable authentication method found.")
        if code not in (235, 503):
            raise smtplib.SMTPAuthenticationError(code, text)

    async def transmit(self, sender: str, recipients: list[str], raw: bytes,
                       options: list[str], where: str, timeout: float) -> None:
        """MAIL, RCPT, DATA for one prepared message, as ``smtp._transmit`` on a thread: the
        same exceptions, and ``AmbiguousError`` when the reply to the final dot is lost."""
        encoding = "utf-8" if options else "ascii"
        mail = f"MAIL FROM:<{sender}>{''.join(f' {option}' for option in options)}"
        async with asyncio.timeout(timeout):
            if "pipelining" in self.features:
                await self._envelope_at_once(mail, sender, recipients, encoding)
            else:
                await self._envelope(mail, sender, recipients, encoding)
        if self.closed:  # the dot cannot go: the server cannot have the message
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        self._writer.write(raw + (b".\r\n" if raw.endswith(b"\r\n") else b"\r\n.\r\n"))
        try:
            async with asyncio.timeout(timeout):
                code, text = await self.reply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:  # TimeoutError among them
            self.close()
            raise AmbiguousError(f"{where}: no reply after the message was sent "
                                 f"({describe(exc)}): it may have been accepted") from None
        if code != 250:
            await self._reset(code)
            raise smtplib.SMTPDataError(code, text)

    async def _envelope(self, mail: str, sender: str, recipients: list[str],
                        encoding: str) -> None:
        """MAIL, each RCPT, DATA: each command once the last one's reply is in."""
        code, text = await self.command(mail, encoding)
        if code != 250:
            await self._reset(code)
            raise smtplib.SMTPSenderRefused(code, text, sender)
        for recipient in recipients:  # a message to a pair goes to both or to neither
            code, text = await self.command(f"RCPT TO:<{recipient}>", encoding)
            if code not in (250, 251):
                await self._reset(code)
                raise smtplib.SMTPRecipientsRefused({recipient: (code, text)})
        code, text = await self.command("DATA")
        if code != 354:
            await self._reset(code)
            raise smtplib.SMTPDataError(code, text)

    async def _envelope_at_once(self, mail: str, sender: str, recipients: list[str],
                                encoding: str) -> None:
        """The same commands in one write, then their replies in order (RFC 2920 PIPELINING,
        where the server offers it): one round trip where there were two or more. Refusals
        raise as :meth:`_envelope` raises them. A server that would take the message for the
        others of a pair when one is refused is never given it: the session is closed."""
        commands = [mail, *(f"RCPT TO:<{recipient}>" for recipient in recipients), "DATA"]
        self._writer.write("".join(f"{command}\r\n" for command in commands).encode(encoding))
        replies = []
        for _ in commands:
            replies.append(await self.reply())
            if replies[-1][0] == 421:  # the server is closing: no more replies will come
                break
        refused = _first_refusal(sender, recipients, replies)
        if refused is None:
            return
        code, refusal = refused
        if len(replies) < len(commands) or replies[-1][0] == 354:
            self.close()  # told it is closing, or mid-DATA: nothing is taken when it drops
        else:
            await self._reset(code)
        raise refusal

    async def _reset(self, code: int) -> None:
        """After a refusal: RSET, or close on 421 (the server is going away), as smtplib does."""
        if code == 421:
            self.close()
            return
        try:
            await self.command("RSET")
        except smtplib.SMTPServerDisconnected:
            pass


def _first_refusal(sender: str, recipients: list[str], replies: list[tuple[int, bytes]]
                   ) -> tuple[int, smtplib.SMTPException] | None:
    """The first refusal among the replies to MAIL, each RCPT and DATA, as the exception the
    one-at-a-time envelope raises for it, with its code (a reply that never came: 421)."""
    for n in range(len(recipients) + 2):
        code, text = replies[n] if n < len(replies) else (421, b"closing")
        if n == 0 and code != 250:
            return code, smtplib.SMTPSenderRefused(code, text, sender)
        if 0 < n <= len(recipients) and code not in (250, 251):
            return code, smtplib.SMTPRecipientsRefused({recipients[n - 1]: (code, text)})
        if n == len(recipients) + 1 and code != 354:
            return code, smtplib.SMTPDataError(code, text)
    return None

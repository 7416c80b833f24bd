"""A real local SMTP server (aiosmtpd) that records every message and can fail on demand.

In-process::

    with SmtpSink() as sink:              # 127.0.0.1, a free port: sink.port
        sink.refuse("nobody@example.org", "550 5.1.1 No such user")
        sink.script_data("451 4.3.0 Try again later")   # the next DATA only
        ...
        assert sink.messages[0].rcpt_tos == [...]

As a subprocess (prints the port on stdout when ready; SIGTERM or Ctrl-C stops it)::

    python -m tests.sinks.smtp_server --port 0 --log received.jsonl [--auth user:password]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import ssl
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int  # which connection (1, 2, ...) carried it

    @property
    def message_id(self) -> str | None:
        head = self.data.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        return found.group(1).decode() if found else None


class SmtpSink:
    """Records messages in ``messages``; counts connections in ``connections``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, log: Path | str | None = None,
                 auth: tuple[str, str] | None = None, tls_context: ssl.SSLContext | None = None,
                 require_starttls: bool = False, implicit_tls: bool = False,
                 latency: float = 0.0, keep: bool = True, pipelining: bool = True) -> None:
        """``tls_context`` offers STARTTLS, or with ``implicit_tls`` wraps every connection;
        ``latency`` seconds pass between taking a message and answering its final dot (as a
        relay across a network takes), without holding up other connections. ``keep=False``:
        the log is the only record (``messages`` stays empty). ``pipelining`` offers RFC 2920
        PIPELINING in the EHLO reply, as Postfix and Exchange do (aiosmtpd reads commands in
        order either way)."""
        self.latency = latency
        self.pipelining = pipelining
        self.keep = keep
        self.messages: list[Received] = []
        self.connections = 0
        self.logins: list[str] = []
        self._auth = auth
        self._refusals: dict[str, str] = {}
        self._data_script: deque[str] = deque()
        self._lock = threading.Lock()
        self._log: TextIO | None = open(log, "a", encoding="utf-8") if log else None
        self._servers: list[SMTP] = []
        kwargs: dict[str, Any] = {"data_size_limit": 40 * 1024 * 1024}
        if auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=tls_context is not None and not implicit_tls)
        if tls_context is not None and implicit_tls:
            kwargs.update(ssl_context=tls_context)
        elif tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        self._controller = _Controller(_Handler(self), self, hostname=host, port=port, **kwargs)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    def start(self) -> SmtpSink:
        self._controller.start()
        with self._lock:
            self.connections = 0  # the controller's own start-up probe does not count
        return self

    def stop(self) -> None:
        self._controller.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse(self, address: str, reply: str = "550 5.1.1 Mailbox unavailable") -> None:
        """Answer RCPT TO for ``address`` with ``reply`` from now on."""
        with self._lock:
            self._refusals[address.casefold()] = reply

    def script_data(self, *replies: str) -> None:
        """Answer the next DATA commands with these replies, one each, then accept again."""
        with self._lock:
            self._data_script.extend(replies)

    def drop_connections(self) -> None:
        """Close every open client connection, as a server does with idle ones."""
        loop = self._controller.loop
        with self._lock:
            servers = list(self._servers)
        for server in servers:
            transport = server.transport
            if transport is not None:
                loop.call_soon_threadsafe(transport.close)
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        done.wait(5)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self._refusals.clear()
            self._data_script.clear()
            self.logins.clear()
            self.connections = 0

    # called from the server's event loop thread

    def _connected(self, server: SMTP) -> int:
        with self._lock:
            self.connections += 1
            self._servers.append(server)
            return self.connections

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if self._auth is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self._auth
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        if ok:
            with self._lock:
                self.logins.append(user)
        return AuthResult(success=ok, handled=False)

    def _rcpt_reply(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.casefold())

    def _data_reply(self) -> str | None:
        with self._lock:
            return self._data_script.popleft() if self._data_script else None

    def _record(self, received: Received) -> None:
        with self._lock:
            if self.keep:
                self.messages.append(received)
            if self._log is not None:
                line = {"mail_from": received.mail_from, "rcpt_tos": received.rcpt_tos,
                        "message_id": received.message_id, "size": len(received.data)}
                self._log.write(json.dumps(line) + "\n")
                self._log.flush()


class _Controller(Controller):
    def __init__(self, handler: Any, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        server = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        server.sink = self._sink
        return server

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before the start-up probe connects to it.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _CountingSMTP(SMTP):
    sink: SmtpSink
    number = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if not self.number:  # STARTTLS calls this again for the same connection
            self.number = self.sink._connected(self)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.sink.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.sink._rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.sink._data_reply()
        if reply is not None:
            return reply
        content = envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        number = server.number if isinstance(server, _CountingSMTP) else 0
        self.sink._record(Received(mail_from=str(envelope.mail_from),
                                   rcpt_tos=list(envelope.rcpt_tos), data=data,
                                   connection=number))
        if self.sink.latency:
            await asyncio.sleep(self.sink.latency)
        return "250 2.0.0 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local SMTP server recording every message.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append one JSON line per message to this file")
    parser.add_argument("--auth", help="require AUTH with user:password")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds before answering each message's final dot")
    args = parser.parse_args(argv)
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = (user, password)
    sink = SmtpSink(host=args.host, port=args.port, log=args.log, auth=auth,
                    latency=args.latency, keep=not args.log)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    sink.start()
    sys.stdout.write(f"{sink.port}\n")
    sys.stdout.flush()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()

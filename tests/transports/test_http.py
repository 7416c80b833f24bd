"""The lean HTTP/1.1 connection the SendGrid transport uses, blocking and on asyncio, against a
raw socket server that answers exactly the bytes each test scripts (framings the SendGrid sink
never sends)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from comms.errors import AmbiguousError
from comms.transports._http import AsyncConnection, BadReply, Connection, Reply
from comms.transports.sendgrid import SendGridTransport
from tests.conftest import Tls

from .helpers import API_KEY, make_message


class Scripted:
    """Accepts connections; answers each request with the next scripted reply (``None``: close
    without answering). Keeps every request's bytes and which connection it came on."""

    def __init__(self, replies: list[bytes | None], tls: Tls | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[int, bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._tls = tls
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        number = 0
        while self.replies:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            number += 1
            if self._tls is not None:
                sock = self._tls.server.wrap_socket(sock, server_side=True)
            with sock:
                reader = sock.makefile("rb")
                while self.replies:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = reader.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    self.requests.append((number, head + reader.read(length)))
                    reply = self.replies.pop(0)
                    if reply is None:
                        break
                    sock.sendall(reply)
                    if b"connection: close" in reply.lower():
                        break

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def script() -> Iterator[list[Scripted]]:
    servers: list[Scripted] = []
    yield servers
    for server in servers:
        server.close()


class OnALoop:
    """An :class:`AsyncConnection` driven to the end of each request on a loop of its own."""

    def __init__(self, port: int, context: ssl.SSLContext | None) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = AsyncConnection("127.0.0.1", port, timeout=5, context=context)

    def request(self, *args: Any) -> Reply:
        return self._loop.run_until_complete(self._conn.request(*args))

    def close(self) -> None:
        self._conn.close()
        self._loop.run_until_complete(asyncio.sleep(0))  # the transport's close is a callback
        self._loop.close()


@pytest.fixture(params=["blocking", "asyncio"])
def connect(request: pytest.FixtureRequest) -> Any:
    """Connection, or AsyncConnection: each test holds for both."""
    def make(port: int, context: ssl.SSLContext | None = None) -> Connection | OnALoop:
        if request.param == "blocking":
            return Connection("127.0.0.1", port, timeout=5, context=context)
        return OnALoop(port, context)
    return make


def serve(script: list[Scripted], *replies: bytes | None, tls: Tls | None = None) -> Scripted:
    server = Scripted(list(replies), tls)
    script.append(server)
    return server


def test_the_request_is_one_http_1_1_message_with_host_and_length(script: list[Scripted],
                                                                  connect: Any) -> None:
    server = serve(script, b"HTTP/1.1 202 Accepted\r\nX-Message-Id: m1\r\nContent-Length: 0\r\n\r\n")
    conn = connect(server.port)
    reply = conn.request("POST", "/v3/mail/send", b'{"a": 1}', {"Authorization": "Bearer k"})
    assert (reply.status, reply.body, reply.will_close) == (202, b"", False)
    assert reply.headers.get("x-message-id") == reply.headers.get("X-MESSAGE-ID") == "m1"
    _, raw = server.requests[0]
    assert raw == (f"POST /v3/mail/send HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                   "Authorization: Bearer k\r\nContent-Length: 8\r\n\r\n{\"a\": 1}").encode()
    conn.close()


def test_chunked_and_continue_replies_keep_the_connection(script: list[Scripted], connect: Any) -> None:
    server = serve(script,
                   b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n"
                   b"Trailer: t\r\n\r\n",
                   b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
    conn = connect(server.port)
    first = conn.request("POST", "/", b"", {})
    second = conn.request("POST", "/", b"", {})
    assert (first.status, first.body) == (400, b"hello world")
    assert (second.status, second.body) == (202, b"ok")
    assert [number for number, _ in server.requests] == [1, 1]  # one connection, kept alive
    conn.close()


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n",
])
def test_a_reply_that_closes_says_so(script: list[Scripted], reply: bytes, connect: Any) -> None:
    server = serve(script, reply)
    conn = connect(server.port)
    assert conn.request("POST", "/", b"", {}).will_close
    conn.close()


@pytest.mark.parametrize(("reply", "error"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", BadReply),
    (b"HTTP/1.1 20 Short\r\n\r\n", BadReply),
    (b"HTTP/1.1 202 Accepted\r\nno colon here\r\n\r\n", BadReply),
    (b"HTTP/1.1 202 Accepted\r\nContent-Length: many\r\n\r\n", BadReply),
    (b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
     OSError),
    (None, OSError),
])
def test_what_is_not_a_whole_reply_is_an_error(script: list[Scripted], reply: bytes | None,
                                               error: type[Exception], connect: Any) -> None:
    server = serve(script, reply)
    conn = connect(server.port)
    with pytest.raises((error, http.client.HTTPException)):
        conn.request("POST", "/", b"", {})
    conn.close()


@pytest.mark.parametrize("reply", [
    b"NOT HTTP\r\n\r\n",
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
    None,
])
def test_the_transport_calls_a_broken_reply_uncertain(script: list[Scripted],
                                                      reply: bytes | None) -> None:
    """The request went out: whatever came back, it may have been accepted."""
    server = serve(script, reply)
    transport = SendGridTransport(API_KEY, host=f"http://127.0.0.1:{server.port}", timeout=5)
    with pytest.raises(AmbiguousError, match="may have been accepted"):
        transport.send(make_message(1))
    assert len(server.requests) == 1
    transport.close()
    again = serve(script, reply)  # and through the sender the dispatcher's event loop uses
    transport = SendGridTransport(API_KEY, host=f"http://127.0.0.1:{again.port}", timeout=5)

    async def send() -> str:
        sender = transport.open_async()
        try:
            return await sender.send(make_message(1))
        finally:
            await sender.close()

    with pytest.raises(AmbiguousError, match="may have been accepted"):
        asyncio.run(send())
    assert len(again.requests) == 1


def test_https(script: list[Scripted], tls: Tls, connect: Any) -> None:
    server = serve(script, b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", tls=tls)
    conn = connect(server.port, tls.client)
    assert conn.request("POST", "/", b"{}", {}).status == 202
    assert b"Host: 127.0.0.1:" in server.requests[0][1]
    conn.close()

"""A lean HTTP/1.1 client connection for one host, kept alive between requests (blocking, and
its twin on an asyncio stream).

``http.client`` parses every reply's headers with the ``email`` package and writes each header
line through several calls; for a provider answering thousands of small replies a second that
is most of a message's CPU. This sends a request as one buffer and reads a reply with a
buffered reader: status line, headers, then the body by ``Content-Length``, chunks, or to the
close. Anything a server sends that is not HTTP/1.x is :class:`BadReply`.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from typing import BinaryIO

MAX_LINE = 65536
MAX_HEADERS = 100


class BadReply(http.client.HTTPException):
    """The server answered something that is not an HTTP/1.x reply."""


class Headers(dict[str, str]):
    """A reply's headers, by lower-case name (``get`` takes any case)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class Reply:
    __slots__ = ("status", "headers", "body", "will_close")

    def __init__(self, status: int, headers: Headers, body: bytes, will_close: bool) -> None:
        self.status, self.headers, self.body, self.will_close = status, headers, body, will_close


class _Peer:
    """Where a connection goes: host, port (by default 443 with TLS, 80 without), timeout."""

    def __init__(self, host: str, port: int | None, *, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        self.host, self.timeout, self.context = host, timeout, context
        default = 443 if context is not None else 80
        self.port = port or default
        self._host_header = host if self.port == default else f"{host}:{self.port}"


class Connection(_Peer):
    """One TCP (or TLS) connection; ``request`` opens it when it is not open."""

    def __init__(self, host: str, port: int | None, *, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            try:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        sock, reader, self.sock, self._reader = self.sock, self._reader, None, None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Send one request and read its whole reply (connecting first if need be)."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None and self._reader is not None
        self.sock.sendall(head(method, path, self._host_header, headers, body) + body)
        return self._reply(method)

    def _reply(self, method: str) -> Reply:
        reader = self._reader
        assert reader is not None
        while True:
            status, version = status_line(reader.readline(MAX_LINE + 1))
            headers = self._headers(reader)
            if status != 100:  # 100 Continue (not asked for, but allowed): the real one follows
                break
        will_close, size = body_of(method, status, version, headers)
        if size == 0:
            return Reply(status, headers, b"", will_close)
        if size == CHUNKED:
            return Reply(status, headers, self._chunks(reader), will_close)
        if size == TO_THE_CLOSE:
            return Reply(status, headers, reader.read(), True)
        body = reader.read(size)
        if len(body) < size:
            raise http.client.IncompleteRead(body, size - len(body))
        return Reply(status, headers, body, will_close)

    @staticmethod
    def _headers(reader: BinaryIO) -> Headers:
        headers = Headers()
        for _ in range(MAX_HEADERS + 1):
            if header_line(headers, reader.readline(MAX_LINE + 1)):
                return headers
        raise BadReply(f"more than {MAX_HEADERS} headers")

    @staticmethod
    def _chunks(reader: BinaryIO) -> bytes:
        parts: list[bytes] = []
        while True:
            size = chunk_size(reader.readline(MAX_LINE + 1))
            if size == 0:
                while reader.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            chunk = reader.read(size)
            if len(chunk) < size:
                raise http.client.IncompleteRead(chunk, size - len(chunk))
            parts.append(chunk)
            reader.readline(MAX_LINE + 1)  # the CRLF after the chunk


class AsyncConnection(_Peer):
    """The same client on an asyncio stream: one of many in flight on one event loop."""

    def __init__(self, host: str, port: int | None, *, timeout: float,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def open(self) -> bool:
        return self._writer is not None

    def dropped(self) -> bool:
        """Whether the server closed this kept-alive connection while it was idle."""
        return self._reader is not None and self._reader.at_eof()

    async def connect(self) -> None:
        """Open it (TCP_NODELAY, as asyncio sets on every TCP stream)."""
        self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(
            self.host, self.port, ssl=self.context, limit=MAX_LINE + 1,
            server_hostname=self.host if self.context is not None else None), self.timeout)

    def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    async def request(self, method: str, path: str, body: bytes,
                      headers: dict[str, str]) -> Reply:
        """Send one request and read its whole reply within ``timeout`` (connecting first if
        need be)."""
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        self._writer.write(head(method, path, self._host_header, headers, body) + body)
        return await asyncio.wait_for(self._reply(method), self.timeout)

    async def _reply(self, method: str) -> Reply:
        reader = self._reader
        assert reader is not None
        try:
            while True:
                status, version = status_line(await reader.readline())
                headers = Headers()
                for _ in range(MAX_HEADERS + 1):
                    if header_line(headers, await reader.readline()):
                        break
                else:
                    raise BadReply(f"more than {MAX_HEADERS} headers")
                if status != 100:
                    break
            will_close, size = body_of(method, status, version, headers)
            if size == CHUNKED:
                parts = []
                while size := chunk_size(await reader.readline()):
                    parts.append(await reader.readexactly(size))
                    await reader.readline()  # the CRLF after the chunk
                while await reader.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return Reply(status, headers, b"".join(parts), will_close)
            if size == TO_THE_CLOSE:
                return Reply(status, headers, await reader.read(), True)
            return Reply(status, headers, await reader.readexactly(size) if size else b"",
                         will_close)
        except asyncio.IncompleteReadError as exc:
            raise http.client.IncompleteRead(exc.partial, exc.expected) from None
        except ValueError:  # a line beyond the stream's limit
            raise BadReply(f"a line longer than {MAX_LINE} bytes") from None


CHUNKED, TO_THE_CLOSE = -1, -2  # what body_of says of a body without a Content-Length


def head(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    """A request's line and headers, as one buffer."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}",
             *(f"{name}: {value}" for name, value in headers.items()),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def body_of(method: str, status: int, version: str, headers: Headers) -> tuple[bool, int]:
    """Whether the server closes the connection after this reply, and its body's size (or
    ``CHUNKED``, or ``TO_THE_CLOSE``)."""
    connection = (headers.get("connection") or "").lower()
    will_close = "close" in connection or (version == "HTTP/1.0" and
                                           "keep-alive" not in connection)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return will_close, 0
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return will_close, CHUNKED
    length = headers.get("content-length")
    if length is None:
        return True, TO_THE_CLOSE
    try:
        size = int(length)
    except ValueError:
        raise BadReply(f"Content-Length {length!r}") from None
    if size < 0:
        raise BadReply(f"Content-Length {length!r}")
    return will_close, size


def status_line(line: bytes) -> tuple[int, str]:
    """(status, HTTP version) of a reply's first line."""
    if not line:
        raise http.client.RemoteDisconnected("Remote end closed connection without response")
    if len(line) > MAX_LINE:
        raise BadReply("status line too long")
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise BadReply(f"not an HTTP reply: {line[:80]!r}")
    return int(code), version


def header_line(headers: Headers, line: bytes) -> bool:
    """Add one header line to ``headers``; True at the blank line that ends them."""
    if line in (b"\r\n", b"\n"):
        return True
    if not line:
        raise http.client.RemoteDisconnected("closed in the middle of the headers")
    if len(line) > MAX_LINE:
        raise BadReply("header line too long")
    name, colon, value = line.decode("latin-1").partition(":")
    if not colon:
        raise BadReply(f"not a header line: {line[:80]!r}")
    key = name.strip().lower()
    value = value.strip()
    headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return False


def chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise BadReply(f"bad chunk size {line[:40]!r}") from None

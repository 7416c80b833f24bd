"""SendGrid v3 Mail Send transport over keep-alive connections.

The ``sendgrid`` package's client opens a new TCP connection per request (and ``http.client``
parses each reply's headers with the ``email`` package); here its request headers are kept but
requests go over lean HTTP/1.1 connections (:mod:`._http`): one per thread for ``send``, or, for
the dispatcher, as many as are in flight on one event loop (``open_async``), which keeps
hundreds of requests to a provider 150 ms away in flight without a thread each. Invitations can
instead go through SendGrid's SMTP relay, which takes our own MIME (text/calendar inside
multipart/alternative).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sendgrid import SendGridAPIClient

from ..errors import AmbiguousError, PermanentError, TransientError, TransportError
from ..mime import (
    check_address,
    check_filename,
    check_header_value,
    check_method,
    extra_headers,
    split_mailbox,
)
from ._http import AsyncConnection, Connection, Headers, Reply
from ._net import describe, dropped
from .base import Message, redacted
from .smtp import Redacted, SmtpTransport


class SendGridTransport:
    """Posts one ``/v3/mail/send`` request per message; the provider id is ``X-Message-Id``.

    With ``invites="smtp-relay"``, messages carrying a calendar go through SendGrid's SMTP relay
    (user ``apikey``, STARTTLS) instead, so the invitation keeps the MIME layout Outlook needs.
    """

    name = "sendgrid"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 10.0,
                 sandbox: bool = False, invites: Literal["api", "smtp-relay"] = "api",
                 relay_host: str = "smtp.sendgrid.net", relay_port: int = 587, *,
                 relay_ssl_context: ssl.SSLContext | None = None) -> None:
        if not api_key:
            raise ValueError("a SendGrid API key is needed (COMMS_SENDGRID_API_KEY)")
        if invites not in ("api", "smtp-relay"):
            raise ValueError(f"invites must be 'api' or 'smtp-relay', not {invites!r}")
        self.host = host.rstrip("/")
        self._key = Redacted(api_key)
        self.timeout = timeout
        self.sandbox = sandbox
        self.invites = invites
        self._pool = _ConnectionPool(self.host, timeout)
        api = SendGridAPIClient(Redacted(api_key), host=self.host)  # its User-Agent and auth
        self._path = urlsplit(f"{self.host}/v3/mail/send").path
        self._headers = {**api.client.request_headers, "Authorization": Redacted(api.auth),
                         "Content-Type": "application/json"}
        self._relay: SmtpTransport | None = None
        if invites == "smtp-relay":
            self._relay = SmtpTransport(relay_host, relay_port, username="apikey",
                                        password=Redacted(api_key), starttls=True, timeout=timeout,
                                        ssl_context=relay_ssl_context)

    def __repr__(self) -> str:
        sandbox = ", sandbox" if self.sandbox else ""
        return f"SendGridTransport({self.host!r}, invites={self.invites!r}{sandbox})"

    def send(self, message: Message) -> str:
        try:
            return self._send(message)
        except TransportError as exc:
            raise redacted(exc, [self._key]) from None

    def _send(self, message: Message) -> str:
        if self._relay is not None and message.calendar is not None:
            return self._relay.send(message)
        return self._accepted(message, self._pool.request("POST", self._path, self._body(message),
                                                          self._headers))

    def _body(self, message: Message) -> bytes:
        try:
            payload = build_payload(message, sandbox=self.sandbox)
        except ValueError as exc:
            raise PermanentError(f"message not built: {exc}") from None
        return json.dumps(payload).encode()

    def _accepted(self, message: Message, reply: Reply) -> str:
        """The provider id of an accepted message; the error of a refused one."""
        if reply.status >= 400:
            raise _http_error(reply)
        message_id = reply.headers.get("X-Message-Id")
        if message_id:
            return str(message_id)
        # Sandbox replies carry no id; anything else accepted without one must not be retried.
        return f"{'sandbox' if self.sandbox else 'accepted'}:{message.send_id}"

    def open_async(self) -> _AsyncSender:
        """A sender for the running event loop, with its own keep-alive connections."""
        return _AsyncSender(self)

    def close(self) -> None:
        """Close every thread's HTTP connection (and the relay's SMTP connections)."""
        self._pool.close()
        if self._relay is not None:
            self._relay.close()


def build_payload(message: Message, *, sandbox: bool = False) -> dict[str, Any]:
    """The v3 Mail Send body for one message, as plain dicts (``ValueError`` on unsafe input)."""
    payload: dict[str, Any] = {
        "personalizations": [{
            "to": [_mailbox(a.email, a.name) for a in message.recipients],
            "custom_args": {"send_id": message.send_id},  # opaque ids only, never addresses
        }],
        "from": _mailbox(message.sender.email, message.sender.name),
        "subject": check_header_value(message.subject, "subject"),
        # explicit on every request, so the account's defaults never decide
        "tracking_settings": {
            "click_tracking": {"enable": message.track_clicks, "enable_text": False},
            "open_tracking": {"enable": message.track_opens},
            "subscription_tracking": {"enable": False},
        },
    }
    if message.reply_to:
        name, email = split_mailbox(message.reply_to, "Reply-To")
        payload["reply_to"] = _mailbox(email, name)
    content = [{"type": "text/plain", "value": message.text},
               {"type": "text/html", "value": message.html}]
    payload["content"] = [c for c in content if c["value"]]
    if message.attachments:
        payload["attachments"] = [
            {"content": base64.b64encode(a.data).decode("ascii"),
             "filename": check_filename(a.filename),
             "type": check_header_value(a.content_type, "content type").split(";")[0],
             "disposition": "attachment"} for a in message.attachments]
    calendar = message.calendar
    if calendar is not None:
        method = check_method(calendar.method)
        payload["content"].append({"type": f"text/calendar; method={method}",
                                   "value": calendar.ics.decode("utf-8")})
        payload["attachments"] = [{
            "content": base64.b64encode(calendar.ics).decode("ascii"),
            "type": "text/calendar",
            "filename": "invite.ics",
            "disposition": "attachment",
        }]
    if message.headers:
        payload["headers"] = dict(extra_headers(message.headers))
    if sandbox:
        payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return payload


def _mailbox(email: str, name: str) -> dict[str, str]:
    check_address(email)
    if name:
        return {"email": email, "name": check_header_value(name, "display name")}
    return {"email": email}


def _http_error(reply: Reply) -> PermanentError | TransientError:
    status = reply.status
    body = reply.body.decode("utf-8", "replace")
    detail = _error_text(body)
    if status == 429:
        return TransientError(f"SendGrid rate limit reached: {detail}", status=status, body=body,
                              retry_after=_retry_after(reply.headers))
    if status >= 500:
        return TransientError(f"SendGrid server error: {detail}", status=status, body=body)
    if status in (401, 403):
        return PermanentError("SendGrid API key refused: check COMMS_SENDGRID_API_KEY and its "
                              f"Mail Send permission ({detail})", status=status, body=body)
    if status == 413:
        return PermanentError("message too large for SendGrid", status=status, body=body)
    return PermanentError(f"SendGrid refused the message: {detail}", status=status, body=body)


def _error_text(body: str) -> str:
    """``field: message`` for each entry of a v3 error body, else the body itself."""
    try:
        errors = json.loads(body)["errors"]
        parts = [f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"])
                 for e in errors]
    except (ValueError, KeyError, TypeError):
        return body[:500] or "no details"
    return "; ".join(parts) or "no details"


def _retry_after(headers: Headers) -> float | None:
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    after = headers.get("Retry-After")
    if after:
        try:
            return max(0.0, float(after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


class _AsyncSender:
    """``SendGridTransport.send`` on an event loop: each request over a kept-alive connection
    of this sender's own (as many as are in flight at once)."""

    def __init__(self, transport: SendGridTransport) -> None:
        self._transport = transport
        self._pool = _AsyncPool(transport.host, transport.timeout)

    async def send(self, message: Message) -> str:
        transport = self._transport
        try:
            if transport._relay is not None and message.calendar is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, transport._relay.send, message)
            reply = await self._pool.request("POST", transport._path, transport._body(message),
                                             transport._headers)
            return transport._accepted(message, reply)
        except TransportError as exc:
            raise redacted(exc, [transport._key]) from None

    async def close(self) -> None:
        self._pool.close()


class _Endpoint:
    """Where requests go: host, port, TLS context, and how messages name it."""

    def __init__(self, host: str, timeout: float) -> None:
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SendGrid host must be an http(s) URL, not {host!r}")
        self._where = host
        self._hostname = parts.hostname
        self._port = parts.port
        self._timeout = timeout
        self._context = ssl.create_default_context() if parts.scheme == "https" else None

    def _unreachable(self, exc: BaseException) -> TransientError:
        return TransientError(f"cannot reach SendGrid at {self._where}: {describe(exc)}")

    def _unanswered(self, exc: BaseException) -> AmbiguousError:
        if isinstance(exc, TimeoutError):
            return AmbiguousError(f"SendGrid did not answer within {self._timeout:g} s after the "
                                  "request was sent: it may have been accepted")
        return AmbiguousError(f"no reply from SendGrid at {self._where} after the request was "
                              f"sent ({describe(exc)}): it may have been accepted")


class _AsyncPool(_Endpoint):
    """Kept-alive connections on one event loop: one taken per request, given back after."""

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__(host, timeout)
        self._idle: list[AsyncConnection] = []

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """As :meth:`_ConnectionPool.request`: transient before any byte was written,
        ambiguous after."""
        conn = self._take()
        if not conn.open:
            try:
                await conn.connect()
            except OSError as exc:  # TimeoutError among them
                conn.close()
                raise self._unreachable(exc) from None
        try:
            reply = await conn.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unanswered(exc) from None
        except BaseException:
            conn.close()
            raise
        if reply.will_close:
            conn.close()
        else:
            self._idle.append(conn)
        return reply

    def _take(self) -> AsyncConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.dropped():
                return conn
            conn.close()  # the server closed it while idle: nothing was written to it
        return AsyncConnection(self._hostname, self._port, timeout=self._timeout,
                               context=self._context)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _ConnectionPool(_Endpoint):
    """One keep-alive connection per thread to one host; a registry to close."""

    def __init__(self, host: str, timeout: float) -> None:
        super().__init__(host, timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """One request over this thread's connection. A failure before any byte was written (the
        connection could not be made, or a kept-alive one was found closed) is a
        :class:`TransientError`: the provider cannot have it. Any failure after that is an
        :class:`AmbiguousError`: it may have been accepted, so it is never sent again blindly."""
        conn = self._connection()
        if conn.sock is not None and dropped(conn.sock):
            self._discard(conn)  # the server closed it while idle: nothing was written to it
            conn = self._connection()
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as exc:
                self._discard(conn)
                raise self._unreachable(exc) from None
        try:
            reply = conn.request(method, path, body, headers)
        except (OSError, http.client.HTTPException) as exc:  # TimeoutError among them
            self._discard(conn)
            raise self._unanswered(exc) from None
        except BaseException:
            self._discard(conn)
            raise
        if reply.will_close:
            conn.close()
        return reply

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.close()

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = Connection(self._hostname, self._port, timeout=self._timeout,
                              context=self._context)
            self._local.conn = conn
            with self._lock:
                self._connections.add(conn)
        return conn

    def _discard(self, conn: Connection) -> None:
        conn.close()
        with self._lock:
            self._connections.discard(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

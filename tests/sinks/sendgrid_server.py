"""A local HTTP/1.1 server speaking SendGrid's v3 ``/v3/mail/send`` contract.

In-process::

    with SendGridSink(api_key="SG.test") as sink:
        SendGridTransport("SG.test", host=sink.url)...
        sink.script(Reply(429, headers={"X-RateLimit-Reset": "..."}))
        assert sink.messages[0]["payload"]["subject"] == ...

As a subprocess (prints its URL on stdout when ready; SIGTERM or Ctrl-C stops it)::

    python -m tests.sinks.sendgrid_server --port 0 --log sent.jsonl --api-key SG.test

Authorization, the request limits and the reply shapes follow SendGrid's documentation: 401 with
an ``errors`` body for a wrong key, 400 ``{"errors": [{"message", "field", "help"}]}`` for a bad
body, 413 over the size limit, 202 with ``X-Message-Id``, 200 in sandbox mode.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

DEFAULT_KEY = "SG.test-key"
MAX_BODY = 30 * 1024 * 1024
RESERVED_HEADERS = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}
_AUTH_ERROR = {"errors": [{"field": None, "help": None, "message":
                           "The provided authorization grant is invalid, expired, or revoked"}]}


@dataclass
class Reply:
    """A scripted answer to the next request. ``status=None`` answers normally after ``delay``."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | dict[str, Any] = b""
    delay: float = 0.0


class SendGridSink:
    """Records every accepted message in ``messages`` (and, with ``log``, one JSON line each)."""

    def __init__(self, *, api_key: str = DEFAULT_KEY, host: str = "127.0.0.1", port: int = 0,
                 log: Path | str | None = None, max_body: int = MAX_BODY,
                 latency: float = 0.0, keep: bool = True) -> None:
        """``keep=False``: the log is the only record (``messages`` stays empty), so a long run
        holds nothing per message and the server's pace does not change as it goes."""
        self.api_key = api_key
        self.keep = keep
        self.latency = latency  # seconds each reply is held: a provider far away
        self.max_body = max_body
        self.messages: list[dict[str, Any]] = []
        self.requests = 0
        self.connections = 0
        self._auth = f"Bearer {api_key}"
        self._script: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._log: TextIO | None = open(log, "a", encoding="utf-8") if log else None
        self._sockets: set[socket.socket] = set()
        self._server = _Server((host, port), _Handler)
        self._server.sink = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SendGridSink:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:  # end kept-alive connections too
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> SendGridSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before normal service resumes."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self._script.clear()
            self.requests = 0
            self.connections = 0

    def drop_connections(self) -> None:
        """Close every kept-alive connection, as a server does with idle ones."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # called from handler threads

    def _next_scripted(self) -> Reply | None:
        with self._lock:
            self.requests += 1
            return self._script.popleft() if self._script else None

    def _record(self, payload: dict[str, Any], sandbox: bool) -> str:
        message_id = base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")
        record = {"x_message_id": message_id, "sandbox": sandbox, "payload": payload}
        with self._lock:
            if self.keep:
                self.messages.append(record)
            if self._log is not None:
                self._log.write(json.dumps(record, separators=(",", ":")) + "\n")
                self._log.flush()
        return message_id


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sink: SendGridSink

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up (timeout tests) or a dropped connection
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        sink = self.server.sink
        with sink._lock:
            sink.connections += 1
            sink._sockets.add(self.connection)

    def finish(self) -> None:
        sink = self.server.sink
        with sink._lock:
            sink._sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet, and cheap

    def do_POST(self) -> None:
        sink = self.server.sink
        scripted = sink._next_scripted()
        length = int(self.headers.get("Content-Length") or 0)
        if length > sink.max_body:
            close = length > 4 * sink.max_body
            if not close:
                self._drain(length)  # read it, so closing does not reset the connection
            self._json(413, {"errors": [{"field": None, "help": None,
                                         "message": "Payload Too Large"}]}, close=close)
            return
        raw = self.rfile.read(length)
        if sink.latency:
            time.sleep(sink.latency)
        if scripted is not None:
            if scripted.delay:
                time.sleep(scripted.delay)
            if scripted.status is not None:
                self._send(scripted.status, scripted.body, scripted.headers)
                return
        if self.path != "/v3/mail/send":
            self._json(404, {"errors": [{"field": None, "message": "not found"}]})
            return
        if self.headers.get("Authorization") != sink._auth:
            self._json(401, _AUTH_ERROR)
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            self._json(400, _errors([("Bad Request", None)]))
            return
        problems = validate(payload)
        if problems:
            self._json(400, _errors(problems))
            return
        sandbox = bool(payload.get("mail_settings", {}).get("sandbox_mode", {}).get("enable"))
        message_id = sink._record(payload, sandbox)
        if sandbox:
            self._send(200, b"", {})
        else:
            self._send(202, b"", {"X-Message-Id": message_id})

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _json(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        headers = {"Connection": "close"} if close else {}
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes | str | dict[str, Any],
              headers: dict[str, str]) -> None:
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **headers}
        else:
            data = body.encode() if isinstance(body, str) else body
        reason = self.responses.get(status, ("",))[0]
        head = [f"HTTP/1.1 {status} {reason}", "Server: sendgrid-sink",
                f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)


def _errors(problems: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    return {"errors": [{"message": m, "field": f, "help": None} for m, f in problems]}


def validate(payload: Any) -> list[tuple[str, str | None]]:
    """SendGrid's checks on a Mail Send body: ``(message, field)`` for each problem found."""
    if not isinstance(payload, dict):
        return [("Bad Request", None)]
    problems: list[tuple[str, str | None]] = []
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(("The personalizations field is required and must have at least one "
                         "personalization.", "personalizations"))
        personalizations = []
    elif len(personalizations) > 1000:
        problems.append(("The personalizations field must have between 1 and 1000 items.",
                         "personalizations"))
    seen: set[str] = set()
    recipients = 0
    for i, p in enumerate(personalizations):
        for kind in ("to", "cc", "bcc"):
            for address in (p.get(kind) or []) if isinstance(p, dict) else []:
                email = str(address.get("email", "")).casefold()
                recipients += 1
                if not email or "@" not in email:
                    problems.append(("Does not contain a valid address.",
                                     f"personalizations.{i}.{kind}"))
                elif email in seen:
                    problems.append((
                        "Each email address in the personalization block should be unique "
                        "between to, cc, and bcc. We found the first duplicate instance of "
                        f"[{email}] in the personalizations.{i}.{kind} field.",
                        f"personalizations.{i}.{kind}"))
                seen.add(email)
        if isinstance(p, dict) and not p.get("to"):
            problems.append(("The to array is required for all personalization objects, and "
                             "must have at least one email object with a valid email address.",
                             f"personalizations.{i}.to"))
        custom_args = p.get("custom_args") if isinstance(p, dict) else None
        if custom_args and len(json.dumps(custom_args)) >= 10000:
            problems.append(("custom_args must be less than 10000 bytes.",
                             f"personalizations.{i}.custom_args"))
    if recipients > 1000:
        problems.append(("The total number of recipients must be less than 1000.",
                         "personalizations"))
    sender = payload.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        problems.append(("The from object must be provided for every email send. It is an "
                         "object that requires the email parameter, but may also contain a "
                         "name parameter.", "from.email"))
    if not payload.get("subject") and not payload.get("template_id") and not all(
            isinstance(p, dict) and p.get("subject") for p in personalizations):
        problems.append(("The subject is required. You can get around this requirement if you "
                         "use a template with a subject defined or if every personalization has "
                         "a subject defined.", "subject"))
    problems += _check_content(payload)
    for name in payload.get("headers") or {}:
        if name.lower() in RESERVED_HEADERS:
            problems.append((f"The header {name} is reserved and cannot be set.",
                             f"headers.{name}"))
    for i, attachment in enumerate(payload.get("attachments") or []):
        if ";" in str(attachment.get("type", "")):
            problems.append(("The attachment type cannot contain ';' or CRLF characters.",
                             f"attachments.{i}.type"))
        if not attachment.get("content") or not attachment.get("filename"):
            problems.append(("The attachment content and filename are required.",
                             f"attachments.{i}"))
    return problems


def _check_content(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    content = payload.get("content")
    if payload.get("template_id") and not content:
        return []
    if not isinstance(content, list) or not content:
        return [("Unless a valid template_id is provided, the content parameter is required. "
                 "There must be at least one defined content block. We typically suggest both "
                 "text/plain and text/html blocks are included, but only one block is "
                 "required.", "content")]
    problems: list[tuple[str, str | None]] = []
    types = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not block.get("type") or not block.get("value"):
            problems.append(("The content value must be a string at least one character in "
                             "length.", f"content.{i}.value"))
            continue
        types.append(str(block["type"]).split(";")[0].strip().lower())
    order = {"text/plain": 0, "text/html": 1}
    ranks = [order.get(t, 2) for t in types]
    if ranks != sorted(ranks):
        problems.append(("If present, text/plain must be first, followed by text/html, "
                         "followed by any other content.", "content"))
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append one JSON line per accepted message to this file")
    parser.add_argument("--api-key", default=os.environ.get("SENDGRID_SINK_KEY", DEFAULT_KEY))
    parser.add_argument("--max-body", type=int, default=MAX_BODY)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply "
                        "(each request is held on its own thread, so requests overlap)")
    args = parser.parse_args(argv)
    sink = SendGridSink(api_key=args.api_key, host=args.host, port=args.port, log=args.log,
                        max_body=args.max_body, latency=args.latency, keep=not args.log)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    sink.start()
    sys.stdout.write(sink.url + "\n")
    sys.stdout.flush()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()

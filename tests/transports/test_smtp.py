"""SmtpTransport against a real local aiosmtpd server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from comms.errors import PermanentError, TransientError
from comms.transports import SmtpTransport, Transport
from comms.transports.base import Address
from tests.sinks.smtp_server import SmtpSink

from .conftest import Tls
from .helpers import API_KEY, OnALoop, invite, make_message

ROOT = Path(__file__).resolve().parents[2]


ONE_AT_A_TIME = "event loop, no pipelining"


@pytest.fixture(params=["threads", "event loop", ONE_AT_A_TIME])
def through(request: pytest.FixtureRequest) -> str:
    """Each test once through ``SmtpTransport.send`` (a connection per thread), and through
    its async sender (the sessions of the dispatcher's event loop), which pipelines where the
    server offers it: with the ``smtp_sink`` fixture, once where it does and once where not."""
    return str(request.param)


def via(through: str, transport: SmtpTransport) -> SmtpTransport:
    return transport if through == "threads" else OnALoop(transport)  # type: ignore[return-value]


@pytest.fixture
def transport(smtp_sink: SmtpSink, through: str) -> Iterator[SmtpTransport]:
    smtp_sink.pipelining = through != ONE_AT_A_TIME
    t = via(through, SmtpTransport("127.0.0.1", smtp_sink.port, timeout=5))
    yield t
    t.close()


@pytest.fixture
def thread_transport(smtp_sink: SmtpSink) -> Iterator[SmtpTransport]:
    t = SmtpTransport("127.0.0.1", smtp_sink.port, timeout=5)
    yield t
    t.close()


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_message_arrives_intact(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    assert isinstance(transport, Transport)
    message = make_message(1)
    assert transport.send(message) == "<send-1@comms.example.org>"
    [received] = smtp_sink.messages
    assert received.mail_from == "office@programme.example.org"
    assert received.rcpt_tos == ["person1@example.org"]
    msg = parse(received.data)
    assert msg["Message-ID"] == message.message_id
    assert msg["Subject"] == message.subject
    assert msg["To"].addresses[0].display_name == "Siobhán O'Connor"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for kind, expected in (("plain", message.text), ("html", message.html)):
        part = msg.get_body((kind,))
        assert part is not None
        assert part.get_content().replace("\r\n", "\n") == expected


def test_dot_and_from_lines_survive_smtp(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    text = ".\n..\n.leading\nFrom here\n"
    transport.send(make_message(1, text=text, html=text))
    plain = parse(smtp_sink.messages[0].data).get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == text


def test_one_connection_for_many_messages(transport: SmtpTransport,
                                          smtp_sink: SmtpSink) -> None:
    for n in range(25):
        transport.send(make_message(n))
    assert len(smtp_sink.messages) == 25
    assert smtp_sink.connections == 1
    assert {m.connection for m in smtp_sink.messages} == {1}


def test_one_connection_per_thread_and_close_quits_all(thread_transport: SmtpTransport,
                                                       smtp_sink: SmtpSink) -> None:
    transport = thread_transport
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(5):
            transport.send(make_message(k * 10 + i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(smtp_sink.messages) == 20
    assert smtp_sink.connections == 4
    transport.close()
    transport.send(make_message(99))  # a closed connection is reopened
    assert smtp_sink.connections == 5


def test_reconnects_once_when_the_server_dropped_the_connection(
        transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    transport.send(make_message(1))
    smtp_sink.drop_connections()
    transport.send(make_message(2))
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["person1@example.org"],
                                                        ["person2@example.org"]]
    assert smtp_sink.connections == 2


def test_connection_refused_is_transient(through: str) -> None:
    transport = via(through, SmtpTransport("127.0.0.1", free_port(), timeout=2))
    with pytest.raises(TransientError, match="cannot connect"):
        transport.send(make_message(1))


def test_silent_server_times_out(through: str) -> None:
    with socket.socket() as listener:  # accepts TCP connections but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        transport = via(through, SmtpTransport("127.0.0.1", listener.getsockname()[1],
                                               timeout=0.3))
        with pytest.raises(TransientError, match="timed out"):
            transport.send(make_message(1))


def test_4xx_on_data_is_transient_then_the_connection_goes_on(
        transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data("451 4.3.0 Try again later")
    with pytest.raises(TransientError, match="451 4.3.0 Try again later") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 451
    transport.send(make_message(1))
    assert len(smtp_sink.messages) == 1
    assert smtp_sink.connections == 1


def test_recipient_refused_is_permanent_with_server_text(transport: SmtpTransport,
                                                         smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("person1@example.org", "550 5.1.1 No such user here")
    with pytest.raises(PermanentError, match="No such user here") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 550
    transport.send(make_message(2))
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["person2@example.org"]]


def test_recipient_deferred_is_transient(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("person1@example.org", "450 4.2.1 Mailbox busy")
    with pytest.raises(TransientError, match="Mailbox busy"):
        transport.send(make_message(1))


def test_554_on_data_is_permanent(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data("554 5.7.1 Message rejected as spam")
    with pytest.raises(PermanentError, match="rejected as spam") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 554


def test_421_is_transient_and_reconnects(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data("421 4.3.2 Shutting down")
    with pytest.raises(TransientError, match="Shutting down"):
        transport.send(make_message(1))
    transport.send(make_message(1))
    assert len(smtp_sink.messages) == 1


def test_unbuildable_message_is_permanent_and_nothing_is_sent(transport: SmtpTransport,
                                                              smtp_sink: SmtpSink) -> None:
    with pytest.raises(PermanentError, match="header injection"):
        transport.send(make_message(1, subject="Hi\nBcc: victim@evil.example"))
    assert smtp_sink.messages == []
    assert smtp_sink.connections == 0


def test_starttls_and_auth(smtp_tls_sink: SmtpSink, tls: Tls, through: str) -> None:
    transport = via(through, SmtpTransport("127.0.0.1", smtp_tls_sink.port, username="apikey",
                                           password=API_KEY, starttls=True, timeout=5,
                                           ssl_context=tls.client))
    transport.send(make_message(1))
    transport.send(make_message(2))
    assert len(smtp_tls_sink.messages) == 2
    assert smtp_tls_sink.logins == ["apikey"]
    assert smtp_tls_sink.connections == 1
    transport.close()


def test_bad_password_is_permanent_and_not_shown(smtp_tls_sink: SmtpSink, tls: Tls,
                                                 through: str) -> None:
    transport = via(through, SmtpTransport("127.0.0.1", smtp_tls_sink.port, username="apikey",
                                           password="wrong-secret", starttls=True, timeout=5,
                                           ssl_context=tls.client))
    with pytest.raises(PermanentError, match="login as 'apikey' refused") as caught:
        transport.send(make_message(1))
    assert "wrong-secret" not in str(caught.value) + repr(caught.value) + repr(transport)
    assert "wrong-secret" not in repr(vars(transport))
    assert smtp_tls_sink.messages == []


def test_untrusted_certificate_is_permanent(smtp_tls_sink: SmtpSink, through: str) -> None:
    transport = via(through, SmtpTransport("127.0.0.1", smtp_tls_sink.port, starttls=True,
                                           timeout=5))
    with pytest.raises(PermanentError, match="certificate"):
        transport.send(make_message(1))


def test_server_requiring_starttls_refuses_plain(smtp_tls_sink: SmtpSink, through: str) -> None:
    transport = via(through, SmtpTransport("127.0.0.1", smtp_tls_sink.port, timeout=5))
    with pytest.raises(PermanentError) as caught:
        transport.send(make_message(1))
    assert caught.value.status is not None and caught.value.status >= 500


def test_implicit_ssl(tls: Tls, through: str) -> None:
    with SmtpSink(tls_context=tls.server, implicit_tls=True) as sink:
        transport = via(through, SmtpTransport("127.0.0.1", sink.port, ssl=True, timeout=5,
                                               ssl_context=tls.client))
        transport.send(make_message(1))
        transport.close()
        assert len(sink.messages) == 1


def test_starttls_and_ssl_together_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        SmtpTransport("127.0.0.1", 25, starttls=True, ssl=True)


def test_calendar_layout_over_smtp(transport: SmtpTransport, smtp_sink: SmtpSink) -> None:
    transport.send(invite(1))
    msg = parse(smtp_sink.messages[0].data)
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html",
        "text/calendar", "application/ics"]


def test_runs_as_a_subprocess(tmp_path: Path) -> None:
    log = tmp_path / "smtp.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.sinks.smtp_server", "--port", "0",
                             "--log", str(log)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        transport = SmtpTransport("127.0.0.1", port, timeout=5)
        for n in range(3):
            transport.send(make_message(n))
        transport.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["rcpt_tos"] for line in lines] == [[f"person{n}@example.org"] for n in range(3)]
    assert lines[0]["message_id"] == "<send-0@comms.example.org>"
    assert lines[0]["mail_from"] == "office@programme.example.org"
    assert lines[0]["size"] > 500


def test_the_async_sender_keeps_a_session_for_each_send_in_flight(smtp_sink: SmtpSink) -> None:
    """On the dispatcher's loop: eight at once open eight sessions, the next eight reuse them,
    and closing quits them all."""
    transport = SmtpTransport("127.0.0.1", smtp_sink.port, timeout=5)

    async def main() -> None:
        sender = transport.open_async()
        await asyncio.gather(*(sender.send(make_message(n)) for n in range(8)))
        await asyncio.gather(*(sender.send(make_message(n)) for n in range(8, 16)))
        await sender.close()

    asyncio.run(main())
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(
        f"person{n}@example.org" for n in range(16))
    assert smtp_sink.connections == 8
    assert sorted(Counter(m.connection for m in smtp_sink.messages).values()) == [2] * 8


def _answer(conn: socket.socket, *, until: bytes = b"", messages: int = 0) -> None:
    """A bare SMTP server's side of one connection: greets, says yes to everything, takes
    each message; on the command ``until``, after ``messages`` messages, or when the client
    hangs up, it stops answering."""
    with conn.makefile("rb") as lines:
        conn.sendall(b"220 ready\r\n")
        in_data = False
        for line in lines:
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    conn.sendall(b"250 taken\r\n")
                    messages -= 1
                    if messages == 0:
                        return
                continue
            verb = line[:4].upper()
            if until and verb == until:
                return
            in_data = verb == b"DATA"
            conn.sendall(b"354 go on\r\n" if in_data else b"250 ok\r\n")


def _one_on_a_loop(port: int, timeout: float) -> str:
    """Message 1 through a new async sender of a transport to ``port``, closed after."""
    transport = SmtpTransport("127.0.0.1", port, timeout=timeout)

    async def main() -> str:
        sender = transport.open_async()
        sent = await sender.send(make_message(1))
        await sender.close()
        return sent

    return asyncio.run(asyncio.wait_for(main(), 10))


def test_closing_the_async_sender_does_not_wait_on_a_server_gone_quiet() -> None:
    """A server that takes a message and then never answers QUIT: the session is given up
    after the timeout when the sender closes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                _answer(conn, until=b"QUIT")
                conn.makefile("rb").read()  # silent until the client hangs up

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        assert _one_on_a_loop(listener.getsockname()[1], 0.2) == "<send-1@comms.example.org>"
        server.join(10)
        assert not server.is_alive()


def test_reconnects_once_after_an_idle_connection_was_reset(through: str) -> None:
    """A relay resets a kept-alive connection while it is idle (RST, not a polite close): the
    next message goes over a new one, not as an error."""
    reset, was_reset = threading.Event(), threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            first, _ = listener.accept()
            _answer(first, messages=1)
            reset.wait(10)
            first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            first.close()  # with a zero linger: a reset
            was_reset.set()
            second, _ = listener.accept()
            with second:
                _answer(second)

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        transport = via(through, SmtpTransport("127.0.0.1", listener.getsockname()[1],
                                               timeout=5))
        assert transport.send(make_message(1)) == "<send-1@comms.example.org>"
        reset.set()
        assert was_reset.wait(10)
        assert transport.send(make_message(2)) == "<send-2@comms.example.org>"
        transport.close()


def test_a_pair_with_one_recipient_refused_reaches_neither(transport: SmtpTransport,
                                                           smtp_sink: SmtpSink) -> None:
    """An introduction goes to both people or to neither, even where the server would take the
    message for the one it accepted (DATA answered 354 after a pipelined RCPT was refused)."""
    mentor = Address(email="mentor1@example.org", name="A Mentor")
    smtp_sink.refuse("mentor1@example.org", "550 5.1.1 No such user here")
    with pytest.raises(PermanentError, match="recipient mentor1@example.org refused"):
        transport.send(make_message(1, also_to=(mentor,)))
    assert smtp_sink.messages == []
    transport.send(make_message(2))
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["person2@example.org"]]


def test_the_async_sender_sends_the_envelope_at_once_where_the_server_pipelines() -> None:
    """A server offering PIPELINING that answers nothing until the envelope's last command
    has arrived: a client waiting on each reply would never get one."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        envelopes: list[list[bytes]] = []

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 ready\r\n")
                assert lines.readline().startswith(b"EHLO")
                conn.sendall(b"250-relay.example\r\n250 PIPELINING\r\n")
                envelope = [lines.readline() for _ in range(3)]  # MAIL, RCPT, DATA
                envelopes.append(envelope)
                conn.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
                while lines.readline() != b".\r\n":
                    pass
                conn.sendall(b"250 taken\r\n")
                assert lines.readline().startswith(b"QUIT")
                conn.sendall(b"221 bye\r\n")

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        assert _one_on_a_loop(listener.getsockname()[1], 5) == "<send-1@comms.example.org>"
        server.join(10)
        assert [[line.split(b":")[0] for line in e] for e in envelopes] == [
            [b"MAIL FROM", b"RCPT TO", b"DATA\r\n"]]

"""FaultProxy against the real local sinks: each fault lands where it says, and nowhere else.

What was delivered is judged by the sinks' own records. The proxy's log only says which units it
faulted and how.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.sinks.sendgrid_server import SendGridSink
from tests.sinks.smtp_server import SmtpSink

from .proxy import (
    DROP_REPLY,
    HANG_AFTER,
    HANG_BEFORE,
    NONE,
    RESET_AFTER,
    RESET_BEFORE,
    STATUS,
    Fault,
    FaultProxy,
    FaultProxyError,
    Kind,
    Plan,
    UnitInfo,
    at,
    combine,
    every,
    fraction,
)

KEY = "SG.fault-proxy-test"
HANG_TIMEOUT = 0.3  # how long a client waits on a hung connection before giving up


@pytest.fixture
def sendgrid_sink() -> Iterator[SendGridSink]:
    with SendGridSink(api_key=KEY) as sink:
        yield sink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def http_proxy(sink: SendGridSink, plan: Plan | None = None) -> FaultProxy:
    port = urlsplit(sink.url).port
    assert port is not None
    return FaultProxy("127.0.0.1", port, "http", plan)


def smtp_proxy(sink: SmtpSink, plan: Plan | None = None) -> FaultProxy:
    return FaultProxy(sink.host, sink.port, "smtp", plan)


def payload(subject: str) -> bytes:
    return json.dumps({
        "personalizations": [{"to": [{"email": "person@example.org"}]}],
        "from": {"email": "office@example.org"},
        "subject": subject,
        "content": [{"type": "text/plain", "value": "Dear person,\nSee you there.\n"}],
    }).encode()


def post(conn: http.client.HTTPConnection, subject: str) -> http.client.HTTPResponse:
    conn.request("POST", "/v3/mail/send", payload(subject),
                 {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response


def failed_post(conn: http.client.HTTPConnection, subject: str) -> OSError:
    with pytest.raises(OSError) as caught:
        post(conn, subject)
    conn.close()
    return caught.value


def subjects(sink: SendGridSink) -> list[str]:
    return [m["payload"]["subject"] for m in sink.messages]


def is_reset(exc: BaseException) -> bool:
    """A TCP RST, as opposed to an orderly close (RemoteDisconnected) or a timeout."""
    return isinstance(exc, ConnectionResetError | BrokenPipeError) and not isinstance(
        exc, http.client.RemoteDisconnected)


def mail(i: int) -> bytes:
    return (f"From: office@example.org\r\nTo: person{i}@example.org\r\nSubject: m{i}\r\n"
            f"Message-ID: <m{i}@example.org>\r\n\r\nDear person,\r\n.a line with a dot\r\n"
            ).encode()


def send(client: smtplib.SMTP, i: int) -> None:
    client.sendmail("office@example.org", [f"person{i}@example.org"], mail(i))


def delivered(sink: SmtpSink) -> list[str | None]:
    return [m.message_id for m in sink.messages]


def ids(*numbers: int) -> list[str | None]:
    return [f"<m{i}@example.org>" for i in numbers]


def smtp_client(proxy: FaultProxy) -> smtplib.SMTP:
    client = smtplib.SMTP(proxy.host, proxy.port, timeout=5)
    client.ehlo()
    return client


# plans


def test_plan_helpers() -> None:
    assert every(3, RESET_AFTER).selected(10) == [2, 5, 8]
    assert every(3, RESET_AFTER, start=0).selected(10) == [0, 3, 6, 9]
    assert at({3: DROP_REPLY, 10: STATUS(503)}).selected(12) == [3, 10]
    plan = combine(at({4: STATUS(429)}), every(2, RESET_BEFORE))
    assert [str(plan.fault_for(n)) for n in range(6)] == [
        "NONE", "RESET_BEFORE", "NONE", "RESET_BEFORE", "STATUS(429)", "RESET_BEFORE"]
    assert STATUS(429, {"Retry-After": "1"}).headers == (("Retry-After", "1"),)
    with pytest.raises(ValueError):
        STATUS(100)


def test_fraction_is_seeded_and_independent_of_call_order() -> None:
    first = fraction(0.1, RESET_AFTER, seed=1).selected(300)
    assert first == fraction(0.1, RESET_AFTER, seed=1).selected(300)
    assert first != fraction(0.1, RESET_AFTER, seed=2).selected(300)
    assert 10 <= len(first) <= 60
    backwards = fraction(0.1, RESET_AFTER, seed=1)
    assert [n for n in reversed(range(300))
            if backwards.fault_for(n) is RESET_AFTER] == first[::-1]


# HTTP


def test_http_passes_over_one_keep_alive_connection(sendgrid_sink: SendGridSink) -> None:
    with http_proxy(sendgrid_sink) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        for i in range(5):
            response = post(conn, f"s{i}")
            assert response.status == 202
            assert response.getheader("X-Message-Id")
        conn.close()
        assert proxy.wait_idle()
    assert subjects(sendgrid_sink) == [f"s{i}" for i in range(5)]
    assert proxy.connections == sendgrid_sink.connections == 1
    assert [(r.n, r.connection, r.info.seq) for r in proxy.log] == [(i, 1, i) for i in range(5)]
    for record in proxy.log:
        assert (record.fault, record.forwarded, record.answered, record.reply, record.outcome) == (
            NONE, True, True, 202, "passed")
        assert (record.info.method, record.info.path) == ("POST", "/v3/mail/send")
        assert record.info.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(("fault", "delivered_too", "reset"), [
    (RESET_BEFORE, False, True),
    (RESET_AFTER, True, True),
    (DROP_REPLY, True, False),
], ids=str)
def test_http_connection_faults(sendgrid_sink: SendGridSink, fault: Fault, delivered_too: bool,
                                reset: bool) -> None:
    with http_proxy(sendgrid_sink, at({2: fault})) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert [post(conn, f"s{i}").status for i in range(2)] == [202, 202]
        error = failed_post(conn, "s2")  # the same keep-alive connection
        assert is_reset(error) is reset, repr(error)
        if not reset:
            assert isinstance(error, http.client.RemoteDisconnected)
        # What the client saw is already in the sink's log and in the proxy's.
        assert subjects(sendgrid_sink) == (["s0", "s1", "s2"] if delivered_too else ["s0", "s1"])
        record = proxy.record(2)
        assert (record.fault, record.connection, record.info.seq) == (fault, 1, 2)
        assert (record.forwarded, record.answered, record.outcome) == (
            delivered_too, False, "faulted")
        assert record.reply == (202 if delivered_too else None)
        assert post(conn, "s3").status == 202  # a new connection works again
        conn.close()
        assert proxy.wait_idle()
    assert proxy.record(3).connection == 2
    assert subjects(sendgrid_sink)[-1] == "s3"
    assert proxy.faulted == [2]
    assert proxy.counts == {"NONE": 3, str(fault): 1}


@pytest.mark.parametrize(("fault", "delivered_too"), [(HANG_BEFORE, False), (HANG_AFTER, True)],
                         ids=str)
def test_http_hangs(sendgrid_sink: SendGridSink, fault: Fault, delivered_too: bool) -> None:
    with http_proxy(sendgrid_sink, at({1: fault})) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert post(conn, "s0").status == 202
        assert conn.sock is not None
        conn.sock.settimeout(HANG_TIMEOUT)
        assert isinstance(failed_post(conn, "s1"), TimeoutError)
        assert proxy.wait_finished(2)
        assert subjects(sendgrid_sink) == (["s0", "s1"] if delivered_too else ["s0"])
        record = proxy.record(1)
        assert (record.forwarded, record.answered, record.outcome) == (
            delivered_too, False, "faulted")
        assert proxy.wait_idle()  # the client gave up and closed; so did the proxy


@pytest.mark.parametrize(("code", "headers"), [
    (429, {"Retry-After": "1"}), (500, {}), (503, {"Retry-After": "30"})], ids=str)
def test_http_status_is_answered_by_the_proxy(sendgrid_sink: SendGridSink, code: int,
                                              headers: dict[str, str]) -> None:
    with http_proxy(sendgrid_sink, at({1: STATUS(code, headers)})) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert post(conn, "s0").status == 202
        conn.request("POST", "/v3/mail/send", payload("s1"), {"Authorization": f"Bearer {KEY}"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == code
        for name, value in headers.items():
            assert response.getheader(name) == value
        assert body["errors"][0]["message"].startswith("injected by FaultProxy")
        assert subjects(sendgrid_sink) == ["s0"]
        assert post(conn, "s2").status == 202  # the connection stays alive
        conn.close()
    assert subjects(sendgrid_sink) == ["s0", "s2"]
    assert proxy.connections == sendgrid_sink.connections == 1
    record = proxy.record(1)
    assert (record.forwarded, record.answered, record.reply, record.outcome) == (
        False, True, None, "faulted")
    assert sendgrid_sink.requests == 2


def test_http_status_can_close_the_connection(sendgrid_sink: SendGridSink) -> None:
    plan = at({0: STATUS(503, {"Connection": "close"}, body="busy")})
    with http_proxy(sendgrid_sink, plan) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        conn.request("POST", "/v3/mail/send", payload("s0"))
        response = conn.getresponse()
        assert (response.status, response.read(), response.will_close) == (503, b"busy", True)
        assert post(conn, "s1").status == 202  # http.client reconnects
        conn.close()
    assert proxy.connections == 2
    assert subjects(sendgrid_sink) == ["s1"]


def test_http_chunked_request_is_refused(sendgrid_sink: SendGridSink) -> None:
    proxy = http_proxy(sendgrid_sink)
    with pytest.raises(FaultProxyError, match="Transfer-Encoding"), proxy:
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as client:
            client.sendall(b"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            reply = client.makefile("rb").read()  # the proxy answers, then closes
        assert reply.startswith(b"HTTP/1.1 501 ")
        assert b"Transfer-Encoding: chunked request bodies are not supported" in reply
    assert proxy.units == 0
    assert sendgrid_sink.requests == 0


def test_http_upstream_idle_close_reaches_the_client(sendgrid_sink: SendGridSink) -> None:
    with http_proxy(sendgrid_sink) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert post(conn, "s0").status == 202
        sendgrid_sink.drop_connections()
        assert conn.sock is not None
        assert conn.sock.recv(1) == b""  # the proxy closed its side too (FIN)
        conn.close()
        assert proxy.wait_idle()
        assert post(conn, "s1").status == 202
        conn.close()
    assert proxy.units == 2


def test_hang_does_not_block_others_and_stop_ends_it(sendgrid_sink: SendGridSink) -> None:
    outcome: list[BaseException] = []

    def hung_client(conn: http.client.HTTPConnection) -> None:
        try:
            post(conn, "hung")
        except OSError as exc:
            outcome.append(exc)

    proxy = http_proxy(sendgrid_sink, at({0: HANG_BEFORE})).start()
    try:
        hung = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
        thread = threading.Thread(target=hung_client, args=(hung,))
        thread.start()
        assert proxy.wait_finished(1)  # unit 0 is hanging
        other = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert [post(other, f"s{i}").status for i in range(3)] == [202, 202, 202]
        other.close()
        started = time.monotonic()
    finally:
        proxy.stop()
    assert time.monotonic() - started < 1.0
    thread.join(timeout=5)
    assert not thread.is_alive()
    [error] = outcome
    assert isinstance(error, ConnectionError), repr(error)  # closed by stop(), not a timeout
    hung.close()
    assert subjects(sendgrid_sink) == ["s0", "s1", "s2"]


def test_dozens_of_concurrent_keep_alive_connections(sendgrid_sink: SendGridSink) -> None:
    clients, per_client = 40, 10
    plan = combine(every(10, RESET_AFTER, start=3), every(10, STATUS(503), start=7))
    seen: dict[str, str] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        barrier.wait()
        for j in range(per_client):
            subject = f"c{k}-{j}"
            try:
                result = str(post(conn, subject).status)
            except ConnectionResetError:
                result = "reset"
                conn.close()
            with lock:
                seen[subject] = result
        conn.close()

    with http_proxy(sendgrid_sink, plan) as proxy:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert proxy.wait_idle()
    total = clients * per_client
    log = proxy.log
    assert [r.n for r in log] == list(range(total))
    assert all(r.finished for r in log)
    assert proxy.faulted == plan.selected(total)
    outcomes = sorted(seen.values())
    assert outcomes.count("reset") == proxy.counts["RESET_AFTER"] == total // 10
    assert outcomes.count("503") == proxy.counts["STATUS(503)"] == total // 10
    assert outcomes.count("202") == sum(r.answered and r.reply == 202 for r in log)
    # every request but the refused ones reached the sink exactly once
    assert sorted(subjects(sendgrid_sink)) == sorted(s for s, r in seen.items() if r != "503")
    assert len(sendgrid_sink.messages) == sum(r.forwarded for r in log)
    # a reset connection is replaced, unless the reset hit a client's last request
    last = f"-{per_client - 1}"
    assert proxy.connections == clients + sum(
        r == "reset" and not s.endswith(last) for s, r in seen.items())


def test_fraction_through_the_proxy_is_reproducible(sendgrid_sink: SendGridSink) -> None:
    expected = fraction(0.1, RESET_AFTER, seed=1).selected(300)
    runs = []
    for _ in range(2):
        with http_proxy(sendgrid_sink, fraction(0.1, RESET_AFTER, seed=1)) as proxy:
            conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
            failed = []
            for i in range(300):
                try:
                    post(conn, f"s{i}")
                except ConnectionResetError:
                    failed.append(i)
                    conn.close()
            conn.close()
        assert proxy.faulted == failed
        runs.append(failed)
    assert runs == [expected, expected]
    assert len(sendgrid_sink.messages) == 600  # RESET_AFTER forwards: all of them arrived


# SMTP


def test_smtp_passes_transactions_on_one_connection(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse("nobody@example.org")
    with smtp_proxy(smtp_sink) as proxy:
        client = smtp_client(proxy)
        send(client, 0)
        assert client.noop()[0] == 250
        client.sendmail("office@example.org", ["person1@example.org", "nobody@example.org"],
                        mail(1))
        client.mail("office@example.org")  # a transaction given up: no message
        client.rcpt("person9@example.org")
        client.rset()
        send(client, 2)
        client.quit()
        assert proxy.wait_idle()
    assert delivered(smtp_sink) == ids(0, 1, 2)
    assert {m.connection for m in smtp_sink.messages} == {1}
    assert proxy.connections == smtp_sink.connections == 1
    log = proxy.log
    assert [(r.outcome, r.forwarded, r.answered, r.reply) for r in log] == [
        ("passed", True, True, 250), ("passed", True, True, 250),
        ("aborted", False, False, None), ("passed", True, True, 250)]
    assert [r.rcpt_tos for r in log] == [("person0@example.org",), ("person1@example.org",),
                                         ("person9@example.org",), ("person2@example.org",)]
    assert [r.info.seq for r in log] == [0, 1, 2, 3]
    assert log[0].info.mail_from == "office@example.org"


@pytest.mark.parametrize(("fault", "delivered_too", "reset"), [
    (RESET_BEFORE, False, True),
    (RESET_AFTER, True, True),
    (DROP_REPLY, True, False),
], ids=str)
def test_smtp_connection_faults(smtp_sink: SmtpSink, fault: Fault, delivered_too: bool,
                                reset: bool) -> None:
    with smtp_proxy(smtp_sink, at({2: fault})) as proxy:
        client = smtp_client(proxy)
        send(client, 0)
        send(client, 1)
        with pytest.raises(smtplib.SMTPServerDisconnected) as caught:
            send(client, 2)
        assert ("reset by peer" in str(caught.value)) is reset, caught.value
        assert delivered(smtp_sink) == (ids(0, 1, 2) if delivered_too else ids(0, 1))
        record = proxy.record(2)
        assert (record.fault, record.connection, record.info.seq) == (fault, 1, 2)
        assert (record.forwarded, record.answered, record.outcome) == (
            delivered_too, False, "faulted")
        assert record.reply == (250 if delivered_too else None)
        client = smtp_client(proxy)  # a new connection works again
        send(client, 3)
        client.quit()
        assert proxy.wait_idle()
    assert delivered(smtp_sink)[-1] == "<m3@example.org>"
    assert [m.connection for m in smtp_sink.messages][-1] == 2
    assert proxy.faulted == [2]


@pytest.mark.parametrize(("fault", "delivered_too"), [(HANG_BEFORE, False), (HANG_AFTER, True)],
                         ids=str)
def test_smtp_hangs(smtp_sink: SmtpSink, fault: Fault, delivered_too: bool) -> None:
    with smtp_proxy(smtp_sink, at({1: fault})) as proxy:
        client = smtp_client(proxy)
        send(client, 0)
        assert client.sock is not None
        client.sock.settimeout(HANG_TIMEOUT)
        with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
            send(client, 1)  # smtplib closes the connection when it gives up
        assert proxy.wait_finished(2)
        assert delivered(smtp_sink) == (ids(0, 1) if delivered_too else ids(0))
        record = proxy.record(1)
        assert (record.forwarded, record.answered, record.outcome) == (
            delivered_too, False, "faulted")
        assert proxy.wait_idle()


def test_smtp_fault_after_a_refused_body(smtp_sink: SmtpSink) -> None:
    smtp_sink.script_data("451 4.3.0 Try again later")
    with smtp_proxy(smtp_sink, at({0: RESET_AFTER})) as proxy:
        client = smtp_client(proxy)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(client, 0)
    record = proxy.record(0)
    assert (record.forwarded, record.answered, record.reply) == (True, False, 451)
    assert delivered(smtp_sink) == []


def test_smtp_fault_planned_for_an_abandoned_transaction_is_not_applied(
        smtp_sink: SmtpSink) -> None:
    with smtp_proxy(smtp_sink, at({0: RESET_AFTER})) as proxy:
        client = smtp_client(proxy)
        client.mail("office@example.org")
        client.rcpt("person0@example.org")
        client.rset()  # unit 0 never reaches its final dot: nothing to reset after
        send(client, 1)
        client.quit()
    assert [(str(r.fault), r.outcome) for r in proxy.log] == [
        ("RESET_AFTER", "aborted"), ("NONE", "passed")]
    assert proxy.faulted == []
    assert delivered(smtp_sink) == ids(1)


def test_smtp_upstream_idle_close_reaches_the_client(smtp_sink: SmtpSink) -> None:
    with smtp_proxy(smtp_sink) as proxy:
        client = smtp_client(proxy)
        send(client, 0)
        smtp_sink.drop_connections()
        assert client.sock is not None
        assert client.sock.recv(1) == b""
        client.close()
        assert proxy.wait_idle()


def test_smtp_refuses_starttls_and_status(smtp_sink: SmtpSink) -> None:
    proxy = smtp_proxy(smtp_sink, at({0: STATUS(503)}))
    with pytest.raises(FaultProxyError) as caught, proxy:
        client = smtp_client(proxy)
        assert client.docmd("STARTTLS")[0] == 454
        send(client, 0)  # STATUS is HTTP only: the unit passes and the error is reported
        client.quit()
    assert "STARTTLS" in str(caught.value) and "HTTP only" in str(caught.value)
    assert delivered(smtp_sink) == ids(0)
    assert proxy.record(0).fault is NONE


def test_smtp_concurrent_sessions(smtp_sink: SmtpSink) -> None:
    clients, per_client = 20, 5
    plan = every(4, DROP_REPLY)
    errors: list[int] = []
    lock = threading.Lock()

    def session(k: int) -> None:
        client = smtp_client(proxy)
        for j in range(per_client):
            try:
                send(client, k * 100 + j)
            except smtplib.SMTPServerDisconnected:
                with lock:
                    errors.append(k * 100 + j)
                client = smtp_client(proxy)
        client.quit()

    with smtp_proxy(smtp_sink, plan) as proxy:
        threads = [threading.Thread(target=session, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert proxy.wait_idle()
    total = clients * per_client
    assert proxy.faulted == plan.selected(total)
    assert len(errors) == total // 4
    assert len(smtp_sink.messages) == total  # DROP_REPLY forwards: every message arrived once
    assert len(set(delivered(smtp_sink))) == total


def test_smtp_fraction_is_reproducible(smtp_sink: SmtpSink) -> None:
    plan = fraction(0.1, RESET_AFTER, seed=1)
    with smtp_proxy(smtp_sink, plan) as proxy:
        client = smtp_client(proxy)
        failed = []
        for i in range(200):
            try:
                send(client, i)
            except smtplib.SMTPServerDisconnected:
                failed.append(i)
                client = smtp_client(proxy)
        client.quit()
    assert failed == proxy.faulted == fraction(0.1, RESET_AFTER, seed=1).selected(200)
    assert len(smtp_sink.messages) == 200


# life cycle


def _proxy_sockets(proxy: FaultProxy, upstream: tuple[str, int]) -> list[socket.socket]:
    found = []
    for obj in gc.get_objects():
        if (isinstance(obj, socket.socket) and obj.fileno() != -1
                and obj.family in (socket.AF_INET, socket.AF_INET6)):
            with contextlib.suppress(OSError):
                if obj.getsockname()[1] == proxy.port or obj.getpeername() == upstream:
                    found.append(obj)
    return found


def test_stop_leaves_no_threads_or_sockets(sendgrid_sink: SendGridSink) -> None:
    port = urlsplit(sendgrid_sink.url).port
    assert port is not None
    upstream = ("127.0.0.1", port)
    plan = at({0: HANG_BEFORE, 1: HANG_AFTER})
    raw = []
    with http_proxy(sendgrid_sink, plan) as proxy:
        for i in range(2):
            client = socket.create_connection((proxy.host, proxy.port), timeout=5)
            body = payload(f"s{i}")
            client.sendall(b"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                           + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            raw.append(client)
        assert proxy.wait_finished(2)
        idle = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert post(idle, "s2").status == 202  # and left open
        assert len(_proxy_sockets(proxy, upstream)) >= 4
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert proxy.active == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy")]
    assert _proxy_sockets(proxy, upstream) == []
    for client in raw:  # the hung clients see their connection end
        assert client.recv(1) == b""
        client.close()
    idle.close()
    assert [r.outcome for r in proxy.log] == ["faulted", "faulted", "passed"]


def test_upstream_down_resets_the_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with FaultProxy("127.0.0.1", port) as proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        error = failed_post(conn, "s0")
        assert isinstance(error, ConnectionError)
        assert proxy.wait_idle()
    assert proxy.stats()["upstream_failures"] == 1
    assert proxy.units == 0


def test_plan_errors_are_reported(sendgrid_sink: SendGridSink) -> None:
    def broken(n: int, info: UnitInfo) -> Fault:
        raise RuntimeError("boom")

    proxy = http_proxy(sendgrid_sink, broken)
    with pytest.raises(FaultProxyError, match="boom"), proxy:
        conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=5)
        assert post(conn, "s0").status == 202  # the unit passes; the error is raised on exit
        conn.close()
    assert proxy.record(0).fault.kind is Kind.NONE

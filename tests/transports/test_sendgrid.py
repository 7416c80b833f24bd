"""SendGridTransport against a local server speaking the v3 Mail Send contract."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from comms.errors import PermanentError, TransientError, TransportError
from comms.transports import SendGridTransport, Transport
from tests.sinks.sendgrid_server import Reply, SendGridSink
from tests.sinks.smtp_server import SmtpSink

from .conftest import Tls
from .helpers import API_KEY, ICS, invite, make_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def transport(sendgrid_sink: SendGridSink) -> Iterator[SendGridTransport]:
    t = SendGridTransport(API_KEY, host=sendgrid_sink.url, timeout=5)
    yield t
    t.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_key_hidden(exc: BaseException, transport: SendGridTransport) -> None:
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(transport),
             str(getattr(exc, "body", ""))]
    for text in shown:
        assert API_KEY not in text
        assert API_KEY.split(".")[-1] not in text


def test_payload_as_sent(transport: SendGridTransport, sendgrid_sink: SendGridSink,
                         tmp_path: Path) -> None:
    assert isinstance(transport, Transport)
    provider_id = transport.send(make_message(1))
    [record] = sendgrid_sink.messages
    assert provider_id == record["x_message_id"]
    assert record["payload"] == {
        "personalizations": [{
            "to": [{"email": "person1@example.org", "name": "Siobhán O'Connor"}],
            "custom_args": {"send_id": "send-1"},
        }],
        "from": {"email": "office@programme.example.org", "name": "Programme Office"},
        "reply_to": {"email": "replies@programme.example.org"},
        "subject": "Réunion – steering group",
        "content": [
            {"type": "text/plain", "value": "Dear Siobhán,\nSee you there.\n"},
            {"type": "text/html", "value": "<p>Dear Siobhán,</p><p>See you there.</p>\n"},
        ],
        "headers": {"List-Unsubscribe": "<https://comms.example.org/u/1>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "tracking_settings": {"click_tracking": {"enable": False, "enable_text": False},
                              "open_tracking": {"enable": False},
                              "subscription_tracking": {"enable": False}},
    }
    logged = [json.loads(line) for line in (tmp_path / "sendgrid.jsonl").read_text().splitlines()]
    assert logged == sendgrid_sink.messages


def test_custom_args_hold_only_the_send_id(transport: SendGridTransport,
                                           sendgrid_sink: SendGridSink) -> None:
    transport.send(make_message(7))
    custom_args = sendgrid_sink.messages[0]["payload"]["personalizations"][0]["custom_args"]
    assert custom_args == {"send_id": "send-7"}
    assert "@" not in json.dumps(custom_args)


def test_reply_to_with_name(transport: SendGridTransport, sendgrid_sink: SendGridSink) -> None:
    transport.send(make_message(1, reply_to="Seán <sean@example.ie>"))
    assert sendgrid_sink.messages[0]["payload"]["reply_to"] == {"email": "sean@example.ie",
                                                                "name": "Seán"}


def test_calendar_through_the_api(transport: SendGridTransport,
                                  sendgrid_sink: SendGridSink) -> None:
    transport.send(invite(1, method="CANCEL"))
    payload = sendgrid_sink.messages[0]["payload"]
    assert [c["type"] for c in payload["content"]] == [
        "text/plain", "text/html", "text/calendar; method=CANCEL"]
    assert payload["content"][2]["value"] == ICS.decode()
    assert payload["attachments"] == [{
        "content": base64.b64encode(ICS).decode(), "type": "text/calendar",
        "filename": "invite.ics", "disposition": "attachment"}]


def test_sandbox_mode(sendgrid_sink: SendGridSink) -> None:
    transport = SendGridTransport(API_KEY, host=sendgrid_sink.url, sandbox=True, timeout=5)
    assert transport.send(make_message(3)) == "sandbox:send-3"
    [record] = sendgrid_sink.messages
    assert record["sandbox"] is True
    assert record["payload"]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    transport.close()


def test_keep_alive_one_connection_per_thread(transport: SendGridTransport,
                                              sendgrid_sink: SendGridSink) -> None:
    for n in range(20):
        transport.send(make_message(n))
    assert sendgrid_sink.connections == 1
    barrier = threading.Barrier(3)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(5):
            transport.send(make_message(100 + k * 10 + i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sendgrid_sink.messages) == 35
    assert sendgrid_sink.connections == 4
    ids = {m["x_message_id"] for m in sendgrid_sink.messages}
    assert len(ids) == 35


def test_reconnects_after_the_server_closes_an_idle_connection(
        transport: SendGridTransport, sendgrid_sink: SendGridSink) -> None:
    transport.send(make_message(1))
    sendgrid_sink.drop_connections()
    transport.send(make_message(2))
    assert len(sendgrid_sink.messages) == 2
    assert sendgrid_sink.connections == 2


def test_close_then_send_again(transport: SendGridTransport, sendgrid_sink: SendGridSink) -> None:
    transport.send(make_message(1))
    transport.close()
    transport.send(make_message(2))
    assert len(sendgrid_sink.messages) == 2


def test_400_carries_the_error_text(transport: SendGridTransport,
                                    sendgrid_sink: SendGridSink) -> None:
    with pytest.raises(PermanentError, match="content: Unless a valid template_id") as caught:
        transport.send(make_message(1, text="", html=""))
    assert caught.value.status == 400
    assert sendgrid_sink.messages == []
    assert_key_hidden(caught.value, transport)


def test_scripted_400_with_several_errors(transport: SendGridTransport,
                                          sendgrid_sink: SendGridSink) -> None:
    sendgrid_sink.script(Reply(400, body={"errors": [
        {"message": "Invalid email", "field": "personalizations.0.to.0.email", "help": None},
        {"message": "Bad thing", "field": None, "help": None}]}))
    with pytest.raises(PermanentError) as caught:
        transport.send(make_message(1))
    assert "personalizations.0.to.0.email: Invalid email; Bad thing" in str(caught.value)


def test_401_wrong_key(sendgrid_sink: SendGridSink) -> None:
    transport = SendGridTransport("SG.wrong-key", host=sendgrid_sink.url, timeout=5)
    with pytest.raises(PermanentError, match="API key refused") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 401
    assert "authorization grant is invalid" in str(caught.value)
    assert "SG.wrong-key" not in str(caught.value) + repr(caught.value) + repr(transport)
    transport.close()


def test_403_forbidden(transport: SendGridTransport, sendgrid_sink: SendGridSink) -> None:
    sendgrid_sink.script(Reply(403, body={"errors": [{"message": "access forbidden",
                                                      "field": None}]}))
    with pytest.raises(PermanentError, match="API key refused") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 403


def test_413_too_large() -> None:
    with SendGridSink(api_key=API_KEY, max_body=2000) as sink:
        transport = SendGridTransport(API_KEY, host=sink.url, timeout=5)
        with pytest.raises(PermanentError, match="too large") as caught:
            transport.send(make_message(1, html="<p>" + "x" * 5000 + "</p>"))
        assert caught.value.status == 413
        transport.send(make_message(2))  # the connection is still good
        assert len(sink.messages) == 1
        transport.close()


def test_429_retry_after_from_rate_limit_reset(transport: SendGridTransport,
                                               sendgrid_sink: SendGridSink) -> None:
    reset = int(time.time()) + 30
    sendgrid_sink.script(Reply(429, headers={
        "X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset)},
        body={"errors": [{"field": None, "message": "too many requests"}]}))
    with pytest.raises(TransientError, match="rate limit") as caught:
        transport.send(make_message(1))
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    assert 28 <= caught.value.retry_after <= 30
    transport.send(make_message(1))
    assert len(sendgrid_sink.messages) == 1


def test_429_retry_after_header(transport: SendGridTransport,
                                sendgrid_sink: SendGridSink) -> None:
    sendgrid_sink.script(Reply(429, headers={"Retry-After": "7"}))
    with pytest.raises(TransientError) as caught:
        transport.send(make_message(1))
    assert caught.value.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(transport: SendGridTransport, sendgrid_sink: SendGridSink,
                          status: int) -> None:
    sendgrid_sink.script(Reply(status, body="upstream trouble"))
    with pytest.raises(TransientError, match="upstream trouble") as caught:
        transport.send(make_message(1))
    assert caught.value.status == status
    assert_key_hidden(caught.value, transport)


def test_slow_reply_hits_the_timeout(sendgrid_sink: SendGridSink) -> None:
    transport = SendGridTransport(API_KEY, host=sendgrid_sink.url, timeout=0.3)
    sendgrid_sink.script(Reply(delay=1.0))
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer within 0.3 s") as caught:
        transport.send(make_message(1))
    assert time.monotonic() - started < 0.9
    assert_key_hidden(caught.value, transport)
    transport.send(make_message(2))  # a fresh connection after the abandoned one
    assert sendgrid_sink.messages[-1]["payload"]["personalizations"][0]["custom_args"] == {
        "send_id": "send-2"}
    transport.close()


def test_connection_refused_is_transient() -> None:
    transport = SendGridTransport(API_KEY, host=f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(TransientError, match="cannot reach SendGrid") as caught:
        transport.send(make_message(1))
    assert_key_hidden(caught.value, transport)


def test_unbuildable_message_is_permanent(transport: SendGridTransport,
                                          sendgrid_sink: SendGridSink) -> None:
    with pytest.raises(PermanentError, match="header injection"):
        transport.send(make_message(1, subject="Hi\r\nBcc: victim@evil.example"))
    with pytest.raises(PermanentError, match="set by comms"):
        transport.send(make_message(1, headers={"Bcc": "victim@evil.example"}))
    assert sendgrid_sink.requests == 0


def test_api_key_never_shown(sendgrid_sink: SendGridSink) -> None:
    transport = SendGridTransport(API_KEY, host=sendgrid_sink.url, timeout=5)
    assert API_KEY not in repr(transport) and API_KEY not in str(transport)
    assert API_KEY not in repr(vars(transport)) + repr(vars(transport._pool))
    errors: list[TransportError] = []
    for reply in (Reply(400, body={"errors": [{"message": "bad", "field": "x"}]}),
                  Reply(401, body={"errors": [{"message": "no", "field": None}]}),
                  Reply(429), Reply(500), Reply(413)):
        sendgrid_sink.script(reply)
        with pytest.raises(TransportError) as caught:
            transport.send(make_message(1))
        errors.append(caught.value)
    for exc in errors:
        assert_key_hidden(exc, transport)
    transport.close()


def test_invites_through_the_smtp_relay(sendgrid_sink: SendGridSink, smtp_tls_sink: SmtpSink,
                                        tls: Tls) -> None:
    transport = SendGridTransport(API_KEY, host=sendgrid_sink.url, timeout=5,
                                  invites="smtp-relay", relay_host="127.0.0.1",
                                  relay_port=smtp_tls_sink.port, relay_ssl_context=tls.client)
    assert transport.send(invite(1)) == "<send-1@comms.example.org>"
    transport.send(make_message(2))  # no calendar: through the API
    assert smtp_tls_sink.logins == ["apikey"]
    [relayed] = smtp_tls_sink.messages
    assert relayed.rcpt_tos == ["person1@example.org"]
    msg = email.message_from_bytes(relayed.data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    alternative = next(iter(msg.iter_parts()))
    assert alternative.get_content_type() == "multipart/alternative"
    calendar = [p for p in alternative.iter_parts() if p.get_content_type() == "text/calendar"]
    assert len(calendar) == 1
    assert calendar[0].get_param("method") == "REQUEST"
    assert calendar[0].get_payload(decode=True) == ICS
    assert [m["payload"]["personalizations"][0]["custom_args"]["send_id"]
            for m in sendgrid_sink.messages] == ["send-2"]
    transport.close()


def test_relay_keeps_the_key_out_of_reprs(sendgrid_sink: SendGridSink) -> None:
    transport = SendGridTransport(API_KEY, host=sendgrid_sink.url, invites="smtp-relay")
    assert transport._relay is not None
    assert API_KEY not in repr(transport._relay) + repr(vars(transport._relay))


def test_relay_refusing_the_key_is_permanent(sendgrid_sink: SendGridSink,
                                             smtp_tls_sink: SmtpSink, tls: Tls) -> None:
    transport = SendGridTransport("SG.other-key", host=sendgrid_sink.url, timeout=5,
                                  invites="smtp-relay", relay_host="127.0.0.1",
                                  relay_port=smtp_tls_sink.port, relay_ssl_context=tls.client)
    with pytest.raises(PermanentError, match="refused") as caught:
        transport.send(invite(1))
    assert "SG.other-key" not in str(caught.value) + repr(caught.value) + repr(transport)


def test_runs_as_a_subprocess(tmp_path: Path) -> None:
    log = tmp_path / "sent.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sinks.sendgrid_server", "--port", "0", "--log", str(log),
         "--api-key", API_KEY], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        transport = SendGridTransport(API_KEY, host=url, timeout=5)
        ids = [transport.send(make_message(n)) for n in range(3)]
        transport.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["x_message_id"] for line in lines] == ids
    assert [line["payload"]["personalizations"][0]["custom_args"]["send_id"]
            for line in lines] == ["send-0", "send-1", "send-2"]

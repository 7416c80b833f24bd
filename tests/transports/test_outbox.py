"""OutboxTransport: one .eml file per message, written whole or not at all."""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path

import pytest

from comms.errors import PermanentError
from comms.transports import OutboxTransport, Transport

from .helpers import invite, make_message


def test_writes_one_eml_per_message(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "out" / "nested")
    assert isinstance(outbox, Transport)
    provider_id = outbox.send(make_message(1))
    assert provider_id == "send-1.eml"
    raw = (tmp_path / "out" / "nested" / "send-1.eml").read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Message-ID"] == "<send-1@comms.example.org>"
    assert msg["To"].addresses[0].display_name == "Siobhán O'Connor"
    assert msg["Subject"] == "Réunion – steering group"
    plain = msg.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n") == make_message(1).text


def test_calendar_message_written_with_its_parts(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    outbox.send(invite(2))
    msg = email.message_from_bytes((tmp_path / "send-2.eml").read_bytes(),
                                   policy=email.policy.default)
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html",
        "text/calendar", "application/ics"]


def test_resend_replaces_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    outbox.send(make_message(1, subject="first"))
    outbox.send(make_message(1, subject="second"))
    assert [p.name for p in tmp_path.iterdir()] == ["send-1.eml"]
    assert b"Subject: second\r\n" in (tmp_path / "send-1.eml").read_bytes()


def test_directory_recreated_if_removed(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "out")
    (tmp_path / "out").rmdir()
    outbox.send(make_message(1))
    assert (tmp_path / "out" / "send-1.eml").exists()


def test_many_threads(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    threads = [threading.Thread(target=lambda k=k: [outbox.send(make_message(k * 10 + i))
                                                    for i in range(10)]) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(tmp_path.glob("*.eml"))) == 40
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("send_id", ["../escape", "a/b", ".hidden", "", "x" * 300])
def test_unsafe_send_id_refused(tmp_path: Path, send_id: str) -> None:
    with pytest.raises(PermanentError, match="file name"):
        OutboxTransport(tmp_path / "out").send(make_message(1, send_id=send_id))
    assert not list((tmp_path / "out").iterdir())


def test_header_injection_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="header injection"):
        OutboxTransport(tmp_path).send(make_message(1, subject="Hi\r\nBcc: v@evil.example"))
    assert not list(tmp_path.iterdir())

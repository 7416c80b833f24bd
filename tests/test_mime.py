"""build_mime: parsed back with the stdlib ``email`` package and checked header by header."""

from __future__ import annotations

import binascii
import email
import email.policy
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comms import mime
from comms.mime import build_mime, quoted_printable
from comms.transports.base import Address, CalendarPart, Message

DATE = datetime(2025, 3, 4, 9, 30, 15, tzinfo=timezone(timedelta(hours=1)))
ICS = (
    "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:-//comms//EN\r\nVERSION:2.0\r\n"
    "BEGIN:VEVENT\r\nUID:evt-1@example.org\r\nSUMMARY:Atelier à Dublin\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()


def make(**changes: object) -> Message:
    base = Message(
        send_id="send-1",
        message_id="<send-1@comms.example.org>",
        sender=Address(email="office@programme.example.org", name="Programme Office"),
        to=Address(email="siobhan@example.ie", name="Siobhán O'Connor"),
        subject="Invitation: Réunion – steering group",
        text="Dear Siobhán,\n\nSee you there.\n",
        html="<p>Dear Siobhán,</p>\n<p>See you there.</p>\n",
        reply_to="replies@programme.example.org",
        headers={
            "List-Unsubscribe": "<https://comms.example.org/u/tok123>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert not part.defects, part.defects
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    # Text bodies travel with CRLF line ends (RFC 5322); the parser hands them back as such.
    return part.get_content().replace("\r\n", "\n")


def test_headers_round_trip() -> None:
    msg = parse(build_mime(make(), date=DATE))
    sender = msg["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (
        "Programme Office", "office@programme.example.org")
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Siobhán O'Connor", "siobhan@example.ie")
    assert msg["Subject"] == "Invitation: Réunion – steering group"
    assert msg["Date"].datetime == DATE
    assert msg["Message-ID"] == "<send-1@comms.example.org>"
    assert msg["Reply-To"] == "replies@programme.example.org"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Unsubscribe"] == "<https://comms.example.org/u/tok123>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"


def test_optional_headers_absent() -> None:
    msg = parse(build_mime(make(reply_to=None, headers={})))
    assert msg["Reply-To"] is None
    assert msg["List-Unsubscribe"] is None
    assert msg["Date"].datetime.tzinfo is not None


@pytest.mark.parametrize("name", [
    "Siobhán O'Connor",
    "Pat O'Brien",
    'Smith, John "JJ"',
    "Dr. A. Person (Chair)",
    "back\\slash",
    "  spaced  out ",
    "=?utf-8?q?looks_encoded?=",
    "Zoë Ångström-Øvergaard",
    "李小龍",
])
def test_display_names_round_trip(name: str) -> None:
    msg = parse(build_mime(make(to=Address(email="p@example.org", name=name))))
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == (name, "p@example.org")


@pytest.mark.parametrize("name", ["Zoë Ångström-Øvergaard " * 8, "李小龍" * 30])
def test_long_display_names_split_into_encoded_words(name: str) -> None:
    raw = build_mime(make(to=Address(email="p@example.org", name=name)))
    value = parse(raw)["To"]
    lines = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    # RFC 2047 6.2: the space between adjacent encoded-words is dropped on decoding. (The
    # stdlib's address parser keeps one, so decode the raw header the RFC way.)
    phrase = _raw_header(raw, "To").rsplit(" <", 1)[0]
    assert str(make_header(decode_header(phrase))) == name
    assert value.addresses[0].addr_spec == "p@example.org"


def _raw_header(raw: bytes, name: str) -> str:
    head = raw.split(b"\r\n\r\n")[0].decode().replace("\r\n ", " ")
    for line in head.split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} header")


def test_ascii_names_stay_readable() -> None:
    raw = build_mime(make(to=Address(email="p@example.org", name="Pat O'Brien")))
    assert b"\r\nTo: Pat O'Brien <p@example.org>\r\n" in raw
    raw = build_mime(make(to=Address(email="p@example.org", name="Smith, John")))
    assert b'\r\nTo: "Smith, John" <p@example.org>\r\n' in raw


def test_reply_to_with_a_name() -> None:
    msg = parse(build_mime(make(reply_to="Seán Ó Briain <sean@example.ie>")))
    reply = msg["Reply-To"].addresses[0]
    assert (reply.display_name, reply.addr_spec) == ("Seán Ó Briain", "sean@example.ie")


def test_international_domain_is_idna_encoded() -> None:
    msg = parse(build_mime(make(to=Address(email="info@bücher.example", name=""))))
    assert msg["To"].addresses[0].addr_spec == "info@xn--bcher-kva.example"


@pytest.mark.parametrize("subject", [
    "Plain ASCII subject",
    "Long ASCII subject" + " with many words" * 40,
    "Long non-ASCII sujet – réunion " * 40,
    "x" * 1200,
    "literal =?utf-8?b?QQ==?= text",
    "  leading and trailing spaces  ",
    "double  spaces   inside",
    "tab\tinside",
    "",
])
def test_subjects_round_trip_and_fold(subject: str) -> None:
    raw = build_mime(make(subject=subject))
    assert parse(raw)["Subject"] == subject
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    if subject.isascii() and " " in subject and "=?" not in subject:
        assert max(len(line) for line in head.split(b"\r\n")) <= 78


def test_non_ascii_header_value_is_encoded() -> None:
    msg = parse(build_mime(make(headers={"X-Programme": "Étude nationale"})))
    assert msg["X-Programme"] == "Étude nationale"


TEXT_CASES = {
    "non-ascii": "Dear Siobhán, 你好, emoji 🎉, ß and Ø.\n",
    "long line": "word " * 300 + "\n" + "x" * 500,
    "from line": "From the programme office\nFrom here on\n>From quoted\n",
    "dots": ".\n..\n. leading dot\nend.\n.",
    "whitespace": "trailing space \ntrailing tab\t\n\n\n  indented\n",
    "equals": "a=b =3D ==\n=\n",
    "boundary-like": "--=_abc\n--boundary--\n",
    "no final newline": "last line without newline",
    "empty": "",
}


@pytest.mark.parametrize("case", TEXT_CASES)
def test_bodies_round_trip(case: str) -> None:
    text = TEXT_CASES[case]
    html = f"<html><body><pre>{text}</pre></body></html>"
    raw = build_mime(make(text=text, html=html))
    msg = parse(raw)
    assert body(msg, "plain") == text
    assert body(msg, "html") == html


def test_from_lines_are_hidden_from_mbox() -> None:
    raw = build_mime(make(text="From the start\nFrom again\n", html="From html"))
    assert b"\nFrom " not in raw


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=400))
@settings(max_examples=150, deadline=None)
def test_any_text_round_trips(text: str) -> None:
    raw = build_mime(make(text=text, html=text))
    assert_crlf_only(raw)
    msg = parse(raw)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert body(msg, "plain") == expected
    assert body(msg, "html") == expected


def _qp_whole(text: str) -> str:
    """Quoted-printable of the whole text at once, as ``quoted_printable`` is specified."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).decode("ascii")
    encoded = re.sub(r"(?m)^From ", "=46rom ", encoded)
    encoded = re.sub(r"(?m)^\.", "=2E", encoded)
    return encoded.replace("\n", "\r\n")


@given(st.lists(st.text(alphabet=st.sampled_from("aé .=\t\r\nFrom"), max_size=200),
                min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
def test_quoted_printable_by_kept_lines_is_the_whole_text_encoded(texts: list[str]) -> None:
    """Lines are encoded one at a time and kept: the same bytes as encoding all at once, for
    lines seen before or not, with and without the kept lines cleared between."""
    for text in texts + texts:
        assert quoted_printable(text) == _qp_whole(text)
    mime._QP_LINES.clear()
    long = "From " + "x" * 70 + " .dot " + "é" * 80 + " \n.\n\nend "
    assert quoted_printable(long) == _qp_whole(long)
    for width in range(70, 80):  # a soft line break just before "." or "From "
        for text in ("a" * width + ".b", "a" * width + "From b"):
            assert quoted_printable(text) == _qp_whole(text)


def test_quoted_printable_keeps_a_bounded_number_of_lines() -> None:
    mime._QP_LINES.clear()
    for n in range(mime._QP_KEPT + 10):
        quoted_printable(f"line {n}\nshared")
    assert 0 < len(mime._QP_LINES) <= mime._QP_KEPT


def assert_crlf_only(raw: bytes) -> None:
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.count(b"\r") == raw.count(b"\r\n")
    assert raw.endswith(b"\r\n")


def test_crlf_everywhere_and_line_lengths() -> None:
    text = "line one\nline two\r\nline three\rline four " + "é" * 200
    raw = build_mime(make(text=text, html=text, calendar=CalendarPart(method="REQUEST", ics=ICS)))
    assert_crlf_only(raw)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in rest.split(b"\r\n"))
    assert raw.isascii()


def test_boundaries_random_and_absent_from_bodies() -> None:
    first = build_mime(make(text="--=_", html="--"))
    second = build_mime(make(text="--=_", html="--"))
    b1 = parse(first).get_boundary()
    b2 = parse(second).get_boundary()
    assert b1 and b2 and b1 != b2
    for raw, boundary in ((first, b1), (second, b2)):
        msg = parse(raw)
        for part in msg.iter_parts():
            assert boundary not in part.get_content()
            assert boundary.encode() not in part.get_payload(decode=True)


def test_calendar_layout() -> None:
    raw = build_mime(make(calendar=CalendarPart(method="REQUEST", ics=ICS)), date=DATE)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/mixed"
    alternative, attachment = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html, calendar = alternative.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_charset() == "utf-8"
    assert calendar.get_payload(decode=True) == ICS
    assert b"Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n" in raw
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_param("name") == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "invite.ics"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_payload(decode=True) == ICS
    assert body(msg, "plain") == make().text
    assert msg["Subject"] == make().subject
    assert msg.get_boundary() != alternative.get_boundary()


def test_calendar_cancel_method_and_bad_method() -> None:
    raw = build_mime(make(calendar=CalendarPart(method="cancel", ics=ICS)))
    assert b"text/calendar; method=CANCEL;" in raw
    with pytest.raises(ValueError, match="calendar method"):
        build_mime(make(calendar=CalendarPart(method="REQUEST; x=y", ics=ICS)))


INJECTED = "\r\nBcc: victim@evil.example"
INJECTIONS = {
    "subject": lambda bad: make(subject="Hello" + bad),
    "to name": lambda bad: make(to=Address(email="p@example.org", name="Pat" + bad)),
    "from name": lambda bad: make(sender=Address(email="o@example.org", name="Office" + bad)),
    "to email": lambda bad: make(to=Address(email="p@example.org" + bad)),
    "from email": lambda bad: make(sender=Address(email="o@example.org" + bad)),
    "reply-to": lambda bad: make(reply_to="r@example.org" + bad),
    "message-id": lambda bad: make(message_id="<a@b>" + bad),
    "header value": lambda bad: make(headers={"List-Unsubscribe": "<https://x/u>" + bad}),
    "header name": lambda bad: make(headers={"X-Tag" + bad: "v"}),
}


@pytest.mark.parametrize("field", INJECTIONS)
@pytest.mark.parametrize("bad", [INJECTED, "\nBcc: victim@evil.example", "\rBcc: v@evil.example",
                                 "\x00Bcc: v@evil.example", "\r\n\r\nBcc: v@evil.example"])
def test_header_injection_refused(field: str, bad: str) -> None:
    with pytest.raises(ValueError):
        build_mime(INJECTIONS[field](bad))


@given(st.text(alphabet=st.sampled_from("ab :\r\n\x00Bcc@é"), max_size=40))
@settings(max_examples=200, deadline=None)
def test_no_bcc_header_can_ever_appear(junk: str) -> None:
    for field in ("subject", "to name", "from name", "header value", "reply-to"):
        try:
            raw = build_mime(INJECTIONS[field](junk))
        except ValueError:
            continue
        assert parse(raw)["Bcc"] is None
        assert not re.search(rb"(?im)^bcc:", raw)


@pytest.mark.parametrize("email_address", [
    "p@example.org>, victim@evil.example",
    "p@example.org, victim@evil.example",
    "Name <p@example.org>",
    "not-an-address",
    "p @example.org",
])
def test_malformed_addresses_refused(email_address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        build_mime(make(to=Address(email=email_address)))


@pytest.mark.parametrize("name", ["Bcc", "bcc", "Content-Type", "From", "To", "Subject"])
def test_reserved_extra_headers_refused(name: str) -> None:
    with pytest.raises(ValueError, match="set by comms"):
        build_mime(make(headers={name: "x@example.org"}))


def test_bad_message_id_refused() -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        build_mime(make(message_id="no-brackets@example.org"))

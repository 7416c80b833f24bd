"""Calendar replies read from mailbox exports (.eml, folders, mbox) and from an IMAP server."""

from __future__ import annotations

import json
import mailbox
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from comms.app import App
from comms.cli import cli
from comms.errors import CommsError, ConfigError
from comms.events import roster
from comms.store import tables
from comms.tracking import mailbox as comms_mailbox
from comms.tracking.mailbox import import_path, poll_imap
from tests.conftest import FakeClock
from tests.sinks.imap_server import ImapServer
from tests.test_dispatch import make_app

UID = "workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example"
TITLE = "Leading change in primary care — workshop 1"
ORGANISER = "events@sel-learning.example"
TARIQ = ("Tariq Nowak", "Tariq.Nowak@Bexley-CT.nhs.example")  # directory: all lower case
GEORGE = ("George Ng", "George.Ng@bexley-ct.NHS.example")
RHYS = ("Rhys Khan", "RHYS.KHAN@bexley-ct.nhs.example")
LABELS = {"ACCEPTED": "Accepted", "DECLINED": "Declined", "TENTATIVE": "Tentative"}
IMAP_USER, IMAP_PASSWORD = "events@sel-learning.example", "s3cret-Imap-pw!"


# --- replies as Outlook and Gmail write them --------------------------------------------------


def outlook_ics(name: str, address: str, partstat: str, *, uid: str = UID,
                sequence: int = 0) -> str:
    """An Exchange/Outlook METHOD:REPLY: Windows zone names, MAILTO in capitals, one ATTENDEE."""
    return "\r\n".join([
        "BEGIN:VCALENDAR", "METHOD:REPLY", "PRODID:Microsoft Exchange Server 2010",
        "VERSION:2.0",
        "BEGIN:VTIMEZONE", "TZID:GMT Standard Time",
        "BEGIN:STANDARD", "DTSTART:16010101T020000", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0000",
        "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10", "END:STANDARD",
        "BEGIN:DAYLIGHT", "DTSTART:16010101T010000", "TZOFFSETFROM:+0000", "TZOFFSETTO:+0100",
        "RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3", "END:DAYLIGHT",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        f"ATTENDEE;PARTSTAT={partstat};CN={name}:MAILTO:{address}",
        "COMMENT;LANGUAGE=en-GB:\\n",
        f"SUMMARY;LANGUAGE=en-GB:{LABELS[partstat]}: {TITLE}",
        "DTSTART;TZID=GMT Standard Time:20270114T093000",
        "DTEND;TZID=GMT Standard Time:20270114T163000",
        f"UID:{uid}", "CLASS:PUBLIC", "PRIORITY:5", "DTSTAMP:20261202T101500Z",
        "TRANSP:OPAQUE", f"SEQUENCE:{sequence}",
        "LOCATION;LANGUAGE=en-GB:Lambeth PCT\\, 1 Lower Marsh\\, London SE1 7NT",
        f"X-MICROSOFT-CDO-APPT-SEQUENCE:{sequence}", "X-MICROSOFT-CDO-OWNERAPPTID:-1",
        "X-MICROSOFT-CDO-REPLYTIME:20261202T101500Z",
        f"ORGANIZER;CN=NMDI Events:MAILTO:{ORGANISER}",
        "END:VEVENT", "END:VCALENDAR", "",
    ])


def gmail_ics(name: str, address: str, partstat: str, *, uid: str = UID,
              sequence: int = 0) -> str:
    """A Google Calendar METHOD:REPLY: UTC times, CUTYPE/ROLE/X-NUM-GUESTS on the ATTENDEE."""
    return "\r\n".join([
        "BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN", "VERSION:2.0",
        "CALSCALE:GREGORIAN", "METHOD:REPLY",
        "BEGIN:VEVENT", "DTSTART:20270114T093000Z", "DTEND:20270114T163000Z",
        "DTSTAMP:20261202T103000Z", f"ORGANIZER;CN=NMDI Events:mailto:{ORGANISER}",
        f"UID:{uid}",
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={partstat};CN={name};X-NUM-G",
        f" UESTS=0:mailto:{address}",
        "CREATED:20261201T090000Z", "LAST-MODIFIED:20261202T103000Z",
        "LOCATION:Lambeth PCT\\, 1 Lower Marsh\\, London SE1 7NT", f"SEQUENCE:{sequence}",
        "STATUS:CONFIRMED", f"SUMMARY:{TITLE}", "TRANSP:OPAQUE",
        "END:VEVENT", "END:VCALENDAR", "",
    ])


def _calendar_part(ics: str, subtype: str = "calendar", main: str = "text",
                   **params: str) -> MIMEBase:
    part = MIMEBase(main, subtype, charset="utf-8", **params)
    part.set_payload(ics.encode("utf-8"))
    from email import encoders

    encoders.encode_base64(part)
    return part


def outlook_reply(person: tuple[str, str], partstat: str, **kw: Any) -> bytes:
    """multipart/alternative: text/plain, text/html, text/calendar; method=REPLY (base64)."""
    name, address = person
    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr((name, address))
    msg["To"] = formataddr(("NMDI Events", ORGANISER))
    msg["Subject"] = f"{LABELS[partstat]}: {TITLE}"
    msg["Thread-Topic"] = TITLE
    msg["X-MS-Has-Attach"] = ""
    msg.attach(MIMEText("", "plain", "utf-8"))
    msg.attach(MIMEText("<html><body></body></html>", "html", "utf-8"))
    msg.attach(_calendar_part(outlook_ics(name, address, partstat, **kw), method="REPLY"))
    return msg.as_bytes()


def gmail_reply(person: tuple[str, str], partstat: str, **kw: Any) -> bytes:
    """multipart/mixed: [alternative: plain, html, text/calendar REPLY] + application/ics."""
    name, address = person
    ics = gmail_ics(name, address, partstat, **kw)
    msg = MIMEMultipart("mixed")
    msg["From"] = formataddr((name, address))
    msg["To"] = ORGANISER
    msg["Subject"] = f"{LABELS[partstat]}: {TITLE} @ Thu 14 Jan 2027 09:30 - 16:30 (GMT)"
    body = MIMEMultipart("alternative")
    body.attach(MIMEText(f"{name} has {LABELS[partstat].lower()} this invitation.", "plain",
                         "utf-8"))
    body.attach(MIMEText(f"<p>{name} has {LABELS[partstat].lower()} this invitation.</p>",
                         "html", "utf-8"))
    body.attach(_calendar_part(ics, method="REPLY"))
    msg.attach(body)
    attachment = _calendar_part(ics, "ics", "application", name="invite.ics")
    attachment.add_header("Content-Disposition", "attachment", filename="invite.ics")
    msg.attach(attachment)
    return msg.as_bytes()


def plain_mail() -> bytes:
    msg = MIMEText("Can I bring a colleague?", "plain", "utf-8")
    msg["From"] = "someone@bexley-ct.nhs.example"
    msg["To"] = ORGANISER
    msg["Subject"] = "Question about the workshop"
    return msg.as_bytes()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock) -> Iterator[App]:
    """The example project with the workshops invitation sent (the event is in the store)."""
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("workshops")
    step = campaign.step("invite")
    assert step is not None
    assert app.dispatcher().send(campaign, step).sent == 80
    clock.advance(days=1)
    yield app
    app.close()


def rows_by_email(app: App) -> dict[str, dict[str, Any]]:
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    return {row["email"].lower(): row for row in roster(app.store, campaign, event)}


def rsvp_count(app: App) -> int:
    with app.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.rsvps)).scalar() or 0)


OUTLOOK_STAMP = datetime(2026, 12, 2, 10, 15, tzinfo=UTC)  # the DTSTAMPs of the replies above
GMAIL_STAMP = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


def assert_answers(app: App, clock: FakeClock, expected: dict[str, str], *,
                   stamp: datetime | None = None) -> None:
    """Each answer recorded with its reply's DTSTAMP (Gmail's for George, as three_replies
    writes them; else Outlook's), not the time it was imported."""
    rows = rows_by_email(app)
    for address, status in expected.items():
        row = rows[address.lower()]
        assert (row["status"], row["source"]) == (status, "calendar"), row
        wanted = stamp or (GMAIL_STAMP if address == GEORGE[1] else OUTLOOK_STAMP)
        assert row["answered_at"] == wanted != clock.now()
    others = [r for e, r in rows.items() if e not in {a.lower() for a in expected}]
    assert len(others) == 80 - len(expected)
    assert {(r["status"], r["source"]) for r in others} == {("no response", None)}


THREE = {TARIQ[1]: "accepted", GEORGE[1]: "declined", RHYS[1]: "tentative"}


def three_replies() -> list[bytes]:
    return [outlook_reply(TARIQ, "ACCEPTED"), gmail_reply(GEORGE, "DECLINED"),
            outlook_reply(RHYS, "TENTATIVE")]


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("partstat", ["ACCEPTED", "DECLINED", "TENTATIVE"])
@pytest.mark.parametrize("client", [outlook_reply, gmail_reply], ids=["outlook", "gmail"])
def test_a_single_eml_reply_lands_in_the_roster(app: App, clock: FakeClock, tmp_path: Path,
                                                client: Any, partstat: str) -> None:
    path = tmp_path / "reply.eml"
    path.write_bytes(client(TARIQ, partstat))
    result = import_path(app.rsvps, path)
    status = partstat.lower()
    assert (result.messages, result.recorded, result.unmatched) == (
        1, [f"workshops/ws1: {status}"], [])  # Gmail's two copies count once
    assert_answers(app, clock, {TARIQ[1]: status},
                   stamp=OUTLOOK_STAMP if client is outlook_reply else GMAIL_STAMP)


def test_a_folder_is_read_recursively_and_other_files_are_ignored(
        app: App, clock: FakeClock, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "2026" / "December").mkdir(parents=True)
    first, second, third = three_replies()
    (folder / "accepted.eml").write_bytes(first)
    (folder / "2026" / "declined.EML").write_bytes(second)
    (folder / "2026" / "December" / "tentative.eml").write_bytes(third)
    (folder / "2026" / "notes.txt").write_text("not mail", encoding="utf-8")
    (folder / ".hidden.eml").write_bytes(b"garbage")
    result = import_path(app.rsvps, folder)
    assert result.messages == 3
    assert sorted(result.recorded) == ["workshops/ws1: accepted", "workshops/ws1: declined",
                                       "workshops/ws1: tentative"]
    assert_answers(app, clock, THREE)


@pytest.mark.parametrize("name", ["replies.mbox", "Inbox"])
def test_an_mbox_file_is_read_by_suffix_or_by_its_from_line(
        app: App, clock: FakeClock, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    box = mailbox.mbox(path)
    for raw in [*three_replies(), plain_mail()]:
        box.add(mailbox.mboxMessage(raw))
    box.flush()
    box.close()
    assert path.read_bytes().startswith(b"From ")
    result = import_path(app.rsvps, path)
    assert (result.messages, len(result.recorded), result.unmatched) == (4, 3, [])
    assert_answers(app, clock, THREE)


def test_a_maildir_folder_is_read(app: App, clock: FakeClock, tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir")
    for raw in three_replies():
        box.add(raw)
    result = import_path(app.rsvps, tmp_path / "Maildir")
    assert (result.messages, len(result.recorded)) == (3, 3)
    assert_answers(app, clock, THREE)


def test_answering_again_by_calendar_changes_the_answer(app: App, clock: FakeClock,
                                                        tmp_path: Path) -> None:
    (tmp_path / "1.eml").write_bytes(outlook_reply(TARIQ, "ACCEPTED"))
    import_path(app.rsvps, tmp_path / "1.eml")
    clock.advance(hours=3)
    (tmp_path / "2.eml").write_bytes(gmail_reply(TARIQ, "DECLINED", sequence=0))
    assert import_path(app.rsvps, tmp_path / "2.eml").recorded == ["workshops/ws1: declined"]
    assert_answers(app, clock, {TARIQ[1]: "declined"}, stamp=GMAIL_STAMP)


@pytest.mark.parametrize(("reply", "reason"), [
    (outlook_reply(TARIQ, "ACCEPTED", uid="workshops.ws9@sel-learning.example"),
     "a calendar reply for an unknown event (UID workshops.ws9@sel-learning.example)"),
    (gmail_reply(("Stranger", "Stranger@Elsewhere.example"), "ACCEPTED"),
     "a calendar reply from someone not in the directory for workshops/ws1"),
], ids=["unknown-uid", "unknown-attendee"])
def test_unknown_event_or_attendee_is_unmatched_and_records_nothing(
        app: App, tmp_path: Path, reply: bytes, reason: str) -> None:
    path = tmp_path / "reply.eml"
    path.write_bytes(reply)
    result = import_path(app.rsvps, path)
    assert (result.messages, result.recorded, result.unmatched) == (1, [], [reason])
    assert "stranger" not in reason.lower()  # addresses stay out of logs and output
    assert rsvp_count(app) == 0
    assert {r["status"] for r in rows_by_email(app).values()} == {"no response"}


def test_mail_without_a_calendar_is_counted_and_ignored(app: App, tmp_path: Path) -> None:
    (tmp_path / "q.eml").write_bytes(plain_mail())
    result = import_path(app.rsvps, tmp_path / "q.eml")
    assert (result.messages, result.recorded, result.unmatched) == (1, [], [])
    assert rsvp_count(app) == 0


def test_missing_path_is_a_config_error(app: App, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        import_path(app.rsvps, tmp_path / "nope")


def test_cli_inbox_import(app: App, clock: FakeClock, store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "replies"
    folder.mkdir()
    for n, raw in enumerate([*three_replies(), outlook_reply(TARIQ, "ACCEPTED", uid="x@y")]):
        (folder / f"{n}.eml").write_bytes(raw)
    result = CliRunner().invoke(cli, ["inbox", "import", str(folder), "--project",
                                      str(app.settings.project_dir)],
                                env={"COMMS_DATABASE_URL": store_url})
    assert result.exit_code == 0, result.output
    assert "4 message(s): 3 answer(s) recorded, 1 not matched" in result.stdout
    assert "not matched: a calendar reply for an unknown event (UID x@y)" in result.stderr
    roster_out = CliRunner().invoke(cli, ["events", "roster", "ws1", "--format", "json",
                                          "--project", str(app.settings.project_dir)],
                                    env={"COMMS_DATABASE_URL": store_url})
    answered = {r["email"].lower(): (r["status"], r["source"])
                for r in json.loads(roster_out.stdout) if r["source"]}
    assert answered == {a.lower(): (s, "calendar") for a, s in THREE.items()}


# --- IMAP -----------------------------------------------------------------------------------


def poll(app: App) -> Any:
    return poll_imap(app.rsvps, app.settings)


def imap_app(app: App, port: int, **changes: Any) -> App:
    """The same project and store, with IMAP settings."""
    from comms.settings import load_settings

    flags = {"database_url": app.settings.database_url, "imap_host": "127.0.0.1",
             "imap_port": port, "imap_ssl": False, "imap_allow_plaintext_auth": True,
             "imap_username": IMAP_USER,
             "imap_password": IMAP_PASSWORD, **changes}
    return App(load_settings(app.settings.project_dir, **flags), clock=app.clock)


def test_poll_records_unread_replies_and_marks_them_read(app: App, clock: FakeClock) -> None:
    already_read = outlook_reply(GEORGE, "ACCEPTED")
    mails = [outlook_reply(TARIQ, "ACCEPTED"), already_read, plain_mail(),
             gmail_reply(GEORGE, "DECLINED"), outlook_reply(RHYS, "TENTATIVE"),
             gmail_reply(TARIQ, "ACCEPTED", uid="other.ws2@sel-learning.example")]
    with ImapServer(IMAP_USER, IMAP_PASSWORD, {"INBOX": mails}) as server:
        server.folders["INBOX"][1].flags.add("\\Seen")
        polling = imap_app(app, server.port)
        result = poll(polling)
        assert result.messages == 5  # the message read before is left alone
        assert sorted(result.recorded) == ["workshops/ws1: accepted", "workshops/ws1: declined",
                                           "workshops/ws1: tentative"]
        assert result.unmatched == ["a calendar reply for an unknown event "
                                    "(UID other.ws2@sel-learning.example)"]
        assert all("\\Seen" in flags for flags in server.flags())
        assert server.logins == [IMAP_USER]
        assert "UID SEARCH" in server.commands and "LOGOUT" in server.commands
        again = poll(polling)
        assert (again.messages, again.recorded) == (0, [])
        polling.close()
    assert_answers(app, clock, THREE)  # George's earlier "accepted" was already read: not used


def test_poll_reads_the_configured_folder(app: App, clock: FakeClock) -> None:
    folders = {"INBOX": [outlook_reply(RHYS, "DECLINED")],
               "Calendar Replies": [outlook_reply(TARIQ, "ACCEPTED")]}
    with ImapServer(IMAP_USER, IMAP_PASSWORD, folders) as server:
        result = poll(imap_app(app, server.port, imap_folder="Calendar Replies"))
        assert result.recorded == ["workshops/ws1: accepted"]
        assert server.flags("INBOX") == [set()]
        with pytest.raises(CommsError, match=r"cannot open folder 'Archive'.*COMMS_IMAP_FOLDER"):
            poll(imap_app(app, server.port, imap_folder="Archive"))
    assert_answers(app, clock, {TARIQ[1]: "accepted"})


def test_a_failure_mid_poll_leaves_the_unprocessed_messages_unread(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    mails = [outlook_reply(TARIQ, "ACCEPTED"), gmail_reply(GEORGE, "DECLINED"),
             outlook_reply(RHYS, "TENTATIVE")]
    real = comms_mailbox.process_message
    calls = []

    def flaky(app: App, raw: bytes, result: Any, **where: Any) -> Any:
        calls.append(raw)
        if len(calls) == 2:
            raise CommsError("store error: the database went away")
        return real(app, raw, result, **where)

    monkeypatch.setattr(comms_mailbox, "process_message", flaky)
    with ImapServer(IMAP_USER, IMAP_PASSWORD, {"INBOX": mails}) as server:
        with pytest.raises(CommsError, match="database went away"):
            poll(imap_app(app, server.port))
        assert server.flags() == [{"\\Seen"}, set(), set()]
        monkeypatch.setattr(comms_mailbox, "process_message", real)
        assert len(poll(imap_app(app, server.port)).recorded) == 2


def test_wrong_password_is_a_clear_error_without_the_password(app: App) -> None:
    with ImapServer(IMAP_USER, "the-right-one", {"INBOX": []}) as server:
        with pytest.raises(CommsError) as caught:
            poll(imap_app(app, server.port))
    message = str(caught.value)
    assert message == (f"IMAP 127.0.0.1:{server.port}: login as '{IMAP_USER}' refused: "
                       "[AUTHENTICATIONFAILED] Invalid credentials (Failure)")
    assert IMAP_PASSWORD not in message and not isinstance(caught.value, ConfigError)


def test_nothing_listening_is_a_connection_error(app: App) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(CommsError, match=rf"IMAP 127.0.0.1:{port}: cannot connect: .*"
                                         r"check COMMS_IMAP_HOST") as caught:
        poll(imap_app(app, port))
    assert IMAP_PASSWORD not in str(caught.value)


def test_no_imap_host_is_a_config_error(app: App) -> None:
    with pytest.raises(ConfigError, match="set COMMS_IMAP_HOST"):
        poll(imap_app(app, 993, imap_host=None))
    with pytest.raises(ConfigError, match="COMMS_IMAP_PASSWORD"):
        poll(imap_app(app, 993, imap_password=None))


def test_cli_inbox_poll(app: App, clock: FakeClock, store_url: str) -> None:
    with ImapServer(IMAP_USER, IMAP_PASSWORD, {"INBOX": three_replies()}) as server:
        env = {"COMMS_DATABASE_URL": store_url, "COMMS_IMAP_HOST": "127.0.0.1",
               "COMMS_IMAP_PORT": str(server.port), "COMMS_IMAP_SSL": "false",
               "COMMS_IMAP_ALLOW_PLAINTEXT_AUTH": "true",
               "COMMS_IMAP_USERNAME": IMAP_USER, "COMMS_IMAP_PASSWORD": IMAP_PASSWORD}
        args = ["inbox", "poll", "--project", str(app.settings.project_dir)]
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "3 message(s): 3 answer(s) recorded, 0 not matched"
        wrong = CliRunner().invoke(cli, args, env={**env, "COMMS_IMAP_PASSWORD": "nope-nope"})
    assert wrong.exit_code == 1
    assert "login as 'events@sel-learning.example' refused" in wrong.stderr
    assert "nope-nope" not in wrong.output
    missing = CliRunner().invoke(cli, args, env={"COMMS_DATABASE_URL": store_url,
                                                 "COMMS_IMAP_HOST": ""})
    assert missing.exit_code == 2
    assert "imap_host: no IMAP mailbox is set" in missing.stderr

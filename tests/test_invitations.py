"""Invitations end to end: sent through every transport, parsed back (stdlib email + icalendar),
and every rule checked, for the first REQUEST, the update, and the cancellation."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from icalendar import Calendar
from sqlalchemy import select

from comms._types import email_key
from comms.app import App
from comms.campaign import Campaign, Step
from comms.cli import cli
from comms.service import Service
from comms.settings import load_settings
from comms.store import tables
from comms.store.rsvps import record_answer
from comms.transports.sendgrid import SendGridTransport
from tests.conftest import FakeClock, Tls
from tests.sinks.sendgrid_server import SendGridSink
from tests.sinks.smtp_server import SmtpSink

UID = "workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example"
TITLE = "Leading change in primary care — workshop 1"
LOCATION = "Lambeth PCT, 1 Lower Marsh, London SE1 7NT"
ORGANISER = "events@sel-learning.example"
LONDON = ZoneInfo("Europe/London")
START = dt.datetime(2027, 1, 14, 9, 30, tzinfo=LONDON)
END = dt.datetime(2027, 1, 14, 16, 30, tzinfo=LONDON)
API_KEY = "SG.invitations-test.a2V5"
CHANNELS = ["outbox", "smtp", "sendgrid-api", "sendgrid-relay"]
AUDIENCE = 80  # managers tagged primary-care in the example directory


# --- what arrived, parsed back ----------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One invitation as the recipient's mail system would see it."""

    to: str
    method: str  # the ``method`` the transport put on the calendar's Content-Type
    ics: bytes
    calendar: Calendar


def from_mime(raw: bytes) -> Sent:
    """Check the MIME layout Outlook needs and return the calendar it carries."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "application/ics"]
    alternative, attachment = parts
    inner = list(alternative.iter_parts())
    assert [p.get_content_type() for p in inner] == ["text/plain", "text/html", "text/calendar"]
    calendar_part = inner[2]
    assert calendar_part.get_param("charset") == "utf-8"
    assert calendar_part.get_content_disposition() is None  # inline: Outlook's meeting part
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "invite.ics"
    ics = calendar_part.get_payload(decode=True)
    assert isinstance(ics, bytes)
    assert attachment.get_payload(decode=True) == ics
    method = calendar_part.get_param("method")
    assert isinstance(method, str)
    return Sent(msg["To"].addresses[0].addr_spec, method, ics, parse(ics))


def from_sendgrid(record: dict[str, Any]) -> Sent:
    """Check the v3 payload: calendar as a ``text/calendar; method=...`` content entry (after
    plain and HTML) plus the invite.ics attachment."""
    payload = record["payload"]
    types = [c["type"] for c in payload["content"]]
    assert types[:2] == ["text/plain", "text/html"] and len(types) == 3
    found = re.fullmatch(r"text/calendar; method=([A-Z]+)", types[2])
    assert found, types[2]
    ics = payload["content"][2]["value"].encode("utf-8")
    (attachment,) = payload["attachments"]
    assert (attachment["filename"], attachment["type"], attachment["disposition"]) == (
        "invite.ics", "text/calendar", "attachment")
    assert base64.b64decode(attachment["content"]) == ics
    (personalization,) = payload["personalizations"]
    (to,) = personalization["to"]
    return Sent(to["email"], found.group(1), ics, parse(ics))


def parse(ics: bytes) -> Calendar:
    calendar = Calendar.from_ical(ics)
    assert isinstance(calendar, Calendar)
    return calendar


def check(sent: Sent, *, method: str, sequence: int, names: dict[str, str],
          stamp: dt.datetime, start: dt.datetime = START, end: dt.datetime = END) -> Any:
    """Every rule of an invitation's calendar; returns its VEVENT for further checks."""
    cal = sent.calendar
    assert sent.method == method
    assert str(cal["METHOD"]) == method
    assert str(cal["VERSION"]) == "2.0" and "PRODID" in cal
    (vevent,) = cal.walk("VEVENT")
    assert str(vevent["UID"]) == UID
    assert vevent["DTSTAMP"].dt == stamp
    assert int(vevent["SEQUENCE"]) == sequence
    for prop, moment in (("DTSTART", start), ("DTEND", end)):
        assert vevent[prop].params["TZID"] == "Europe/London"
        assert vevent[prop].dt == moment
        assert str(vevent[prop].dt.tzinfo) == "Europe/London"
    zones = [str(z["TZID"]) for z in cal.walk("VTIMEZONE")]
    assert zones == ["Europe/London"]
    assert str(vevent["SUMMARY"]) == TITLE
    assert str(vevent["LOCATION"]) == LOCATION
    assert str(vevent["DESCRIPTION"]).startswith("First NMDI development workshop")
    assert str(vevent["STATUS"]) == ("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    alarms = vevent.walk("VALARM")
    if method == "REQUEST":
        (alarm,) = alarms
        assert str(alarm["ACTION"]) == "DISPLAY"
        assert alarm["TRIGGER"].dt == -dt.timedelta(minutes=60)
    organizer = vevent["ORGANIZER"]
    assert str(organizer) == f"mailto:{ORGANISER}"
    assert organizer.params["CN"] == "NMDI Events"
    attendee = vevent["ATTENDEE"]
    assert not isinstance(attendee, list), "exactly one ATTENDEE"
    unfolded = sent.ics.replace(b"\r\n ", b"")
    assert len(re.findall(rb"^ATTENDEE[;:]", unfolded, re.MULTILINE)) == 1
    assert str(attendee).lower() == f"mailto:{sent.to}".lower()
    assert email_key(sent.to) != ORGANISER
    assert attendee.params["CN"] == names[email_key(sent.to)]
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["RSVP"] == "TRUE"
    return vevent


# --- one delivery route per channel -------------------------------------------------------------


class Channel:
    """A transport and the real local server behind it; ``take()`` returns what arrived since the
    last call, parsed and layout-checked."""

    def __init__(self, kind: str, tmp_path: Path, clock: FakeClock, tls: Tls) -> None:
        self.kind = kind
        self.clock = clock
        self.store_url = f"sqlite:///{tmp_path / 'invitations.db'}"
        self.apps: list[App] = []
        self.smtp: SmtpSink | None = None
        self.sendgrid: SendGridSink | None = None
        self.tls = tls
        self._seen = 0
        if kind == "smtp":
            self.smtp = SmtpSink().start()
        if kind.startswith("sendgrid"):
            self.sendgrid = SendGridSink(api_key=API_KEY, log=tmp_path / "sg.jsonl").start()
        if kind == "sendgrid-relay":
            self.smtp = SmtpSink(auth=("apikey", API_KEY), tls_context=tls.server,
                                 require_starttls=True).start()
        self._outbox: Path | None = None

    def app(self, project_dir: Path) -> App:
        """A fresh App over the same store (as a new `comms send` would be), project reloaded."""
        flags: dict[str, Any] = {"database_url": self.store_url, "concurrency": 4}
        transport = None
        if self.kind == "smtp":
            assert self.smtp is not None
            flags.update(transport="smtp", smtp_host=self.smtp.host, smtp_port=self.smtp.port)
        elif self.kind == "sendgrid-api":
            assert self.sendgrid is not None
            flags.update(transport="sendgrid", sendgrid_api_key=API_KEY,
                         sendgrid_host=self.sendgrid.url)
        elif self.kind == "sendgrid-relay":
            assert self.sendgrid is not None and self.smtp is not None
            flags.update(transport="sendgrid", sendgrid_api_key=API_KEY,
                         sendgrid_host=self.sendgrid.url, sendgrid_invites="smtp-relay",
                         sendgrid_smtp_host=self.smtp.host, sendgrid_smtp_port=self.smtp.port)
            # make_transport has no way to take a test CA: build the transport as it would.
            transport = SendGridTransport(
                API_KEY, host=self.sendgrid.url, invites="smtp-relay", relay_host=self.smtp.host,
                relay_port=self.smtp.port, relay_ssl_context=self.tls.client)
        app = App(load_settings(project_dir, **flags), clock=self.clock, transport=transport)
        app.project.raise_errors()
        app.sync_directory()
        self._outbox = app.settings.resolved_outbox_dir
        self.apps.append(app)
        return app

    def take(self) -> list[Sent]:
        if self.kind == "outbox":
            assert self._outbox is not None
            files = sorted(self._outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
            fresh, self._seen = files[self._seen:], len(files)
            return [from_mime(path.read_bytes()) for path in fresh]
        if self.kind == "sendgrid-api":
            assert self.sendgrid is not None
            fresh_records = self.sendgrid.messages[self._seen:]
            self._seen = len(self.sendgrid.messages)
            return [from_sendgrid(record) for record in fresh_records]
        assert self.smtp is not None
        received = self.smtp.messages[self._seen:]
        self._seen = len(self.smtp.messages)
        sent = []
        for message in received:
            parsed = from_mime(message.data)
            assert message.rcpt_tos == [parsed.to]
            sent.append(parsed)
        if self.kind == "sendgrid-relay":
            assert self.sendgrid is not None and self.sendgrid.messages == []
            assert set(self.smtp.logins) == {"apikey"}
        return sent

    def close(self) -> None:
        for app in self.apps:
            app.close()
        if self.smtp is not None:
            self.smtp.stop()
        if self.sendgrid is not None:
            self.sendgrid.stop()


@pytest.fixture(params=CHANNELS)
def channel(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
            tls: Tls) -> Iterator[Channel]:
    chan = Channel(request.param, tmp_path, clock, tls)
    try:
        yield chan
    finally:
        chan.close()


# --- helpers over the example project -----------------------------------------------------------


def workshops(app: App) -> tuple[Campaign, Step]:
    campaign = app.project.campaign("workshops")
    step = campaign.step("invite")
    assert step is not None
    return campaign, step


def names(app: App) -> dict[str, str]:
    return {p.key: p.full_name for p in app.project.directory.people}


def audience(app: App) -> set[str]:
    return {p.key for p in app.project.directory.people
            if p.role == "manager" and "primary-care" in p.tags and p.key != ORGANISER}


def edit(project_dir: Path, old: str, new: str) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def decline(app: App, address: str) -> None:
    st = tables.stakeholders
    with app.store.write() as conn:
        person = conn.execute(select(st.c.id).where(st.c.email == email_key(address))).scalar()
        assert person is not None
        record_answer(conn, campaign="workshops", event="ws1", stakeholder_id=int(person),
                      answer="declined", source="manual", now=app.clock.now())


def send_invites(channel: Channel, project_dir: Path) -> tuple[App, list[Sent]]:
    app = channel.app(project_dir)
    campaign, step = workshops(app)
    summary = app.dispatcher().send(campaign, step)
    assert (summary.sent, summary.failed) == (AUDIENCE, 0), summary.failures
    return app, channel.take()


# --- the rules ---------------------------------------------------------------------------------


def test_invitation_follows_every_rule(channel: Channel, project_dir: Path,
                                       clock: FakeClock) -> None:
    app, sent = send_invites(channel, project_dir)
    assert len(sent) == AUDIENCE
    assert {email_key(s.to) for s in sent} == audience(app)
    for one in sent:
        check(one, method="REQUEST", sequence=0, names=names(app), stamp=clock.now())
        assert b"URL" not in one.ics.replace(b"\r\n ", b"")  # not an online event
    again = app.dispatcher().send(*workshops(app))
    assert (again.sent, again.already_sent) == (0, AUDIENCE)
    assert channel.take() == []


def test_update_then_cancel_sequence(channel: Channel, project_dir: Path,
                                     clock: FakeClock) -> None:
    app, first = send_invites(channel, project_dir)
    decliner = sorted(s.to for s in first)[0]
    decline(app, decliner)
    everyone = {email_key(s.to) for s in first}  # the decliner's calendar holds the event too

    # the start moves: an update to everyone who was sent the invitation, the decliner included
    clock.advance(days=2)
    edit(project_dir, "starts: 2027-01-14 09:30", "starts: 2027-01-21 10:00")
    edit(project_dir, "ends: 2027-01-14 16:30", "ends: 2027-01-21 16:30")
    app = channel.app(project_dir)
    summaries = Service(app).send_now(app.project.campaign("workshops"), []).summaries
    assert [(s.step, s.sent, s.failed) for s in summaries] == [("ws1:update", AUDIENCE, 0)]
    updates = channel.take()
    assert {email_key(s.to) for s in updates} == everyone
    new_start = dt.datetime(2027, 1, 21, 10, 0, tzinfo=LONDON)
    new_end = dt.datetime(2027, 1, 21, 16, 30, tzinfo=LONDON)
    for one in updates:
        check(one, method="REQUEST", sequence=1, names=names(app), stamp=clock.now(),
              start=new_start, end=new_end)

    # a second run has nothing to say
    clock.advance(hours=1)
    again = Service(channel.app(project_dir)).send_now(app.project.campaign("workshops"), []).summaries
    assert sum(s.sent for s in again) == 0
    assert channel.take() == []

    # cancelled in the YAML: METHOD:CANCEL to the same people, SEQUENCE 2
    clock.advance(days=1)
    edit(project_dir, "    capacity: 40\n", "    capacity: 40\n    status: cancelled\n")
    app = channel.app(project_dir)
    summaries = Service(app).send_now(app.project.campaign("workshops"), []).summaries
    assert [(s.step, s.sent) for s in summaries] == [("ws1:cancelled", AUDIENCE)]
    cancels = channel.take()
    assert {email_key(s.to) for s in cancels} == everyone
    for one in cancels:
        check(one, method="CANCEL", sequence=2, names=names(app), stamp=clock.now(),
              start=new_start, end=new_end)
        assert one.calendar.walk("VALARM") == []

    # and once cancelled, nothing more: no repeat, and the invite step refuses to send
    app = channel.app(project_dir)
    campaign, step = workshops(app)
    after = Service(app).send_now(campaign, [step]).summaries
    assert sum(s.sent for s in after) == 0
    assert after[-1].failures == ["the event is cancelled: no invitations are sent"]
    assert channel.take() == []


CANCEL_STEP = """\
  - id: cancel
    kind: cancel
    event: ws1
    template: events/cancelled
    subject: "Cancelled: {{ event.title }}"
    now: true
"""


def test_a_cancel_step_sends_method_cancel(channel: Channel, project_dir: Path,
                                           clock: FakeClock) -> None:
    cancel_step_project(project_dir)
    app, first = send_invites(channel, project_dir)
    decliner = sorted(s.to for s in first)[-1]
    decline(app, decliner)
    clock.advance(days=3)
    campaign = app.project.campaign("workshops")
    cancel = campaign.step("cancel")
    assert cancel is not None
    summaries = Service(app).send_now(campaign, [cancel]).summaries
    assert [(s.step, s.sent) for s in summaries] == [("cancel", AUDIENCE)]
    cancels = channel.take()  # the decliner's calendar holds the event too: it is cancelled
    assert {email_key(s.to) for s in cancels} == {email_key(s.to) for s in first}
    for one in cancels:
        check(one, method="CANCEL", sequence=1, names=names(app), stamp=clock.now())
    assert app.dispatcher().send(campaign, cancel).sent == 0
    assert channel.take() == []


def cancel_step_project(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + CANCEL_STEP, encoding="utf-8")
    for suffix in ("html", "txt"):
        (project_dir / "templates" / "events" / f"cancelled.{suffix}.j2").write_text(
            "Dear {{ stakeholder.first_name }}, {{ event.title }} will not take place.\n"
            "{{ unsubscribe_url }}\n", encoding="utf-8")


def test_the_cycle_after_a_cancel_step_sends_nothing(project_dir: Path, clock: FakeClock,
                                                     tmp_path: Path, tls: Tls) -> None:
    cancel_step_project(project_dir)
    channel = Channel("outbox", tmp_path, clock, tls)
    try:
        app, _ = send_invites(channel, project_dir)
        campaign = app.project.campaign("workshops")
        cancel = campaign.step("cancel")
        assert cancel is not None
        assert sum(s.sent for s in Service(app).send_now(campaign, [cancel]).summaries) == AUDIENCE
        channel.take()
        clock.advance(hours=1)
        again = Service(channel.app(project_dir)).send_now(campaign, [cancel]).summaries
        assert [(s.step, s.sent) for s in again] == [("cancel", 0)]
        assert channel.take() == []
    finally:
        channel.close()


ORGANISER_ROW = ("events@sel-learning.example,Events,Team,manager,SEL Learning Alliance,,"
                 "Events Officer,primary-care\n")


def test_an_organiser_in_the_audience_is_not_invited_and_validate_says_so(
        project_dir: Path, clock: FakeClock, tmp_path: Path, tls: Tls) -> None:
    csv = project_dir / "stakeholders" / "sel-directory.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + ORGANISER_ROW, encoding="utf-8")
    channel = Channel("outbox", tmp_path, clock, tls)
    try:
        app, sent = send_invites(channel, project_dir)
        assert ORGANISER in {p.key for p in app.project.directory.people}
        assert ORGANISER not in {email_key(s.to) for s in sent}
        assert len(sent) == AUDIENCE
    finally:
        channel.close()
    result = CliRunner().invoke(cli, ["validate", "--project", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert (f"warning: steps[0]: organiser {ORGANISER} of event 'ws1' is in the audience: they "
            "will not be sent their own invitation") in result.stderr


def test_an_online_event_has_url(project_dir: Path, clock: FakeClock, tmp_path: Path,
                                 tls: Tls) -> None:
    link = "https://meet.sel-learning.example/ws1?pwd=a1b2"
    edit(project_dir, "    capacity: 40\n", f"    capacity: 40\n    online_url: {link}\n")
    channel = Channel("outbox", tmp_path, clock, tls)
    try:
        app, sent = send_invites(channel, project_dir)
    finally:
        channel.close()
    for one in sent:
        vevent = check(one, method="REQUEST", sequence=0, names=names(app), stamp=clock.now())
        assert str(vevent["URL"]) == link
        assert str(vevent["DESCRIPTION"]).endswith(f"Join online: {link}")


def test_icaljs_reads_every_invitation_the_example_project_sends(
        project_dir: Path, tmp_path: Path, clock: FakeClock) -> None:
    """Each .ics the example project's invitation step writes, as Mozilla ical.js reads it:
    the times zoneinfo gives, and London's spring-change instant converted right."""
    from tests.icaljs import icaljs_instants

    app = App(load_settings(project_dir, database_url=f"sqlite:///{tmp_path / 'i.db'}"),
              clock=clock)
    app.sync_directory()
    campaign = app.project.campaign("workshops")
    invite = campaign.step("invite")
    assert invite is not None and app.dispatcher().send(campaign, invite).sent == AUDIENCE
    calendars = []
    for path in sorted(app.settings.resolved_outbox_dir.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        calendars += [part.get_payload(decode=True) for part in msg.walk()
                      if part.get_content_type() == "text/calendar"]
    assert len(calendars) == AUDIENCE
    spring = dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC)
    results = icaljs_instants(calendars, [spring])
    event = campaign.event("ws1")
    assert event is not None
    starts = event.starts.replace(tzinfo=LONDON).astimezone(dt.UTC)
    ends = event.ends.replace(tzinfo=LONDON).astimezone(dt.UTC)
    for result in results:
        (read,) = result["events"]
        assert (read["start"], read["end"]) == (f"{starts:%Y-%m-%dT%H:%M:%SZ}",
                                                f"{ends:%Y-%m-%dT%H:%M:%SZ}")
        zone = result["zones"]["Europe/London"]
        assert zone["locals"] == zone["converted"] == ["2027-03-28T02:30:00"]
    app.close()

"""Calendar answers handled as a calendar server would: inbound mail authenticated (or refused),
answers ordered by SEQUENCE and DTSTAMP (RFC 5546), only invitees answer, COUNTER and TNEF
never dropped in silence, and every calendar holding the event kept right."""

from __future__ import annotations

import base64
import email
import email.policy
import time
from datetime import UTC, datetime, timedelta
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from starlette.testclient import TestClient

from comms.app import App
from comms.service import Service
from comms.settings import load_settings
from comms.store import tables
from comms.tracking.mailbox import import_path
from comms.web import create_app
from tests.conftest import FakeClock
from tests.tracking.test_mailbox import (
    GEORGE,
    ORGANISER,
    RHYS,
    TARIQ,
    TITLE,
    UID,
    _calendar_part,
    gmail_ics,
    gmail_reply,
    outlook_ics,
    outlook_reply,
    rows_by_email,
)

AUTH = ("parse", "a-long-random-parse-password")


def make_app(project_dir: Path, store_url: str, clock: FakeClock, **flags: Any) -> App:
    """The example project with the workshop invitation sent to every manager."""
    app = App(load_settings(project_dir, database_url=store_url, **flags), clock=clock)
    app.sync_directory()
    campaign = app.project.campaign("workshops")
    invite = campaign.step("invite")
    assert invite is not None
    assert app.dispatcher().send(campaign, invite).sent == 80
    clock.advance(days=1)
    return app


def state(app: App) -> tuple[int, int, dict[str, str]]:
    """Responses and RSVP rows stored, and everyone's status."""
    with app.store.read() as conn:
        responses = conn.execute(select(func.count()).select_from(tables.responses)).scalar_one()
        rsvps = conn.execute(select(func.count()).select_from(tables.rsvps)).scalar_one()
    return int(responses), int(rsvps), {e: r["status"] for e, r in rows_by_email(app).items()}


def post(client: TestClient, raw: bytes, **kw: Any) -> Any:
    return client.post("/inbound/sendgrid", data={"to": ORGANISER}, files={"email": (None, raw)},
                       **kw)


def plain_reply_to(app: App) -> bytes:
    """A forged "I'm in" answering a real Message-ID (known, for instance, from a forward)."""
    with app.store.read() as conn:
        uid = conn.execute(select(tables.sends.c.uid).limit(1)).scalar_one()
    msg = MIMEText("Count me in!", "plain", "utf-8")
    msg["From"], msg["To"] = "attacker@evil.example", ORGANISER
    msg["In-Reply-To"] = f"<{uid}@sel-learning.example>"
    return msg.as_bytes()


class Signer:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, at: datetime) -> dict[str, str]:
        timestamp = str(int(at.timestamp()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


def multipart(raw: bytes) -> tuple[bytes, str]:
    """The form body Inbound Parse posts, as bytes, with its content type (for signing)."""
    boundary = "inbound-parse-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{ORGANISER}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n").encode()
    body += raw + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# --- 1. inbound mail is authenticated, or refused ---------------------------------------------


def test_with_no_policy_configured_inbound_mail_is_refused_unread(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    before = state(app)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        for raw in (outlook_reply(TARIQ, "ACCEPTED"), plain_reply_to(app)):
            refused = post(client, raw)
            assert refused.status_code == 503
            assert "COMMS_SENDGRID_INBOUND_PUBLIC_KEY" in refused.json()["error"]
    assert state(app) == before
    app.close()


def test_basic_credentials_are_required_and_checked(project_dir: Path, store_url: str,
                                                    clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock, inbound_basic_auth=":".join(AUTH))
    before = state(app)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        for raw in (outlook_reply(TARIQ, "ACCEPTED"), plain_reply_to(app)):
            assert post(client, raw).status_code == 401
            assert post(client, raw, auth=("parse", "wrong")).status_code == 401
            assert post(client, raw, auth=("other", AUTH[1])).status_code == 401
        assert state(app) == before
        assert post(client, outlook_reply(TARIQ, "ACCEPTED"), auth=AUTH).json() == {
            "recorded": 1, "unmatched": 0}
    assert state(app)[2][TARIQ[1].lower()] == "accepted"
    app.close()


def test_signed_posts_are_verified_before_anything_is_parsed(project_dir: Path, store_url: str,
                                                             clock: FakeClock) -> None:
    signer, forger = Signer(), Signer()
    app = make_app(project_dir, store_url, clock, sendgrid_inbound_public_key=signer.public)
    before = state(app)
    body, content_type = multipart(outlook_reply(TARIQ, "ACCEPTED"))
    plain, _ = multipart(plain_reply_to(app))
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        def send(data: bytes, headers: dict[str, str]) -> int:
            return client.post("/inbound/sendgrid", content=data,
                               headers={"Content-Type": content_type, **headers}).status_code

        for data in (body, plain):
            assert send(data, {}) == 403  # unsigned
            assert send(data, forger.headers(data, clock.now())) == 403  # another key
            assert send(data, signer.headers(data + b"x", clock.now())) == 403  # changed
            assert send(data, signer.headers(data, clock.now() - timedelta(minutes=6))) == 403
        assert state(app) == before
        assert send(body, signer.headers(body, clock.now())) == 200
    assert state(app)[2][TARIQ[1].lower()] == "accepted"
    app.close()


def test_inbound_bodies_are_capped_and_deep_nesting_is_a_400(project_dir: Path, store_url: str,
                                                            clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock, inbound_basic_auth=":".join(AUTH))
    assert app.settings.inbound_max_bytes == 1_000_000  # replies are kilobytes
    before = state(app)
    deep = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + b"".join(
        f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n".encode()
        for i in range(3000))
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        assert post(client, b"x" * 1_100_000, auth=AUTH).status_code == 413
        assert post(client, deep, auth=AUTH).status_code in (200, 400)
        many = "\r\n".join(["BEGIN:VCALENDAR", "METHOD:REPLY"] + ["BEGIN:VEVENT", "END:VEVENT"]
                           * 500 + ["END:VCALENDAR"])
        msg = MIMEMultipart("mixed")
        msg["From"] = TARIQ[1]
        msg.attach(_calendar_part(many, method="REPLY"))
        assert post(client, msg.as_bytes(), auth=AUTH).json() == {"recorded": 0, "unmatched": 1}
    assert state(app)[:2] == before[:2]
    app.close()


# --- 2. answers follow RFC 5546 ordering ------------------------------------------------------


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock) -> Any:
    app = make_app(project_dir, store_url, clock)
    yield app
    app.close()


def imported(app: App, tmp_path: Path, *mails: bytes) -> str:
    folder = tmp_path / f"mail-{time.monotonic_ns()}"
    folder.mkdir()
    for n, raw in enumerate(mails):
        (folder / f"{n:02d}.eml").write_bytes(raw)
    return import_path(app.rsvps, folder).line()


def test_an_answer_for_an_older_sequence_is_stale(app: App, tmp_path: Path,
                                                  clock: FakeClock) -> None:
    move = app.project.root / "campaigns" / "workshops.yaml"
    move.write_text(move.read_text().replace("starts: 2027-01-14 09:30", "starts: 2027-01-14 10:00"))
    moved = App(app.settings, clock=clock)
    assert [s.sent for s in Service(moved).send_now(moved.project.campaign("workshops"), [])
            .summaries] == [80]  # the update: everyone's calendar now holds SEQUENCE 1
    line = imported(moved, tmp_path, outlook_reply(TARIQ, "ACCEPTED", sequence=1))
    assert line == "1 message(s): 1 answer(s) recorded, 0 not matched"
    late = outlook_reply(TARIQ, "DECLINED", sequence=0)  # written before the update arrived
    assert imported(moved, tmp_path, late) == (
        "1 message(s): 0 answer(s) recorded, 1 stale, 0 not matched")
    row = rows_by_email(moved)[TARIQ[1].lower()]
    assert (row["status"], row["reconfirm"]) == ("accepted", False)
    george = rows_by_email(moved)[GEORGE[1].lower()]
    assert george["status"] == "no response"
    moved.close()


def test_after_a_reschedule_the_roster_asks_for_reconfirmation(app: App, tmp_path: Path,
                                                               clock: FakeClock) -> None:
    imported(app, tmp_path, outlook_reply(TARIQ, "ACCEPTED"))
    move = app.project.root / "campaigns" / "workshops.yaml"
    move.write_text(move.read_text().replace("starts: 2027-01-14 09:30", "starts: 2027-01-21 09:30")
                    .replace("ends: 2027-01-14 16:30", "ends: 2027-01-21 16:30"))
    moved = App(app.settings, clock=clock)
    Service(moved).send_now(moved.project.campaign("workshops"), [])
    row = rows_by_email(moved)[TARIQ[1].lower()]
    assert (row["status"], row["reconfirm"]) == ("accepted", True)  # for the old time
    moved.close()


def test_an_older_dtstamp_arriving_later_changes_nothing(app: App, tmp_path: Path) -> None:
    newer = gmail_reply(TARIQ, "DECLINED")  # DTSTAMP 10:30
    older = outlook_reply(TARIQ, "ACCEPTED")  # DTSTAMP 10:15, delivered after
    assert imported(app, tmp_path, newer).endswith("1 answer(s) recorded, 0 not matched")
    assert "1 stale" in imported(app, tmp_path, older)
    row = rows_by_email(app)[TARIQ[1].lower()]
    assert (row["status"], row["answered_at"]) == (
        "declined", datetime(2026, 12, 2, 10, 30, tzinfo=UTC))


def test_a_folder_is_applied_in_dtstamp_order_not_file_name_order(
        project_dir: Path, store_url: str, clock: FakeClock, tmp_path: Path) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text().replace("capacity: 40", "capacity: 1"))
    app = make_app(project_dir, store_url, clock)
    early = outlook_reply(GEORGE, "ACCEPTED")  # 10:15: asked first, gets the one seat
    late = gmail_reply(TARIQ, "ACCEPTED")  # 10:30
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a-tariq.eml").write_bytes(late)  # sorts first by name
    (folder / "b-george.eml").write_bytes(early)
    assert import_path(app.rsvps, folder).recorded == ["workshops/ws1: accepted",
                                                       "workshops/ws1: waitlisted"]
    rows = rows_by_email(app)
    assert (rows[GEORGE[1].lower()]["status"], rows[TARIQ[1].lower()]["status"]) == (
        "accepted", "waitlisted")
    app.close()


def test_link_and_calendar_answers_meet_by_time(app: App, tmp_path: Path,
                                                clock: FakeClock) -> None:
    invitation, _ = app.rsvps.by_token(_token_for(app, TARIQ[1], "declined"))
    clock.current = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)  # after the calendar reply's stamp
    app.rsvps.answer(invitation, "declined", "link")
    assert "1 stale" in imported(app, tmp_path, outlook_reply(TARIQ, "ACCEPTED"))
    assert rows_by_email(app)[TARIQ[1].lower()]["status"] == "declined"


# --- 3. only the invited answer ---------------------------------------------------------------


def test_a_directory_member_never_invited_is_not_invited(project_dir: Path, store_url: str,
                                                         clock: FakeClock,
                                                         tmp_path: Path) -> None:
    app = make_app(project_dir, store_url, clock)
    mentor = next(p for p in app.project.directory.people if p.role == "mentor")
    before = state(app)
    line = imported(app, tmp_path, outlook_reply((mentor.full_name, mentor.email), "ACCEPTED"))
    assert line == "1 message(s): 0 answer(s) recorded, 1 not invited, 0 not matched"
    after = state(app)
    assert after[1] == before[1] and mentor.key not in after[2]  # no seat, no roster row
    app.close()


def test_an_alias_attendee_is_matched_by_the_from_address(app: App, tmp_path: Path) -> None:
    name, address = TARIQ
    ics = outlook_ics(name, "t.nowak@bexley-ct.nhs.example", "TENTATIVE")  # an alias
    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr((name, address))
    msg.attach(MIMEText("", "plain"))
    msg.attach(_calendar_part(ics, method="REPLY"))
    assert imported(app, tmp_path, msg.as_bytes()).endswith("1 answer(s) recorded, 0 not matched")
    assert rows_by_email(app)[address.lower()]["status"] == "tentative"


def test_a_colleague_may_answer_on_behalf_a_stranger_may_not(app: App, tmp_path: Path) -> None:
    assistant = next(p for p in app.project.directory.people
                     if p.organisation == "Bexley Care Trust" and p.role != "manager")
    outsider = next(p for p in app.project.directory.people
                    if p.organisation not in ("", "Bexley Care Trust") and p.role == "mentor")
    ics = outlook_ics(*GEORGE, "ACCEPTED")
    for sender, expected in ((outsider, "0 answer(s) recorded, 1 not matched"),
                             (assistant, "1 answer(s) recorded, 0 not matched")):
        msg = MIMEMultipart("alternative")
        msg["From"] = formataddr((sender.full_name, sender.email))
        msg.attach(MIMEText("", "plain"))
        msg.attach(_calendar_part(ics, method="REPLY"))
        assert imported(app, tmp_path, msg.as_bytes()).endswith(expected)
    row = rows_by_email(app)[GEORGE[1].lower()]
    assert (row["status"], row["source"]) == ("accepted", "on behalf")


# --- realistic replies ------------------------------------------------------------------------


def apple_reply(person: tuple[str, str], partstat: str) -> bytes:
    """Apple Calendar: text/plain, and the REPLY as an .ics attachment only (no method= part)."""
    name, address = person
    ics = gmail_ics(name, address, partstat).replace("\r\n", "\n")  # bare LF line ends
    msg = MIMEMultipart("mixed")
    msg["From"], msg["To"] = formataddr((name, address)), ORGANISER
    msg["Subject"] = f"Invitation: {TITLE} ({partstat.title()})"
    msg.attach(MIMEText(f"{name} has {partstat.lower()} your invitation.", "plain"))
    part = MIMEApplication(ics.encode(), "ics", name="iCal-20261202-103000.ics")
    part.add_header("Content-Disposition", "attachment", filename="iCal-20261202-103000.ics")
    msg.attach(part)
    return msg.as_bytes()


def odd_outlook(person: tuple[str, str], partstat: str) -> bytes:
    """Outlook with an unquoted comma in CN (``CN=Nowak, Tariq``) and a MAILTO in capitals."""
    name, address = person
    last, first = name.split(" ", 1)[::-1][0], name.split(" ", 1)[0]
    ics = outlook_ics(name, address, partstat).replace(f"CN={name}", f"CN={last}, {first}")
    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr((name, address))
    msg.attach(MIMEText("", "plain"))
    msg.attach(_calendar_part(ics, method="REPLY"))
    return msg.as_bytes()


@pytest.mark.parametrize("partstat", ["ACCEPTED", "DECLINED", "TENTATIVE"])
@pytest.mark.parametrize("client", [outlook_reply, gmail_reply, apple_reply, odd_outlook],
                         ids=["outlook", "gmail", "apple", "outlook-unquoted-cn"])
def test_real_clients_replies_land_in_the_roster(app: App, tmp_path: Path, client: Any,
                                                 partstat: str) -> None:
    assert imported(app, tmp_path, client(RHYS, partstat)) == (
        "1 message(s): 1 answer(s) recorded, 0 not matched")
    row = rows_by_email(app)[RHYS[1].lower()]
    assert (row["status"], row["source"]) == (partstat.lower(), "calendar")


# --- 4. nothing is dropped in silence ----------------------------------------------------------


def test_a_counter_is_kept_as_a_proposed_time(app: App, tmp_path: Path) -> None:
    ics = outlook_ics(*TARIQ, "TENTATIVE").replace("METHOD:REPLY", "METHOD:COUNTER").replace(
        "DTSTART;TZID=GMT Standard Time:20270114T093000", "DTSTART:20270115T100000Z").replace(
        "DTEND;TZID=GMT Standard Time:20270114T163000", "DTEND:20270115T160000Z")
    msg = MIMEMultipart("alternative")
    msg["From"] = formataddr(TARIQ)
    msg.attach(MIMEText("Could we do Friday instead?", "plain"))
    msg.attach(_calendar_part(ics, method="COUNTER"))
    assert imported(app, tmp_path, msg.as_bytes()).endswith("1 answer(s) recorded, 0 not matched")
    row = rows_by_email(app)[TARIQ[1].lower()]
    assert row["status"] == "no response"  # the organiser decides; nothing changes
    assert row["proposed"].startswith("2027-01-15 10:00 to 2027-01-15 16:00")


def test_a_tnef_only_reply_is_listed_as_not_understood(app: App, tmp_path: Path) -> None:
    msg = MIMEMultipart("mixed")
    msg["From"], msg["Message-ID"] = formataddr(TARIQ), "<tnef-1@bexley-ct.nhs.example>"
    msg.attach(MIMEText("Accepted: " + TITLE, "plain"))
    tnef = MIMEApplication(b"\x78\x9f\x3e\x22" + b"\x00" * 64, "ms-tnef", name="winmail.dat")
    tnef.add_header("Content-Disposition", "attachment", filename="winmail.dat")
    msg.attach(tnef)
    folder = tmp_path / "tnef"
    folder.mkdir()
    (folder / "reply.eml").write_bytes(msg.as_bytes())
    result = import_path(app.rsvps, folder)
    assert result.line() == "1 message(s): 0 answer(s) recorded, 1 not understood, 0 not matched"
    assert result.not_understood == [f"{folder / 'reply.eml'}: an Outlook reply sent only as TNEF "
                                     "(winmail.dat), which holds no readable calendar answer"]


# --- 5. every calendar that holds the event is kept right -------------------------------------


def test_decliners_and_the_waitlisted_get_updates_cancellations_and_a_seat(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text().replace("capacity: 40", "capacity: 1"))
    app = make_app(project_dir, store_url, clock)
    ids = dict(_ids(app))
    keys = [TARIQ[1].lower(), GEORGE[1].lower(), RHYS[1].lower()]
    seated, decliner, waiting = (ids[k] for k in keys)
    outbox = app.settings.resolved_outbox_dir
    before = {p.name for p in outbox.glob("*.eml")}
    for person, answer in ((seated, "accepted"), (decliner, "declined"), (waiting, "accepted")):
        invitation = app.rsvps.by_reply(_reply(app, person, answer))
        app.rsvps.answer(invitation, answer, "link")  # type: ignore[arg-type]
    [notice] = _new(outbox, before)
    assert notice["to"] == keys[2] and "waiting list" in notice["subject"]
    assert (notice["method"], notice["status"]) == ("CANCEL", "CONFIRMED")  # their copy only
    move = app.project.root / "campaigns" / "workshops.yaml"
    move.write_text(move.read_text().replace("location: Lambeth PCT", "location: Southwark PCT"))
    moved = App(app.settings, clock=clock)
    before = {p.name for p in outbox.glob("*.eml")}
    Service(moved).send_now(moved.project.campaign("workshops"), [])
    updates = {n["to"]: n for n in _new(outbox, before)}
    assert set(keys) <= set(updates) and len(updates) == 80
    assert {updates[k]["method"] for k in keys} == {"REQUEST"}
    invitation = moved.rsvps.by_reply(_reply(moved, seated, "declined", sequence=1))
    before = {p.name for p in outbox.glob("*.eml")}
    moved.rsvps.answer(invitation, "declined", "link")  # the seat frees: the waiting one has it
    [promoted] = _new(outbox, before)
    assert (promoted["to"], promoted["method"], promoted["sequence"]) == (keys[2], "REQUEST", 1)
    cancel = move.read_text().replace("    capacity: 1\n", "    capacity: 1\n    status: cancelled\n")
    move.write_text(cancel)
    gone = App(app.settings, clock=clock)
    before = {p.name for p in outbox.glob("*.eml")}
    Service(gone).send_now(gone.project.campaign("workshops"), [])
    cancels = {n["to"]: n for n in _new(outbox, before)}
    assert set(keys) <= set(cancels) and {cancels[k]["method"] for k in keys} == {"CANCEL"}
    assert {cancels[k]["status"] for k in keys} == {"CANCELLED"}
    gone.close()


def test_an_offered_seat_lapses_and_passes_on(project_dir: Path, store_url: str,
                                              clock: FakeClock) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text().replace("capacity: 40", "capacity: 1\n    waitlist: "
                                             "{offer_hours: 48}"))
    app = make_app(project_dir, store_url, clock)
    ids = dict(_ids(app))
    first, second, third = (ids[k.lower()] for k in (TARIQ[1], GEORGE[1], RHYS[1]))
    for person in (first, second, third):
        app.rsvps.answer(app.rsvps.by_reply(_reply(app, person, "accepted")), "accepted", "link")
    app.rsvps.answer(app.rsvps.by_reply(_reply(app, first, "declined")), "declined", "link")
    rows = rows_by_email(app)
    assert rows[GEORGE[1].lower()]["status"] == "offered"
    assert rows[RHYS[1].lower()]["status"] == "waitlisted"
    clock.advance(hours=49)
    assert app.rsvps.expire_offers(app.project.campaign("workshops")) == [third]
    rows = rows_by_email(app)
    assert (rows[GEORGE[1].lower()]["status"], rows[RHYS[1].lower()]["status"]) == (
        "lapsed", "offered")
    app.rsvps.answer(app.rsvps.by_reply(_reply(app, third, "accepted")), "accepted", "link")
    assert rows_by_email(app)[RHYS[1].lower()]["status"] == "accepted"
    app.close()


@pytest.mark.random_uids
def test_each_store_gives_an_event_a_fresh_unguessable_uid(project_dir: Path, tmp_path: Path,
                                                            clock: FakeClock) -> None:
    uids = []
    for n in range(2):
        app = make_app(project_dir, f"sqlite:///{tmp_path / f'{n}.db'}", clock)
        with app.store.read() as conn:
            uids.append(conn.execute(select(tables.events.c.uid)).scalar_one())
        app.close()
    assert uids[0] != uids[1]
    assert all(u.startswith("workshops.ws1.") and u.endswith("@sel-learning.example")
               and len(u.split("@")[0].split(".")[-1]) == 16 for u in uids)


# --- helpers ----------------------------------------------------------------------------------


def _ids(app: App) -> list[tuple[str, int]]:
    with app.store.read() as conn:
        return [(e, i) for e, i in conn.execute(select(tables.stakeholders.c.email,
                                                       tables.stakeholders.c.id))]


def _reply(app: App, person: int, answer: str, sequence: int = 0) -> Any:
    from comms.tracking.replies import Reply

    with app.store.read() as conn:
        address = conn.execute(select(tables.stakeholders.c.email).where(
            tables.stakeholders.c.id == person)).scalar_one()
    return Reply(uid=UID, attendee_email=address, partstat=answer,  # type: ignore[arg-type]
                 sequence=sequence, dtstamp=app.clock.now())


def _token_for(app: App, address: str, answer: str) -> str:
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        uid = conn.execute(select(s.c.uid).join(st, st.c.id == s.c.stakeholder_id).where(
            st.c.email == address.lower(), s.c.step == "invite")).scalar_one()
        event = conn.execute(select(tables.events.c.ends_at)).scalar_one()
    return app.tokens.rsvp_url(uid, answer, event).rsplit("/", 1)[1]  # type: ignore[arg-type]


def _new(outbox: Path, before: set[str]) -> list[dict[str, Any]]:
    """The messages written since ``before``: recipient, subject, and the calendar's METHOD,
    STATUS and SEQUENCE."""
    from icalendar import Calendar

    out = []
    for path in sorted(outbox.glob("*.eml")):
        if path.name in before:
            continue
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        row: dict[str, Any] = {"to": str(msg["To"].addresses[0].addr_spec).lower(),
                               "subject": str(msg["Subject"]), "method": None}
        for part in msg.walk():
            if part.get_content_type() == "text/calendar":
                calendar = Calendar.from_ical(part.get_payload(decode=True))
                vevent = calendar.walk("VEVENT")[0]
                row.update(method=str(calendar["METHOD"]), status=str(vevent.get("STATUS")),
                           sequence=int(vevent.get("SEQUENCE", 0)))
        out.append(row)
    return out

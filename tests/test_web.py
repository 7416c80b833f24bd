"""The web app: RSVP pages (GET records nothing), one-click unsubscribe, inbound replies, capacity."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from starlette.testclient import TestClient

from comms import events
from comms.app import App
from comms.errors import StoreError
from comms.settings import load_settings
from comms.store import tables
from comms.web import create_app

from .conftest import FakeClock

PARSE_AUTH = ("parse", "a-long-random-parse-password")  # the credentials in the Parse URL
EVENT_UID = "workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example"
EVENT_END = datetime(2027, 1, 14, 16, 30, tzinfo=UTC)  # 16:30 in London, in winter


def make_app(project_dir: Path, store_url: str, clock: FakeClock, *, capacity: int | None = None,
             **flags: Any) -> App:
    """The example project with its workshop invitations sent to the outbox."""
    if capacity is not None:
        path = project_dir / "campaigns" / "workshops.yaml"
        path.write_text(path.read_text().replace("capacity: 40", f"capacity: {capacity}"))
    flags = {"inbound_basic_auth": ":".join(PARSE_AUTH), **flags}
    app = App(load_settings(project_dir, database_url=store_url, **flags), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    campaign = app.project.campaign("workshops")
    step = campaign.step("invite")
    assert step is not None
    assert app.dispatcher().send(campaign, step).sent == 80
    return app


def outbox(app: App, *, besides: set[str] | frozenset[str] = frozenset()
           ) -> list[email.message.EmailMessage]:
    """The messages in the outbox, but those whose file names are in ``besides``."""
    folder = app.settings.resolved_outbox_dir
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("*.eml")) if p.name not in besides]


def outbox_names(app: App) -> set[str]:
    return {p.name for p in app.settings.resolved_outbox_dir.glob("*.eml")}


def recipient(msg: email.message.EmailMessage) -> str:
    return str(msg["To"].addresses[0].addr_spec).lower()


def links(app: App) -> dict[str, dict[str, str]]:
    """Per invited address: the tokens of its accept/decline/tentative and unsubscribe links."""
    found: dict[str, dict[str, str]] = {}
    letters = {"a": "accepted", "d": "declined", "t": "tentative"}
    for msg in outbox(app):
        if not str(msg["Subject"]).startswith("Invitation:"):
            continue
        body = msg.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        tokens = {letters[t.split(".")[1]]: t for t in re.findall(r"/rsvp/([\w.-]+)", text)}
        tokens["unsubscribe"] = re.findall(r"/u/([\w.-]+)>", str(msg["List-Unsubscribe"]))[0]
        found[recipient(msg)] = tokens
    return found


def counts(app: App) -> tuple[int, int, int]:
    """Rows in rsvps, responses and suppressions."""
    with app.store.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()  # type: ignore[return-value]
                     for t in (tables.rsvps, tables.responses, tables.suppressions))


def statuses(app: App) -> dict[str, tuple[str, str]]:
    r, st = tables.rsvps, tables.stakeholders
    with app.store.read() as conn:
        rows = conn.execute(select(st.c.email, r.c.status, r.c.source)
                            .join(st, st.c.id == r.c.stakeholder_id)).all()
    return {row.email: (row.status, row.source) for row in rows}


def roster(app: App) -> dict[str, dict[str, Any]]:
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    return {row["email"].lower(): row for row in events.roster(app.store, campaign, event)}


def heading(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert found, html
    return found.group(1).strip()


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock) -> Iterator[App]:
    app = make_app(project_dir, store_url, clock)
    yield app
    app.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        yield client


@contextmanager
def running(app: App) -> Iterator[str]:
    """The web app under a real uvicorn server on a free loopback port; yields its base URL."""
    config = uvicorn.Config(create_app(app), host="127.0.0.1", port=0, access_log=False,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


# --- RSVP links ---------------------------------------------------------------------------------


def test_get_shows_the_page_and_records_nothing(app: App, client: TestClient) -> None:
    person, tokens = sorted(links(app).items())[0]
    before = counts(app)
    page = client.get(f"/rsvp/{tokens['accepted']}")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="en-GB">' in html
    assert heading(html) == "Confirm your answer"
    assert "Leading change in primary care — workshop 1" in html
    assert "Thursday 14 January 2027, 09:30 to 16:30" in html
    assert "Lambeth PCT, 1 Lower Marsh, London SE1 7NT" in html
    assert "you have not answered yet" in html
    assert "40 of 40 left" in html
    assert html.count("<form") == 1 and '<form method="post">' in html
    assert '<button type="submit">Yes, I will attend</button>' in html
    assert "<link" not in html and "<script" not in html and "src=" not in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "No, I cannot attend" in client.get(f"/rsvp/{tokens['declined']}").text
    assert "Maybe, I might attend" in client.get(f"/rsvp/{tokens['tentative']}").text
    client.get(f"/rsvp/{tokens['accepted']}")  # a scanner fetching it twice changes nothing either
    assert counts(app) == before
    assert person not in statuses(app)


def test_post_records_and_answering_again_changes_the_answer(app: App, client: TestClient) -> None:
    person, tokens = sorted(links(app).items())[0]
    done = client.post(f"/rsvp/{tokens['accepted']}")
    assert done.status_code == 200
    assert heading(done.text) == "You are coming"
    assert "39 of 40 left" in done.text
    assert statuses(app)[person] == ("accepted", "link")
    assert "you are coming" in client.get(f"/rsvp/{tokens['declined']}").text  # the answer so far

    assert heading(client.post(f"/rsvp/{tokens['declined']}").text) == "You have declined"
    assert statuses(app)[person] == ("declined", "link")
    assert heading(client.post(f"/rsvp/{tokens['tentative']}").text) == "Maybe"
    assert statuses(app)[person] == ("tentative", "link")
    assert heading(client.post(f"/rsvp/{tokens['accepted']}").text) == "You are coming"
    assert roster(app)[person]["status"] == "accepted"
    assert roster(app)[person]["source"] == "link"


def tampered(token: str) -> str:
    return ("x" if token[0] != "x" else "y") + token[1:]


def test_tampered_unknown_and_expired_links_get_4xx_and_record_nothing(
        app: App, client: TestClient, clock: FakeClock) -> None:
    _, tokens = sorted(links(app).items())[0]
    good = tokens["accepted"]
    unknown = app.tokens.rsvp_url("0" * 32, "accepted", EVENT_END).rpartition("/")[2]
    forged_signature = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    before = counts(app)
    cases = {tampered(good): 400, forged_signature: 400, "not-a-token": 400,
             good.rpartition(".")[0]: 400, unknown: 404}
    for token, status in cases.items():
        for method in ("GET", "POST"):
            response = client.request(method, f"/rsvp/{token}")
            assert response.status_code == status, (token, method)
            assert '<html lang="en-GB">' in response.text and "Nothing has been recorded" in response.text
    assert heading(client.get(f"/rsvp/{unknown}").text) == "We cannot find this invitation"
    assert heading(client.get(f"/rsvp/{tampered(good)}").text) == "This link is not valid"

    clock.current = EVENT_END + timedelta(minutes=1)
    for method in ("GET", "POST"):
        response = client.request(method, f"/rsvp/{good}")
        assert response.status_code == 410
        assert heading(response.text) == "This event is over"
    assert counts(app) == before


def test_capacity_waitlist_and_promotion(project_dir: Path, store_url: str,
                                         clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock, capacity=2)
    first, second, third = sorted(links(app).items())[:3]
    invitations = outbox_names(app)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        assert heading(client.post(f"/rsvp/{first[1]['accepted']}").text) == "You are coming"
        assert heading(client.post(f"/rsvp/{second[1]['accepted']}").text) == "You are coming"
        page = client.post(f"/rsvp/{third[1]['accepted']}")
        assert heading(page.text) == "You are on the waiting list"
        assert "all 2 taken" in page.text
        assert "all 2 taken" in client.get(f"/rsvp/{third[1]['accepted']}").text
        notices = outbox(app, besides=invitations)
        assert [(recipient(m), str(m["Subject"])) for m in notices] == [
            (third[0], "You are on the waiting list: Leading change in primary care — workshop 1")]

        seen = outbox_names(app)
        assert heading(client.post(f"/rsvp/{first[1]['declined']}").text) == "You have declined"
        promoted = outbox(app, besides=seen)
        assert [(recipient(m), str(m["Subject"])) for m in promoted] == [
            (third[0], "A place is yours: Leading change in primary care — workshop 1")]
    assert {p: s for p, (s, _) in statuses(app).items()} == {
        first[0]: "declined", second[0]: "accepted", third[0]: "accepted"}
    app.close()


def test_a_failing_notice_neither_loses_the_answer_nor_fails_the_page(
        project_dir: Path, store_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(project_dir, store_url, clock, capacity=1)
    first, second = sorted(links(app).items())[:2]

    def broken(*args: object) -> None:
        raise StoreError("store error: connection lost")

    monkeypatch.setattr(app, "notify", broken)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        client.post(f"/rsvp/{first[1]['accepted']}")
        page = client.post(f"/rsvp/{second[1]['accepted']}")
    assert page.status_code == 200
    assert heading(page.text) == "You are on the waiting list"
    assert statuses(app)[second[0]] == ("waitlisted", "link")
    app.close()


@pytest.mark.slow
def test_concurrent_accepts_never_overfill_the_event(project_dir: Path, store_url: str,
                                                     clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock, capacity=5)
    people = sorted(links(app).items())[:20]
    start = threading.Barrier(len(people))
    with running(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        def accept(tokens: dict[str, str]) -> tuple[int, str]:
            start.wait()
            response = http.post(f"/rsvp/{tokens['accepted']}")
            return response.status_code, heading(response.text)

        with ThreadPoolExecutor(len(people)) as pool:
            answers = list(pool.map(accept, [tokens for _, tokens in people]))
    assert Counter(answers) == {(200, "You are coming"): 5, (200, "You are on the waiting list"): 15}
    assert Counter(status for status, _ in statuses(app).values()) == {"accepted": 5, "waitlisted": 15}
    waitlist_notices = [m for m in outbox(app) if str(m["Subject"]).startswith("You are on the waiting")]
    assert len(waitlist_notices) == 15
    app.close()


# --- one-click unsubscribe ----------------------------------------------------------------------


def suppressions(app: App) -> list[tuple[str, str, str]]:
    s = tables.suppressions
    with app.store.read() as conn:
        return [tuple(row) for row in conn.execute(select(s.c.email, s.c.reason, s.c.source))]


def test_one_click_unsubscribe(app: App, client: TestClient) -> None:
    person, tokens = sorted(links(app).items())[0]
    url = f"/u/{tokens['unsubscribe']}"
    page = client.get(url)
    assert page.status_code == 200
    assert heading(page.text) == "Unsubscribe"
    assert '<button type="submit">Unsubscribe me</button>' in page.text
    assert suppressions(app) == []

    one_click = {"content": b"List-Unsubscribe=One-Click",
                 "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    done = client.post(url, **one_click)
    assert done.status_code == 200
    assert heading(done.text) == "You are unsubscribed"
    assert suppressions(app) == [(person, "unsubscribed", "one-click")]
    assert client.post(url, **one_click).status_code == 200
    assert client.get(url).status_code == 200
    assert suppressions(app) == [(person, "unsubscribed", "one-click")]

    for method in ("GET", "POST"):
        refused = client.request(method, f"/u/{tampered(tokens['unsubscribe'])}")
        assert refused.status_code == 400
        assert heading(refused.text) == "This link is not valid"
    rsvp_token = client.post(f"/u/{tokens['accepted']}")  # another purpose's token
    assert rsvp_token.status_code == 400
    assert len(suppressions(app)) == 1


# --- SendGrid Inbound Parse ---------------------------------------------------------------------


def outlook_reply(attendee: str, *, uid: str = EVENT_UID, partstat: str = "ACCEPTED",
                  sequence: int = 0) -> bytes:
    """A REPLY the way Outlook sends one: to the organiser, one ATTENDEE, the same UID/SEQUENCE."""
    ics = "\r\n".join([
        "BEGIN:VCALENDAR", "METHOD:REPLY",
        "PRODID:Microsoft Exchange Server 2010", "VERSION:2.0",
        "BEGIN:VEVENT",
        "ORGANIZER;CN=NMDI Events:mailto:events@sel-learning.example",
        f"ATTENDEE;PARTSTAT={partstat};CN=A Participant:mailto:{attendee}",
        "DESCRIPTION;LANGUAGE=en-GB:\\n",
        f"UID:{uid}",
        "SUMMARY;LANGUAGE=en-GB:Accepted: Leading change in primary care — workshop 1",
        "DTSTART;TZID=GMT Standard Time:20270114T093000",
        "DTEND;TZID=GMT Standard Time:20270114T163000",
        "CLASS:PUBLIC", "PRIORITY:5", "DTSTAMP:20261207T101500Z", "TRANSP:OPAQUE",
        "STATUS:CONFIRMED", f"SEQUENCE:{sequence}",
        "END:VEVENT", "END:VCALENDAR", ""])
    boundary = "_000_DB9PR01MB0001example_"
    return "\r\n".join([
        f"From: A Participant <{attendee}>",
        "To: NMDI Events <events@sel-learning.example>",
        "Subject: Accepted: Leading change in primary care - workshop 1",
        "Date: Mon, 7 Dec 2026 10:15:00 +0000",
        "Message-ID: <DB9PR01MB0001@outlook.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="us-ascii"',
        "",
        "",
        f"--{boundary}",
        'Content-Type: text/calendar; charset="utf-8"; method=REPLY',
        "Content-Transfer-Encoding: 8bit",
        "",
        ics,
        f"--{boundary}--",
        ""]).encode()


def parse_post(client: TestClient, raw: bytes) -> httpx.Response:
    """POST as SendGrid Inbound Parse does in raw mode (multipart/form-data)."""
    fields = {"to": "events@sel-learning.example", "from": "someone", "subject": "Accepted",
              "envelope": '{"to":["events@sel-learning.example"]}', "charsets": '{"email":"UTF-8"}',
              "SPF": "pass", "sender_ip": "192.0.2.1"}
    return client.post("/inbound/sendgrid", data=fields, files={"email": (None, raw)},
                       auth=PARSE_AUTH)


def test_outlook_reply_posted_by_inbound_parse_lands_in_the_roster(app: App,
                                                                   client: TestClient) -> None:
    person = sorted(links(app))[0]
    response = parse_post(client, outlook_reply(person.upper()))
    assert response.status_code == 200
    assert response.json() == {"recorded": 1, "unmatched": 0}
    row = roster(app)[person]
    assert (row["status"], row["source"]) == ("accepted", "calendar")

    declined = parse_post(client, outlook_reply(person, partstat="DECLINED"))
    assert declined.status_code == 200
    assert roster(app)[person]["status"] == "declined"


def test_replies_for_unknown_events_or_people_are_acknowledged(app: App,
                                                              client: TestClient) -> None:
    before = counts(app)
    person = sorted(links(app))[0]
    unknown_event = parse_post(client, outlook_reply(person, uid="nope.ws9@sel-learning.example"))
    assert unknown_event.status_code == 200
    assert unknown_event.json() == {"recorded": 0, "unmatched": 1}
    stranger = parse_post(client, outlook_reply("stranger@elsewhere.example"))
    assert stranger.status_code == 200
    assert stranger.json() == {"recorded": 0, "unmatched": 1}
    not_a_reply = parse_post(client, b"From: a@b.example\r\nSubject: hello\r\n\r\nJust mail.\r\n")
    assert not_a_reply.status_code == 200
    assert counts(app) == before


def test_inbound_refuses_oversize_and_missing_field(project_dir: Path, store_url: str,
                                                    clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock, inbound_max_bytes=4000)
    person = sorted(links(app))[0]
    before = counts(app)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        padded = outlook_reply(person).replace(b"Content-Type: text/plain; charset=\"us-ascii\"\r\n\r\n",
                                               b"Content-Type: text/plain\r\n\r\n" + b"x" * 5000)
        assert parse_post(client, padded).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it arrives
            for _ in range(10):
                yield b"y" * 1000

        streamed = client.post("/inbound/sendgrid", content=chunks(), auth=PARSE_AUTH,
                               headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413
        missing = client.post("/inbound/sendgrid", data={"to": "events@sel-learning.example"},
                              files={"text": (None, b"hello")}, auth=PARSE_AUTH)
        assert missing.status_code == 400
        assert "email" in missing.json()["error"]
        assert parse_post(client, outlook_reply(person)).status_code == 200  # under the limit
    assert counts(app)[0] == before[0] + 1
    app.close()


# --- the rest -----------------------------------------------------------------------------------


def test_healthz_and_unknown_pages(project_dir: Path, store_url: str, clock: FakeClock) -> None:
    token = "a-report-token-of-at-least-32-characters"
    app = make_app(project_dir, store_url, clock, report_token=token)
    client = TestClient(create_app(app), base_url=app.settings.base_url)
    assert set(client.get("/healthz").json()) == {"status", "version"}  # public: says nothing
    health = client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).json()
    assert health["status"] == "ok" and health["last_run"] is None
    # The clock stands at 2026-12-01 09:00 and nothing has run: briefing and launch are due now.
    due_now = {n["step"] for n in health["next"] if n["due"] == "2026-12-01T09:00:00+00:00"}
    assert due_now == {"briefing", "launch"}
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert heading(missing.text) == "Page not found"
    assert client.put("/rsvp/abc").status_code == 405
    app.close()


def test_logs_carry_no_addresses_or_tokens(app: App, client: TestClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    (person, tokens), (other, _) = sorted(links(app).items())[:2]
    caplog.set_level(logging.DEBUG)
    client.get(f"/rsvp/{tokens['accepted']}")
    client.post(f"/rsvp/{tokens['accepted']}")
    client.post(f"/rsvp/{tampered(tokens['declined'])}")
    client.post(f"/u/{tokens['unsubscribe']}")
    parse_post(client, outlook_reply(other))
    parse_post(client, outlook_reply("stranger@elsewhere.example"))
    # the server's logs (the test client's own httpx log shows the URLs it requested)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("comms", "uvicorn")))
    assert "POST /rsvp/{token} 200" in text
    for secret in [person, other, "stranger@elsewhere.example", *tokens.values()]:
        assert secret not in text.lower() and secret not in text

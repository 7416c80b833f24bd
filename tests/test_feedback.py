"""Feedback after an event: ``after: {event}`` timing, the people asked (attendees once a
sign-in sheet exists, else those who accepted), rating links (GET records nothing, POST
records, a later answer replaces the earlier) and ``comms events feedback``."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select
from starlette.testclient import TestClient

from comms import events
from comms.app import App
from comms.cli import cli
from comms.settings import load_settings
from comms.store import tables
from comms.web import create_app

from .conftest import FakeClock

AFTER_THE_WORKSHOP = datetime(2027, 1, 15, 9, 1, tzinfo=UTC)  # the next morning in the window


def make_app(project_dir: Path, store_url: str, clock: FakeClock) -> App:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    return app


def managers(app: App) -> list[str]:
    return sorted(p.key for p in app.project.directory.people if p.role == "manager"
                  and "primary-care" in p.tags)


def accept(app: App, emails: list[str]) -> None:
    from comms.store import rsvps

    with app.store.write() as conn:
        ids = {row.email: row.id for row in conn.execute(
            select(tables.stakeholders.c.email, tables.stakeholders.c.id))}
        for address in emails:
            rsvps.record_answer(conn, campaign="workshops", event="ws1",
                                stakeholder_id=ids[address], answer="accepted", source="manual",
                                now=app.clock.now())


def send_feedback(app: App) -> list[email.message.EmailMessage]:
    campaign = app.project.campaign("workshops")
    step = campaign.step("ws1-feedback")
    assert step is not None
    app.dispatcher().send(campaign, step)
    folder = app.settings.resolved_outbox_dir
    found = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in sorted(folder.glob("*.eml"))]
    return [m for m in found if str(m["Subject"]).startswith("How was")]


def test_after_an_event_is_timed_from_its_end_in_plan(project_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "workshops", "--format", "json",
                                      "--project", str(project_dir)],
                                env={"COMMS_NOW": "2026-12-01T09:00:00+00:00"})
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output) if r["step"] == "ws1-feedback"]
    # ws1 ends 16:30 on 14 January; two hours on is 18:30, outside the schedule's window
    # (09:00-17:30 on weekdays), so it goes when the window opens next.
    assert row["due"].startswith("2027-01-15T09:00:00")
    assert row["rule"] == "after event 'ws1' ends"


def test_feedback_goes_to_those_who_accepted_until_attendance_is_recorded(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    people = managers(app)
    accept(app, people[:3])
    clock.current = AFTER_THE_WORKSHOP
    sheet = project_dir / "sign-in.csv"
    sheet.write_text("email\n" + "\n".join([people[1], people[2], people[10]]) + "\n",
                     encoding="utf-8")
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    dry = app.dispatcher().send(campaign, campaign.step("ws1-feedback"),  # type: ignore[arg-type]
                                dry_run=True)
    assert sorted(dry.people) == people[:3]  # no sign-in sheet yet: those who accepted
    events.import_attendance(app.store, campaign, event, sheet, now=clock.now())
    sent = send_feedback(app)
    assert sorted(m["To"].addresses[0].addr_spec for m in sent) == [people[1], people[2],
                                                                     people[10]]
    app.close()


def rating_links(message: email.message.EmailMessage) -> dict[str, str]:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.findall(r"(\d): \S+/a/([\w.-]+)", body.get_content())
    return dict(found)


def test_a_rating_is_recorded_on_post_and_a_later_one_replaces_it(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    people = managers(app)
    accept(app, people[:4])
    clock.current = AFTER_THE_WORKSHOP
    sent = {m["To"].addresses[0].addr_spec: m for m in send_feedback(app)}
    assert sorted(sent) == people[:4]
    links = {person: rating_links(message) for person, message in sent.items()}
    assert sorted(links[people[0]]) == ["1", "2", "3", "4", "5"]
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        page = client.get(f"/a/{links[people[0]]['4']}")
        assert page.status_code == 200
        assert 'value="4" required checked' in page.text  # pre-selected
        assert "<textarea" in page.text
        with app.store.read() as conn:
            assert conn.execute(select(tables.feedback)).first() is None  # GET records nothing
        assert client.post(f"/a/{links[people[0]]['2']}", data={"rating": "2"}).status_code == 200
        done = client.post(f"/a/{links[people[0]]['4']}",
                           data={"rating": "5", "comment": "=HYPERLINK(\"x\") <b>great</b>"})
        assert done.status_code == 200 and "<b>" not in done.text
        assert client.post(f"/a/{links[people[1]]['3']}", data={"rating": "3"}).status_code == 200
        assert client.post(f"/a/{links[people[2]]['1']}",
                           data={"rating": "9"}).status_code == 400
    with app.store.read() as conn:
        rows = conn.execute(select(tables.feedback.c.rating)).scalars().all()
        answers = conn.execute(select(tables.responses.c.detail).where(
            tables.responses.c.kind == "feedback").order_by(tables.responses.c.id)).scalars().all()
    assert sorted(rows) == [3, 5]  # one answer per person, the latest
    assert answers == ["2", "5", "3"]  # and every answer kept
    result = CliRunner().invoke(cli, ["events", "feedback", "ws1", "--format", "json",
                                      "--project", str(project_dir)],
                                env={"COMMS_DATABASE_URL": store_url})
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["count"], summary["asked"], summary["response_rate"]) == (2, 4, 0.5)
    assert summary["mean"] == 4.0
    assert summary["distribution"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert summary["comments"] == [{"rating": 5, "comment": "=HYPERLINK(\"x\") <b>great</b>"}]
    assert sum(g["count"] for g in summary["by_group"]) == 2
    exported = CliRunner().invoke(cli, ["contacts", "export", people[0], "--project",
                                        str(project_dir)], env={"COMMS_DATABASE_URL": store_url})
    assert exported.exit_code == 0, exported.output
    held = json.loads(exported.output[exported.output.index("{"):])
    assert [(f["rating"], f["event"]) for f in held["feedback"]] == [(5, "ws1")]
    assert held["pairs"] and {p["as"] for p in held["pairs"]} == {"mentee"}
    as_csv = CliRunner().invoke(cli, ["events", "feedback", "ws1", "--format", "csv",
                                      "--project", str(project_dir)],
                                env={"COMMS_DATABASE_URL": store_url})
    assert "'=HYPERLINK" in as_csv.output  # formula-safe
    app.close()

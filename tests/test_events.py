"""Events in the store: SEQUENCE rules, roster, attendance, and send-time conditions on events."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import HttpUrl
from sqlalchemy import select

from comms._types import email_key
from comms.app import App
from comms.campaign import Campaign, Event, Person
from comms.cli import cli
from comms.errors import ConfigError, NotFound
from comms.events import find_event, import_attendance
from comms.service import Service
from comms.store import tables
from comms.store.events import EventState
from comms.store.events import sync as sync_event
from comms.store.rsvps import record_answer, seats_left

from .conftest import FakeClock
from .test_dispatch import make_app, outbox

UID = "workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example"
AUDIENCE = 80


def workshops(app: App) -> tuple[Campaign, Event]:
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    return campaign, event


def sync(app: App, event: Event, **kwargs: Any) -> EventState:
    campaign, _ = workshops(app)
    with app.store.write() as conn:
        return sync_event(conn, campaign, event, timezone="Europe/London", now=app.clock.now(),
                          **kwargs)


def stored(app: App) -> Any:
    e = tables.events
    with app.store.read() as conn:
        return conn.execute(select(e).where(e.c.campaign == "workshops", e.c.event == "ws1")).one()


# --- SEQUENCE -------------------------------------------------------------------------------


def test_first_sync_records_the_event_at_sequence_0(project_dir: Path, store_url: str,
                                                    clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    assert sync(app, event) == EventState(UID, 0, "confirmed", changed=False)
    assert sync(app, event) == EventState(UID, 0, "confirmed", changed=False)
    row = stored(app)
    assert (row.uid, row.sequence, row.status, row.capacity) == (UID, 0, "confirmed", 40)
    assert row.starts_at.replace(tzinfo=None) == datetime(2027, 1, 14, 9, 30)  # Europe/London
    app.close()


def test_what_attendees_must_know_raises_sequence_one_step_each(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    sync(app, event)
    changes: list[dict[str, Any]] = [
        {"starts": datetime(2027, 1, 14, 10, 0)},
        {"ends": datetime(2027, 1, 14, 17, 0)},
        {"location": "Southwark Council, 160 Tooley Street, London SE1 2QH"},
        {"online_url": HttpUrl("https://meet.sel-learning.example/ws1")},
        {"title": "Leading change in primary care — workshop 1 (moved)"},
        {"timezone": "Europe/Dublin"},
    ]
    for n, change in enumerate(changes, 1):
        event = event.model_copy(update=change)
        clock.advance(minutes=1)
        state = sync(app, event)
        assert (state.uid, state.sequence, state.changed) == (UID, n, True), change
        assert state.status == event.status
        again = sync(app, event)
        assert (again.sequence, again.changed) == (n, False), change
    app.close()


def test_cancelling_and_reinstating_raise_sequence(project_dir: Path, store_url: str,
                                                  clock: FakeClock,
                                                  request: pytest.FixtureRequest) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    sync(app, event)
    cancelled = event.model_copy(update={"status": "cancelled"})
    assert sync(app, cancelled) == EventState(UID, 1, "cancelled", changed=True)
    assert sync(app, cancelled) == EventState(UID, 1, "cancelled", changed=False)
    assert sync(app, event) == EventState(UID, 2, "confirmed", changed=True)  # told again
    app.close()


def test_status_cancelled_in_the_yaml_sends_the_cancellation(
        project_dir: Path, store_url: str, clock: FakeClock,
        request: pytest.FixtureRequest) -> None:
    app = invited_app(project_dir, store_url, clock)
    app.close()
    path = project_dir / "campaigns" / "workshops.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("    capacity: 40\n", "    capacity: 40\n    status: cancelled\n"),
                    encoding="utf-8")
    app = make_app(project_dir, store_url, clock)
    summaries = Service(app).send_now(app.project.campaign("workshops"), []).summaries
    assert [(s.step, s.sent) for s in summaries] == [("ws1:cancelled", AUDIENCE)]
    app.close()


@pytest.mark.parametrize("change", [
    {"capacity": 12},
    {"capacity": None},
    {"description": "A new description."},
    {"reminder_minutes": 15},
    {"organiser": Person(email="events@sel-learning.example", name="Events Team")},
])
def test_what_calendars_do_not_show_leaves_sequence_alone(
        project_dir: Path, store_url: str, clock: FakeClock, change: dict[str, Any]) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    sync(app, event)
    changed = event.model_copy(update=change)
    assert sync(app, changed) == EventState(UID, 0, "confirmed", changed=False)
    if "capacity" in change:  # the new capacity is still stored: it governs the waitlist
        assert stored(app).capacity == change["capacity"]
        with app.store.read() as conn:
            assert seats_left(conn, "workshops", changed) == change["capacity"]
    app.close()


def test_a_cancel_step_cancels_without_touching_the_yaml(
        project_dir: Path, store_url: str, clock: FakeClock,
        request: pytest.FixtureRequest) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    sync(app, event)
    assert sync(app, event, cancel=True) == EventState(UID, 1, "cancelled", changed=True)
    assert sync(app, event, cancel=True) == EventState(UID, 1, "cancelled", changed=False)
    app.close()


def test_cancelled_by_step_and_by_yaml_is_one_state(project_dir: Path, store_url: str,
                                                    clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    _, event = workshops(app)
    sync(app, event)
    assert sync(app, event, cancel=True).sequence == 1
    cancelled = event.model_copy(update={"status": "cancelled"})
    assert sync(app, cancelled) == EventState(UID, 1, "cancelled", changed=False)
    app.close()


# --- finding events --------------------------------------------------------------------------


def test_find_event_by_id_or_campaign_and_id(project_dir: Path, store_url: str,
                                             clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaigns = app.project.campaigns
    assert find_event(campaigns, "ws1")[1].id == "ws1"
    assert find_event(campaigns, "workshops/ws1")[0].id == "workshops"
    with pytest.raises(NotFound, match=r"unknown event 'ws9' \(events are: workshops/ws1\)"):
        find_event(campaigns, "ws9")
    with pytest.raises(NotFound, match="unknown event 'nmdi-awareness/ws1'"):
        find_event(campaigns, "nmdi-awareness/ws1")
    app.close()


# --- roster ----------------------------------------------------------------------------------


def run(project_dir: Path, store_url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, [*args, "--project", str(project_dir)],
                                env={"COMMS_DATABASE_URL": store_url})
    return result


def invited_app(project_dir: Path, store_url: str, clock: FakeClock) -> App:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("workshops")
    step = campaign.step("invite")
    assert step is not None
    assert app.dispatcher().send(campaign, step).sent == AUDIENCE
    return app


def person_id(app: App, address: str) -> int:
    st = tables.stakeholders
    with app.store.read() as conn:
        found = conn.execute(select(st.c.id).where(st.c.email == email_key(address))).scalar()
    assert found is not None
    return int(found)


def answer(app: App, address: str, status: Any, source: Any = "link") -> None:
    with app.store.write() as conn:
        record_answer(conn, campaign="workshops", event="ws1",
                      stakeholder_id=person_id(app, address), answer=status, source=source,
                      now=app.clock.now())


def managers(app: App) -> list[str]:
    return sorted(p.key for p in app.project.directory.people
                  if p.role == "manager" and "primary-care" in p.tags)


def test_roster_json_lists_every_invitee_with_answer_source_and_time(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = invited_app(project_dir, store_url, clock)
    people = managers(app)
    answered_at = {}
    for address, status, source in [(people[0], "accepted", "link"),
                                     (people[1], "declined", "calendar"),
                                     (people[2], "tentative", "manual")]:
        clock.advance(minutes=7)
        answered_at[address] = clock.now()
        answer(app, address, status, source)
    result = run(project_dir, store_url, "events", "roster", "ws1", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == AUDIENCE
    assert all({"email", "status", "source", "answered_at"} <= set(row) for row in rows)
    by_email = {email_key(row["email"]): row for row in rows}
    assert set(by_email) == set(people)
    expected = {people[0]: ("accepted", "link"), people[1]: ("declined", "calendar"),
                people[2]: ("tentative", "manual")}
    for address, (status, source) in expected.items():
        row = by_email[address]
        assert (row["status"], row["source"]) == (status, source)
        when = datetime.fromisoformat(row["answered_at"])
        assert when.replace(tzinfo=None) == answered_at[address].replace(tzinfo=None)
    rest = [row for address, row in by_email.items() if address not in expected]
    assert {(r["status"], r["source"], r["answered_at"]) for r in rest} == {
        ("no response", None, None)}
    app.close()


def test_roster_of_an_unknown_event_exits_2_naming_the_events(
        project_dir: Path, store_url: str) -> None:
    result = run(project_dir, store_url, "events", "roster", "ws7")
    assert result.exit_code == 2
    assert "error: unknown event 'ws7' (events are: workshops/ws1)" in result.stderr


# --- attendance and the steps that follow it --------------------------------------------------


FOLLOW_UPS = """\
  - id: feedback
    template: events/chase
    subject: "Thank you for coming, {{ stakeholder.first_name }}"
    now: true
    only_if: {attended: ws1}
  - id: missed
    template: events/chase
    subject: "Sorry we missed you, {{ stakeholder.first_name }}"
    now: true
    only_if: {not_attended: ws1}
"""


def recipients(app: App, subject_start: str) -> set[str]:
    found = set()
    for path in outbox(app):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if str(msg["Subject"]).startswith(subject_start):
            found.add(email_key(msg["To"].addresses[0].addr_spec))
    return found


def statuses(app: App, step: str) -> dict[str, set[str]]:
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        rows = conn.execute(select(s.c.status, st.c.email).join(st, st.c.id == s.c.stakeholder_id)
                            .where(s.c.campaign == "workshops", s.c.step == step)).all()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row.status, set()).add(row.email)
    return found


def test_attendance_then_attended_and_not_attended_steps(
        project_dir: Path, store_url: str, clock: FakeClock, tmp_path: Path) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + FOLLOW_UPS, encoding="utf-8")
    app = invited_app(project_dir, store_url, clock)
    people = managers(app)
    came = people[3:6]
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Name;Email;Signed\n"
                     f"A;{came[0].upper()};yes\nB;{came[1]};yes\nC;  {came[2]} ;yes\n"
                     ";;\nWalk-in;walk.in@elsewhere.example;yes\n", encoding="utf-8")
    result = run(project_dir, store_url, "events", "attendance", "ws1", str(sheet))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3 attended workshops/ws1"
    assert f"{sheet}: warning: walk.in@elsewhere.example is not in the directory" in result.stderr
    again = run(project_dir, store_url, "events", "attendance", "ws1", str(sheet))
    assert again.exit_code == 0  # importing the same sheet twice is harmless

    clock.advance(days=45)
    campaign = app.project.campaign("workshops")
    feedback, missed = campaign.step("feedback"), campaign.step("missed")
    assert feedback is not None and missed is not None
    first = app.dispatcher().send(campaign, feedback)
    assert (first.sent, first.skipped) == (3, AUDIENCE - 3)
    second = app.dispatcher().send(campaign, missed)
    assert (second.sent, second.skipped) == (AUDIENCE - 3, 3)
    assert recipients(app, "Thank you for coming") == set(came)
    assert recipients(app, "Sorry we missed you") == set(people) - set(came)
    assert statuses(app, "feedback") == {"sent": set(came), "skipped": set(people) - set(came)}
    roster_rows = json.loads(run(project_dir, store_url, "events", "roster", "ws1", "--format",
                                 "json").stdout)
    assert {email_key(r["email"]) for r in roster_rows if r["attended"]} == set(came)
    app.close()


def test_attendance_sheet_without_an_email_column_is_refused(
        project_dir: Path, store_url: str, clock: FakeClock, tmp_path: Path) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign, event = workshops(app)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("name,signed\nA,yes\n", encoding="utf-8")
    with pytest.raises(
            ConfigError, match=r"sheet.csv:1: the sign-in sheet needs an 'email' column"):
        import_attendance(app.store, campaign, event, sheet, now=clock.now())
    sheet.write_text("email\nnot-an-address\n", encoding="utf-8")
    result = run(project_dir, store_url, "events", "attendance", "ws1", str(sheet))
    assert result.exit_code == 2
    assert "sheet.csv:2: invalid email address 'not-an-address'" in result.stderr
    app.close()


def test_rsvp_none_step_goes_only_to_people_without_an_answer(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = invited_app(project_dir, store_url, clock)
    people = managers(app)
    answered = {people[0]: "accepted", people[1]: "declined", people[2]: "tentative"}
    for address, status in answered.items():
        answer(app, address, status)
    clock.advance(days=26)  # ten days before the workshop: the chase is due
    campaign = app.project.campaign("workshops")
    chase = campaign.step("chase")
    assert chase is not None and chase.only_if is not None
    summary = app.dispatcher().send(campaign, chase)
    assert (summary.sent, summary.skipped, summary.failed) == (AUDIENCE - 3, 3, 0)
    assert statuses(app, "chase") == {"sent": set(people) - set(answered),
                                      "skipped": set(answered)}
    # an answer arriving later does not bring the skipped back, nor chase anyone twice
    answer(app, people[5], "accepted")
    again = app.dispatcher().send(campaign, chase)
    assert (again.sent, again.already_sent, again.skipped) == (0, AUDIENCE - 3, 3)
    app.close()


def test_rsvp_state_condition_targets_that_answer(project_dir: Path, store_url: str,
                                                  clock: FakeClock) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + """\
  - id: joining
    template: events/chase
    subject: "Joining instructions"
    now: true
    only_if: {rsvp: accepted, event: ws1}
""", encoding="utf-8")
    app = invited_app(project_dir, store_url, clock)
    people = managers(app)
    answer(app, people[0], "accepted")
    answer(app, people[1], "declined")
    clock.advance(hours=1)
    answer(app, people[2], "accepted")
    campaign = app.project.campaign("workshops")
    joining = campaign.step("joining")
    assert joining is not None
    summary = app.dispatcher().send(campaign, joining)
    assert (summary.sent, summary.skipped) == (2, AUDIENCE - 2)
    assert recipients(app, "Joining instructions") == {people[0], people[2]}
    app.close()

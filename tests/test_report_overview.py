"""The programme overview that opens every report, on a small store worked out by hand.

Ten people in the directory across three boroughs — Alpha (a1 a2 a3), Beta (b1 b2, and x1, no
longer in the directory but reached and answering) and Gamma (g1–g4: nobody responds) — and y1,
no longer in the directory and never reached, who does not count. Two campaigns: ``one`` (steps
``hello`` and the invitation ``ask`` to the past ``talk``, capacity 2; ``past2`` happened but has
no sign-in sheet) and ``two`` (step ``news``; ``later`` has not happened yet).

    reached (sent at least one message): a1 a2 · b1 b2 x1 · g1 g2 g3 g4 = 9 (a3's send failed)
    responded (anything human, any campaign): a1 (click, reply, waitlisted — once), a2 (reply),
        a3 (accepted by hand, never reached) · b1 (accepted), x1 (reply) · nobody in Gamma = 5
        (b2 only opened; g1's open was a machine's)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from comms.app import App
from comms.report import report
from comms.settings import load_settings
from comms.store import tables

from .conftest import FakeClock
from .test_report import TRACKED

ONE = """\
id: one
name: Campaign one
sender: {email: office@test.example}
goal: {metric: responded, target: 5}
events:
  - {id: talk, title: The talk, starts: 2026-11-20 10:00, ends: 2026-11-20 12:00, capacity: 2,
     organiser: {email: events@test.example}}
  - {id: past2, title: Another talk, starts: 2026-11-25 10:00, ends: 2026-11-25 12:00,
     organiser: {email: events@test.example}}
steps:
  - {id: hello, template: t, subject: Hello, send_at: 2026-11-01 09:00}
  - {id: ask, kind: invite, event: talk, template: t, subject: Come, send_at: 2026-11-02 09:00}
"""
TWO = """\
id: two
name: Campaign two
sender: {email: office@test.example}
goal: {metric: clicked, target: 2}
events:
  - {id: later, title: Later, starts: 2027-02-01 10:00, ends: 2027-02-01 12:00,
     organiser: {email: events@test.example}}
steps:
  - {id: news, template: t, subject: News, send_at: 2026-11-03 09:00}
"""
# key: (borough, in the directory now?)
PEOPLE = {"a1": ("Alpha", True), "a2": ("Alpha", True), "a3": ("Alpha", True),
          "b1": ("Beta", True), "b2": ("Beta", True), "x1": ("Beta", False),
          "g1": ("Gamma", True), "g2": ("Gamma", True), "g3": ("Gamma", True),
          "g4": ("Gamma", True), "y1": ("Alpha", False)}
# (campaign, step, person, status)
SENDS = [("one", "hello", p, "sent") for p in ("a1", "a2", "b1", "g1", "g2", "x1")] + [
    ("one", "hello", "a3", "failed"),
    ("one", "ask", "a1", "sent"), ("one", "ask", "b1", "sent"), ("one", "ask", "g3", "sent"),
    ("two", "news", "a1", "sent"), ("two", "news", "b2", "sent"), ("two", "news", "g4", "sent")]
# (campaign, step of the send or None, person, kind, event, machine)
RESPONSES = [
    ("one", "hello", "a1", "clicked", None, False), ("two", "news", "a1", "replied", None, False),
    ("one", "ask", "a1", "rsvp_waitlisted", "talk", False),
    ("one", "hello", "a2", "replied", None, False),
    ("one", None, "a3", "rsvp_accepted", "talk", False),
    ("one", "ask", "b1", "rsvp_accepted", "talk", False),
    ("one", "hello", "x1", "replied", None, False),
    ("two", "news", "b2", "opened", None, False), ("one", "hello", "g1", "opened", None, True)]
RSVPS = [("a1", "waitlisted"), ("a3", "accepted"), ("b1", "accepted")]  # all for one/talk
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def make(root: Path, store_url: str, clock: FakeClock, **settings: Any) -> App:
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "campaigns" / "one.yaml").write_text(ONE)
    (root / "campaigns" / "two.yaml").write_text(TWO)
    (root / "templates" / "t.html.j2").write_text("<p>Hello</p>")
    app = App(load_settings(root, database_url=store_url, **settings), clock=clock)
    app.project.raise_errors()
    with app.store.write() as conn:
        ids = {key: conn.execute(insert(tables.stakeholders).values(
            email=f"{key}@test.example", display_email=f"{key}@test.example", first_name=key,
            role="manager", borough=borough, active=active, updated_at=NOW)
        ).inserted_primary_key[0] for key, (borough, active) in PEOPLE.items()}
        sends = {(c, step, p): conn.execute(insert(tables.sends).values(
            uid=f"u{n}", campaign=c, step=step, occurrence="once", stakeholder_id=ids[p],
            status=status, delivery="delivered" if status == "sent" else None, created_at=NOW,
            sent_at=NOW if status == "sent" else None)).inserted_primary_key[0]
            for n, (c, step, p, status) in enumerate(SENDS)}
        conn.execute(insert(tables.responses), [
            {"send_id": sends[c, step, p] if step else None, "stakeholder_id": ids[p],
             "campaign": c, "step": step, "event": ev, "kind": kind, "machine": machine,
             "occurred_at": NOW, "received_at": NOW}
            for c, step, p, kind, ev, machine in RESPONSES])
        conn.execute(insert(tables.rsvps), [
            {"campaign": "one", "event": "talk", "stakeholder_id": ids[p], "status": status,
             "source": "link", "answered_at": NOW} for p, status in RSVPS])
        conn.execute(insert(tables.attendance).values(
            campaign="one", event="talk", stakeholder_id=ids["b1"], recorded_at=NOW))
    return app


@pytest.fixture
def app(tmp_path: Path, store_url: str) -> Iterator[App]:
    made = make(tmp_path / "project", store_url, FakeClock(NOW))
    yield made
    made.close()


def overview_of(app: App, **settings: Any) -> dict[str, Any]:
    if settings:
        app = App(app.settings.model_copy(update=settings), clock=app.clock)
    return report(app).data["overview"]


BOROUGHS = [  # (borough, directory, reached, responded)
    ("Alpha", 3, 2, 3), ("Beta", 3, 3, 2), ("Gamma", 4, 4, 0)]


def test_people_are_counted_once_across_campaigns_and_by_borough(app: App) -> None:
    overview = overview_of(app)
    assert overview["campaigns"] == ["one", "two"]
    assert (overview["directory"], overview["reached"], overview["responded"]) == (10, 9, 5)
    assert overview["reached_of_directory"] == 0.9
    assert overview["responded_of_directory"] == 0.5
    assert overview["responded_of_reached"] == 0.5556
    assert [(b["borough"], b["directory"], b["reached"], b["responded"])
            for b in overview["boroughs"]] == BOROUGHS


def test_each_borough_is_normalised_by_its_share_of_the_directory(app: App) -> None:
    alpha, beta, gamma = overview_of(app)["boroughs"]
    assert alpha == {"borough": "Alpha", "directory": 3, "reached": 2, "responded": 3,
                     "reached_of_directory": 0.6667, "responded_of_directory": 1.0,
                     "share_of_directory": 0.3, "share_of_reached": 0.2222,
                     "share_of_responded": 0.6}
    assert beta == {"borough": "Beta", "directory": 3, "reached": 3, "responded": 2,
                    "reached_of_directory": 1.0, "responded_of_directory": 0.6667,
                    "share_of_directory": 0.3, "share_of_reached": 0.3333,
                    "share_of_responded": 0.4}
    assert gamma == {"borough": "Gamma", "directory": 4, "reached": 4, "responded": 0,
                     "reached_of_directory": 1.0, "responded_of_directory": 0.0,
                     "share_of_directory": 0.4, "share_of_reached": 0.4444,
                     "share_of_responded": 0.0}


def test_the_lagging_borough_is_named(app: App) -> None:
    assert overview_of(app)["equity"] == {
        "groups": 3, "lowest": {"group": "Gamma", "rate": 0.0},
        "highest": {"group": "Alpha", "rate": 1.0}, "ratio": 0.0, "spread": 1.0,
        "overall": 0.5, "lagging": [{"group": "Gamma", "rate": 0.0, "gap": 0.5}]}


def test_every_event_with_attendance_only_once_it_is_known(app: App) -> None:
    assert overview_of(app)["events"] == [
        {"campaign": "one", "event": "talk", "title": "The talk", "starts": "2026-11-20T10:00:00",
         "capacity": 2, "invited": 3, "accepted": 2, "waitlisted": 1, "attended": 1,
         "attendance_note": None, "mean_feedback": None},
        {"campaign": "one", "event": "past2", "title": "Another talk",
         "starts": "2026-11-25T10:00:00", "capacity": None, "invited": 0, "accepted": 0,
         "waitlisted": 0, "attended": None, "attendance_note": "no sign-in sheet yet",
         "mean_feedback": None},
        {"campaign": "two", "event": "later", "title": "Later", "starts": "2027-02-01T10:00:00",
         "capacity": None, "invited": 0, "accepted": 0, "waitlisted": 0, "attended": None,
         "attendance_note": "not held yet", "mean_feedback": None}]


def test_every_goal_with_its_progress(app: App) -> None:
    one = {"campaign": "one", "name": "Campaign one", "metric": "responded", "event": None,
           "target": 5, "value": 5, "progress": 1.0, "remaining": 0, "met": True}
    two = {"campaign": "two", "name": "Campaign two", "metric": "clicked", "event": None,
           "target": 2}
    # the outbox cannot see clicks: the clicks goal is not tracked, not "0 of 2"
    assert overview_of(app)["goals"] == [one, {**two, "value": None, "progress": None,
                                               "remaining": None, "met": None}]
    assert overview_of(app, **TRACKED)["goals"] == [one, {**two, "value": 0, "progress": 0.0,
                                                          "remaining": 2, "met": False}]


def test_the_overview_covers_every_campaign_even_for_one(app: App) -> None:
    one_only = report(app, campaign="two").data
    assert [s["campaign"] for s in one_only["campaigns"]] == ["two"]
    assert one_only["overview"] == overview_of(app)


def test_every_format_opens_with_the_overview(app: App) -> None:
    made = report(app)
    table = made.render("table")
    assert table.index("Programme overview") < table.index("one — Campaign one")
    assert "Programme overview — 2 campaigns, 10 people in the directory" in table
    assert ("reached 9 of 10 (90.0%); responded 5 (50.0% of the directory, 55.6% of those "
            "reached)") in table
    assert ("equity by borough: responded of directory from 0.0% (Gamma) to 100.0% (Alpha); "
            "lowest/highest 0.00; furthest behind the 50.0% overall: Gamma 0.0%") in table
    assert "goal of two: 2 clicked — not tracked" in table

    assert list(json.loads(made.render("json")))[-2:] == ["overview", "campaigns"]

    rows = list(csv.DictReader(io.StringIO(made.render("csv"), newline="")))
    assert [r["level"] for r in rows[:10]] == (["overview"] + ["overview borough"] * 3
                                               + ["overview event"] * 3 + ["overview goal"] * 2
                                               + ["campaign"])
    assert (rows[0]["campaign"], rows[0]["directory"], rows[0]["reached"],
            rows[0]["responded"], rows[0]["reached_of_directory"]) == ("one;two", "10", "9", "5",
                                                                      "0.9")
    gamma = rows[3]
    assert (gamma["group"], gamma["directory"], gamma["responded"], gamma["share_of_reached"]) \
        == ("Gamma", "4", "0", "0.4444")
    assert (rows[4]["event"], rows[4]["attended"], rows[5]["attended"]) == ("talk", "1", "")
    assert (rows[7]["metric"], rows[7]["value"], rows[7]["met"]) == ("responded", "5", "True")
    assert (rows[8]["metric"], rows[8]["value"], rows[8]["progress"]) == ("clicked", "", "")

    html = made.render("html")
    overview = html[html.index('<section id="overview"'):html.index('<section class="campaign"')]
    assert 'Gamma<span class="tag">behind</span>' in overview
    assert "Alpha<span" not in overview and "Beta<span" not in overview
    assert "not held yet" in overview and "no sign-in sheet yet" in overview
    assert "Campaign two:</strong> 2 clicked — not tracked" in overview


def test_the_overview_is_computed_in_the_store(tmp_path: Path, store_url: str) -> None:
    """The number of queries does not grow with the directory: one GROUP BY, not a loop."""

    def queries(app: App) -> int:
        issued: list[str] = []

        def listen(*args: Any) -> None:
            issued.append(args[2])  # the statement

        event.listen(app.store.engine, "before_cursor_execute", listen)
        try:
            report(app)
        finally:
            event.remove(app.store.engine, "before_cursor_execute", listen)
        return len(issued)

    small = make(tmp_path / "small", store_url, FakeClock(NOW))
    few = queries(small)
    assert few > 0
    with small.store.write() as conn:
        conn.execute(insert(tables.stakeholders), [
            {"email": f"more{n}@test.example", "display_email": f"more{n}@test.example",
             "role": "manager", "borough": f"Borough {n % 7}", "updated_at": NOW}
            for n in range(300)])
    assert queries(small) == few
    assert overview_of(small)["directory"] == 310
    small.close()


def test_no_responses_yet_is_said_in_words(tmp_path: Path, store_url: str) -> None:
    app = make(tmp_path / "quiet", store_url, FakeClock(NOW))
    with app.store.write() as conn:
        conn.execute(tables.responses.delete())
        conn.execute(tables.rsvps.delete())
    made = report(app)
    overview = made.data["overview"]
    assert overview["responded"] == 0 and overview["equity"]["highest"]["rate"] == 0.0
    table = made.render("table")
    assert "reached 9 of 10 (90.0%); no responses yet" in table
    assert "equity by borough: no responses yet" in table
    assert "equity by borough: responded of" not in table  # not "from 0.0% (…) to 0.0% (…)"
    html = made.render("html")
    assert "<strong>Equity by borough:</strong> no responses yet." in html
    assert 'class="tag">behind' not in html  # nobody is behind when nobody has answered
    app.close()

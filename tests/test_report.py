"""Engagement reports on a hand-built store whose every figure was worked out by hand.

Nine managers in three boroughs — Alpha (3), Beta (4), Gamma (2, nobody responds) — and a
mentor in Alpha outside the audience. Two steps: ``launch`` (email) and ``invite`` (to the
workshop ``ws``, capacity 2). Duplicate opens, clicks and RSVP rows, and machine opens, are in the
store and must not count.
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
from click.testing import CliRunner
from sqlalchemy import insert, select
from starlette.testclient import TestClient

from comms.app import App
from comms.cli import cli
from comms.report import Report, chase, report
from comms.settings import load_settings
from comms.store import tables
from comms.web import create_app

from .conftest import FakeClock

HYPERLINK = '=HYPERLINK("http://evil.example/","x")'
CAMPAIGN = """\
id: reach
name: Reach <test> & co
sender: {email: office@test.example, name: Office}
audience: {roles: [manager]}
goal: {metric: accepted, target: 4, event: ws}
events:
  - id: ws
    title: Workshop
    starts: 2027-01-14 09:30
    ends: 2027-01-14 16:30
    capacity: 2
    organiser: {email: events@test.example}
steps:
  - id: launch
    template: t
    subject: Hello
    send_at: 2026-12-01 09:00
  - id: invite
    kind: invite
    event: ws
    template: t
    subject: Invitation
    send_at: 2026-12-02 09:00
"""
# key: (first name, borough, organisation, role, job title)
PEOPLE = {
    "a1": ("Ann", "Alpha", "Alpha PCT", "manager", ""),
    "a2": ("Aled", "Alpha", "Alpha PCT", "manager", ""),
    "a3": ("Asha", "Alpha", "Alpha PCT", "manager", ""),
    "b1": ("Ben", "Beta", "Beta PCT", "manager", ""),
    "b2": ("Bea", "Beta", "Beta PCT", "manager", ""),
    "b3": ("Bob", "Beta", "@Beta Trust", "manager", "-Lead"),
    "b4": ("Bo", "Beta", "Beta PCT", "manager", ""),
    "g1": (HYPERLINK, "Gamma", "+Gamma PCT", "manager", "\tTab"),
    "g2": ("Gus", "Gamma", "Gamma PCT", "manager", "\rReturn"),
    "m1": ("Mo", "Alpha", "Alpha PCT", "mentor", ""),
}
# (person, step, status, delivery)
SENDS = [
    ("a1", "launch", "sent", "delivered"), ("a2", "launch", "sent", "delivered"),
    ("a3", "launch", "sent", "delivered"), ("b1", "launch", "sent", "delivered"),
    ("b2", "launch", "sent", None), ("b3", "launch", "sent", "bounced"),
    ("b4", "launch", "sent", "delivered"), ("g1", "launch", "sent", "delivered"),
    ("g2", "launch", "sent", "dropped"),
    ("a1", "invite", "sent", "delivered"), ("a2", "invite", "sent", None),
    ("b1", "invite", "sent", None), ("b2", "invite", "sent", "bounced"),
    ("b4", "invite", "sent", "deferred"), ("g1", "invite", "sent", None),
    ("g2", "invite", "failed", None),
]
# (person, step of the send or None, kind, machine, when "MM-DD HH")
RESPONSES = [
    ("a1", "launch", "opened", False, "12-01 09"), ("a1", "launch", "opened", False, "12-01 10"),
    ("a1", "launch", "opened", True, "12-01 09"), ("a1", "launch", "clicked", False, "12-01 10"),
    ("a1", "launch", "clicked", False, "12-01 11"), ("a2", "launch", "opened", True, "12-01 09"),
    ("b1", "launch", "opened", False, "12-02 07"), ("b1", "launch", "replied", False, "12-02 08"),
    ("b2", "launch", "unsubscribed", False, "12-02 09"), ("b4", "launch", "opened", False, "12-02 10"),
    ("g1", "launch", "opened", True, "12-01 09"), ("b4", "invite", "opened", False, "12-03 08"),
    ("b1", "launch", "delivered", False, "12-01 09"),  # not a response that counts
]
# (person, answer, via the invitation's send?, when)
RSVPS = [("a1", "accepted", True, "12-02 12"), ("a1", "accepted", True, "12-02 13"),
         ("a2", "accepted", False, "12-02 11"), ("b1", "declined", True, "12-02 14"),
         ("b4", "tentative", True, "12-03 09"), ("a3", "waitlisted", False, "12-03 12")]


#: The store holds what SendGrid's event webhook reports (deliveries, opens, clicks): report it
#: as sent through SendGrid with the webhook set up, and opens and clicks tracked (the project's
#: default for campaigns without a tracking key), so that every figure is tracked.
TRACKED = {"transport": "sendgrid", "sendgrid_webhook_insecure": True, "track_opens": True,
           "track_clicks": True}


def at(when: str) -> datetime:
    return datetime.strptime(f"2026-{when}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def build(root: Path, store_url: str, clock: FakeClock) -> App:
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "campaigns" / "reach.yaml").write_text(CAMPAIGN)
    (root / "templates" / "t.html.j2").write_text("<p>Hello</p>")
    app = App(load_settings(root, database_url=store_url, **TRACKED), clock=clock)
    app.project.raise_errors()
    now = clock.now()
    with app.store.write() as conn:
        ids = {}
        for key, (first, borough, org, role, title) in PEOPLE.items():
            ids[key] = conn.execute(insert(tables.stakeholders).values(
                email=f"{key}@test.example", display_email=f"{key}@Test.example",
                first_name=first, last_name=key.upper(), role=role, organisation=org,
                borough=borough, job_title=title,
                attributes=json.dumps({"phone": "020 7946 0000"} if key == "g2" else {}),
                updated_at=now)).inserted_primary_key[0]
        sends = {}
        for n, (key, step, status, delivery) in enumerate(SENDS):
            sends[key, step] = conn.execute(insert(tables.sends).values(
                uid=f"u{n}", campaign="reach", step=step, occurrence="once",
                stakeholder_id=ids[key], status=status, delivery=delivery, created_at=now,
                sent_at=now if status == "sent" else None)).inserted_primary_key[0]
        for key, step, kind, machine, when in RESPONSES:
            conn.execute(insert(tables.responses).values(
                send_id=sends[key, step], stakeholder_id=ids[key], campaign="reach", step=step,
                kind=kind, machine=machine, occurred_at=at(when), received_at=at(when)))
        conn.execute(insert(tables.responses).values(  # belongs to no campaign: ignored
            stakeholder_id=ids["g1"], kind="clicked", occurred_at=now, received_at=now))
        for key, answer, linked, when in RSVPS:
            conn.execute(insert(tables.responses).values(
                send_id=sends[key, "invite"] if linked else None, stakeholder_id=ids[key],
                campaign="reach", event="ws", kind=f"rsvp_{answer}", occurred_at=at(when),
                received_at=at(when)))
        conn.execute(insert(tables.rsvps), [
            {"campaign": "reach", "event": "ws", "stakeholder_id": ids[key], "status": answer,
             "source": "link", "answered_at": at(when)}
            for key, answer, _, when in RSVPS[1:]])
        conn.execute(insert(tables.attendance).values(
            campaign="reach", event="ws", stakeholder_id=ids["a1"], recorded_at=now))
    return app


@pytest.fixture
def app(tmp_path: Path, store_url: str, clock: FakeClock) -> Iterator[App]:
    app = build(tmp_path / "project", store_url, clock)
    yield app
    app.close()


@pytest.fixture
def data(app: App) -> dict[str, Any]:
    return report(app, campaign="reach").data


def counts(row: dict[str, Any]) -> tuple[int, ...]:
    return tuple(row[k] for k in ("audience", "sent", "delivered", "bounced", "opened", "clicked",
                                  "replied", "unsubscribed", "responded"))


# --- the figures ------------------------------------------------------------------------------


def test_steps_count_people_once_and_leave_machine_opens_out(data: dict[str, Any]) -> None:
    launch, invite = data["campaigns"][0]["steps"]
    assert (launch["step"], invite["step"]) == ("launch", "invite")
    # launch: 9 sent; b3 bounced, g2 dropped; opened a1 b1 b4; clicked a1; replied b1; unsub b2
    assert counts(launch) == (9, 9, 7, 2, 3, 1, 1, 1, 2)
    # invite: 6 sent (g2 failed), b2 bounced; opened b4; answered a1 a2 b1 b4 and a3 (by hand)
    assert counts(invite) == (9, 6, 5, 1, 1, 0, 0, 0, 5)
    assert launch["open_rate"] == 0.4286 and launch["click_rate"] == 0.1429
    assert launch["response_rate"] == 0.2857 and launch["bounce_rate"] == 0.2222
    assert launch["delivery_rate"] == 0.7778 and launch["unsubscribe_rate"] == 0.1429
    assert invite["response_rate"] == 1.0 and invite["reply_rate"] == 0.0


def test_campaign_totals_count_each_person_once_across_steps(data: dict[str, Any]) -> None:
    totals = data["campaigns"][0]["totals"]
    # delivered: all but b3 and g2; bounced: b3, g2 and b2 (the invitation); responded: 5
    assert counts(totals) == (9, 9, 7, 3, 3, 1, 1, 1, 5)
    assert totals["response_rate"] == 0.7143 and totals["responded_of_audience"] == 0.5556
    assert totals["bounce_rate"] == 0.3333


def test_groups_are_normalised_by_their_size(data: dict[str, Any]) -> None:
    groups = {g["group"]: g for g in data["campaigns"][0]["groups"]}
    assert list(groups) == ["Alpha", "Beta", "Gamma"]
    assert counts(groups["Alpha"]) == (3, 3, 3, 0, 1, 1, 0, 0, 3)  # the mentor is not in it
    assert counts(groups["Beta"]) == (4, 4, 3, 2, 2, 0, 1, 1, 2)
    assert counts(groups["Gamma"]) == (2, 2, 1, 1, 0, 0, 0, 0, 0)
    assert [groups[g]["responded_of_audience"] for g in groups] == [1.0, 0.5, 0.0]
    assert [groups[g]["response_rate"] for g in groups] == [1.0, 0.6667, 0.0]


def test_equity_names_the_groups_lagging_furthest_behind(data: dict[str, Any]) -> None:
    assert data["campaigns"][0]["equity"] == {
        "groups": 3, "lowest": {"group": "Gamma", "rate": 0.0},
        "highest": {"group": "Alpha", "rate": 1.0}, "ratio": 0.0, "spread": 1.0,
        "overall": 0.5556,
        "lagging": [{"group": "Gamma", "rate": 0.0, "gap": 0.5556},
                    {"group": "Beta", "rate": 0.5, "gap": 0.0556}]}


def test_events_goal_and_timeline(app: App, clock: FakeClock, data: dict[str, Any]) -> None:
    section = data["campaigns"][0]
    # 1 December: the workshop (14 January) has not happened, so no attendance yet (not 0)
    assert section["events"] == [{
        "event": "ws", "title": "Workshop", "starts": "2027-01-14T09:30:00", "capacity": 2,
        "invited": 6, "accepted": 2, "tentative": 1, "declined": 1, "waitlisted": 1,
        "no_response": 2, "attended": None, "fill_rate": 1.0, "attendance_rate": None,
        "attendance_note": "not held yet"}]
    clock.current = datetime(2027, 1, 14, 9, 30, tzinfo=UTC)  # 09:30 GMT: it has begun
    after = report(app, campaign="reach").data["campaigns"][0]
    assert after["events"] == [{**section["events"][0], "attended": 1, "attendance_rate": 0.5,
                                "attendance_note": None}]
    assert section["goal"] == {"metric": "accepted", "event": "ws", "target": 4, "value": 2,
                               "progress": 0.5, "remaining": 2, "met": False}
    assert section["timeline"] == [
        {"date": "2026-12-01", "responded": 1, "cumulative": 1},   # a1 clicked
        {"date": "2026-12-02", "responded": 2, "cumulative": 3},   # b1 replied, a2 accepted
        {"date": "2026-12-03", "responded": 2, "cumulative": 5}]   # b4, a3 answered


def test_groups_by_role_and_organisation(app: App) -> None:
    by_role = report(app, campaign="reach", by="role").data["campaigns"][0]
    assert [(g["group"], g["audience"], g["responded"]) for g in by_role["groups"]] == [
        ("manager", 9, 5)]
    assert by_role["equity"]["groups"] == 1 and by_role["equity"]["lagging"] == []
    by_org = report(app, campaign="reach", by="organisation").data["campaigns"][0]
    assert [(g["group"], g["audience"]) for g in by_org["groups"]] == [
        ("+Gamma PCT", 1), ("@Beta Trust", 1), ("Alpha PCT", 3), ("Beta PCT", 3), ("Gamma PCT", 1)]


# --- JSON -------------------------------------------------------------------------------------

FIGURE_KEYS = ["audience", "sent", "delivered", "bounced", "opened", "clicked", "replied",
               "unsubscribed", "responded", "delivery_rate", "bounce_rate", "open_rate",
               "click_rate", "reply_rate", "unsubscribe_rate", "response_rate"]


def test_json_keys_are_stable(app: App) -> None:
    data = json.loads(report(app).render("json"))
    assert list(data) == ["generated_at", "timezone", "by", "transport", "tracked",
                          "not_tracked_because", "rates_over", "overview", "campaigns"]
    assert list(data["tracked"]) == FIGURE_KEYS[:9] and all(data["tracked"].values())
    assert data["not_tracked_because"] is None and data["rates_over"] == "delivered"
    assert list(data["overview"]) == ["campaigns", "directory", "reached", "responded",
                                      "reached_of_directory", "responded_of_directory",
                                      "responded_of_reached", "boroughs", "equity", "events",
                                      "goals", "mentoring"]
    assert data["overview"]["mentoring"] == {"pairs": 0, "introduced": 0, "met": 0}
    assert list(data["overview"]["boroughs"][0]) == [
        "borough", "directory", "reached", "responded", "reached_of_directory",
        "responded_of_directory", "share_of_directory", "share_of_reached", "share_of_responded"]
    assert list(data["overview"]["equity"]) == list(data["campaigns"][0]["equity"])
    assert list(data["overview"]["events"][0]) == [
        "campaign", "event", "title", "starts", "capacity", "invited", "accepted", "waitlisted",
        "attended", "attendance_note", "mean_feedback"]
    assert list(data["overview"]["goals"][0]) == ["campaign", "name", "metric", "event",
                                                  "target", "value", "progress", "remaining",
                                                  "met"]
    assert data["generated_at"] == "2026-12-01T09:00:00+00:00"
    section = data["campaigns"][0]
    assert list(section) == ["campaign", "name", "tracked", "not_tracked_because", "totals",
                             "steps", "by", "groups", "equity", "events", "goal", "timeline"]
    assert list(section["totals"]) == FIGURE_KEYS + ["machine_opened", "machine_clicked",
                                                     "responded_of_audience"]
    assert list(section["steps"][0]) == ["step", "kind"] + FIGURE_KEYS + ["machine_opened",
                                                                "machine_clicked"]
    assert list(section["groups"][0]) == ["group"] + FIGURE_KEYS + ["responded_of_audience"]
    assert list(section["equity"]) == ["groups", "lowest", "highest", "ratio", "spread",
                                       "overall", "lagging"]
    assert list(section["events"][0]) == ["event", "title", "starts", "capacity", "invited",
                                          "accepted", "tentative", "declined", "waitlisted",
                                          "no_response", "attended", "fill_rate",
                                          "attendance_rate", "attendance_note"]
    assert list(section["goal"]) == ["metric", "event", "target", "value", "progress",
                                     "remaining", "met"]
    assert list(section["timeline"][0]) == ["date", "responded", "cumulative"]


def test_an_empty_store_reports_zeros_and_no_rates(tmp_path: Path, store_url: str,
                                                   clock: FakeClock) -> None:
    root = tmp_path / "empty"
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "campaigns" / "reach.yaml").write_text(CAMPAIGN)
    (root / "templates" / "t.html.j2").write_text("<p>Hello</p>")
    app = App(load_settings(root, database_url=store_url, **TRACKED), clock=clock)
    section = report(app).data["campaigns"][0]
    assert counts(section["totals"]) == (0,) * 9 and section["totals"]["response_rate"] is None
    assert section["timeline"] == [] and section["events"][0]["fill_rate"] == 0.0
    assert section["equity"]["lowest"] is None
    assert "<svg" in report(app).render("html")
    overview = report(app).data["overview"]
    assert (overview["directory"], overview["reached"], overview["responded"]) == (0, 0, 0)
    assert overview["boroughs"] == [] and overview["reached_of_directory"] is None
    assert overview["events"][0]["attended"] is None
    assert overview["goals"][0]["value"] == 0 and overview["goals"][0]["met"] is False
    for fmt in ("table", "csv", "json", "html"):
        assert report(app).render(fmt)
    app.close()


# --- CSV and the chase list -------------------------------------------------------------------


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_chase_lists_who_has_not_responded(app: App) -> None:
    people = chase(app, "reach")
    assert [p["email"] for p in people] == ["b3@Test.example", "g1@Test.example",
                                            "g2@Test.example"]
    assert people[2] == {"name": "Gus G2", "email": "g2@Test.example", "phone": "020 7946 0000",
                         "organisation": "Gamma PCT", "borough": "Gamma", "role": "manager",
                         "job_title": "\rReturn", "note": "bounced: check the address"}
    assert [p["email"][:2] for p in chase(app, "reach", "invite")] == ["g1"]
    assert [p["email"][:2] for p in chase(app, "reach", "launch")] == ["a2", "a3", "b3", "b4",
                                                                      "g1", "g2"]


def test_chase_command_writes_csv_safe_for_excel(app: App, tmp_path: Path) -> None:
    root = str(app.settings.project_dir)
    env = {"COMMS_DATABASE_URL": app.settings.resolved_database_url}
    result = CliRunner().invoke(cli, ["report", "chase", "reach", "--project", root], env=env)
    assert result.exit_code == 0, result.output
    listed = rows(result.output)
    assert list(listed[0]) == ["name", "email", "phone", "organisation", "borough", "role",
                               "job_title", "note"]
    by_email = {r["email"]: r for r in listed}
    assert by_email["g1@Test.example"]["name"] == "'" + HYPERLINK + " G1"
    assert by_email["g1@Test.example"]["organisation"] == "'+Gamma PCT"
    assert by_email["g1@Test.example"]["job_title"] == "'\tTab"
    assert by_email["g2@Test.example"]["job_title"] == "'\rReturn"
    assert by_email["b3@Test.example"]["organisation"] == "'@Beta Trust"
    assert by_email["b3@Test.example"]["job_title"] == "'-Lead"

    out = tmp_path / "chase.csv"
    result = CliRunner().invoke(cli, ["report", "chase", "reach", "--step", "invite", "-o",
                                      str(out), "--project", root], env=env)
    assert result.exit_code == 0 and "1 people to chase" in result.output
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM: Excel reads UTF-8
    result = CliRunner().invoke(cli, ["report", "chase", "reach", "--step", "nope", "--project",
                                      root], env=env)
    assert result.exit_code == 2 and "unknown step 'nope'" in result.output


def test_report_csv_neutralises_formulas(app: App) -> None:
    text = report(app, campaign="reach", by="organisation").render("csv")
    everything = rows(text)
    assert [r["level"] for r in everything[:5]] == ["overview"] + ["overview borough"] * 3 + [
        "overview event"]  # the programme overview comes first
    table = [r for r in everything if not r["level"].startswith("overview")]
    assert [r["level"] for r in table[:3]] == ["campaign", "step", "step"]
    groups = [r["group"] for r in table if r["level"] == "organisation"]
    assert groups[:2] == ["'+Gamma PCT", "'@Beta Trust"]
    assert table[0]["responded"] == "5" and table[0]["response_rate"] == "0.7143"


def test_report_command_formats(app: App, tmp_path: Path) -> None:
    root = str(app.settings.project_dir)
    env = {"COMMS_DATABASE_URL": app.settings.resolved_database_url}
    runner = CliRunner()
    table = runner.invoke(cli, ["report", "--project", root], env=env)
    assert table.exit_code == 0, table.output
    assert "equity by borough" in table.output and "Gamma 0.0%" in table.output
    assert "goal: 2 of 4 accepted (ws) — 50.0%, 2 to go" in table.output
    as_json = runner.invoke(cli, ["report", "--format", "json", "--by", "role", "--project",
                                  root], env=env)
    assert json.loads(as_json.output)["by"] == "role"
    out = tmp_path / "report.html"
    html = runner.invoke(cli, ["report", "--format", "html", "-o", str(out), "--project", root],
                         env=env)
    assert html.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")
    unknown = runner.invoke(cli, ["report", "--campaign", "nope", "--project", root], env=env)
    assert unknown.exit_code == 2 and "unknown campaign 'nope'" in unknown.output


# --- HTML -------------------------------------------------------------------------------------


def test_html_escapes_names_and_describes_every_chart(app: App) -> None:
    html = report(app, campaign="reach", by="organisation").render("html")
    assert "Reach &lt;test&gt; &amp; co" in html and "<test>" not in html
    assert html.count("<svg") == 4 and html.count("<title id=") == 4
    # the overview's two tables (boroughs, events), then the campaign's: steps (reached, and
    # responding), groups, responses per day, events
    assert html.count("<desc id=") == 4 and html.count("<caption>") == 2 + 5
    assert "@media print" in html and 'name="viewport"' in html
    assert "<script" not in html and "http://" not in html.replace("http://evil.example", "")


# --- the web route ----------------------------------------------------------------------------


def test_reports_route_needs_the_token(tmp_path: Path, store_url: str, clock: FakeClock) -> None:
    app = build(tmp_path / "p", store_url, clock)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        assert client.get("/reports?token=anything").status_code == 404  # no token configured
    app.close()
    token = "s3cret-token-of-at-least-32-characters"
    app = App(load_settings(tmp_path / "p", database_url=store_url, report_token=token),
              clock=clock)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        missing = client.get("/reports")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        in_url = client.get(f"/reports?token={token}")  # URLs end up in logs: never accepted
        assert in_url.status_code == 401 and "Authorization header" in in_url.text
        assert client.get("/reports", headers={"Authorization": "Bearer wrong"}).status_code == 403
        ok = client.get("/reports", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/html")
        assert "Reach &lt;test&gt; &amp; co" in ok.text
        assert ok.headers["cache-control"] == "no-store"
        bearer = client.get("/reports?by=role&campaign=reach",
                            headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 200 and "By role" in bearer.text
        assert client.get("/reports?by=nope", headers={
            "Authorization": f"Bearer {token}"}).status_code == 404
    app.close()


def test_report_is_computed_in_the_store_not_in_python(app: App) -> None:
    """The scratch tables are gone afterwards, and the connection can report again."""
    first = report(app).data
    assert report(app).data == first
    with app.store.read() as conn:
        assert conn.execute(select(tables.responses.c.id)).first() is not None


def test_report_type_renders_every_format(data: dict[str, Any]) -> None:
    made = Report(data)
    for fmt in ("table", "csv", "json", "html"):
        assert made.render(fmt)

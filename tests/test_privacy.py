"""People's rights: export everything held about a person; erase them so no file holds them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from comms.app import App
from comms.cli import cli
from comms.privacy import export_person, forget_person
from comms.settings import load_settings
from comms.store import tables
from comms.store.rsvps import record_answer
from comms.store.stakeholders import sync
from comms.suppression import list_suppressions

from .conftest import FakeClock

PERSON = "Tariq.Nowak@bexley-ct.nhs.example"


def programme(project_dir: Path, store_url: str, clock: FakeClock) -> App:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.sync_directory()
    for campaign_id, step_id in (("nmdi-awareness", "launch"), ("workshops", "invite")):
        campaign = app.project.campaign(campaign_id)
        app.dispatcher().send(campaign, campaign.step(step_id))  # type: ignore[arg-type]
    with app.store.write() as conn:
        pid = conn.execute(select(tables.stakeholders.c.id).where(
            tables.stakeholders.c.email == PERSON.lower())).scalar_one()
        record_answer(conn, campaign="workshops", event="ws1", stakeholder_id=pid,
                      answer="accepted", source="link", now=clock.now())
    return app


def test_export_holds_everything(project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = programme(project_dir, store_url, clock)
    data = export_person(app.store, PERSON)
    assert data["stakeholder"]["first_name"] == "Tariq"
    assert {(s["campaign"], s["step"], s["status"]) for s in data["sends"]} == {
        ("nmdi-awareness", "launch", "sent"), ("workshops", "invite", "sent")}
    assert [r["status"] for r in data["rsvps"]] == ["accepted"]
    assert "rsvp_accepted" in {r["kind"] for r in data["responses"]}
    json.dumps(data)  # plain JSON
    app.close()


def test_forget_leaves_no_trace_in_database_files_or_outbox(project_dir: Path, tmp_path: Path,
                                                            clock: FakeClock) -> None:
    database = tmp_path / "comms.db"
    app = programme(project_dir, f"sqlite:///{database}", clock)
    outbox = app.settings.resolved_outbox_dir
    needle = PERSON.lower().encode()
    assert any(needle in p.read_bytes().lower() for p in outbox.glob("*.eml"))
    result = forget_person(app.store, PERSON, now=clock.now(), outbox=outbox)
    assert result.rows == 1 and result.files == 2
    app.close()
    for path in database.parent.glob("comms.db*"):  # the database, its WAL and shared memory
        assert needle not in path.read_bytes().lower(), path
    for path in outbox.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes().lower(), path
    again = App(load_settings(project_dir, database_url=f"sqlite:///{database}"), clock=clock)
    with again.store.read() as conn:
        [entry] = list_suppressions(conn)
    assert (entry.email, entry.reason) == (None, "forgotten")
    again.sync_directory()  # stakeholders/ still lists them: unchanged, so not even re-read
    full = sync(again.store, again.project.directory.people, now=clock.now())  # re-read it all
    assert [p.key for p in full.forgotten] == [PERSON.lower()]
    with again.store.read() as conn:
        assert conn.execute(select(tables.stakeholders.c.id).where(
            tables.stakeholders.c.email == PERSON.lower())).first() is None
    again.close()


def test_forget_on_both_stores_and_a_later_import_is_refused(
        project_dir: Path, store_url: str, clock: FakeClock, tmp_path: Path) -> None:
    app = programme(project_dir, store_url, clock)
    forget_person(app.store, PERSON, now=clock.now(), outbox=app.settings.resolved_outbox_dir)
    with app.store.read() as conn:
        for table in ("stakeholders", "sends", "responses", "rsvps"):
            text = json.dumps([dict(r) for r in conn.execute(
                select(tables.metadata.tables[table])).mappings()], default=str).lower()
            assert PERSON.lower() not in text, table
    sheet = tmp_path / "again.csv"
    sheet.write_text(f"email,first_name,last_name,role\n{PERSON},Tariq,Nowak,manager\n", "utf-8")
    result = CliRunner().invoke(cli, ["contacts", "import", str(sheet), "--project",
                                      str(project_dir)], env={"COMMS_DATABASE_URL": store_url})
    assert result.exit_code == 0
    assert f"{sheet}:2: warning: skipped: this address was erased on request" in result.output
    app.close()


def test_cli_export_and_forget(project_dir: Path) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["send", "pct-leads-briefing", "--step", "briefing", "--project",
                        str(project_dir)])
    lead = "marta.adeyemi@bexley-ct.nhs.example"
    exported = runner.invoke(cli, ["contacts", "export", lead, "--project", str(project_dir)])
    assert json.loads(exported.output)["sends"][0]["step"] == "briefing"
    forgot = runner.invoke(cli, ["contacts", "forget", lead, "--yes", "--project",
                                 str(project_dir)])
    assert forgot.exit_code == 0 and "erased: 1 person, 1 file(s)" in forgot.output
    missing = runner.invoke(cli, ["contacts", "export", "nobody@x.example", "--project",
                                  str(project_dir)])
    assert missing.exit_code == 2 and "comms holds nothing about nobody@x.example" in missing.output


def test_logs_and_custom_args_hold_no_addresses_or_secrets(
        project_dir: Path, tmp_path: Path, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    import re

    from starlette.testclient import TestClient

    from comms.service import Service
    from comms.web import create_app
    from tests.sinks.sendgrid_server import Reply, SendGridSink

    secrets = ["SG.log-secret-key", "signing-secret-for-logs"]
    caplog.set_level(logging.DEBUG)
    with SendGridSink(api_key=secrets[0]) as sink:
        sink.script(Reply(400, {}, {"errors": [{"message": "invalid address", "field": "to"}]}))
        app = App(load_settings(project_dir, database_url=f"sqlite:///{tmp_path / 'l.db'}",
                                transport="sendgrid", sendgrid_api_key=secrets[0],
                                sendgrid_host=sink.url, secret_key=secrets[1]), clock=clock)
        Service(app).tick()  # the example's steps due on 1 December 2026 09:00
        campaign = app.project.campaign("workshops")
        app.dispatcher().send(campaign, campaign.step("invite"))  # type: ignore[arg-type]
        custom_args = [m["payload"]["personalizations"][0]["custom_args"] for m in sink.messages]
        bodies = [m["payload"]["content"][1]["value"] for m in sink.messages
                  if m["payload"]["subject"].startswith("Invitation")]
    assert custom_args and all(set(a) == {"send_id"} and "@" not in a["send_id"]
                               for a in custom_args)
    links = re.findall(r"http://localhost:8000(/(?:rsvp|u)/[^\"<\s]+)", bodies[0])
    assert len(links) >= 4  # three answers and the unsubscribe link
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        for link in links:
            client.get(link)
            client.post(link, data={"List-Unsubscribe": "One-Click"})
        client.post("/inbound/sendgrid", files={"email": ("m.eml", b"From: x@y.example\r\n\r\nhi")})
    app.close()
    text = caplog.text.lower()
    assert len(caplog.records) > 5
    addresses = {p.key for p in app.project.directory.people}
    leaked = sorted(a for a in addresses if a in text)
    assert leaked == []
    for secret in secrets:
        assert secret.lower() not in text

"""People's rights: export everything held about a person; erase them so no file holds them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from comms.app import App
from comms.cli import cli
from comms.privacy import export_person, forget_person
from comms.settings import load_settings
from comms.store import tables
from comms.store.stakeholders import sync
from comms.suppression import list_suppressions
from comms.tracking.rsvp import record_answer

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

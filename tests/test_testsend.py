"""Test sends: ``comms send CAMPAIGN --step S --test-to EMAIL [--as STAKEHOLDER]`` sends one real
copy, marked [TEST], records nothing, and its links record nothing either."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select
from starlette.testclient import TestClient

from comms.app import App
from comms.cli import cli
from comms.settings import load_settings
from comms.store import tables
from comms.web import create_app

from .conftest import FakeClock

TESTER = "imogen.tester@sel-learning.example"


def run(project_dir: Path, *args: str) -> object:
    return CliRunner().invoke(cli, [*args, "--project", str(project_dir)],
                              env={"COMMS_NOW": "2026-12-07T09:30:00+00:00"})


def outbox(project_dir: Path) -> list[email.message.EmailMessage]:
    folder = project_dir / "outbox"
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("*.eml"))] if folder.exists() else []


def counts(app: App) -> tuple[int, ...]:
    with app.store.read() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (tables.sends, tables.rsvps, tables.responses, tables.suppressions))


def test_a_test_send_records_nothing_and_the_real_send_reaches_everyone(
        project_dir: Path) -> None:
    result = run(project_dir, "send", "workshops", "--step", "invite", "--test-to", TESTER)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert f"workshops/invite: test sent to {TESTER} as " in result.output  # type: ignore[attr-defined]
    [message] = outbox(project_dir)
    assert str(message["Subject"]).startswith("[TEST] Invitation: ")
    assert [a.addr_spec for a in message["To"].addresses] == [TESTER]
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert TESTER in calendar.get_content().replace("\r\n ", "")
    status = run(project_dir, "status", "workshops", "--format", "json")
    assert '"sent": 0' in status.output  # type: ignore[attr-defined]
    real = run(project_dir, "send", "workshops", "--step", "invite")
    assert "80 sent" in real.output  # type: ignore[attr-defined]


def test_as_renders_for_that_stakeholder(project_dir: Path) -> None:
    person = next(line.split(",") for line in (project_dir / "stakeholders" /
                  "sel-directory.csv").read_text(encoding="utf-8").splitlines()
                  if ",manager," in line)
    result = run(project_dir, "send", "nmdi-awareness", "--step", "launch", "--test-to", TESTER,
                 "--as", person[0])
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    [message] = outbox(project_dir)
    assert str(message["Subject"]) == f"[TEST] {person[1]}, develop as a leader with the NMDI"
    refused = run(project_dir, "send", "nmdi-awareness", "--test-to", TESTER)
    assert refused.exit_code == 2  # type: ignore[attr-defined]
    assert "give exactly one --step" in refused.output  # type: ignore[attr-defined]


def test_the_links_of_a_test_send_record_nothing(project_dir: Path, store_url: str,
                                                 clock: FakeClock) -> None:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.sync_directory()
    from comms.testsend import send_test

    campaign = app.project.campaign("workshops")
    step = campaign.step("invite")
    assert step is not None
    message = send_test(app, campaign, step, TESTER)
    rsvp = re.findall(r"/rsvp/([\w.-]+)", message.text)
    unsubscribe = re.findall(r"/u/([\w.-]+)", message.headers["List-Unsubscribe"])
    assert len(rsvp) == 3 and len(unsubscribe) == 1
    before = counts(app)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        for token in rsvp:
            for method in (client.get, client.post):
                page = method(f"/rsvp/{token}")
                assert page.status_code == 200 and "This was a test" in page.text
        for method in (client.get, client.post):
            page = method(f"/u/{unsubscribe[0]}")
            assert page.status_code == 200 and "This was a test" in page.text
    assert counts(app) == before == (0, 0, 0, 0)
    app.close()

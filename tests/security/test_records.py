"""What the store keeps: suppression only from events it stored, erasure that leaves nothing in
any file, and no secret in an error however a provider echoes it."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from comms.app import App
from comms.settings import load_settings
from comms.store import tables
from comms.suppression import AddressHasher, list_suppressions
from comms.tracking.ingest import ingest
from comms.tracking.providers.sendgrid import parse_events
from tests.sinks.sendgrid_server import Reply, SendGridSink

from ..conftest import FakeClock
from .conftest import process, production, run

JANE = "jane.plus+nmdi@bexley-ct.nhs.example"
TARIQ = "tariq.nowak@bexley-ct.nhs.example"
GEORGE = "george.ng@bexley-ct.nhs.example"


def sent_uids(app: App) -> dict[str, str]:
    """The uid of one send per address."""
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        rows = conn.execute(select(st.c.email, s.c.uid).join(st, st.c.id == s.c.stakeholder_id)
                            .order_by(s.c.id)).all()
    return {row.email: row.uid for row in reversed(rows)}


def event(uid: str, address: str, word: str, event_id: str, ts: int, **extra: Any
          ) -> dict[str, Any]:
    return {"email": address, "timestamp": ts, "event": word, "sg_event_id": event_id,
            "sg_message_id": f"m-{uid}", "send_id": uid, **extra}


def programme(project_dir: Path, clock: FakeClock) -> App:
    app = App(load_settings(project_dir), clock=clock)
    app.sync_directory()
    campaign = app.project.campaign("nmdi-awareness")
    app.dispatcher().send(campaign, campaign.steps[0])
    return app


def test_an_event_id_already_stored_suppresses_no_one(project_dir: Path, clock: FakeClock) -> None:
    app = programme(project_dir, clock)
    uids, hasher, ts = sent_uids(app), AddressHasher(app.store), int(clock.now().timestamp())
    now = clock.now()
    ingest(app.store, parse_events([event(uids[TARIQ], TARIQ, "delivered", "ev-1", ts)]),
           now=now, hasher=hasher)
    forged = event(uids[GEORGE], GEORGE, "spamreport", "ev-1", ts + 60)  # a colliding id
    result = ingest(app.store, parse_events([forged]), now=now, hasher=hasher)
    assert result.suppressed == 0
    with app.store.read() as conn:
        assert list_suppressions(conn) == []
    fresh = event(uids[GEORGE], GEORGE, "spamreport", "ev-2", ts + 60)  # the same, stored: counts
    assert ingest(app.store, parse_events([fresh]), now=now, hasher=hasher).suppressed == 1
    app.close()


def add_jane(project_dir: Path) -> None:
    directory = project_dir / "stakeholders" / "sel-directory.csv"
    with directory.open("a", encoding="utf-8") as out:
        out.write(f"{JANE},Jane,Plus,manager,Bexley Care Trust,Bexley,Practice Manager,"
                  "primary-care;nmdi-cohort-1\n")


def test_forgetting_an_address_with_a_plus_leaves_it_in_no_file(project_dir: Path,
                                                                clock: FakeClock) -> None:
    add_jane(project_dir)
    app = programme(project_dir, clock)
    workshops = app.project.campaign("workshops")
    app.dispatcher().send(workshops, workshops.step("invite"))  # type: ignore[arg-type]
    uids, hasher, ts = sent_uids(app), AddressHasher(app.store), int(clock.now().timestamp())
    ingest(app.store, parse_events([
        event(uids[JANE], JANE, "delivered", "ev-j1", ts),
        event(uids[JANE], JANE, "click", "ev-j2", ts + 5, url="https://nmdi.example/register"),
        event(uids[TARIQ], TARIQ, "bounce", "ev-t1", ts + 9, type="bounce", status="5.1.1",
              reason=f"forwarded to {JANE} and refused"),
        event(uids[GEORGE], GEORGE, "click", "ev-m1", ts + 9,
              url=f"https://nmdi.example/share?to={quote(JANE, safe='')}"),
    ]), now=clock.now(), hasher=hasher)
    app.close()
    for command in (["preview", "workshops", "invite", "--to", JANE],
                    ["preview", "nmdi-awareness", "launch", "--to", JANE]):
        done = process(*command, "--project", str(project_dir))
        assert done.returncode == 0, done.stderr
    previews = list((project_dir / "outbox" / "previews").iterdir())
    assert any("jane.plus_nmdi@" in p.name for p in previews)
    forms = [JANE, quote(JANE, safe=""), quote(JANE, safe="@"), "jane.plus_nmdi@"]
    assert any(JANE.encode() in p.read_bytes() for p in (project_dir / "outbox").glob("*.eml"))

    done = process("contacts", "forget", JANE, "--yes", "--project", str(project_dir))
    assert done.returncode == 0, done.stderr
    for path in sorted(project_dir.rglob("*")):
        if path.is_dir() or path.parent.name == "stakeholders":  # the user's own file
            continue
        data = path.read_bytes().lower()
        for form in forms:
            assert form.lower().encode() not in data, (path, form)
    with sqlite3.connect(project_dir / "comms.db") as db:
        kept = db.execute("SELECT raw FROM responses WHERE raw LIKE '%[erased]%'").fetchall()
    assert len(kept) == 2  # Tariq's bounce and George's click, with Jane taken out


KEY = "SG.an-api-key-of-this-account.0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.mark.parametrize("echo", [
    Reply(status=400, body={"errors": [{"message": f"bad header Authorization: Bearer {KEY}"}]}),
    Reply(status=502, body=f"<html>proxy error for Bearer {KEY}</html>"),
    Reply(status=403, body={"errors": [{"message": f"key {KEY[3:]} is revoked"}]}),
])
def test_no_secret_a_provider_echoes_reaches_the_store_the_logs_or_the_terminal(
        project_dir: Path, echo: Reply, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with SendGridSink(api_key=KEY) as sink:
        for _ in range(20):
            sink.script(echo)
        env = production(COMMS_TRANSPORT="sendgrid", COMMS_SENDGRID_API_KEY=KEY,
                         COMMS_SENDGRID_HOST=sink.url, COMMS_MAX_ATTEMPTS="1")
        result = run("send", "pct-leads-briefing", "--step", "briefing", "--project",
                     str(project_dir), env=env)
    assert result.exit_code != 0
    text = result.output + "\n".join(r.getMessage() for r in caplog.records)
    with sqlite3.connect(project_dir / "comms.db") as db:
        stored = [str(v) for table in ("sends", "attempts", "responses", "meta")
                  for row in db.execute(f"SELECT * FROM {table}") for v in row]
    assert "[redacted]" in "\n".join(stored) + text
    for secret in (KEY, KEY[3:], KEY[3:30]):
        assert secret not in text
        assert not any(secret in value for value in stored)

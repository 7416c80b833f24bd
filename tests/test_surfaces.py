"""plan, dry run, send, the service, status and /healthz give one answer to "who gets what,
when": each case a user found where they disagreed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from comms.app import App
from comms.cli import cli
from comms.service import Service
from comms.settings import load_settings
from comms.status import status, timeline
from comms.store import tables
from comms.store.campaigns import set_paused
from comms.suppression import AddressHasher, suppress

from .conftest import FakeClock

TUESDAY = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # nmdi-awareness/launch is due


def make_app(project_dir: Path, clock: FakeClock, tmp_path: Path) -> App:
    app = App(load_settings(project_dir, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                            secret_key="a-test-signing-key-of-enough-length-0123456789"),
              clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    return app


def cycle(app: App, campaign: str, *, dry_run: bool = False) -> dict[str, tuple[int, ...]]:
    """``comms send CAMPAIGN`` (or its dry run): per step, sent (or would send), already sent,
    suppressed, skipped, waiting."""
    report = Service(app).cycle(app.project.campaign(campaign), dry_run=dry_run)
    return {s.step: (s.would_send if dry_run else s.sent, s.already_sent, s.suppressed,
                     s.skipped, s.waiting) for s in report.summaries}


def run(*args: str, now: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"COMMS_NOW": now},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_dates_after_steps_before_and_after_their_parent_went(
        project_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    app = make_app(project_dir, clock, tmp_path)
    rows = {o.step: o for o in timeline(app, campaign_id="nmdi-awareness")}
    assert rows["follow-up"].state == "expected"
    assert rows["follow-up"].expected == datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    assert "expected Tue 8 Dec 2026 09:00, 7 days after 'launch'" in rows["follow-up"].note
    clock.current = TUESDAY
    cycle(app, "nmdi-awareness")
    rows = {o.step: o for o in timeline(app, campaign_id="nmdi-awareness")}
    assert rows["launch"].state == "sent"
    follow = rows["follow-up"]
    assert (follow.due, follow.last_due, follow.state) == (
        datetime(2026, 12, 8, 9, 0, tzinfo=UTC), datetime(2026, 12, 8, 9, 0, tzinfo=UTC),
        "planned")
    assert follow.note.startswith("80 waiting")


def test_dry_run_counts_what_the_real_send_then_does(project_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(TUESDAY)
    app = make_app(project_dir, clock, tmp_path)
    managers = sorted(p.email for p in app.project.directory.people if p.role == "manager")
    with app.store.write() as conn:
        suppress(conn, AddressHasher(app.store), managers[:2], reason="unsubscribed",
                 source="test", now=clock.now())
    dry = cycle(app, "nmdi-awareness", dry_run=True)
    assert dry == {"launch": (78, 0, 2, 0, 0)}  # suppression counted; the follow-up not due
    assert cycle(app, "nmdi-awareness") == dry
    clock.advance(minutes=10)
    again = cycle(app, "nmdi-awareness", dry_run=True)
    assert again == cycle(app, "nmdi-awareness") == {}  # launch done; follow-up waits 7 days
    step = app.project.campaign("nmdi-awareness").step("launch")
    assert step is not None
    forced = Service(app).send_now(app.project.campaign("nmdi-awareness"), [step],
                                   dry_run=True).summaries[0]
    assert (forced.would_send, forced.already_sent, forced.suppressed) == (0, 78, 2)


def test_dry_run_writes_nothing_not_even_the_event_state(project_dir: Path,
                                                         tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app = make_app(project_dir, clock, tmp_path)
    database = tmp_path / "c.db"

    def files() -> list[bytes]:
        return [p.read_bytes() for p in (database, database.with_name("c.db-wal")) if p.exists()]

    before = files()
    assert cycle(app, "workshops", dry_run=True) == {"invite": (80, 0, 0, 0, 0)}
    assert files() == before
    with app.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.events)).scalar_one() == 0
    cycle(app, "workshops")
    moved = project_dir / "campaigns" / "workshops.yaml"
    moved.write_text(moved.read_text(encoding="utf-8").replace("starts: 2027-01-14 09:30",
                                                               "starts: 2027-01-14 10:00"),
                     encoding="utf-8")
    app = make_app(project_dir, clock, tmp_path)
    for _ in range(2):  # a dry run of the change, twice: SEQUENCE stays where it was
        summaries = Service(app).cycle(app.project.campaign("workshops"), dry_run=True).summaries
        assert [(s.step, s.would_send) for s in summaries] == [("ws1:update", 80)]
    with app.store.read() as conn:
        assert conn.execute(select(tables.events.c.sequence)).scalar_one() == 0
    real = Service(app).cycle(app.project.campaign("workshops")).summaries
    assert [(s.step, s.sent) for s in real] == [("ws1:update", 80)]
    with app.store.read() as conn:
        assert conn.execute(select(tables.events.c.sequence)).scalar_one() == 1
        assert set(conn.execute(select(tables.sends.c.sequence).where(
            tables.sends.c.step == "ws1:update")).scalars()) == {1}


def test_a_paused_campaign_sends_nothing_by_any_path(project_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    app = make_app(project_dir, clock, tmp_path)
    with app.store.write() as conn:
        set_paused(conn, "workshops", True, clock.now())
    workshops = app.project.campaign("workshops")
    invite = workshops.step("invite")
    assert invite is not None
    assert Service(app).cycle(workshops).paused == ["workshops"]
    assert Service(app).send_now(workshops, [invite]).paused == ["workshops"]
    assert app.dispatcher().send(workshops, invite).paused
    ticked = Service(app).tick()
    assert "workshops" in ticked.paused
    assert not [s for s in ticked.summaries if s.campaign == "workshops"]
    with app.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.sends).where(
            tables.sends.c.campaign == "workshops")).scalar_one() == 0
    found = status(app)
    assert "workshops" in found.paused
    assert {r["state"] for r in found.steps if r["campaign"] == "workshops"} == {"paused"}
    assert {o.state for o in timeline(app, campaign_id="workshops")} == {"paused"}


def test_cli_send_on_a_paused_campaign_says_how_to_resume(project_dir: Path) -> None:
    now = "2026-12-07T09:00:00+00:00"
    assert run("pause", "workshops", "--project", str(project_dir), now=now) == \
        "workshops: paused\n"
    output = run("send", "workshops", "--step", "invite", "--project", str(project_dir), now=now)
    assert "workshops: paused — `comms resume workshops` to continue" in output
    assert not list((project_dir / "outbox").glob("*.eml"))
    shown = run("status", "--project", str(project_dir), now=now)
    assert "workshops: paused since Mon 7 Dec 2026 09:00 — `comms resume workshops`" in shown


def test_status_and_healthz_never_list_a_sent_once_step_as_next_due(
        project_dir: Path, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from comms.web import create_app

    clock = FakeClock(TUESDAY)
    token = "a-report-token-of-at-least-32-characters"
    app = App(load_settings(project_dir, database_url=f"sqlite:///{tmp_path / 'c.db'}",
                            report_token=token), clock=clock)
    Service(app).tick()
    found = status(app)
    assert ("nmdi-awareness", "launch") not in {(u["campaign"], u["step"]) for u in found.upcoming}
    launch = next(r for r in found.steps if r["step"] == "launch")
    assert (launch["state"], launch["sent"]) == ("sent", 80)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        health = client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).json()
    assert ("nmdi-awareness", "launch") not in {(n["campaign"], n["step"]) for n in health["next"]}


def test_a_step_sent_by_hand_is_done_not_missed_when_the_service_comes_late(
        project_dir: Path, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    app = make_app(project_dir, clock, tmp_path)
    briefing = app.project.campaign("pct-leads-briefing")
    assert briefing.step("briefing") is not None
    Service(app).send_now(briefing, list(briefing.steps))
    clock.advance(hours=33)  # the service starts the next evening
    report = Service(app).tick()
    assert not [m for m in report.missed if m.startswith("pct-leads-briefing")]
    found = status(app)
    assert not [m for m in found.missed if m["campaign"] == "pct-leads-briefing"]
    row = next(r for r in found.steps if r["step"] == "briefing")
    assert (row["state"], row["sent"], row["missed"]) == ("sent", 6, 0)


def test_send_and_run_apply_the_same_catch_up(project_dir: Path, tmp_path: Path) -> None:
    """33 hours late at 19:14: `comms send` records it as missed, as `comms run` does."""
    clock = FakeClock(datetime(2026, 12, 1, 19, 14, tzinfo=UTC))
    app = make_app(project_dir, clock, tmp_path)
    dry = Service(app).cycle(app.project.campaign("pct-leads-briefing"), dry_run=True)
    sent = Service(app).cycle(app.project.campaign("pct-leads-briefing"))
    assert dry.summaries == sent.summaries == []
    assert dry.missed == sent.missed
    assert sent.missed[0].startswith("pct-leads-briefing/briefing once: fell due at "
                                     "2026-11-30T10:00:00+00:00")
    assert Service(app).tick().missed == []  # recorded once
    with app.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.sends).where(
            tables.sends.c.campaign == "pct-leads-briefing")).scalar_one() == 0


def test_after_steps_wait_for_the_window_and_say_until_when(project_dir: Path,
                                                            tmp_path: Path) -> None:
    clock = FakeClock(TUESDAY)
    app = make_app(project_dir, clock, tmp_path)
    cycle(app, "nmdi-awareness")
    clock.current = datetime(2026, 12, 8, 19, 0, tzinfo=UTC)  # due 09:00, the window closed
    report = Service(app).cycle(app.project.campaign("nmdi-awareness"))
    assert report.sent == 0
    assert report.waiting == ["nmdi-awareness/follow-up: waits until Wed 9 Dec 2026 09:00 "
                              "(outside schedule 'uk-working-hours': mon/tue/wed/thu/fri "
                              "09:00-17:30, not on england bank holidays)"]
    [follow] = [o for o in timeline(app, campaign_id="nmdi-awareness") if o.step == "follow-up"]
    assert (follow.state, follow.due) == ("waiting", datetime(2026, 12, 9, 9, 0, tzinfo=UTC))


def test_chase_leaves_out_suppressed_people(project_dir: Path, tmp_path: Path) -> None:
    from comms.report import chase

    clock = FakeClock(TUESDAY)
    app = make_app(project_dir, clock, tmp_path)
    cycle(app, "nmdi-awareness")
    leaving = sorted(p.email for p in app.project.directory.people if p.role == "manager")[:3]
    with app.store.write() as conn:  # unsubscribed through another campaign, or bounced
        suppress(conn, AddressHasher(app.store), leaving, reason="unsubscribed", source="test",
                 now=clock.now())
    chased = {row["email"].casefold() for row in chase(app, "nmdi-awareness")}
    assert len(chased) == 77 and not chased & {e.casefold() for e in leaving}


def test_plan_json_shows_iso_times_and_the_table_words(project_dir: Path) -> None:
    now = "2026-11-30T12:00:00+00:00"
    rows = json.loads(run("plan", "nmdi-awareness", "--format", "json", "--project",
                          str(project_dir), now=now))
    assert [(r["step"], r["due"], r["expected"], r["state"]) for r in rows] == [
        ("launch", "2026-12-01T09:00:00+00:00", None, "planned"),
        ("follow-up", None, "2026-12-08T09:00:00+00:00", "expected")]
    table = run("plan", "nmdi-awareness", "--project", str(project_dir), now=now)
    assert "Tue 1 Dec 2026 09:00" in table and "Tue 8 Dec 2026 09:00" in table

"""The service over a whole programme on a simulated clock: what was sent is what the plan said."""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from comms.app import App
from comms.schedule import next_allowed
from comms.service import Service
from comms.settings import load_settings
from comms.status import timeline
from comms.store import tables
from comms.store.campaigns import set_paused
from comms.store.rsvps import record_answer

from .conftest import FakeClock

START = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
PROGRAMME = """\
id: programme
name: NMDI programme
sender: {email: nmdi@sel-learning.example, name: SEL Learning Alliance}
schedule: uk-working-hours
audience: {roles: [manager]}
events:
  - id: ws2
    title: Workshop 2
    starts: 2027-02-10 09:30
    ends: 2027-02-10 16:30
    location: Southwark
    capacity: 100
    organiser: {email: events@sel-learning.example, name: NMDI Events}
steps:
  - id: launch
    template: awareness/launch
    subject: "{{ stakeholder.first_name }}, develop as a leader"
    send_at: 2026-12-01 09:00
  - id: follow-up
    template: awareness/follow-up
    subject: "A reminder"
    after: {step: launch, days: 7}
  - id: seasonal
    template: awareness/follow-up
    subject: "Season's greetings"
    send_at: 2026-12-25 10:00
  - id: invite
    kind: invite
    event: ws2
    template: events/invite
    subject: "Invitation: {{ event.title }}"
    send_at: 2026-12-03 10:00
  - id: chase
    template: events/chase
    subject: "Can you make {{ event.title }}?"
    before: {event: ws2, days: 10}
    only_if: {rsvp: none, event: ws2}
  - id: monthly
    template: awareness/follow-up
    subject: "NMDI update {{ now.strftime('%B %Y') }}"
    cron: "0 9 1 * *"
    until: 2027-05-31
"""
DIGEST = """\
id: digest
name: Steering digest
sender: {email: nmdi@sel-learning.example, name: SEL Learning Alliance}
audience: {roles: [pct_lead]}
steps:
  - id: sunday
    template: briefings/pct-leads
    subject: Weekly digest
    cron: "30 1 * * sun"
    until: 2027-04-05
"""


def service_for(project_dir: Path, clock: FakeClock, database: Path) -> Service:
    app = App(load_settings(project_dir, database_url=f"sqlite:///{database}"), clock=clock)
    app.project.raise_errors()
    return Service(app)


def run_until(service: Service, clock: FakeClock, end: datetime, *, hook=None) -> None:  # type: ignore[no-untyped-def]
    service.tick()
    while (due := service.next_due()) is not None and due <= end:
        clock.current = max(clock.current, due)
        if hook:
            hook(clock.current)
        service.tick()


def sends(service: Service) -> list[tuple[str, str, str, str, datetime]]:
    s, st = tables.sends, tables.stakeholders
    with service.app.store.read() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(s.c.campaign, s.c.step, s.c.occurrence, st.c.email, s.c.sent_at)
            .join(st, st.c.id == s.c.stakeholder_id).where(s.c.status == "sent"))]


@pytest.fixture
def programme(project_dir: Path) -> Path:
    for name in ("nmdi-awareness", "pct-leads-briefing", "mentor-recruitment", "workshops",
                 "mentoring", "steering-pack"):
        (project_dir / "campaigns" / f"{name}.yaml").unlink()
    (project_dir / "campaigns" / "programme.yaml").write_text(PROGRAMME, encoding="utf-8")
    (project_dir / "campaigns" / "digest.yaml").write_text(DIGEST, encoding="utf-8")
    return project_dir


def test_whole_programme_sends_what_the_plan_announced_once_each(
        programme: Path, tmp_path: Path) -> None:
    clock = FakeClock(START)
    service = service_for(programme, clock, tmp_path / "comms.db")
    service.app.sync_directory()
    plan = timeline(service.app, since=START)
    managers = sorted(p.key for p in service.project.directory.people if p.role == "manager")
    accepted = managers[:30]

    def answer(now: datetime) -> None:  # a third accept before the chase falls due
        if now >= datetime(2026, 12, 10, tzinfo=UTC):
            with service.app.store.write() as conn:
                ids = dict(conn.execute(select(tables.stakeholders.c.email,
                                               tables.stakeholders.c.id)).all())
                for email in accepted:
                    record_answer(conn, campaign="programme", event="ws2",
                                  stakeholder_id=ids[email], answer="accepted", source="link",
                                  now=now)

    run_until(service, clock, datetime(2027, 7, 1, tzinfo=UTC), hook=answer)
    sent = sends(service)
    # Exactly once per (campaign, step, occurrence, person).
    assert len(sent) == len({row[:4] for row in sent})
    by_key = Counter((c, s, o) for c, s, o, _, _ in sent)
    fixed = [o for o in plan if o.occurrence != "per recipient"]
    assert {(o.campaign, o.step, o.occurrence) for o in fixed} == set(by_key) - {
        ("programme", "follow-up", "once")}
    for o in fixed:
        times = {t for c, s, occ, _, t in sent if (c, s, occ) == (o.campaign, o.step, o.occurrence)}
        assert times == {o.due.astimezone(UTC)}, (o, times)  # sent when the plan said
        if o.recipients != "conditional: evaluated at send time":
            assert by_key[(o.campaign, o.step, o.occurrence)] == o.recipients, o
    chased = {e for c, s, _, e, _ in sent if s == "chase"}
    assert chased == set(managers) - set(accepted)  # the condition, at the moment of sending
    due = {o.step: o.due for o in fixed if o.occurrence == "once"}
    assert due["seasonal"].isoformat() == "2026-12-29T09:00:00+00:00"  # after Christmas
    monthly = sorted(o.due.isoformat() for o in fixed if o.step == "monthly")
    assert monthly == ["2026-12-01T09:00:00+00:00", "2027-01-04T09:00:00+00:00",
                       "2027-02-01T09:00:00+00:00", "2027-03-01T09:00:00+00:00",
                       "2027-04-01T09:00:00+01:00", "2027-05-04T09:00:00+01:00"]
    sundays = {o.occurrence: o.due.isoformat() for o in fixed if o.step == "sunday"}
    assert sundays["2027-03-28T01:30"] == "2027-03-28T02:30:00+01:00"  # the spring gap
    launch = {e: t for _, s, _, e, t in sent if s == "launch"}
    follow = {e: t for _, s, _, e, t in sent if s == "follow-up"}
    assert set(follow) == set(managers)
    schedule = service.project.schedules["uk-working-hours"]
    for email, when in follow.items():
        assert when == next_allowed(launch[email] + timedelta(days=7), schedule)


def test_downtime_within_catch_up_sends_once_beyond_is_missed(programme: Path,
                                                              tmp_path: Path) -> None:
    clock = FakeClock(START)
    service = service_for(programme, clock, tmp_path / "comms.db")
    service.tick()
    clock.current = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # down 09:00-20:00: 11 h late
    report = service.tick()
    assert {s.step for s in report.summaries if s.sent} == {"launch", "monthly"}
    assert service.tick().sent == 0  # never twice
    clock.current = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)  # invite was due 3 Dec 10:00
    report = service.tick()
    assert any("programme/invite once: fell due at 2026-12-03T10:00:00+00:00" in m
               for m in report.missed)
    assert not [s for s in report.summaries if s.step == "invite"]
    from comms.store.occurrences import missed

    with service.app.store.read() as conn:
        [row] = [m for m in missed(conn) if m["step"] == "invite"]
    assert "catch-up" in row["reason"]


def test_pause_then_resume_sends_what_fell_due_once(programme: Path, tmp_path: Path) -> None:
    clock = FakeClock(START)
    service = service_for(programme, clock, tmp_path / "comms.db")
    service.tick()
    with service.app.store.write() as conn:
        assert set_paused(conn, "programme", True, clock.now())
    clock.current = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert [s for s in service.tick().summaries if s.campaign == "programme"] == []
    clock.current = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    with service.app.store.write() as conn:
        assert set_paused(conn, "programme", False, clock.now())
    sent = {s.step: s.sent for s in service.tick().summaries if s.campaign == "programme"}
    assert sent == {"launch": 80, "monthly": 80}
    assert service.tick().sent == 0


def test_event_steps_never_go_after_the_event_started(programme: Path, tmp_path: Path) -> None:
    clock = FakeClock(datetime(2027, 2, 10, 9, 0, tzinfo=UTC))
    path = programme / "campaigns" / "programme.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "catch_up_hours", "x").replace("schedule: uk-working-hours",
                                       "schedule: uk-working-hours\ncatch_up_hours: 2000"),
                    encoding="utf-8")
    service = service_for(programme, clock, tmp_path / "comms.db")
    with service.app.store.write() as conn:  # the service first saw it long ago
        conn.execute(tables.campaign_state.insert().values(
            campaign="programme", first_seen=datetime(2026, 11, 1, tzinfo=UTC)))
    clock.current = datetime(2027, 2, 10, 10, 0, tzinfo=UTC)  # ws2 started at 09:30
    report = service.tick()
    assert any(m.startswith("programme/chase once: the event had started") for m in report.missed)
    assert not [s for s in report.summaries if s.step in ("invite", "chase") and s.sent]


def test_invalid_change_while_running_keeps_the_previous_plan(programme: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(START)
    service = service_for(programme, clock, tmp_path / "comms.db")
    service.tick()
    path = programme / "campaigns" / "programme.yaml"
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("send_at: 2026-12-01 09:00", "sendat: 2026-12-01 09:00"),
                    encoding="utf-8")
    clock.current = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    with caplog.at_level("ERROR"):
        report = service.tick()
    line = next(n for n, row in enumerate(good.splitlines(), 1) if "send_at: 2026-12-01" in row)
    assert f"campaigns/programme.yaml:{line}: steps[0].sendat: unknown key" in caplog.text
    assert {s.step for s in report.summaries if s.sent} == {"launch", "monthly"}  # old plan
    path.write_text(good.replace("subject: \"A reminder\"", "subject: \"A friendly reminder\""),
                    encoding="utf-8")
    service.tick()
    assert service.project.campaign("programme").step("follow-up").subject == (  # type: ignore[union-attr]
        "A friendly reminder")


def test_a_second_scheduler_on_one_sqlite_database_is_refused(programme: Path,
                                                              tmp_path: Path) -> None:
    from comms.errors import CommsError
    from comms.scheduler import run_service
    from comms.stopping import Stop
    from comms.store.lock import SchedulerLock

    first = service_for(programme, FakeClock(START), tmp_path / "comms.db")
    lock = SchedulerLock(first.app.store)
    assert lock.try_acquire()
    second = service_for(programme, FakeClock(START), tmp_path / "comms.db")
    with pytest.raises(CommsError, match="already schedules this SQLite database"):
        run_service(second.app, web=False, host="127.0.0.1", port=0, stop=Stop())
    lock.release()


def test_driver_wakes_the_service_at_the_due_time(programme: Path, tmp_path: Path) -> None:
    """The APScheduler driver, on an injected clock: after a wake it plans the next one for the
    step's due time, and the wake at that time sends it."""
    from comms.scheduler import Scheduler
    from comms.store.lock import SchedulerLock

    clock = FakeClock(datetime(2026, 12, 7, 8, 58, tzinfo=UTC))
    due = datetime(2026, 12, 7, 8, 59, 30, tzinfo=UTC)
    local = due.astimezone(__import__("zoneinfo").ZoneInfo("Europe/London"))
    path = programme / "campaigns" / "digest.yaml"
    path.write_text(textwrap.dedent(f"""\
        id: digest
        name: Steering digest
        sender: {{email: nmdi@sel-learning.example}}
        audience: {{roles: [pct_lead]}}
        steps:
          - id: soon
            template: briefings/pct-leads
            subject: Soon
            send_at: {local:%Y-%m-%d %H:%M:%S}
        """), encoding="utf-8")
    app = App(load_settings(programme, database_url=f"sqlite:///{tmp_path / 'd.db'}"),
              clock=clock)
    service = Service(app)
    scheduler = Scheduler(service, SchedulerLock(app.store), poll_seconds=3600)
    scheduler.start(paused=True)
    try:
        scheduler.wake()
        assert not any(s[1] == "soon" for s in sends(service))
        assert scheduler.wake_for_due() == due  # sooner than the next poll
        clock.current = due
        scheduler.wake()
    finally:
        scheduler.stop()
    sent = [s for s in sends(service) if s[1] == "soon"]
    assert len(sent) == 6
    assert all(t >= due.replace(microsecond=0) for *_, t in sent)

"""plan, a dry run, the service and status agree by construction.

The example programme runs on an injected clock from before its first step to after its last.
At every tick, what ``plan`` says is due, what a dry run would send, what the service then sends
and what ``status`` reports are the same (step, occurrence, person), through suppressed people,
an ``after`` step, a conditional chase, a pause and resume, a step moved by the schedule's
window, and an occurrence missed while the service was down. Then a property test: over random
directories, suppressions and conditions, a dry run's counts are the real send's, and the dry
run leaves the store's files as they were.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from comms.app import App
from comms.plan import ONCE, PER_RECIPIENT
from comms.service import Service
from comms.settings import load_settings
from comms.status import status, timeline
from comms.store import tables
from comms.store.campaigns import set_paused
from comms.store.rsvps import record_answer
from comms.suppression import AddressHasher, suppress

from .conftest import PROJECT_PARTS, ROOT, FakeClock

KEY = "a-test-signing-key-of-enough-length-0123456789"
START = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
END = datetime(2027, 1, 20, tzinfo=UTC)
Key = tuple[str, str, str]


def make_app(project_dir: Path, clock: FakeClock, database: Path) -> App:
    app = App(load_settings(project_dir, database_url=f"sqlite:///{database}", secret_key=KEY),
              clock=clock)
    app.project.raise_errors()
    return app


def planned_due(app: App) -> dict[Key, int]:
    """What ``comms plan`` says is due now, with its recipients."""
    out = {}
    for row in timeline(app):
        if row.state == "due":
            occurrence = ONCE if row.occurrence == PER_RECIPIENT else row.occurrence
            assert isinstance(row.recipients, int), row
            out[(row.campaign, row.step, occurrence)] = row.recipients
    return out


def dry_run(app: App) -> dict[Key, set[str]]:
    """What ``comms send CAMPAIGN --dry-run`` would send now, campaign by campaign."""
    out: dict[Key, set[str]] = {}
    for campaign in app.project.campaigns.values():
        for summary in Service(app).cycle(campaign, dry_run=True).summaries:
            out[(summary.campaign, summary.step, summary.occurrence)] = set(summary.people)
    return out


def sent_at(app: App, moment: datetime) -> dict[Key, set[str]]:
    s, people = tables.sends, tables.stakeholders
    out: dict[Key, set[str]] = defaultdict(set)
    with app.store.read() as conn:
        for campaign, step, occurrence, email in conn.execute(
                select(s.c.campaign, s.c.step, s.c.occurrence, people.c.email)
                .join(people, people.c.id == s.c.stakeholder_id)
                .where(s.c.status == "sent", s.c.sent_at == moment)):
            out[(campaign, step, occurrence)].add(email)
    return dict(out)


def status_due(app: App) -> set[tuple[str, str]]:
    return {(u["campaign"], u["step"]) for u in status(app).upcoming if u["state"] == "due"}


def test_plan_dry_run_service_and_status_agree_at_every_tick(project_dir: Path,
                                                             tmp_path: Path) -> None:
    clock = FakeClock(START)
    app = make_app(project_dir, clock, tmp_path / "comms.db")
    service = Service(app)
    app.sync_directory()
    people = {p.key: p for p in app.project.directory.people}
    managers = sorted(k for k, p in people.items() if p.role == "manager")
    with app.store.write() as conn:  # two managers unsubscribed before anything went
        suppress(conn, AddressHasher(app.store), managers[:2], reason="unsubscribed",
                 source="test", now=clock.now())

    def pause(campaign: str, paused: bool) -> Callable[[], None]:
        def act() -> None:
            with app.store.write() as conn:
                set_paused(conn, campaign, paused, clock.now())
        return act

    def accept() -> None:  # forty managers take the forty seats before the chase
        ids = dict(_ids(app))
        with app.store.write() as conn:
            for email in managers[2:42]:
                record_answer(conn, campaign="workshops", event="ws1", stakeholder_id=ids[email],
                              answer="accepted", source="link", now=clock.now())

    hooks = [(datetime(2026, 12, 4, 12, 0, tzinfo=UTC), pause("workshops", True)),
             (datetime(2026, 12, 7, 12, 0, tzinfo=UTC), pause("workshops", False)),
             (datetime(2026, 12, 20, 12, 0, tzinfo=UTC), accept)]
    # comms is down from Monday 09:30 to Tuesday 11:00: the PCT briefing (Mon 10:00) is missed
    down = (datetime(2026, 11, 30, 9, 30, tzinfo=UTC), datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    seen: dict[Key, set[str]] = defaultdict(set)
    when: dict[Key, set[datetime]] = defaultdict(set)
    ticks = 0
    while clock.now() < END:
        ticks += 1
        assert ticks < 200
        while hooks and hooks[0][0] <= clock.now():
            hooks.pop(0)[1]()
        planned, dry, due = planned_due(app), dry_run(app), status_due(app)
        service.tick()
        sent = sent_at(app, clock.now())
        counted = {k: len(v) for k, v in dry.items() if v}
        assert counted == {k: n for k, n in planned.items() if n}, clock.now()
        assert {k: v for k, v in dry.items() if v} == sent, clock.now()
        assert due == {(c, s) for c, s, _ in planned}, clock.now()
        for key, emails in sent.items():
            assert not emails & seen[key], f"{key} sent twice"
            seen[key] |= emails
            when[key].add(clock.now())
        moments = [m for m in (service.next_due(), *(h[0] for h in hooks))
                   if m is not None and m > clock.now()]
        clock.current = min(moments, default=END)
        if down[0] <= clock.now() < down[1]:
            clock.current = down[1]

    everyone = {k for k, p in people.items() if p.role == "manager"} - set(managers[:2])
    mentors = {k for k, p in people.items() if p.role == "mentor"}
    assert seen[("nmdi-awareness", "launch", ONCE)] == everyone  # suppressed people left out
    assert when[("nmdi-awareness", "launch", ONCE)] == {down[1]}  # caught up after downtime
    assert seen[("nmdi-awareness", "follow-up", ONCE)] == everyone  # the after step
    assert when[("nmdi-awareness", "follow-up", ONCE)] == {down[1] + timedelta(days=7)}
    assert ("pct-leads-briefing", "briefing", ONCE) not in seen
    assert [m["step"] for m in status(app).missed] == ["briefing"]  # 25 h late
    assert seen[("workshops", "invite", ONCE)] == everyone  # paused on its day, sent on resume
    assert when[("workshops", "invite", ONCE)] == {datetime(2026, 12, 7, 12, 0, tzinfo=UTC)}
    assert seen[("workshops", "chase", ONCE)] == everyone - set(managers[2:42])  # conditional
    assert seen[("mentor-recruitment", "reminder", ONCE)] == mentors
    # ten days after Wednesday 2 Dec is a Saturday: the schedule moves it to Monday 09:00
    assert when[("mentor-recruitment", "reminder", ONCE)] == {
        datetime(2026, 12, 14, 9, 0, tzinfo=UTC)}


def _ids(app: App) -> list[tuple[str, int]]:
    with app.store.read() as conn:
        return [(e, i) for e, i in conn.execute(select(tables.stakeholders.c.email,
                                                       tables.stakeholders.c.id))]


# --- dry run = real run, over random programmes ---------------------------------------------

ROLES = ("manager", "mentor", "pct_lead")
TAGS = ("primary-care", "executive", "on-leave")
CAMPAIGN = """\
id: random
name: Random
sender: {{email: office@sel-learning.example}}
schedule: uk-working-hours
audience: {{roles: {roles}}}
events:
  - id: ws
    title: Workshop
    starts: 2027-02-10 09:30
    ends: 2027-02-10 16:30
    organiser: {{email: events@sel-learning.example}}
steps:
  - id: first
    template: awareness/launch
    subject: "Hello {{{{ stakeholder.first_name }}}}"
    now: true
  - id: second
    template: awareness/follow-up
    subject: Again
    after: {{step: first, days: {days}}}
{only_if}
"""

person = st.tuples(st.sampled_from(ROLES), st.sets(st.sampled_from(TAGS), max_size=2),
                   st.booleans(), st.booleans())  # role, tags, suppressed, answered


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(directory=st.lists(person, min_size=1, max_size=25),
       roles=st.sets(st.sampled_from(ROLES), min_size=1),
       days=st.integers(0, 3), gone=st.integers(0, 4 * 24),
       condition=st.sampled_from(["", "    only_if: {rsvp: none, event: ws}",
                                  "    only_if: {tags: [primary-care]}",
                                  "    only_if: {not_responded: first}"]))
def test_a_dry_run_counts_what_the_real_send_does_and_writes_nothing(
        directory: list[tuple[str, set[str], bool, bool]], roles: set[str], days: int, gone: int,
        condition: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "project"
        for part in PROJECT_PARTS:
            if part not in ("campaigns", "stakeholders", "pairs"):
                shutil.copytree(ROOT / part, root / part)
        (root / "campaigns").mkdir()
        (root / "stakeholders").mkdir()
        (root / "campaigns" / "random.yaml").write_text(CAMPAIGN.format(
            roles=sorted(roles), days=days, only_if=condition), encoding="utf-8")
        lines = ["email,first_name,last_name,role,tags"] + [
            f"p{i}@gp.nhs.example,P{i},Q,{role},{';'.join(sorted(tags))}"
            for i, (role, tags, _, _) in enumerate(directory)]
        (root / "stakeholders" / "people.csv").write_text("\n".join(lines) + "\n", "utf-8")
        clock = FakeClock(datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
        database = Path(folder) / "comms.db"
        app = make_app(root, clock, database)
        app.sync_directory()
        campaign = app.project.campaign("random")
        ids = dict(_ids(app))
        with app.store.write() as conn:
            suppress(conn, AddressHasher(app.store), [f"p{i}@gp.nhs.example" for i, p in
                                                      enumerate(directory) if p[2]],
                     reason="unsubscribed", source="test", now=clock.now())
            for i, p in enumerate(directory):
                if p[3]:
                    record_answer(conn, campaign="random", event="ws",
                                  stakeholder_id=ids[f"p{i}@gp.nhs.example"],
                                  answer="declined", source="link", now=clock.now())
        for _ in range(2):  # the first step now; then, `gone` hours on, the second too
            files = stored(database)
            dry = Service(app).cycle(campaign, dry_run=True)
            assert stored(database) == files
            real = Service(app).cycle(campaign)
            assert counts(dry) == counts(real)
            clock.advance(hours=gone)
        app.close()


def stored(database: Path) -> list[bytes]:
    """The store's files: the database and its write-ahead log (the -shm index is shared
    memory that readers touch, not data)."""
    return [p.read_bytes() for p in (database, database.with_name(database.name + "-wal"))
            if p.exists()]


def counts(report: object) -> dict[str, tuple[int, ...]]:
    return {s.step: (s.would_send if s.dry_run else s.sent, s.already_sent, s.suppressed,
                     s.skipped, s.missed, s.waiting)
            for s in report.summaries}  # type: ignore[attr-defined]

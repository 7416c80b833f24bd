"""What `comms report` costs over 100,000 stakeholders and 1,000,000 responses in SQLite.

    .venv/bin/python bench/bench_report.py            # about a minute, most of it making the data
    .venv/bin/python bench/bench_report.py --people 10000 --responses 100000   # quick

``--picture docs/report-example.png`` instead makes the README's picture: the example programme
at the repository root, sent to the outbox, with plausible answers, reported as HTML and
photographed by headless Chromium (COMMS_TEST_CHROMIUM, else ``chromium`` on the PATH).

Prints seconds per format, next to two baselines measured in the same run on the same store:
``COUNT(*)`` of the responses (the floor: one scan) and a naive report that loads each
stakeholder's sends and responses with one query per person (over a 10,000-person subset, scaled).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from comms.app import App
from comms.report import report
from comms.settings import load_settings
from comms.store import Store

BOROUGHS = ["Bexley", "Bromley", "Greenwich", "Lambeth", "Lewisham", "Southwark"]
STEPS = ["launch", "invite", "chase"]
CAMPAIGN = """\
id: programme
name: Programme
sender: {email: office@bench.example}
audience: {roles: [manager]}
goal: {metric: accepted, target: 20000, event: ws}
events:
  - id: ws
    title: Workshop
    starts: 2027-01-14 09:30
    ends: 2027-01-14 16:30
    capacity: 30000
    organiser: {email: events@bench.example}
steps:
  - {id: launch, template: t, subject: Hello, send_at: 2026-12-01 09:00}
  - {id: invite, kind: invite, event: ws, template: t, subject: Invitation, send_at: 2026-12-02 09:00}
  - {id: chase, template: t, subject: Chase, send_at: 2026-12-09 09:00}
"""
KINDS = ["opened"] * 50 + ["clicked"] * 15 + ["delivered"] * 25 + ["replied"] * 3 + \
    ["rsvp_accepted"] * 4 + ["rsvp_declined"] * 2 + ["unsubscribed"]


def make(root: Path, people: int, responses: int) -> App:
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "campaigns" / "programme.yaml").write_text(CAMPAIGN)
    (root / "templates" / "t.html.j2").write_text("<p>Hello</p>")
    db = root / "comms.db"
    Store(f"sqlite:///{db}").dispose()  # the schema
    rnd = random.Random(6)
    start = datetime(2026, 12, 1, 9, tzinfo=UTC)
    stamp = start.strftime("%Y-%m-%d %H:%M:%S.000000")
    conn = sqlite3.connect(db)
    conn.executemany(
        "INSERT INTO stakeholders (id, email, display_email, first_name, last_name, role, "
        "organisation, borough, updated_at) VALUES (?, ?, ?, ?, ?, 'manager', ?, ?, ?)",
        ((i, f"p{i}@bench.example", f"p{i}@bench.example", f"First{i}", f"Last{i}",
          f"{BOROUGHS[i % 6]} PCT {i % 7}", BOROUGHS[i % 6], stamp) for i in range(1, people + 1)))
    delivery = ["delivered"] * 90 + [None] * 6 + ["bounced", "dropped", "deferred", "processed"]
    conn.executemany(
        "INSERT INTO sends (id, uid, campaign, step, occurrence, stakeholder_id, status, delivery, "
        "created_at, sent_at) VALUES (?, ?, 'programme', ?, 'once', ?, 'sent', ?, ?, ?)",
        ((n * len(STEPS) + k + 1, f"u{n}-{k}", step, n + 1, rnd.choice(delivery), stamp, stamp)
         for n in range(people) for k, step in enumerate(STEPS)))
    sends = people * len(STEPS)

    def response(i: int) -> tuple[object, ...]:
        send = rnd.randrange(sends)
        kind = rnd.choice(KINDS)
        when = (start + timedelta(minutes=rnd.randrange(60 * 24 * 30))).strftime(
            "%Y-%m-%d %H:%M:%S.000000")
        return (send + 1, send // len(STEPS) + 1, kind, kind == "opened" and i % 5 == 0, when)

    conn.executemany(
        "INSERT INTO responses (send_id, stakeholder_id, campaign, kind, machine, occurred_at, "
        "received_at) VALUES (?, ?, 'programme', ?, ?, ?, ?)",
        (r + (r[-1],) for r in map(response, range(responses))))
    conn.executemany(
        "INSERT OR IGNORE INTO rsvps (campaign, event, stakeholder_id, status, source, answered_at) "
        "VALUES ('programme', 'ws', ?, ?, 'link', ?)",
        ((rnd.randrange(1, people + 1), rnd.choice(["accepted", "declined", "tentative"]), stamp)
         for _ in range(people // 3)))
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return App(load_settings(root))


def naive(app: App, subset: int) -> float:
    """One query per person for sends and responses, counted in Python (the approach avoided)."""
    engine = app.store.engine
    started = time.perf_counter()
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        counts: dict[str, int] = {}
        for person in range(1, subset + 1):
            sent = raw.execute("SELECT step, delivery FROM sends WHERE stakeholder_id = ?",
                               (person,)).fetchall()
            got = raw.execute("SELECT kind, machine FROM responses WHERE stakeholder_id = ?",
                              (person,)).fetchall()
            kinds = {k for k, machine in got if not machine}
            counts["sent"] = counts.get("sent", 0) + bool(sent)
            counts["responded"] = counts.get("responded", 0) + bool(kinds & {"clicked", "replied"})
    return time.perf_counter() - started


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def picture(target: Path) -> None:
    """The example programme with answers made up (some boroughs keener than others), as HTML,
    photographed."""
    import os
    import shutil

    from playwright.sync_api import sync_playwright
    from sqlalchemy import insert, select

    from comms.store import tables
    from comms.store.rsvps import record_answer

    root_of_repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "project"
        for part in ("campaigns", "templates", "schedules", "stakeholders"):
            shutil.copytree(root_of_repo / part, root / part)
        workshops = root / "campaigns" / "workshops.yaml"
        workshops.write_text(workshops.read_text() + "goal: {metric: accepted, target: 40, event: ws1}\n")
        clock = _Clock(datetime(2026, 12, 7, 9, tzinfo=UTC))
        app = App(load_settings(root), clock=clock)
        app.sync_directory()
        campaign = app.project.campaign("workshops")
        invite = campaign.step("invite")
        assert invite is not None
        app.dispatcher().send(campaign, invite)
        keen = {"Lambeth": 0.9, "Southwark": 0.85, "Greenwich": 0.75, "Lewisham": 0.7,
                "Bromley": 0.55, "Bexley": 0.3}
        rnd = random.Random(14)
        s, st = tables.sends, tables.stakeholders
        with app.store.write() as conn:
            sent = conn.execute(select(s.c.id, s.c.stakeholder_id, st.c.borough)
                                .join(st, st.c.id == s.c.stakeholder_id)
                                .where(s.c.campaign == "workshops")).all()
            for send_id, person, borough in sent:
                chance = keen.get(borough, 0.5)
                day = datetime(2026, 12, 7, 9, tzinfo=UTC) + timedelta(
                    days=rnd.choice([0, 0, 1, 1, 2, 3, 5, 8]), hours=rnd.randrange(8))
                rows = [("opened", rnd.random() < 0.2)] if rnd.random() < 0.8 else []
                delivery = "bounced" if rnd.random() < 0.03 else "delivered"
                conn.execute(s.update().where(s.c.id == send_id).values(delivery=delivery))
                if rnd.random() < chance and delivery == "delivered":
                    rows.append(("clicked", False))
                for kind, machine in rows:
                    conn.execute(insert(tables.responses).values(
                        send_id=send_id, stakeholder_id=person, campaign="workshops",
                        step="invite", kind=kind, machine=machine, occurred_at=day,
                        received_at=day))
                if rnd.random() < chance and delivery == "delivered":
                    answer = rnd.choices(["accepted", "tentative", "declined"], [7, 1, 2])[0]
                    clock.current = day
                    outcome = record_answer(conn, campaign="workshops", event="ws1",
                                            stakeholder_id=person, answer=answer, source="link",
                                            now=day, send_id=send_id)
                    if outcome.status == "accepted" and rnd.random() < 0.85:
                        conn.execute(insert(tables.attendance).values(
                            campaign="workshops", event="ws1", stakeholder_id=person,
                            recorded_at=day))
        clock.current = datetime(2026, 12, 18, 9, tzinfo=UTC)
        page_file = Path(folder) / "report.html"
        page_file.write_text(report(app, campaign="workshops").render("html"), encoding="utf-8")
        app.close()
        executable = os.environ.get("COMMS_TEST_CHROMIUM") or shutil.which("chromium")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, headless=True,
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 900, "height": 1400})
            page.goto(page_file.as_uri())
            page.screenshot(path=str(target), full_page=True)
            browser.close()
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--picture", type=Path, help="make the README's picture here instead")
    args = parser.parse_args()
    if args.picture:
        picture(args.picture)
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        app = make(Path(folder) / "project", args.people, args.responses)
        print(f"data: {args.people:,} stakeholders, {args.people * len(STEPS):,} sends, "  # noqa: T201
              f"{args.responses:,} responses, made in {time.perf_counter() - started:.1f} s")
        with app.store.read() as conn:
            started = time.perf_counter()
            conn.exec_driver_sql("SELECT COUNT(*) FROM responses").scalar()
            floor = time.perf_counter() - started
        subset = min(10_000, args.people)
        loop = naive(app, subset) * args.people / subset
        print(f"{'baseline: COUNT(*) of responses':40} {floor:7.2f} s")  # noqa: T201
        print(f"{'baseline: naive per-person loop (scaled)':40} {loop:7.2f} s")  # noqa: T201
        for fmt in ("json", "csv", "table", "html"):
            started = time.perf_counter()
            text = report(app, by="borough").render(fmt)
            seconds = time.perf_counter() - started
            print(f"{'comms report --format ' + fmt:40} {seconds:7.2f} s  ({len(text):,} chars)")  # noqa: T201
        app.close()


if __name__ == "__main__":
    main()

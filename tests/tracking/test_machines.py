"""Human and machine opens and clicks, over a hand-counted stream of SendGrid events: machine
opens (``sg_machine_open``), a scanner clicking every link two seconds after delivery, a
honeypot click, a real click twenty minutes later, duplicates and shuffling. Both kinds are
kept, each machine row with its reason."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from comms.app import App
from comms.message import HONEYPOT_PATH
from comms.settings import load_settings
from comms.store import tables
from comms.suppression import AddressHasher
from comms.tracking import ingest
from comms.tracking.providers import sendgrid as webhook

from ..conftest import FakeClock

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # delivered
LINK, OTHER = "https://www.england.nhs.example/nmdi", "https://www.england.nhs.example/about"
BASE = "https://comms.sel-learning.example"


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock) -> Any:
    app = App(load_settings(project_dir, database_url=store_url, base_url=BASE,
                            allow_insecure_links=True), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    campaign = app.project.campaign("nmdi-awareness")
    assert app.dispatcher().send(campaign, campaign.steps[0]).sent == 80
    yield app
    app.close()


def people(app: App) -> dict[str, tuple[str, str]]:
    """Per address: (send uid of the launch, borough)."""
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        rows = conn.execute(select(st.c.email, s.c.uid, st.c.borough)
                            .join(st, st.c.id == s.c.stakeholder_id)
                            .order_by(st.c.email)).all()
    return {email: (uid, borough) for email, uid, borough in rows}


def event(uid: str, n: str, word: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"email": "x@gp.nhs.example", "timestamp": int(at.timestamp()), "event": word,
            "sg_event_id": f"ev-{uid[:8]}-{n}", "send_id": uid, **extra}


def stream(app: App) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The events, and whose they are (A to F by address)."""
    found = people(app)
    bexley = [e for e, (_, b) in found.items() if b == "Bexley"][:3]
    bromley = [e for e, (_, b) in found.items() if b == "Bromley"][:3]
    who = dict(zip("ABCDEF", bexley + bromley, strict=True))
    uid = {k: found[email][0] for k, email in who.items()}
    second = timedelta(seconds=1)
    events = []
    for k in "ABCDEF":
        events.append(event(uid[k], "d", "delivered", T0))
    events += [
        # A: a scanner fetches both links 2 s after delivery; the person clicks 20 min later
        event(uid["A"], "c1", "click", T0 + 2 * second, url=LINK),
        event(uid["A"], "c2", "click", T0 + 2 * second, url=OTHER),
        event(uid["A"], "c3", "click", T0 + timedelta(minutes=20), url=LINK),
        # B: Apple Mail's pre-fetch, then a real open
        event(uid["B"], "o1", "open", T0 + 3 * second, sg_machine_open=True),
        event(uid["B"], "o2", "open", T0 + timedelta(hours=2), sg_machine_open=False),
        # C: the hidden link and a link 4 s later, a minute after delivery: a machine
        event(uid["C"], "h1", "click", T0 + 60 * second, url=f"{BASE}{HONEYPOT_PATH}{uid['C']}"),
        event(uid["C"], "c1", "click", T0 + 64 * second, url=LINK),
        # D: Mimecast's user agent, ten minutes on
        event(uid["D"], "c1", "click", T0 + timedelta(minutes=10), url=LINK,
              useragent="Mozilla/5.0 (compatible; Mimecast URL Protect)"),
        # E: two links half a second apart, five minutes on
        event(uid["E"], "c1", "click", T0 + timedelta(minutes=5), url=LINK),
        event(uid["E"], "c2", "click", T0 + timedelta(minutes=5, milliseconds=500), url=OTHER),
        # F: a person: one click an hour on, and the same link again the next day
        event(uid["F"], "c1", "click", T0 + timedelta(hours=1), url=LINK),
        event(uid["F"], "c2", "click", T0 + timedelta(days=1), url=LINK),
    ]
    return events, who


EXPECTED = {  # (kind, person) -> (human rows, machine rows), counted by hand from the stream
    ("clicked", "A"): (1, 2), ("opened", "B"): (1, 1), ("clicked", "C"): (0, 2),
    ("clicked", "D"): (0, 1), ("clicked", "E"): (0, 2), ("clicked", "F"): (2, 0),
}
REASONS = {"within 10 s of delivery": 2, "sg_machine_open": 1, "honeypot": 2,
           "scanner user agent": 1, "several links within a second": 2}
# by borough (A, B, C in Bexley; D, E, F in Bromley): people with a human click, a machine one
BY_BOROUGH = {"Bexley": (1, 2), "Bromley": (1, 2)}


def post_shuffled(app: App, events: list[dict[str, Any]], seed: int) -> None:
    """The events in a random order, with duplicates, in three posts."""
    shuffled = events + random.Random(seed).sample(events, 6)  # SendGrid retries
    random.Random(seed).shuffle(shuffled)
    for i in range(3):
        body = json.dumps(shuffled[i::3]).encode()
        ingest.ingest(app.store, webhook.parse_events(webhook.parse(body)), now=app.clock.now(),
                      hasher=AddressHasher(app.store), machine_click_seconds=10,
                      honeypot=f"{BASE}{HONEYPOT_PATH}")


def counted(app: App, who: dict[str, str]) -> tuple[dict[tuple[str, str], tuple[int, int]],
                                                    Counter[str], dict[str, tuple[int, int]]]:
    r, st = tables.responses, tables.stakeholders
    letter = {email: k for k, email in who.items()}
    with app.store.read() as conn:
        rows = conn.execute(select(st.c.email, st.c.borough, r.c.kind, r.c.machine,
                                   r.c.machine_reason)
                            .join(st, st.c.id == r.c.stakeholder_id)
                            .where(r.c.kind.in_(["clicked", "opened"]))).all()
    per: dict[tuple[str, str], list[int]] = {}
    reasons: Counter[str] = Counter()
    human: dict[str, set[str]] = {}
    machine: dict[str, set[str]] = {}
    for email, borough, kind, is_machine, reason in rows:
        per.setdefault((kind, letter[email]), [0, 0])[bool(is_machine)] += 1
        if is_machine:
            reasons[reason] += 1
        if kind == "clicked":
            (machine if is_machine else human).setdefault(borough, set()).add(email)
    boroughs = {b: (len(human.get(b, ())), len(machine.get(b, ()))) for b in ("Bexley", "Bromley")}
    return {k: (v[0], v[1]) for k, v in per.items()}, reasons, boroughs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_machine_opens_and_clicks_are_classified_with_a_reason_in_any_order(
        app: App, seed: int) -> None:
    events, who = stream(app)
    post_shuffled(app, events, seed)
    per, reasons, boroughs = counted(app, who)
    assert per == EXPECTED
    assert dict(reasons) == REASONS
    assert boroughs == BY_BOROUGH


def test_a_click_before_its_delivery_event_is_classified_once_the_delivery_arrives(
        app: App) -> None:
    events, who = stream(app)
    clicks = [e for e in events if e["event"] != "delivered"]
    deliveries = [e for e in events if e["event"] == "delivered"]
    for part in (clicks, deliveries):  # the delivery comes after the clicks
        ingest.ingest(app.store, webhook.parse_events(part), now=app.clock.now(),
                      hasher=AddressHasher(app.store), machine_click_seconds=10,
                      honeypot=f"{BASE}{HONEYPOT_PATH}")
    per, _, _ = counted(app, who)
    assert per == EXPECTED


def test_the_report_counts_people_and_shows_machines_beside_them(app: App) -> None:
    from comms.report import report

    events, _ = stream(app)
    post_shuffled(app, events, 4)
    seen = App(load_settings(app.settings.project_dir, database_url=app.store.url,
                             transport="sendgrid", sendgrid_webhook_insecure=True,
                             track_opens=True, track_clicks=True, base_url=BASE,
                             allow_insecure_links=True), clock=app.clock)
    [section] = [c for c in report(seen).data["campaigns"] if c["campaign"] == "nmdi-awareness"]
    [launch] = [s for s in section["steps"] if s["step"] == "launch"]
    # by hand: people with a human open (B), human clicks (A, F); machines opened B's message
    # and clicked A's, C's, D's and E's
    assert (launch["opened"], launch["clicked"]) == (1, 2)
    assert (launch["machine_opened"], launch["machine_clicked"]) == (1, 4)
    assert (section["totals"]["machine_opened"], section["totals"]["machine_clicked"]) == (1, 4)
    clicked = {g["group"]: g["clicked"] for g in section["groups"]}
    assert (clicked["Bexley"], clicked["Bromley"]) == (1, 1)
    seen.close()

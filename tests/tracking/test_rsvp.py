"""RSVPs: one answer per person and event, capacity with a waitlist promoted in order."""

from __future__ import annotations

import email
import email.policy
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from comms._types import email_key
from comms.app import App
from comms.events import EventCancelled, roster
from comms.store import tables
from comms.store.rsvps import Outcome, record_answer, seats_left
from comms.tracking.replies import Reply
from tests.conftest import FakeClock
from tests.test_dispatch import make_app, outbox

UID = "workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example"


def small_workshop(project_dir: Path, store_url: str, clock: FakeClock, capacity: int = 2,
                   *, invite: bool = False) -> App:
    path = project_dir / "campaigns" / "workshops.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("capacity: 40", f"capacity: {capacity}"), encoding="utf-8")
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("workshops")
    if invite:
        step = campaign.step("invite")
        assert step is not None
        assert app.dispatcher().send(campaign, step).sent == 80
    else:
        from comms.store.events import sync as sync_event

        event = campaign.event("ws1")
        assert event is not None
        with app.store.write() as conn:
            sync_event(conn, campaign, event, timezone="Europe/London", now=clock.now())
    return app


def managers(app: App) -> list[str]:
    return sorted(p.key for p in app.project.directory.people
                  if p.role == "manager" and "primary-care" in p.tags)


def ids(app: App) -> dict[str, int]:
    st = tables.stakeholders
    with app.store.read() as conn:
        return {row.email: row.id for row in conn.execute(select(st.c.email, st.c.id))}


def answer(app: App, person: int, status: Any, source: Any = "link") -> Outcome:
    with app.store.write() as conn:
        return record_answer(conn, campaign="workshops", event="ws1", stakeholder_id=person,
                             answer=status, source=source, now=app.clock.now())


def states(app: App) -> dict[int, str]:
    r = tables.rsvps
    with app.store.read() as conn:
        return dict(conn.execute(select(r.c.stakeholder_id, r.c.status)).all())


def seats(app: App) -> int | None:
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    with app.store.read() as conn:
        return seats_left(conn, "workshops", event)


def test_accepts_beyond_capacity_wait_and_a_decline_promotes_the_earliest(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = small_workshop(project_dir, store_url, clock, capacity=2)
    by_email = ids(app)
    a, b, c, d, e = (by_email[m] for m in managers(app)[:5])
    assert seats(app) == 2
    assert answer(app, a, "accepted") == Outcome("accepted", None, [])
    clock.advance(minutes=1)
    assert answer(app, b, "accepted") == Outcome("accepted", None, [])
    assert seats(app) == 0
    clock.advance(minutes=1)
    assert answer(app, c, "accepted") == Outcome("waitlisted", None, [])
    clock.advance(minutes=1)
    assert answer(app, d, "accepted") == Outcome("waitlisted", None, [])
    clock.advance(minutes=1)
    assert answer(app, e, "accepted") == Outcome("waitlisted", None, [])

    # accepting again keeps a seat (never sends someone seated to the waitlist) ...
    again = answer(app, a, "accepted")
    assert again == Outcome("accepted", "accepted", []) and not again.changed
    # ... and keeps a waiting person's place in the queue
    clock.advance(minutes=1)
    assert answer(app, c, "accepted") == Outcome("waitlisted", "waitlisted", [])

    clock.advance(minutes=1)
    assert answer(app, a, "declined") == Outcome("declined", "accepted", [c])
    clock.advance(minutes=1)
    assert answer(app, b, "tentative") == Outcome("tentative", "accepted", [d])
    assert states(app) == {a: "declined", b: "tentative", c: "accepted", d: "accepted",
                           e: "waitlisted"}
    assert seats(app) == 0
    # a waiting person who gives up frees no seat and promotes nobody
    assert answer(app, e, "declined") == Outcome("declined", "waitlisted", [])
    assert answer(app, c, "declined") == Outcome("declined", "accepted", [])
    assert seats(app) == 1
    app.close()


def test_answering_again_changes_the_answer(project_dir: Path, store_url: str,
                                            clock: FakeClock) -> None:
    app = small_workshop(project_dir, store_url, clock, capacity=5)
    person = ids(app)[managers(app)[0]]
    history = [("accepted", "link"), ("declined", "calendar"), ("tentative", "link"),
               ("accepted", "manual")]
    previous = None
    for status, source in history:
        clock.advance(hours=1)
        outcome = answer(app, person, status, source)
        assert outcome == Outcome(status, previous, [])
        assert outcome.changed
        previous = status
    r = tables.rsvps
    with app.store.read() as conn:
        rows = conn.execute(select(r.c.status, r.c.source, r.c.answered_at)
                            .where(r.c.stakeholder_id == person)).all()
        kinds = conn.execute(select(tables.responses.c.kind).where(
            tables.responses.c.stakeholder_id == person).order_by(tables.responses.c.id)).scalars()
        assert list(kinds) == ["rsvp_accepted", "rsvp_declined", "rsvp_tentative",
                               "rsvp_accepted"]
    assert len(rows) == 1  # one answer per person and event: the latest
    assert (rows[0].status, rows[0].source) == ("accepted", "manual")
    assert rows[0].answered_at.replace(tzinfo=None) == clock.now().replace(tzinfo=None)
    assert seats(app) == 4
    app.close()


def test_no_capacity_means_no_waitlist(project_dir: Path, store_url: str,
                                       clock: FakeClock) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("    capacity: 40\n", ""),
                    encoding="utf-8")
    app = small_workshop(project_dir, store_url, clock)
    for address in managers(app)[:10]:
        assert answer(app, ids(app)[address], "accepted").status == "accepted"
    assert seats(app) is None
    app.close()


def test_concurrent_accepts_never_overfill(project_dir: Path, store_url: str,
                                           clock: FakeClock) -> None:
    app = small_workshop(project_dir, store_url, clock, capacity=3)
    people = [ids(app)[m] for m in managers(app)[:12]]
    barrier = threading.Barrier(len(people))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def accept(person: int) -> None:
        try:
            barrier.wait()
            outcomes.append(answer(app, person, "accepted").status)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(outcomes) == ["accepted"] * 3 + ["waitlisted"] * 9
    assert list(states(app).values()).count("accepted") == 3
    assert seats(app) == 0
    app.close()


# --- through Rsvps: the emails that tell people what their answer did --------------------------


def reply(address: str, partstat: str) -> Reply:
    return Reply(uid=UID, attendee_email=address.upper(), partstat=partstat,  # type: ignore[arg-type]
                 sequence=0, dtstamp=FakeClock().now())


def subjects(app: App) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in outbox(app):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.setdefault(str(msg["Subject"]), set()).add(
            email_key(msg["To"].addresses[0].addr_spec))
    return found


def test_waitlisted_and_promoted_people_are_told_by_email(project_dir: Path, store_url: str,
                                                          clock: FakeClock) -> None:
    app = small_workshop(project_dir, store_url, clock, capacity=1, invite=True)
    rsvps = app.rsvps
    first, second, third = managers(app)[:3]
    for address in (first, second, third):
        clock.advance(minutes=5)
        invitation = rsvps.by_reply(reply(address, "accepted"))
        rsvps.answer(invitation, "accepted", "calendar")
    invitation = rsvps.by_reply(reply(second, "accepted"))
    assert invitation.status == "waitlisted"
    assert rsvps.seats_left(invitation) == 0
    rsvps.answer(invitation, "accepted", "calendar")  # again: no second waitlist email
    title = "Leading change in primary care — workshop 1"
    sent = subjects(app)
    assert sent[f"You are on the waiting list: {title}"] == {second, third}
    assert f"A place is yours: {title}" not in sent

    clock.advance(hours=1)
    outcome = rsvps.answer(rsvps.by_reply(reply(first, "declined")), "declined", "calendar")
    assert outcome.promoted == [ids(app)[second]]
    sent = subjects(app)
    assert sent[f"A place is yours: {title}"] == {second}
    campaign = app.project.campaign("workshops")
    event = campaign.event("ws1")
    assert event is not None
    rows = {email_key(r["email"]): r for r in roster(app.store, campaign, event)}
    assert [(rows[a]["status"], rows[a]["source"]) for a in (first, second, third)] == [
        ("declined", "calendar"), ("accepted", "calendar"), ("waitlisted", "calendar")]
    app.close()


CANCEL_STEP = """\
  - id: cancel
    kind: cancel
    event: ws1
    template: events/chase
    subject: "Cancelled: {{ event.title }}"
    now: true
"""


def test_an_answer_after_a_cancel_step_keeps_the_event_cancelled(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    path = project_dir / "campaigns" / "workshops.yaml"
    path.write_text(path.read_text(encoding="utf-8") + CANCEL_STEP, encoding="utf-8")
    app = small_workshop(project_dir, store_url, clock, capacity=40, invite=True)
    campaign = app.project.campaign("workshops")
    cancel = campaign.step("cancel")
    assert cancel is not None
    assert app.dispatcher().send(campaign, cancel).sent == 80
    rsvps = app.rsvps
    with pytest.raises(EventCancelled):  # a cancelled event takes no answers
        rsvps.answer(rsvps.by_reply(reply(managers(app)[0], "declined")), "declined", "calendar")
    e = tables.events
    with app.store.read() as conn:
        row = conn.execute(select(e.c.status, e.c.sequence)).one()
        answers = conn.execute(select(tables.rsvps.c.id)).all()
    assert (row.status, row.sequence) == ("cancelled", 1)
    assert answers == []
    app.close()

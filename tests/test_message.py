"""Composing: the context templates see, signed links, headers, Message-ID; per-step work once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from comms.message import Composer
from comms.project import load_project
from comms.tokens import Tokens

UID = "feedfacefeedfacefeedfacefeedface"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def composer(project_dir: Path) -> tuple[Composer, Tokens]:
    project = load_project(project_dir)
    tokens = Tokens("k", "https://comms.sel-learning.example")
    return Composer(project.renderer, tokens, timezone="Europe/London"), tokens


def test_plain_step_message(project_dir: Path) -> None:
    comp, tokens = composer(project_dir)
    project = load_project(project_dir)
    campaign = project.campaign("nmdi-awareness")
    person = next(p for p in project.directory.people if p.role == "manager")
    message = comp.prepare(campaign, campaign.steps[0], now=NOW).message(person, UID)
    assert message.message_id == f"<{UID}@sel-learning.example>"
    assert message.send_id == UID
    assert (message.sender.email, message.sender.name) == ("nmdi@sel-learning.example",
                                                           "SEL Learning Alliance")
    assert (message.to.email, message.to.name) == (person.email, person.full_name)
    assert message.reply_to == "programme.office@sel-learning.example"
    assert message.subject == f"{person.first_name}, develop as a leader with the NMDI"
    assert message.headers == {"List-Unsubscribe": f"<{tokens.unsubscribe_url(UID)}>",
                               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert tokens.unsubscribe_url(UID) in message.text
    assert message.calendar is None


def test_event_step_gets_event_and_rsvp_links(project_dir: Path) -> None:
    comp, tokens = composer(project_dir)
    project = load_project(project_dir)
    campaign = project.campaign("workshops")
    prepared = comp.prepare(campaign, campaign.step("invite"), now=NOW)  # type: ignore[arg-type]
    assert prepared.event is not None
    assert prepared.event.starts.isoformat() == "2027-01-14T09:30:00+00:00"
    person = project.directory.people[1]
    context = prepared.context(person, UID)
    rsvp = context["rsvp"]
    ends = prepared.event.ends
    assert tokens.read_rsvp(rsvp.accept_url.rsplit("/", 1)[1], NOW) == (UID, "accepted")
    assert tokens.read_rsvp(rsvp.decline_url.rsplit("/", 1)[1], ends) == (UID, "declined")
    message = prepared.message(person, UID)
    assert rsvp.tentative_url in message.html.replace("&amp;", "&")
    assert context["now"].tzinfo is not None and context["now"].utcoffset().total_seconds() == 0

"""Mentor introductions: the pairs file's checks, one introduction per pair to both people,
check-in links (GET records nothing, POST records), ``only_if: {pair: not_met}`` and
``comms pairs status``."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from starlette.testclient import TestClient

from comms.app import App
from comms.cli import cli
from comms.project import load_project
from comms.settings import load_settings
from comms.store import tables
from comms.suppression import AddressHasher, suppress
from comms.web import create_app

from .conftest import FakeClock

PAIRS = Path("pairs") / "cohort-1.csv"


def make_app(project_dir: Path, store_url: str, clock: FakeClock) -> App:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    return app


def messages(app: App, subject: str) -> list[email.message.EmailMessage]:
    folder = app.settings.resolved_outbox_dir
    found = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in sorted(folder.glob("*.eml"))] if folder.exists() else []
    return [m for m in found if str(m["Subject"]).startswith(subject)]


def pair_lines(project_dir: Path) -> list[tuple[str, str]]:
    lines = (project_dir / PAIRS).read_text(encoding="utf-8").splitlines()[1:]
    return [(line.split(",")[0], line.split(",")[1]) for line in lines]


def send(app: App, step: str) -> object:
    campaign = app.project.campaign("mentoring")
    found = campaign.step(step)
    assert found is not None
    return app.dispatcher().send(campaign, found)


def test_the_pairs_file_is_checked_naming_file_and_line(project_dir: Path) -> None:
    lines = (project_dir / PAIRS).read_text(encoding="utf-8").splitlines()
    mentor, mentee = lines[1].split(",")[:2]
    other_mentee = lines[2].split(",")[1]
    lines += [
        f"nobody@nowhere.example,{mentee},",  # line 82: not in the directory
        f"{other_mentee},{mentee},",  # 83: a manager as mentor
        f"{mentor},{mentor},",  # 84: paired with themselves
        f"{mentor},{lines[3].split(',')[1]},",  # 85: that mentee is paired on line 4 already
        f"{mentor},{mentee.upper()}",  # 86: the same mentee, in capitals
    ]
    (project_dir / PAIRS).write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = load_project(project_dir)
    found = [p.location_message() for p in project.problems]
    assert found == [
        "pairs/cohort-1.csv:82: mentor nobody@nowhere.example is not in the directory "
        "(stakeholders/)",
        f"pairs/cohort-1.csv:83: mentor {other_mentee} has the role 'manager', not 'mentor'",
        f"pairs/cohort-1.csv:84: {mentor} is paired with themselves",
        f"pairs/cohort-1.csv:85: mentee {lines[3].split(',')[1]} is paired twice in this round "
        "(first on line 4): a mentee has one mentor per round",
        f"pairs/cohort-1.csv:86: mentee {mentee} is paired twice in this round (first on line 2): "
        "a mentee has one mentor per round",
    ]
    assert len(project.rounds.of("cohort-1")) == 80


def test_validate_refuses_a_bad_pairs_file_and_an_unknown_round(project_dir: Path) -> None:
    (project_dir / PAIRS).write_text("mentor,mentee\nnot-an-address,\n", encoding="utf-8")
    (project_dir / "campaigns" / "mentoring.yaml").write_text(
        (project_dir / "campaigns" / "mentoring.yaml").read_text(encoding="utf-8")
        .replace("pairs: cohort-1\n    template: mentoring/intro",
                 "pairs: cohort-9\n    template: mentoring/intro"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", "--project", str(project_dir)])
    assert result.exit_code == 2
    assert "pairs/cohort-1.csv:2: mentor not-an-address is not in the directory" in result.output
    assert ("campaigns/mentoring.yaml:14: steps[0].pairs: unknown round of pairs 'cohort-9' "
            "(expected pairs/cohort-9.csv; rounds are: cohort-1)") in result.output
    assert "Traceback" not in result.output


def test_one_introduction_per_pair_to_both_people_and_later_pairs_only(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    pairs = pair_lines(project_dir)
    text = (project_dir / PAIRS).read_text(encoding="utf-8")
    last = text.splitlines()[-1]
    (project_dir / PAIRS).write_text(text.replace(last + "\n", ""), encoding="utf-8")
    app = make_app(project_dir, store_url, clock)
    first = send(app, "intro")
    assert (first.sent, first.failed) == (79, 0)  # type: ignore[attr-defined]
    sent = messages(app, "NMDI mentoring:")
    assert len(sent) == 79
    to = Counter((str(m["To"].addresses[0].addr_spec), str(m["To"].addresses[1].addr_spec))
                 for m in sent)
    assert set(to) == {(mentee, mentor) for mentor, mentee in pairs[:-1]}
    assert max(to.values()) == 1
    assert all(len(m["To"].addresses) == 2 for m in sent)
    assert all(m["List-Unsubscribe"] is None for m in sent)  # whose would it be?
    mentor, mentee = pairs[0]
    first_message = next(m for m in sent if m["To"].addresses[0].addr_spec == mentee)
    body = first_message.get_body(("plain",))
    assert body is not None
    assert "Mentor:" in body.get_content() and "Mentee:" in body.get_content()

    again = send(app, "intro")
    assert (again.sent, again.already_sent) == (0, 79)  # type: ignore[attr-defined]
    app.close()

    (project_dir / PAIRS).write_text(text, encoding="utf-8")  # a pair added later
    app = make_app(project_dir, store_url, clock)
    later = send(app, "intro")
    assert later.sent == 1  # type: ignore[attr-defined]
    newest = [m for m in messages(app, "NMDI mentoring:")
              if m["To"].addresses[0].addr_spec == pairs[-1][1]]
    assert len(newest) == 1 and newest[0]["To"].addresses[1].addr_spec == pairs[-1][0]
    app.close()


def test_a_pair_with_a_suppressed_member_is_skipped(project_dir: Path, store_url: str,
                                                    clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    (mentor, mentee), (mentor2, mentee2) = pair_lines(project_dir)[:2]
    with app.store.write() as conn:
        suppress(conn, AddressHasher(app.store), [mentor, mentee2], reason="unsubscribed",
                 source="test", now=clock.now())
    summary = send(app, "intro")
    assert (summary.sent, summary.suppressed) == (78, 2)  # type: ignore[attr-defined]
    people = {p.key: p.full_name for p in app.project.directory.people}
    named = sorted([f"{people[mentee]} & {people[mentor]}",
                    f"{people[mentee2]} & {people[mentor2]}"])
    assert summary.suppressed_pairs == named  # type: ignore[attr-defined]
    assert "@" not in summary.line()  # type: ignore[attr-defined]
    assert f"(pairs skipped, one of the two suppressed: {'; '.join(named)})" in \
        summary.line()  # type: ignore[attr-defined]
    reached = {m["To"].addresses[0].addr_spec for m in messages(app, "NMDI mentoring:")}
    assert mentee not in reached and mentee2 not in reached
    from comms.status import status

    found = status(app, "mentoring")
    assert sorted(p["pair"] for p in found.skipped_pairs) == named
    assert "@" not in json.dumps(found.skipped_pairs)
    app.close()


def check_in_links(app: App) -> dict[str, dict[str, str]]:
    """Per mentee: the tokens of the check-in's two links."""
    found = {}
    for msg in messages(app, "Have you two met yet?"):
        body = msg.get_body(("plain",))
        assert body is not None
        tokens = re.findall(r"/a/([\w.-]+)", body.get_content())
        found[str(msg["To"].addresses[0].addr_spec)] = {"met": tokens[0], "not_yet": tokens[1]}
    return found


def pair_states(project_dir: Path, store_url: str) -> dict[str, str]:
    result = CliRunner().invoke(cli, ["pairs", "status", "cohort-1", "--format", "json",
                                      "--project", str(project_dir)],
                                env={"COMMS_DATABASE_URL": store_url})
    assert result.exit_code == 0, result.output
    return {row["mentee"]: row["state"] for row in json.loads(result.output)}


@pytest.fixture
def checked_in(project_dir: Path, store_url: str, clock: FakeClock) -> Iterator[App]:
    """Introductions sent, and three weeks later the check-in."""
    app = make_app(project_dir, store_url, clock)
    assert send(app, "intro").sent == 80  # type: ignore[attr-defined]
    clock.advance(days=21, minutes=1)
    assert send(app, "check-in").sent == 80  # type: ignore[attr-defined]
    yield app
    app.close()


def test_check_in_links_record_only_when_posted(checked_in: App, project_dir: Path,
                                                store_url: str) -> None:
    app = checked_in
    links = check_in_links(app)
    assert len(links) == 80
    (first, tokens), (second, other) = sorted(links.items())[:2]
    assert set(pair_states(project_dir, store_url).values()) == {"introduced"}
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        page = client.get(f"/a/{tokens['met']}")
        assert page.status_code == 200
        assert '<form method="post">' in page.text and "Yes: met" in page.text
        client.get(f"/a/{tokens['not_yet']}")  # a scanner fetching every link records nothing
        with app.store.read() as conn:
            assert conn.execute(select(func.count()).select_from(tables.pairs)
                                .where(tables.pairs.c.answer.is_not(None))).scalar_one() == 0
        assert client.post(f"/a/{tokens['not_yet']}").status_code == 200
        assert client.post(f"/a/{other['not_yet']}").status_code == 200
        done = client.post(f"/a/{other['met']}")  # a later answer replaces the earlier
        assert done.status_code == 200 and "met" in done.text
        assert client.get(f"/a/{'x' + tokens['met'][1:]}").status_code == 400
    states = pair_states(project_dir, store_url)
    assert states[first] == "not yet" and states[second] == "met"
    assert Counter(states.values()) == {"introduced": 78, "not yet": 1, "met": 1}
    with app.store.read() as conn:
        kinds = Counter(conn.execute(select(tables.responses.c.kind)).scalars())
    assert (kinds["pair_met"], kinds["pair_not_yet"]) == (2, 4)  # both people, each answer


def test_only_pairs_that_have_not_met_are_chased(checked_in: App, clock: FakeClock) -> None:
    app = checked_in
    links = check_in_links(app)
    met = sorted(links)[:5]
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        for mentee in met:
            assert client.post(f"/a/{links[mentee]['met']}").status_code == 200
        assert client.post(f"/a/{links[sorted(links)[5]]['not_yet']}").status_code == 200
    clock.advance(days=14, minutes=1)
    summary = send(app, "not-met-yet")
    assert (summary.sent, summary.skipped) == (75, 5)  # type: ignore[attr-defined]
    chased = {m["To"].addresses[0].addr_spec for m in messages(app, "A first mentoring")}
    assert chased == set(links) - set(met)

"""Due times of every timing rule, after sending policies (pure: rules + clock → times)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from comms.campaign import Campaign, Step
from comms.plan import describe, is_conditional, occurrences, steps_due
from comms.project import load_project
from comms.schedule import Schedule

LONDON = ZoneInfo("Europe/London")
WORKING = Schedule(id="w", days=["mon", "tue", "wed", "thu", "fri"], window="09:00-17:30",
                   skip_holidays="england")
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def campaign(*steps: dict[str, object]) -> Campaign:
    return Campaign.model_validate({
        "id": "c", "name": "C", "sender": {"email": "a@b.example"},
        "events": [{"id": "ws1", "title": "W", "starts": "2027-01-14 09:30",
                    "ends": "2027-01-14 16:30", "organiser": {"email": "e@b.example"}}],
        "steps": [{"template": "t", "subject": "s", **s} for s in steps]})


def dues(step: Step, c: Campaign, schedule: Schedule | None = WORKING,
         end: datetime = datetime(2027, 12, 31, tzinfo=UTC)) -> list[tuple[str, str]]:
    return [(d.occurrence, d.due.astimezone(LONDON).isoformat())
            for d in occurrences(c, step, schedule=schedule, zone=LONDON, start=NOW, end=end,
                                 first_seen=NOW)]


def test_send_at_is_local_time_and_shifted_by_policy() -> None:
    c = campaign({"id": "a", "send_at": "2027-06-01 08:00"}, {"id": "b", "send_at": "2026-12-25 10:00"})
    assert dues(c.steps[0], c) == [("once", "2027-06-01T09:00:00+01:00")]  # BST, window opens 09:00
    assert dues(c.steps[1], c) == [("once", "2026-12-29T09:00:00+00:00")]  # Christmas
    assert dues(c.steps[1], c, schedule=None) == [("once", "2026-12-25T10:00:00+00:00")]


def test_before_counts_back_from_the_event() -> None:
    c = campaign({"id": "chase", "before": {"event": "ws1", "days": 10}})
    assert dues(c.steps[0], c) == [("once", "2027-01-04T09:30:00+00:00")]
    assert describe(c.steps[0]) == "before event 'ws1'"


def test_cron_with_until_each_occurrence_its_own_key() -> None:
    c = campaign({"id": "monthly", "cron": "0 9 1 * *", "until": "2027-04-30"})
    assert dues(c.steps[0], c) == [
        ("2026-11-01T09:00", "2026-11-02T09:00:00+00:00"),  # a Sunday → Monday
        ("2026-12-01T09:00", "2026-12-01T09:00:00+00:00"),
        ("2027-01-01T09:00", "2027-01-04T09:00:00+00:00"),  # New Year's Day, then a weekend
        ("2027-02-01T09:00", "2027-02-01T09:00:00+00:00"),
        ("2027-03-01T09:00", "2027-03-01T09:00:00+00:00"),
        ("2027-04-01T09:00", "2027-04-01T09:00:00+01:00"),  # after the spring change
    ]


def test_cron_in_the_autumn_repeated_hour_fires_once() -> None:
    c = campaign({"id": "nightly", "cron": "30 1 * * *"})
    start = datetime(2026, 10, 24, 12, tzinfo=UTC)
    found = [d.due.isoformat() for d in occurrences(
        c, c.steps[0], schedule=None, zone=LONDON, start=start,
        end=datetime(2026, 10, 26, 12, tzinfo=UTC), first_seen=start)]
    assert found == ["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]


def test_cron_in_the_spring_gap_moves_on() -> None:
    c = campaign({"id": "nightly", "cron": "30 1 * * *"})
    start = datetime(2026, 3, 28, 12, tzinfo=UTC)
    found = [d.due.isoformat() for d in occurrences(
        c, c.steps[0], schedule=None, zone=LONDON, start=start,
        end=datetime(2026, 3, 30, 12, tzinfo=UTC), first_seen=start)]
    assert found == ["2026-03-29T02:30:00+01:00", "2026-03-30T01:30:00+01:00"]


def test_after_has_no_fixed_occurrence_and_now_is_first_seen() -> None:
    c = campaign({"id": "a", "now": True}, {"id": "b", "after": {"step": "a", "days": 7}})
    assert dues(c.steps[0], c, schedule=None) == [("once", NOW.astimezone(LONDON).isoformat())]
    assert dues(c.steps[1], c) == []
    assert describe(c.steps[1]) == "7 days after 'a', per recipient"


def test_conditions_make_counts_conditional() -> None:
    c = campaign({"id": "chase", "before": {"event": "ws1", "days": 10},
                  "only_if": {"rsvp": "none", "event": "ws1"}}, {"id": "x", "now": True,
                                                                   "only_if": {"roles": ["mentor"]}})
    assert is_conditional(c.steps[0]) and not is_conditional(c.steps[1])


def test_steps_due_now(project_dir: Path) -> None:
    project = load_project(project_dir)
    awareness = project.campaign("nmdi-awareness")
    due, waiting = steps_due(project, awareness, timezone="Europe/London",
                             now=datetime(2026, 11, 30, tzinfo=UTC))
    assert [s.id for s in due] == ["follow-up"]
    assert waiting[0][1].startswith("not due until 2026-12-01T09:00:00+00:00")
    due, waiting = steps_due(project, awareness, timezone="Europe/London",
                             now=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert [s.id for s in due] == ["launch", "follow-up"] and waiting == []
    assert date(2026, 12, 1).weekday() == 1

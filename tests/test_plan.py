"""Due times of steps (the full scheduler rules build on these)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from comms.plan import describe, due_time, is_conditional, steps_due
from comms.project import load_project


def test_send_at_is_local_time_in_the_zone(project_dir: Path) -> None:
    campaign = load_project(project_dir).campaign("nmdi-awareness")
    due = due_time(campaign, campaign.steps[0], timezone="Europe/London",
                   now=datetime(2026, 11, 1, tzinfo=UTC))
    assert due is not None and due.isoformat() == "2026-12-01T09:00:00+00:00"
    summer = campaign.steps[0].model_copy(update={"send_at": datetime(2027, 6, 1, 9, 0)})
    due = due_time(campaign, summer, timezone="Europe/London", now=datetime(2026, 11, 1, tzinfo=UTC))
    assert due is not None and due.astimezone(UTC).hour == 8  # BST


def test_before_counts_back_from_the_event(project_dir: Path) -> None:
    campaign = load_project(project_dir).campaign("workshops")
    chase = campaign.step("chase")
    assert chase is not None
    due = due_time(campaign, chase, timezone="Europe/London", now=datetime(2026, 11, 1, tzinfo=UTC))
    assert due is not None and due.isoformat() == "2027-01-04T09:30:00+00:00"
    assert describe(chase) == "before event 'ws1'"
    assert is_conditional(chase)


def test_steps_due_now(project_dir: Path) -> None:
    campaign = load_project(project_dir).campaign("nmdi-awareness")
    due, waiting = steps_due(campaign, timezone="Europe/London",
                             now=datetime(2026, 11, 30, tzinfo=UTC))
    assert [s.id for s in due] == ["follow-up"]
    assert waiting[0][1].startswith("not due until 2026-12-01T09:00:00+00:00")
    due, waiting = steps_due(campaign, timezone="Europe/London",
                             now=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert [s.id for s in due] == ["launch", "follow-up"] and waiting == []
    assert describe(campaign.steps[1]) == "7 days after 'launch', per recipient"

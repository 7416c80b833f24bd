"""The timeline: when each step occurrence falls due and to how many people (pure given a clock)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from .audience import matches
from .campaign import Campaign, Step
from .dispatch import ONCE
from .project import Project
from .store import tables

CONDITIONAL = "conditional: evaluated at send time"


@dataclass(frozen=True, slots=True)
class Occurrence:
    campaign: str
    step: str
    occurrence: str
    due: datetime | None
    rule: str
    recipients: int | str

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["due"] = self.due.isoformat() if self.due else None
        return data


def due_time(campaign: Campaign, step: Step, *, timezone: str, now: datetime) -> datetime | None:
    """When a step falls due (None when it is per recipient or recurring)."""
    zone = ZoneInfo(timezone)
    if step.now:
        return now.astimezone(zone)
    if step.send_at is not None:
        return step.send_at.replace(tzinfo=zone) if step.send_at.tzinfo is None else step.send_at
    if step.before is not None:
        event = campaign.event(step.before.event)
        if event is not None:
            event_zone = ZoneInfo(event.timezone or timezone)
            return (event.starts.replace(tzinfo=event_zone) - step.before.delta).astimezone(zone)
    return None


def describe(step: Step) -> str:
    if step.now:
        return "now"
    if step.send_at is not None:
        return "at a set time"
    if step.after is not None:
        a = step.after
        parts = [f"{n} {unit}" for n, unit in ((a.days, "days"), (a.hours, "hours"),
                                               (a.minutes, "minutes")) if n]
        return f"{' '.join(parts) or 'straight'} after '{a.step}', per recipient"
    if step.before is not None:
        return f"before event '{step.before.event}'"
    return f"recurring: {step.cron}" + (f" until {step.until}" if step.until else "")


def is_conditional(step: Step) -> bool:
    cond = step.only_if
    if cond is None:
        return False
    return any(getattr(cond, k) is not None for k in (
        "rsvp", "not_opened", "not_clicked", "responded", "not_responded", "attended",
        "not_attended"))


def timeline(project: Project, conn: Connection, *, timezone: str, now: datetime,
             campaign_id: str | None = None) -> list[Occurrence]:
    out = []
    campaigns = [project.campaign(campaign_id)] if campaign_id else project.campaigns.values()
    for campaign in campaigns:
        zone = ZoneInfo(_zone(project, campaign, timezone))
        for step in campaign.steps:
            recipients: int | str = CONDITIONAL
            if not is_conditional(step):
                recipients = conn.execute(
                    select(func.count()).select_from(tables.stakeholders)
                    .where(matches(campaign.audience, step.only_if),
                           ~tables.stakeholders.c.email.in_(
                               select(tables.suppressions.c.email)
                               .where(tables.suppressions.c.email.is_not(None))))).scalar() or 0
            due = due_time(campaign, step, timezone=zone.key, now=now)
            out.append(Occurrence(campaign.id, step.id, ONCE, due, describe(step), recipients))
    return out


def _zone(project: Project, campaign: Campaign, default: str) -> str:
    schedule = project.schedules.get(campaign.schedule or "")
    return schedule.timezone if schedule else default


def steps_due(campaign: Campaign, *, timezone: str, now: datetime
              ) -> tuple[list[Step], list[tuple[Step, str]]]:
    """Which steps ``comms send CAMPAIGN`` sends now, and why the others wait."""
    due, waiting = [], []
    for step in campaign.steps:
        if step.after is not None:
            due.append(step)  # each recipient's own delay is applied when sending
        elif step.cron is not None:
            waiting.append((step, "recurring: sent by `comms run`"))
        else:
            when = due_time(campaign, step, timezone=timezone, now=now)
            if when is not None and when <= now:
                due.append(step)
            else:
                shown = when.isoformat() if when else "later"
                waiting.append((step, f"not due until {shown} (use --step {step.id} to send now)"))
    return due, waiting

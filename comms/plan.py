"""When each step occurrence falls due, after sending policies. Pure: rules + clock → times.

``comms plan`` and the scheduler service both use these functions, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, select

from . import cron
from .audience import matches
from .campaign import Campaign, Step
from .events import not_organiser
from .project import Project
from .schedule import Schedule, localise, next_allowed
from .store import tables
from .store.sends import ONCE

CONDITIONAL = "conditional: evaluated at send time"
PER_RECIPIENT = "per recipient"
HORIZON = timedelta(days=366)  # how far ahead a cron step without `until` is listed


@dataclass(frozen=True, slots=True)
class Due:
    """One occurrence of a step: its key, when it is due after the policy, and as written."""

    step: Step
    occurrence: str
    due: datetime
    nominal: datetime


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A row of the timeline."""

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


def zone_of(project: Project, campaign: Campaign, default: str) -> ZoneInfo:
    schedule = schedule_of(project, campaign)
    return ZoneInfo(schedule.timezone if schedule else default)


def schedule_of(project: Project, campaign: Campaign) -> Schedule | None:
    return project.schedules.get(campaign.schedule or "")


def event_start(campaign: Campaign, step: Step, timezone: str) -> datetime | None:
    """For a step tied to an event: when the event starts (nothing is sent after that)."""
    event = campaign.event(step.event_id) if step.event_id else None
    if event is None or step.kind == "cancel":
        return None
    return event.starts.replace(tzinfo=ZoneInfo(event.timezone or timezone))


def occurrences(campaign: Campaign, step: Step, *, schedule: Schedule | None, zone: ZoneInfo,
                start: datetime, end: datetime, first_seen: datetime) -> list[Due]:
    """Occurrences of a step: one for ``send_at``, ``before`` and ``now`` (``first_seen``);
    for ``cron``, each whose time as written lies between ``start`` and ``end``;
    none for ``after`` (each recipient has their own)."""
    def due(nominal: datetime, key: str = ONCE) -> Due:
        return Due(step, key, next_allowed(nominal, schedule), nominal)

    if step.send_at is not None:
        return [due(localise(step.send_at, zone))]
    if step.now:
        return [due(first_seen)]
    if step.before is not None:
        event = campaign.event(step.before.event)
        if event is None:
            return []
        starts = localise(event.starts, ZoneInfo(event.timezone or zone.key))
        return [due(starts - step.before.delta)]
    if step.cron is None:
        return []
    last = end.astimezone(zone).date()
    if step.until is not None:
        last = min(last, step.until)
    out, seen = [], set()
    for moment in cron.parse(step.cron).times(start.astimezone(zone).date(), last):
        local = localise(moment, zone)  # autumn: once, at the first 01:30; spring: moved on
        if start <= local <= end and local not in seen:
            seen.add(local)
            out.append(due(local, moment.isoformat(timespec="minutes")))
    return out


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
             campaign_id: str | None = None, since: datetime | None = None) -> list[Occurrence]:
    """Every occurrence from ``since`` (default: now) on, with its recipient count."""
    out = []
    campaigns = [project.campaign(campaign_id)] if campaign_id else project.campaigns.values()
    start = since or now
    for campaign in campaigns:
        zone = zone_of(project, campaign, timezone)
        schedule = schedule_of(project, campaign)
        for step in campaign.steps:
            recipients = _recipients(conn, campaign, step)
            if step.after is not None:
                out.append(Occurrence(campaign.id, step.id, PER_RECIPIENT, None, describe(step),
                                      recipients))
                continue
            for due in occurrences(campaign, step, schedule=schedule, zone=zone, start=start,
                                   end=start + HORIZON, first_seen=now):
                out.append(Occurrence(campaign.id, step.id, due.occurrence,
                                      due.due.astimezone(zone), describe(step), recipients))
    return sorted(out, key=lambda o: (o.due is None, o.due or now, o.campaign))


def _recipients(conn: Connection, campaign: Campaign, step: Step) -> int | str:
    if is_conditional(step):
        return CONDITIONAL
    audience = matches(campaign.audience, step.only_if)
    event = campaign.event(step.event) if step.event else None
    if event is not None and step.kind in ("invite", "cancel"):
        audience = and_(audience, not_organiser(event))
    sup = tables.suppressions
    return conn.execute(select(func.count()).select_from(tables.stakeholders).where(
        audience, ~tables.stakeholders.c.email.in_(
            select(sup.c.email).where(sup.c.email.is_not(None))))).scalar() or 0


def steps_due(project: Project, campaign: Campaign, *, timezone: str, now: datetime
              ) -> tuple[list[Step], list[tuple[Step, str]]]:
    """Which steps ``comms send CAMPAIGN`` sends now, and why the others wait."""
    zone = zone_of(project, campaign, timezone)
    schedule = schedule_of(project, campaign)
    due, waiting = [], []
    for step in campaign.steps:
        if step.after is not None:
            due.append(step)  # each recipient's own delay is applied when sending
            continue
        if step.cron is not None:
            waiting.append((step, "recurring: sent by `comms run`"))
            continue
        [when] = occurrences(campaign, step, schedule=schedule, zone=zone, start=now, end=now,
                             first_seen=now)
        if when.due <= now:
            due.append(step)
        else:
            waiting.append((step, f"not due until {when.due.astimezone(zone).isoformat()} "
                                  f"(use --step {step.id} to send now)"))
    return due, waiting


def first_due(project: Project, campaign: Campaign, step: Step, *, timezone: str,
              now: datetime) -> datetime | None:
    """The first due time of a step (for status), or None (per recipient, or no occurrence)."""
    zone = zone_of(project, campaign, timezone)
    found = occurrences(campaign, step, schedule=schedule_of(project, campaign), zone=zone,
                        start=now, end=now + HORIZON, first_seen=now)
    return found[0].due.astimezone(zone) if found else None


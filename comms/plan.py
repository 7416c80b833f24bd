"""The timeline: when each step occurrence falls due, and what to do about it now. Pure: rules +
facts + clock → times; no store, no I/O.

Every surface asks this module: ``comms plan`` (:func:`timeline`), the due steps of ``comms send``
and each tick of ``comms run`` (:func:`decide`), the "next due" of ``comms status`` and
``/healthz``. The facts it needs from the store (when a campaign was first seen, what was
processed, when parents were sent) come in as plain values (:class:`Facts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from . import cron
from .campaign import Campaign, Step
from .clock import human
from .conditions import is_conditional as _conditional
from .project import Project
from .schedule import Schedule, last_allowed_before, localise, next_allowed

ONCE = "once"  # the occurrence of a step that happens once (all but cron steps)
PER_RECIPIENT = "per recipient"
CONDITIONAL = "conditional: evaluated at send time"
HORIZON = timedelta(days=366)  # how far ahead a cron step without `until` is listed
DEFAULT_CATCH_UP = timedelta(hours=24)

State = Literal["planned", "expected", "due", "waiting", "sent", "missed", "paused"]
_STATES: dict[str, State] = {"send": "due", "wait": "waiting", "miss": "missed", "done": "sent"}


@dataclass(frozen=True, slots=True)
class Processed:
    """An occurrence the service has dealt with: ``done`` (sent) or ``missed``."""

    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Parents:
    """For an ``after`` step: the people sent its parent and not it yet, and when the parent
    went to the first and the last of them."""

    waiting: int
    first: datetime | None
    last: datetime | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store knows that the timeline needs, as plain values (comms/store/facts.py)."""

    first_seen: Mapping[str, datetime] = field(default_factory=dict)  # campaign → first run
    paused: Mapping[str, datetime] = field(default_factory=dict)  # campaign → paused since
    processed: Mapping[tuple[str, str, str], Processed] = field(default_factory=dict)
    now_seen: Mapping[tuple[str, str], datetime] = field(default_factory=dict)  # now: true steps
    sent: Mapping[tuple[str, str, str], int] = field(default_factory=dict)  # sends made
    parents: Mapping[tuple[str, str], Parents] = field(default_factory=dict)  # after steps


@dataclass(frozen=True, slots=True)
class Due:
    """One occurrence of a step: its key, when it is due after the policy, and as written."""

    step: Step
    occurrence: str
    due: datetime
    nominal: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one step occurrence at this moment."""

    step: Step
    occurrence: str
    action: Literal["send", "wait", "miss", "done"]
    due: datetime  # when it fell due (for ``wait``: when it may go)
    reason: str | None = None
    missed_before: datetime | None = None  # ``after`` steps: own due time before this: missed

    def line(self, campaign: str, zone: ZoneInfo) -> str:
        """What a person reads about this decision."""
        where = f"{campaign}/{self.step.id}" + ("" if self.occurrence == ONCE
                                                 else f" {self.occurrence}")
        if self.action == "wait":
            return f"{where}: waits until {human(self.due, zone)} ({self.reason})"
        if self.action == "miss":
            return f"{where}: missed: {self.reason}"
        return f"{where}: due {human(self.due, zone)}"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A row of the timeline."""

    campaign: str
    step: str
    occurrence: str
    due: datetime | None
    rule: str
    recipients: int | str
    state: State = "planned"
    note: str = ""
    last_due: datetime | None = None  # ``after`` steps: when the last person waiting is due
    expected: datetime | None = None  # ``after`` steps before their parent went: projected

    @property
    def when(self) -> datetime | None:
        """The due time, or the projected one."""
        return self.due or self.expected

    def as_json(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {"campaign": self.campaign, "step": self.step, "occurrence": self.occurrence,
                "due": iso(self.due), "expected": iso(self.expected), "state": self.state,
                "rule": self.rule, "recipients": self.recipients, "note": self.note,
                "last_due": iso(self.last_due)}

    def as_row(self, zone: ZoneInfo) -> dict[str, Any]:
        """For a person: times in the schedule's zone, in words; the step with its occurrence
        when it recurs; the rule unless there is more to say."""
        step = f"{self.campaign}/{self.step}"
        if self.occurrence not in (ONCE, PER_RECIPIENT):
            step += f" {self.occurrence}"
        return {"due": human(self.when, zone) if self.when else "", "step": step,
                "state": self.state, "note": self.note or self.rule,
                "recipients": "conditional" if self.recipients == CONDITIONAL else self.recipients}


# --- the policy of one campaign ---------------------------------------------------------------


def zone_of(project: Project, campaign: Campaign, default: str) -> ZoneInfo:
    schedule = schedule_of(project, campaign)
    return ZoneInfo(schedule.timezone if schedule else default)


def schedule_of(project: Project, campaign: Campaign) -> Schedule | None:
    return project.schedules.get(campaign.schedule or "")


def catch_up(project: Project, campaign: Campaign) -> timedelta:
    """How late an occurrence may still go: the campaign's, else its schedule's, else 24 h."""
    if campaign.catch_up_hours is not None:
        return timedelta(hours=campaign.catch_up_hours)
    schedule = schedule_of(project, campaign)
    return timedelta(hours=schedule.catch_up_hours) if schedule else DEFAULT_CATCH_UP


def event_start(campaign: Campaign, step: Step, timezone: str) -> datetime | None:
    """For a step tied to an event: when the event starts (nothing is sent after that)."""
    event = campaign.event(step.event_id) if step.event_id else None
    if event is None or step.kind in ("cancel", "feedback") or step.after_event is not None:
        return None  # these go after the start
    return event.starts.replace(tzinfo=ZoneInfo(event.timezone or timezone))


def occurrences(campaign: Campaign, step: Step, *, schedule: Schedule | None, zone: ZoneInfo,
                start: datetime, end: datetime, first_seen: datetime) -> list[Due]:
    """Occurrences of a step: one for ``send_at``, ``before``, ``after`` an event and ``now``
    (``first_seen``);
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
    if step.after_event is not None:
        event = campaign.event(step.after_event.event or "")
        if event is None:
            return []
        ends = localise(event.ends, ZoneInfo(event.timezone or zone.key))
        return [due(ends + step.after_event.delta)]
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
    if step.after_step is not None:
        a = step.after_step
        parts = [f"{n} {unit}" for n, unit in ((a.days, "days"), (a.hours, "hours"),
                                               (a.minutes, "minutes")) if n]
        return f"{' '.join(parts) or 'straight'} after '{a.step}', per recipient"
    if step.before is not None:
        return f"before event '{step.before.event}'"
    if step.after_event is not None:
        return f"after event '{step.after_event.event}' ends"
    return f"recurring: {step.cron}" + (f" until {step.until}" if step.until else "")


def is_conditional(step: Step) -> bool:
    """Whether who gets the step is only known at the moment of sending."""
    return _conditional(step.only_if)


# --- what to do now ---------------------------------------------------------------------------


def decide(project: Project, campaign: Campaign, facts: Facts, *, now: datetime,
           timezone: str) -> list[Decision]:
    """Every occurrence of the campaign that needs acting on at ``now``, as ``comms run`` and
    ``comms send CAMPAIGN`` act on it: send it (an occurrence that fell due while comms was not
    running goes as soon as it runs again, within catch-up), record it as missed (beyond
    catch-up, or its event has started) or as done (it was sent already). ``after`` steps go
    to each person whose own time has come, inside the schedule's window (outside it they wait
    for it to open). Nothing for a paused campaign."""
    if campaign.id in facts.paused:
        return []
    schedule = schedule_of(project, campaign)
    opens = next_allowed(now, schedule)  # == now while the window is open
    late = catch_up(project, campaign)
    out = []
    for step in campaign.steps:
        starts = event_start(campaign, step, timezone)
        started = starts is not None and now >= starts
        if step.after_step is not None:
            if started:
                continue
            if opens > now:
                if facts.parents.get((campaign.id, step.id), Parents(0, None, None)).waiting:
                    out.append(Decision(step, ONCE, "wait", opens, _closed(schedule)))
            else:
                missed_before = last_allowed_before(now - late, schedule)  # shifted due times
                out.append(Decision(step, ONCE, "send", now, missed_before=missed_before))
            continue
        for due in _fixed(project, campaign, step, facts, now=now, timezone=timezone, end=now):
            key = (campaign.id, step.id, due.occurrence)
            if key in facts.processed:
                continue
            if now - due.due > late:
                if facts.sent.get(key):
                    out.append(Decision(step, due.occurrence, "done", due.due,
                                        "sent earlier, by `comms send --step`"))
                    continue
                hours = late.total_seconds() / 3600
                out.append(Decision(step, due.occurrence, "miss", due.due, (
                    f"fell due at {due.due.isoformat()} while comms was not running or the "
                    f"campaign was paused, more than {hours:g} h ago (catch-up)")))
            elif started:
                out.append(Decision(step, due.occurrence, "miss", due.due,
                                    "the event had started"))
            else:
                out.append(Decision(step, due.occurrence, "send", due.due))
    return out


def steps_due(project: Project, campaign: Campaign, *, timezone: str, now: datetime,
              facts: Facts | None = None) -> tuple[list[Step], list[tuple[Step, str]]]:
    """Which steps are acted on at ``now`` (``after`` steps always: each recipient has their
    own time), and why the others wait."""
    facts = facts or Facts()
    acted = {d.step.id for d in decide(project, campaign, facts, now=now, timezone=timezone)}
    zone = zone_of(project, campaign, timezone)
    due, waiting = [], []
    for step in campaign.steps:
        if step.after_step is not None or step.id in acted:
            due.append(step)
            continue
        future = [d for d in _fixed(project, campaign, step, facts, now=now, timezone=timezone,
                                    end=now + HORIZON) if d.due > now]
        if future:
            when = future[0].due.astimezone(zone)
            waiting.append((step, f"not due until {when.isoformat()} "
                                  f"(use --step {step.id} to send now)"))
    return due, waiting


def _closed(schedule: Schedule | None) -> str:
    if schedule is None:
        return "outside the sending window"
    days = "/".join(schedule.days) if len(schedule.days) < 7 else "every day"
    holidays = f", not on {schedule.skip_holidays} bank holidays" if schedule.skip_holidays else ""
    return f"outside schedule '{schedule.id}': {days} {schedule.window}{holidays}"


def _fixed(project: Project, campaign: Campaign, step: Step, facts: Facts, *, now: datetime,
           timezone: str, end: datetime) -> list[Due]:
    """The step's occurrences from when the campaign was first seen up to ``end``."""
    first_seen = facts.first_seen.get(campaign.id, now)
    seen = facts.now_seen.get((campaign.id, step.id), now) if step.now else now
    return [d for d in occurrences(campaign, step, schedule=schedule_of(project, campaign),
                                   zone=zone_of(project, campaign, timezone), start=first_seen,
                                   end=end, first_seen=seen) if d.due <= end]


# --- the timeline -----------------------------------------------------------------------------

Recipients = Callable[[Campaign, Step, str, bool], int | str]


def timeline(project: Project, facts: Facts, *, now: datetime, timezone: str,
             count: Recipients, campaign_id: str | None = None,
             since: datetime | None = None) -> list[Occurrence]:
    """Every occurrence from ``since`` (default: now) on, in time order, with its state and its
    recipients: ``count(campaign, step, occurrence, due_now)`` (the caller asks targeting)."""
    campaigns = [project.campaign(campaign_id)] if campaign_id else list(project.campaigns.values())
    out: list[Occurrence] = []
    for campaign in campaigns:
        acted = {(d.step.id, d.occurrence): d
                 for d in decide(project, campaign, facts, now=now, timezone=timezone)}
        for step in campaign.steps:
            if step.after_step is not None:
                out.append(_after_row(project, campaign, step, facts, now=now, timezone=timezone,
                                      acted=acted, count=count))
            else:
                out.extend(_fixed_rows(project, campaign, step, facts, now=now,
                                       timezone=timezone, since=since or now, acted=acted,
                                       count=count))
    return sorted(out, key=lambda o: (o.when is None, o.when or now, o.campaign))


def _fixed_rows(project: Project, campaign: Campaign, step: Step, facts: Facts, *,
                now: datetime, timezone: str, since: datetime,
                acted: Mapping[tuple[str, str], Decision], count: Recipients) -> Iterator[Occurrence]:
    start = min(since, facts.first_seen.get(campaign.id, since))
    seen = facts.now_seen.get((campaign.id, step.id), now) if step.now else now
    found = occurrences(campaign, step, schedule=schedule_of(project, campaign),
                        zone=zone_of(project, campaign, timezone), start=start,
                        end=max(since, now) + HORIZON, first_seen=seen)
    paused = campaign.id in facts.paused
    for due in found:
        key = (campaign.id, step.id, due.occurrence)
        done = facts.processed.get(key)
        if step.cron is not None and due.due < since and (done or due.due < start):
            continue  # history of a recurring step
        decision = acted.get((step.id, due.occurrence))
        state: State
        note = ""
        if done is not None:
            state = "sent" if done.status == "done" else "missed"
            note = done.reason or ""
        elif paused:
            state = "paused"
        elif decision is not None:
            state = _STATES[decision.action]
            note = decision.reason or ""
        elif facts.sent.get(key):
            state = "sent"
        else:
            state = "planned"
        due_now = state == "due"
        yield Occurrence(campaign.id, step.id, due.occurrence, due.due, describe(step),
                         count(campaign, step, due.occurrence, due_now), state, note)


def _after_row(project: Project, campaign: Campaign, step: Step, facts: Facts, *,
               now: datetime, timezone: str, acted: Mapping[tuple[str, str], Decision],
               count: Recipients) -> Occurrence:
    assert step.after_step is not None
    schedule = schedule_of(project, campaign)
    zone = zone_of(project, campaign, timezone)
    parents = facts.parents.get((campaign.id, step.id), Parents(0, None, None))
    delay = step.after_step.delta
    row = Occurrence(campaign.id, step.id, PER_RECIPIENT, None, describe(step),
                     count(campaign, step, PER_RECIPIENT, False))
    if parents.waiting and parents.first is not None and parents.last is not None:
        first = next_allowed(parents.first + delay, schedule)
        last = next_allowed(parents.last + delay, schedule)
        decision = acted.get((step.id, ONCE))
        state: State = "planned"
        if campaign.id in facts.paused:
            state = "paused"
        elif first <= now and decision is not None:
            state = "due" if decision.action == "send" else "waiting"
            first = now if decision.action == "send" else decision.due  # waiting: the window
        return replace(row, due=first, last_due=last, state=state,
                        recipients=count(campaign, step, PER_RECIPIENT, state == "due"),
                        note=f"{parents.waiting} waiting; the last due {human(last, zone)}")
    if facts.sent.get((campaign.id, step.id, ONCE)):
        return replace(row, state="sent", note="sent to everyone its parent reached so far")
    expected = _projected(project, campaign, step, facts, now=now, timezone=timezone)
    if expected is None:
        return row
    return replace(row, expected=expected, state="expected",
                    note=f"expected {human(expected, zone)}, {describe(step).rsplit(',', 1)[0]}")


def _projected(project: Project, campaign: Campaign, step: Step, facts: Facts, *,
               now: datetime, timezone: str, depth: int = 0) -> datetime | None:
    """When an ``after`` step is expected: its parent's planned time plus the delay, through
    the schedule (the parent itself may be an ``after`` step)."""
    assert step.after_step is not None
    parent = campaign.step(step.after_step.step or "")
    if parent is None or depth > len(campaign.steps):
        return None
    if parent.after_step is not None:
        base = _projected(project, campaign, parent, facts, now=now, timezone=timezone,
                          depth=depth + 1)
    else:
        dues = _fixed(project, campaign, parent, facts, now=now, timezone=timezone,
                      end=now + HORIZON)
        base = min((d.due for d in dues if d.due >= now), default=None) or (
            dues[0].due if dues else None)
    if base is None:
        return None
    return next_allowed(base + step.after_step.delta, schedule_of(project, campaign))



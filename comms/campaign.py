"""Campaign files: the schema (strict pydantic models), the loader with line numbers, JSON Schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    WithJsonSchema,
    model_validator,
)

from . import _yaml, cron
from ._types import Email, HeaderText, LocalTime, SaneDate, Slug, TimeZone, at_most
from .conditions import Condition, given
from .errors import ConfigError, suggestion
from .responses import HUMAN, Kind

RsvpState = Literal["none", "accepted", "declined", "tentative", "waitlisted"]
TIMING_RULES = ("send_at", "after", "before", "cron", "now")
MAX_DELAY = timedelta(days=3653)  # ten years: an ``after`` or ``before`` longer is a typo
_DAYS = MAX_DELAY.days
Days = Annotated[int, Field(ge=0), at_most(_DAYS, "days")]
Hours = Annotated[int, Field(ge=0), at_most(_DAYS * 24, "hours")]
Minutes = Annotated[int, Field(ge=0), at_most(_DAYS * 24 * 60, "minutes")]
Hours24 = Annotated[float, Field(ge=0, le=_DAYS * 24, allow_inf_nan=False)]
_TEMPLATE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")


def _template_name(value: str) -> str:
    """A path under templates/ without the suffix: names and folders, nothing that climbs out."""
    if not _TEMPLATE.match(value) or len(value) > 200:
        raise ValueError(f"{value!r} is not a template name: write its path under templates/ "
                         "without .html.j2, like awareness/launch (letters, digits, _ . - and /)")
    return value


TemplateName = Annotated[str, AfterValidator(_template_name), WithJsonSchema(
    {"type": "string", "pattern": _TEMPLATE.pattern, "maxLength": 200})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Strict):
    """An address with an optional display name (a sender or an event organiser)."""

    email: Email
    name: HeaderText = ""


class AudienceExclude(_Strict):
    """People left out even though the audience matches them (any of each list)."""

    roles: list[str] = []
    boroughs: list[str] = []
    organisations: list[str] = []
    tags: list[str] = []
    emails: list[Email] = []


class Audience(_Strict):
    """Who a campaign reaches: roles, boroughs, organisations (any of each); tags (all of)."""

    roles: list[str] = []
    boroughs: list[str] = []
    organisations: list[str] = []
    tags: list[str] = []
    exclude: AudienceExclude = AudienceExclude()


class Waitlist(_Strict):
    """How a freed seat goes to the waiting list."""

    offer_hours: float = Field(gt=0, le=24 * 60, description="a freed seat is offered to the "
                               "next person for this long; unconfirmed, it passes on")


class Event(_Strict):
    """A workshop or meeting; invitations to it carry an iCalendar object."""

    id: Slug
    title: HeaderText
    starts: LocalTime = Field(description="local time in the event's time zone")
    ends: LocalTime
    timezone: TimeZone | None = Field(None, description="IANA zone; default: the project's time "
                                      "zone")
    location: str | None = None
    online_url: HttpUrl | None = None
    description: str | None = None
    capacity: int | None = Field(None, gt=0, le=1_000_000,
                                 description="accepted beyond this go to a waitlist")
    organiser: Person
    status: Literal["confirmed", "cancelled"] = "confirmed"
    reminder_minutes: int = Field(60, ge=0, le=40_320, description="calendar alarm before the "
                                  "start (at most 4 weeks)")
    waitlist: Waitlist | None = Field(None, description="default: a freed seat goes to the "
                                      "next in the queue at once")

    @model_validator(mode="after")
    def _ends_after_start(self) -> Event:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        return self


class After(_Strict):
    """This long after the named step was sent to each recipient (``step``), or after the
    named event ends (``event``): exactly one of the two."""

    step: str | None = Field(None, description="per recipient: after their send of this step")
    event: str | None = Field(None, description="once: after this event ends")
    days: Days = 0
    hours: Hours = 0
    minutes: Minutes = 0

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)

    @model_validator(mode="after")
    def _one_anchor(self) -> After:
        if (self.step is None) == (self.event is None):
            raise ValueError("after takes exactly one of step or event: {step: launch, days: 7} "
                             "or {event: ws1, hours: 2}")
        return _bounded_delay(self)


class Before(_Strict):
    """This long before the named event starts."""

    event: str
    days: Days = 0
    hours: Hours = 0

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours)

    @model_validator(mode="after")
    def _at_most_ten_years(self) -> Before:
        return _bounded_delay(self)


Rule = TypeVar("Rule", After, Before)


def _bounded_delay(rule: Rule) -> Rule:
    if rule.delta > MAX_DELAY:
        raise ValueError(f"the delay adds up to {rule.delta.days:,} days: at most {_DAYS:,} "
                         "(10 years)")
    return rule


PairState = Literal["met", "not_met", "not_yet", "no_answer"]


class OnlyIf(_Strict):
    """Conditions checked for each recipient at the moment of sending (each key's test is
    declared in its annotation: comms/conditions.py)."""

    rsvp: Annotated[RsvpState | None, Condition("rsvp")] = None
    event: Annotated[str | None, Condition("rsvp_event", refers_to="event", send_time=False)] = None
    not_opened: Annotated[str | None, Condition(
        "response", refers_to="step", wanted=False, kinds=(Kind.OPENED,))] = None
    not_clicked: Annotated[str | None, Condition(
        "response", refers_to="step", wanted=False, kinds=(Kind.CLICKED,))] = None
    responded: Annotated[str | None, Condition(
        "response", refers_to="step", kinds=tuple(sorted(HUMAN)))] = None
    not_responded: Annotated[str | None, Condition(
        "response", refers_to="step", wanted=False, kinds=tuple(sorted(HUMAN)))] = None
    attended: Annotated[str | None, Condition("attendance", refers_to="event")] = None
    not_attended: Annotated[str | None, Condition(
        "attendance", refers_to="event", wanted=False)] = None
    pair: Annotated[PairState | None, Condition("pair")] = None  # not_met: no answer, or not yet
    roles: Annotated[list[str], Condition("roles", send_time=False)] = []
    tags: Annotated[list[str], Condition("tags", send_time=False)] = []

    @model_validator(mode="after")
    def _rsvp_needs_event(self) -> OnlyIf:
        if self.rsvp is not None and self.event is None:
            raise ValueError("rsvp needs an event: {rsvp: none, event: ws1}")
        return self


class ReportSpec(_Strict):
    """What a ``report`` step's pack holds."""

    campaigns: list[str] = Field(default=[], description="the campaigns reported on (default: all)")
    by: Literal["borough", "organisation", "role"] = "borough"


class Step(_Strict):
    """One message sent to (part of) the audience at a time given by exactly one timing rule."""

    id: Slug
    kind: Literal["email", "invite", "cancel", "introduce", "feedback", "report"] = "email"
    template: TemplateName = Field(description="path under templates/ without .html.j2")
    subject: str = Field(description="a Jinja2 template; one line")
    event: str | None = None
    pairs: Slug | None = Field(None, description="a round of pairs/ (pairs/ROUND.csv): one "
                               "message per pair, to both; needed by kind introduce")
    report: ReportSpec | None = Field(None, description="kind report: the campaigns and "
                                      "grouping of the engagement report it sends")
    send_at: LocalTime | None = None
    after: After | None = None
    before: Before | None = None
    cron: str | None = None
    until: SaneDate | None = None
    now: bool | None = None
    only_if: OnlyIf | None = None

    @model_validator(mode="after")
    def _one_timing_rule(self) -> Step:
        given = [rule for rule in TIMING_RULES if getattr(self, rule) not in (None, False)]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"step '{self.id}' needs exactly one timing rule of "
                f"{' | '.join(TIMING_RULES)} (found: {found})"
            )
        if self.until is not None and self.cron is None:
            raise ValueError("until goes with cron")
        if self.kind in ("invite", "cancel", "feedback") and self.event is None:
            raise ValueError(f"a step of kind '{self.kind}' needs event: ID")
        if self.kind == "introduce" and self.pairs is None:
            raise ValueError("a step of kind 'introduce' needs pairs: ROUND (a file "
                             "pairs/ROUND.csv)")
        if self.pairs is not None and self.kind in ("invite", "cancel", "feedback"):
            raise ValueError(f"a step of kind '{self.kind}' goes to people, not pairs: "
                             "remove pairs")
        if self.report is not None and self.kind != "report":
            raise ValueError("report goes with kind: report")
        if self.kind == "report" and (self.pairs is not None or self.event is not None):
            raise ValueError("a step of kind 'report' goes to people: remove pairs and event")
        if self.only_if is not None and self.only_if.pair is not None and self.pairs is None:
            raise ValueError("only_if pair needs the step's pairs: ROUND")
        return self

    @property
    def after_step(self) -> After | None:
        """The ``after`` rule when it is per recipient (relative to a step)."""
        return self.after if self.after is not None and self.after.step is not None else None

    @property
    def after_event(self) -> After | None:
        """The ``after`` rule when it is a fixed time (relative to an event's end)."""
        return self.after if self.after is not None and self.after.event is not None else None

    @property
    def event_id(self) -> str | None:
        """The event this step is tied to, by any of its keys."""
        if self.event:
            return self.event
        if self.before:
            return self.before.event
        return next((value for _, condition, value in given(self.only_if)
                     if condition.refers_to == "event"), None)


class Goal(_Strict):
    """What the campaign is for, counted in reports: e.g. 75 mentors volunteering."""

    metric: Literal["accepted", "responded", "clicked", "replied"]
    target: int = Field(gt=0, le=10_000_000)
    event: str | None = Field(None, description="for `accepted`: the event (default: any)")


class Tracking(_Strict):
    """What SendGrid may track of this campaign's messages (default: nothing)."""

    opens: bool = Field(default=False, description="a tracking pixel: under PECR it needs consent")
    clicks: bool = Field(default=False, description="links rewritten through SendGrid (comms's own "
                         "links never are)")
    honeypot: bool = Field(default=False, description="one hidden link no person can click: a click "
                           "on it marks the message's clicks around it as machine")

    @model_validator(mode="after")
    def _honeypot_needs_clicks(self) -> Tracking:
        if self.honeypot and not self.clicks:
            raise ValueError("honeypot needs clicks: true (only a tracked click reports it)")
        return self


class Campaign(_Strict):
    """One campaign file: an audience, optional events, and ordered steps."""

    id: Slug
    name: str
    sender: Person
    reply_to: Email | None = None
    schedule: str | None = None
    catch_up_hours: Hours24 | None = Field(None, description="send what fell due while the "
                                           "service was down, if this recent (default: the "
                                           "schedule's, else 24)")
    audience: Audience = Audience()
    events: list[Event] = []
    steps: list[Step] = Field(min_length=1)
    goal: Goal | None = None
    tracking: Tracking | None = Field(None, description="default: the project's COMMS_TRACK_"
                                      "OPENS and COMMS_TRACK_CLICKS (both off)")

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)

    def event(self, event_id: str) -> Event | None:
        return next((e for e in self.events if e.id == event_id), None)


def load_campaign(path: Path, display: Path | None = None) -> tuple[Campaign, _yaml.Located]:
    """Parse and validate one campaign file (raises ConfigError / ValidationErrors with lines)."""
    return _yaml.load_model(Campaign, path, display)


def json_schema() -> dict[str, object]:
    return _yaml.json_schema(Campaign, "comms campaign")


def check_references(campaign: Campaign, located: _yaml.Located, *, schedules: Collection[str],
                     template_exists: Callable[[str], bool]) -> list[ConfigError]:
    """Problems that need more than one key to see: unknown names, duplicates, cycles."""
    problems: list[ConfigError] = []

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(located.error(loc, message))

    if campaign.schedule and campaign.schedule not in schedules:
        problem(("schedule",), f"unknown schedule '{campaign.schedule}' "
                f"(schedules are: {_names(schedules)})" + suggestion(campaign.schedule, schedules))
    events = [e.id for e in campaign.events]
    steps = [s.id for s in campaign.steps]
    for kind, ids in (("event", events), ("step", steps)):
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                problem((f"{kind}s", i, "id"), f"duplicate {kind} id '{ident}'")
            seen.add(ident)

    twice = len(set(steps)) < len(steps)  # references to them would only echo that

    def step_ref(loc: tuple[str | int, ...], name: str | None, own: str) -> None:
        others = [s for s in steps if s != own]
        if name is not None and name not in others and not twice:
            problem(loc, f"unknown step '{name}' (steps are: {_names(others)})"
                    + suggestion(name, others))

    def event_ref(loc: tuple[str | int, ...], name: str | None) -> None:
        if name is not None and name not in events:
            problem(loc, f"unknown event '{name}' (events are: {_names(events)})"
                    + suggestion(name, events))

    for i, step in enumerate(campaign.steps):
        here: tuple[str | int, ...] = ("steps", i)
        if not template_exists(step.template):
            problem(here + ("template",), f"unknown template '{step.template}' "
                    f"(expected templates/{step.template}.html.j2)")
        event_ref(here + ("event",), step.event)
        if step.after_step and step.after_step.step != step.id:  # itself: a cycle, said below
            step_ref(here + ("after", "step"), step.after_step.step, step.id)
        if step.after_event:
            event_ref(here + ("after", "event"), step.after_event.event)
        if step.cron:
            problems += _cron_problems(located, here + ("cron",), step.cron)
        if step.before:
            event_ref(here + ("before", "event"), step.before.event)
        for key, condition, value in given(step.only_if):
            if condition.refers_to == "event":
                event_ref(here + ("only_if", key), value)
            elif condition.refers_to == "step":
                step_ref(here + ("only_if", key), value, step.id)
    if campaign.goal is not None:
        event_ref(("goal", "event"), campaign.goal.event)
    if campaign.tracking is not None and campaign.tracking.opens:
        problems.append(located.error(("tracking", "opens"), "opens are tracked with a pixel, "
                                      "which needs the recipients' consent under PECR (README: "
                                      "Tracking and consent)", warning=True))
    if not twice:
        problems += _after_cycles(campaign, located)
    return problems


def _cron_problems(located: _yaml.Located, loc: tuple[str | int, ...],
                   expression: str) -> list[ConfigError]:
    if not expression.isascii():  # digits like '²' pass str.isdigit but not int()
        return [located.error(loc, f"cron {expression!r} may hold only ASCII digits, names "
                              "(mon, jan) and * , - /")]
    try:
        cron.parse(expression)
    except cron.CronError as exc:
        return [located.error(loc, str(exc))]
    return []


def _after_cycles(campaign: Campaign, located: _yaml.Located) -> list[ConfigError]:
    parent = {s.id: s.after.step for s in campaign.steps if s.after and s.after.step}
    problems = []
    for i, step in enumerate(campaign.steps):
        seen, current = {step.id}, parent.get(step.id)
        while current is not None and current not in seen:
            seen.add(current)
            current = parent.get(current)
        if current == step.id:
            problems.append(located.error(("steps", i, "after"),
                                          f"step '{step.id}' waits on itself through 'after'"))
    return problems


def _names(names: Iterable[str]) -> str:
    listed = ", ".join(sorted(names))
    return listed or "none"

"""From (campaign, step, stakeholder, send id) to a transport Message; per-step work done once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .audience import Stakeholder
from .campaign import Campaign, Event, Step
from .events import CalendarSpec
from .invite import EventCalendar, build_calendar
from .render import Renderer, StepTemplates
from .tokens import Tokens
from .transports.base import Address, Message

ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True, slots=True)
class CampaignView:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class StepView:
    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class EventView:
    """What templates see of an event: aware datetimes in the event's zone."""

    id: str
    title: str
    starts: datetime
    ends: datetime
    timezone: str
    location: str | None
    online_url: str | None
    description: str | None
    capacity: int | None
    seats_left: int | None
    status: str
    offer_hours: float | None  # a freed seat is offered for this long (``waitlist``)


@dataclass(frozen=True, slots=True)
class RsvpLinks:
    accept_url: str
    decline_url: str
    tentative_url: str


def event_view(event: Event, default_timezone: str, seats_left: int | None = None) -> EventView:
    zone = event.timezone or default_timezone
    tz = ZoneInfo(zone)
    return EventView(
        id=event.id, title=event.title, starts=event.starts.replace(tzinfo=tz),
        ends=event.ends.replace(tzinfo=tz), timezone=zone, location=event.location,
        online_url=str(event.online_url) if event.online_url else None,
        description=event.description, capacity=event.capacity, seats_left=seats_left,
        status=event.status, offer_hours=event.waitlist.offer_hours if event.waitlist else None)


class PreparedStep:
    """A step ready to be composed for any number of recipients."""

    def __init__(self, *, campaign: Campaign, step: Step, templates: StepTemplates,
                 renderer: Renderer, tokens: Tokens, now: datetime,
                 event: EventView | None, calendar: EventCalendar | None = None) -> None:
        self.campaign = campaign
        self.step = step
        self._templates = templates
        self._renderer = renderer
        self._tokens = tokens
        self.event = event
        self.calendar = calendar
        self._sender = Address(email=campaign.sender.email, name=campaign.sender.name)
        self._domain = campaign.sender.email.rpartition("@")[2]
        self._base: dict[str, Any] = {
            "campaign": CampaignView(campaign.id, campaign.name),
            "step": StepView(step.id, step.kind),
            "sender": self._sender,
            "now": now,
        }
        if event is not None:
            self._base["event"] = event

    def context(self, stakeholder: Stakeholder, send_uid: str) -> dict[str, Any]:
        context = dict(self._base)
        context["stakeholder"] = stakeholder
        context["unsubscribe_url"] = self._tokens.unsubscribe_url(send_uid)
        if self.event is not None:
            ends = self.event.ends
            rsvp = self._tokens.rsvp_url
            context["rsvp"] = RsvpLinks(
                accept_url=rsvp(send_uid, "accepted", ends),
                decline_url=rsvp(send_uid, "declined", ends),
                tentative_url=rsvp(send_uid, "tentative", ends))
        return context

    def message(self, stakeholder: Stakeholder, send_uid: str) -> Message:
        context = self.context(stakeholder, send_uid)
        rendered = self._renderer.render(self._templates, context, who=stakeholder.email)
        return Message(
            send_id=send_uid,
            message_id=f"<{send_uid}@{self._domain}>",
            sender=self._sender,
            to=Address(email=stakeholder.email, name=stakeholder.full_name),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            reply_to=self.campaign.reply_to,
            headers={"List-Unsubscribe": f"<{context['unsubscribe_url']}>",
                     "List-Unsubscribe-Post": ONE_CLICK},
            calendar=(self.calendar.part_for(stakeholder.email, stakeholder.full_name)
                      if self.calendar else None),
        )


class Composer:
    """Prepares steps of a project's campaigns; templates compile once per process."""

    def __init__(self, renderer: Renderer, tokens: Tokens, *, timezone: str) -> None:
        self.renderer = renderer
        self.tokens = tokens
        self.timezone = timezone

    def prepare(self, campaign: Campaign, step: Step, *, now: datetime,
                seats_left: int | None = None, calendar: CalendarSpec | None = None) -> PreparedStep:
        """Everything the same for all recipients of a step, done once: templates, event view,
        and for invitations the calendar, built once and personalised per attendee."""
        event_id = step.event_id
        event = campaign.event(event_id) if event_id else None
        built = None
        if event is not None and calendar is not None:
            built = build_calendar(event, method=calendar.method, sequence=calendar.sequence,
                                   uid=calendar.uid, dtstamp=now, default_timezone=self.timezone,
                                   whole_event=calendar.whole_event)
        return PreparedStep(
            campaign=campaign, step=step,
            templates=self.renderer.compile(step.template, step.subject),
            renderer=self.renderer, tokens=self.tokens,
            now=now.astimezone(ZoneInfo(self.timezone)),
            event=event_view(event, self.timezone, seats_left) if event else None,
            calendar=built,
        )

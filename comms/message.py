"""From (campaign, step, stakeholder, send id) to a transport Message; per-step work done once."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .audience import Stakeholder
from .campaign import Campaign, Event, Step, Tracking
from .events import CalendarSpec
from .inlining import Skeleton
from .invite import EventCalendar, build_calendar
from .pack import EMPTY_PACK, Pack
from .render import Renderer, StepTemplates, views
from .responses import RATINGS
from .tokens import Tokens
from .transports.base import Address, Message

ONE_CLICK = "List-Unsubscribe=One-Click"
NOTHING_TRACKED = Tracking()
HONEYPOT_PATH = "/h/"  # a hidden link's path: no person can click it
_ANCHOR = re.compile(r"<a\b([^>]*)>", re.IGNORECASE)
_HREF = re.compile(r"""\shref\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)


def untracked_own_links(html: str, base_url: str) -> str:
    """Every link to comms itself (unsubscribe, RSVP, check-in, feedback) marked
    ``clicktracking="off"``, so SendGrid never rewrites it: an unsubscribe link must reach us
    unwrapped, and a scanner's fetch of a wrapped answer link would count as a click."""
    base = base_url.rstrip("/") + "/"

    def mark(found: re.Match[str]) -> str:
        attrs = found.group(1)
        href = _HREF.search(attrs)
        if href is None or not href.group(2).startswith(base) or "clicktracking" in attrs.lower():
            return found.group(0)
        return f'<a clicktracking="off"{attrs}>'

    return _ANCHOR.sub(mark, html)


def with_honeypot(html: str, url: str) -> str:
    """One link no person can see, reach by keyboard or hear read out (only a machine that
    fetches every link follows it), just before ``</body>``."""
    link = (f'<a href="{url}" aria-hidden="true" tabindex="-1" style="display:none;'
            'font-size:0;line-height:0;max-height:0;overflow:hidden;mso-hide:all;">&#8203;</a>')
    at = html.lower().rfind("</body>")
    return html[:at] + link + html[at:] if at >= 0 else html + link


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


@dataclass(frozen=True, slots=True)
class Pairing:
    """A pair as composing needs it: both people, and the pair's note."""

    mentor: Stakeholder
    mentee: Stakeholder
    note: str = ""


@dataclass(frozen=True, slots=True)
class PairView:
    """What templates see as ``pair``: the note and the check-in links."""

    note: str
    met_url: str
    not_yet_url: str


@dataclass(frozen=True, slots=True)
class FeedbackLinks:
    """What templates see as ``feedback``: a link per rating (1 to 5) and the form."""

    rating_urls: dict[int, str]
    url: str



views(Stakeholder, Address, CampaignView, StepView, EventView, RsvpLinks, PairView, FeedbackLinks)


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
                 event: EventView | None, calendar: EventCalendar | None = None,
                 pack: Pack | None = None, tracking: Tracking = NOTHING_TRACKED) -> None:
        self.campaign = campaign
        self.pack = pack
        self.tracking = tracking
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
        self._skeleton = Skeleton(shared=self._base)  # the same for everyone: not personal

    def context(self, stakeholder: Stakeholder, send_uid: str,
                pairing: Pairing | None = None) -> dict[str, Any]:
        context = dict(self._base)
        context["stakeholder"] = stakeholder
        answer = self._tokens.answer_url
        if pairing is None:
            context["unsubscribe_url"] = self._tokens.unsubscribe_url(send_uid)
        else:  # one message to two people: an unsubscribe link could not say whose it is
            context["unsubscribe_url"] = None
            context["mentor"], context["mentee"] = pairing.mentor, pairing.mentee
            context["pair"] = PairView(note=pairing.note,
                                       met_url=answer(send_uid, "pair", "met"),
                                       not_yet_url=answer(send_uid, "pair", "not_yet"))
        if self.pack is not None:
            context["report"], context["report_body"] = self.pack.data, self.pack.body
        if self.step.kind == "feedback":
            context["feedback"] = FeedbackLinks(
                rating_urls={n: answer(send_uid, "rating", str(n)) for n in RATINGS},
                url=answer(send_uid, "rating", "-"))
        if self.event is not None and self.step.kind != "feedback":
            ends = self.event.ends
            rsvp = self._tokens.rsvp_url
            context["rsvp"] = RsvpLinks(
                accept_url=rsvp(send_uid, "accepted", ends),
                decline_url=rsvp(send_uid, "declined", ends),
                tentative_url=rsvp(send_uid, "tentative", ends))
        return context

    def message(self, stakeholder: Stakeholder, send_uid: str,
                pairing: Pairing | None = None) -> Message:
        """The message for one recipient; for a pairs step (``pairing``), to both people of
        the pair (``stakeholder`` is the mentee)."""
        context = self.context(stakeholder, send_uid, pairing)
        rendered = self._renderer.render(self._templates, context, who=stakeholder.email,
                                         skeleton=self._skeleton)
        also_to = ((Address(email=pairing.mentor.email, name=pairing.mentor.full_name),)
                   if pairing is not None else ())
        tracking = self.tracking
        html = untracked_own_links(rendered.html, self._tokens.base_url)
        if tracking.clicks and tracking.honeypot:
            html = with_honeypot(html, f"{self._tokens.base_url}{HONEYPOT_PATH}{send_uid}")
        return Message(
            send_id=send_uid,
            message_id=f"<{send_uid}@{self._domain}>",
            sender=self._sender,
            to=Address(email=stakeholder.email, name=stakeholder.full_name),
            subject=rendered.subject,
            text=rendered.text,
            html=html,
            reply_to=self.campaign.reply_to,
            headers=({"List-Unsubscribe": f"<{context['unsubscribe_url']}>",
                      "List-Unsubscribe-Post": ONE_CLICK} if context["unsubscribe_url"] else {}),
            calendar=(self.calendar.part_for(stakeholder.email, stakeholder.full_name)
                      if self.calendar else None),
            also_to=also_to,
            attachments=self.pack.attachments if self.pack is not None else (),
            track_opens=tracking.opens, track_clicks=tracking.clicks,
        )


class Composer:
    """Prepares steps of a project's campaigns; templates compile once per process.
    ``packs`` builds the pack of a report step (the app's reports); without it (pre-flight) a
    report step renders with an empty pack."""

    def __init__(self, renderer: Renderer, tokens: Tokens, *, timezone: str,
                 packs: Callable[[Step], Pack] | None = None,
                 tracking: Tracking = NOTHING_TRACKED) -> None:
        self.renderer = renderer
        self.tokens = tokens
        self.timezone = timezone
        self.packs = packs
        self.tracking = tracking  # for campaigns that say nothing of it

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
        pack = None
        if step.kind == "report":
            pack = self.packs(step) if self.packs is not None else EMPTY_PACK
        return PreparedStep(
            campaign=campaign, step=step, pack=pack,
            tracking=campaign.tracking or self.tracking,
            templates=self.renderer.compile(step.template, step.subject),
            renderer=self.renderer, tokens=self.tokens,
            now=now.astimezone(ZoneInfo(self.timezone)),
            event=event_view(event, self.timezone, seats_left) if event else None,
            calendar=built,
        )

"""Who gets a step: the one answer that dispatch, dry runs, ``plan``, preflight, ``status`` and
the chase list all ask for.

A :class:`Target` says, in plain values, who a step occurrence reaches: the campaign's audience
narrowed by the step's roles and tags, the organiser left out of their own invitation, the
send-time ``only_if`` conditions, the parent step and delay of an ``after`` step, the people whose
calendars hold an event (for updates and cancellations), the round of pairs a pairs step goes to
(one send per pair, the mentee's), the people a feedback step asks (those recorded as attended
once a sign-in sheet is imported, else those who accepted), and whether the campaign is paused.
Suppressed addresses are never reached, whatever the target says. The store compiles a target
into one SQL selection (comms/store/targets.py), so every surface counts the same people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ._types import email_key
from .campaign import Audience, Campaign, Event, OnlyIf, Step
from .events import calendar_steps
from .plan import ONCE
from .store.sends import Key


@dataclass(frozen=True, slots=True, kw_only=True)
class AfterRule:
    """An ``after`` step reaches each person once their send of ``step`` is ``delay`` old."""

    step: str
    delay: timedelta | None  # None: whenever the parent went (an explicit ``--step``)
    missed_before: datetime | None = None  # own due time before this: missed (catch-up)
    parents_up_to: int | None = None  # only parent sends up to this ledger id (see for_step)


@dataclass(frozen=True, slots=True, kw_only=True)
class Holders:
    """People whose calendar holds an event: sent one of ``steps`` (an invitation or update)."""

    event: str
    steps: tuple[str, ...]
    below: int | None = None  # only those whose calendar holds a SEQUENCE lower than this


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Who one step occurrence reaches (see the module docstring)."""

    key: Key
    audience: Audience | None  # None: only ``people``
    only_if: OnlyIf | None = None
    after: AfterRule | None = None
    exclude: tuple[str, ...] = ()  # addresses (case-folded) never reached by this step
    holders: Holders | None = None
    people: tuple[int, ...] | None = None  # stakeholder ids (built-in notices)
    pairs: str | None = None  # a round: one send per pair, recorded against the mentee
    attendees_of: str | None = None  # an event: those who attended, else those who accepted
    paused: bool = False

    @property
    def campaign(self) -> str:
        return self.key.campaign


def for_step(campaign: Campaign, step: Step, occurrence: str = ONCE, *, paused: bool = False,
             respect_delay: bool = True, missed_before: datetime | None = None,
             parents_up_to: int | None = None) -> Target:
    """Who a step of the campaign file reaches at this occurrence.

    ``parents_up_to`` (a ledger id) holds an ``after`` step to the parent sends that existed when
    a run began: what a run sends is followed up from the next run on, so a dry run, which
    sends nothing, counts the same people."""
    event = campaign.event(step.event_id) if step.event_id else None
    exclude: tuple[str, ...] = ()
    holders = None
    if event is not None and step.kind in ("invite", "cancel"):
        exclude = (email_key(event.organiser.email),)  # Outlook breaks on its own invitation
        if step.kind == "cancel":
            holders = Holders(event=event.id, steps=calendar_steps(campaign, event))
    after = None
    if step.after_step is not None:
        after = AfterRule(step=step.after_step.step or "",
                          delay=step.after_step.delta if respect_delay else None,
                          missed_before=missed_before, parents_up_to=parents_up_to)
    return Target(key=Key(campaign.id, step.id, occurrence), audience=campaign.audience,
                  only_if=step.only_if, after=after, exclude=exclude, holders=holders,
                  pairs=step.pairs, paused=paused,
                  attendees_of=step.event if step.kind == "feedback" else None)


def for_change(campaign: Campaign, event: Event, step: Step, sequence: int, *,
               paused: bool = False) -> Target:
    """An update or cancellation (``step``, built-in) at ``sequence``: everyone whose calendar
    holds an older SEQUENCE of the event — as calendar servers do, decliners and the waitlisted
    too, since their clients put the invitation on their calendars when it came."""
    return Target(key=Key(campaign.id, step.id, f"seq-{sequence}"), audience=campaign.audience,
                  exclude=(email_key(event.organiser.email),),
                  holders=Holders(event=event.id, steps=calendar_steps(campaign, event),
                                  below=sequence),
                  paused=paused)


def for_notice(campaign: Campaign, step: Step, people: list[int], *, paused: bool = False
               ) -> Target:
    """A built-in notice (waitlisted, promoted) to these people."""
    return Target(key=Key(campaign.id, step.id, ONCE), audience=None, people=tuple(people),
                  paused=paused)


def audience_of(campaign: Campaign, step: Step | None = None) -> Target:
    """Everyone the step could ever reach: the audience and its narrowing, no send-time
    condition (what ``validate`` renders for, and a report's audience)."""
    only_if = step.only_if if step else None
    narrowing = OnlyIf(roles=only_if.roles, tags=only_if.tags) if only_if else None
    return Target(key=Key(campaign.id, step.id if step else "", ONCE),
                  audience=campaign.audience, only_if=narrowing)

"""Pre-flight: every step of every campaign rendered for every recipient before anything is sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from . import _yaml, targeting
from ._types import email_key
from .audience import from_row
from .campaign import Campaign
from .errors import ConfigError, TemplateError
from .message import Composer
from .plan import zone_of
from .project import Project
from .schedule import exists_locally
from .store import Conn, Store
from .store import stakeholders as people
from .store.stakeholders import sync
from .tokens import Tokens

PREVIEW_UID = "0" * 32


def check(project: Project, *, timezone: str, now: datetime) -> list[ConfigError]:
    """All problems of the project: load errors, then audiences and rendering (warnings too)."""
    problems = list(project.problems)
    store = Store("sqlite://")  # a scratch store: validate writes nothing to the project's
    try:
        sync(store, project.directory.people, now=now)
        composer = Composer(project.renderer, Tokens("preflight", "https://comms.invalid"),
                            timezone=timezone)
        with store.read() as conn:
            for campaign_id, campaign in project.campaigns.items():
                located = project.sources[campaign_id]
                if not people.count(conn, targeting.audience_of(campaign)):
                    problems.append(located.error(("audience",), "audience matches nobody in "
                                                  "stakeholders/", warning=True))
                problems += _organisers_invited(conn, campaign, located)
                problems += _clock_changes(campaign, located, zone_of(project, campaign, timezone))
                for step in campaign.steps:
                    try:
                        prepared = composer.prepare(campaign, step, now=now)
                    except TemplateError as exc:
                        problems.append(exc)
                        continue
                    failures: dict[str, list[TemplateError]] = defaultdict(list)
                    for row in people.reached(conn, targeting.audience_of(campaign, step)):
                        try:
                            prepared.message(from_row(dict(row)), PREVIEW_UID)
                        except TemplateError as exc:
                            failures[f"{exc.path}:{exc.line}:{exc.message.split(' (')[0]}"].append(exc)
                    for group in failures.values():
                        first = group[0]
                        more = f" (and {len(group) - 1} more recipients)" if len(group) > 1 else ""
                        problems.append(TemplateError(
                            f"{first.message}{more}; step '{step.id}' of {located.path}",
                            path=first.path, line=first.line))
    finally:
        store.dispose()
    return problems


def _organisers_invited(conn: Conn, campaign: Campaign,
                        located: _yaml.Located) -> list[ConfigError]:
    """An organiser in the audience of their own event's invitations is left out; say so."""
    problems = []
    for i, step in enumerate(campaign.steps):
        event = campaign.event(step.event) if step.kind == "invite" and step.event else None
        if event is None:
            continue
        organiser = email_key(event.organiser.email)
        if people.is_reached(conn, targeting.audience_of(campaign, step), organiser):
            problems.append(located.error(
                ("steps", i), f"organiser {event.organiser.email} of event '{event.id}' is in "
                "the audience: they will not be sent their own invitation", warning=True))
    return problems


def _clock_changes(campaign: Campaign, located: _yaml.Located, zone: ZoneInfo) -> list[ConfigError]:
    """Local times that do not exist (skipped by the spring clock change) are refused."""
    problems = []
    times: list[tuple[tuple[str | int, ...], datetime, ZoneInfo]] = [
        (("steps", i, "send_at"), step.send_at, zone)
        for i, step in enumerate(campaign.steps) if step.send_at is not None]
    for i, event in enumerate(campaign.events):
        event_zone = ZoneInfo(event.timezone) if event.timezone else zone
        times += [(("events", i, "starts"), event.starts, event_zone),
                  (("events", i, "ends"), event.ends, event_zone)]
    for loc, moment, moment_zone in times:
        if not exists_locally(moment, moment_zone):
            problems.append(located.error(loc, f"{moment:%Y-%m-%d %H:%M} does not exist in "
                                          f"{moment_zone.key} (the clocks go forward then)"))
    return problems

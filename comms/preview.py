"""One step rendered for one stakeholder, for a person to look at before sending."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from ._types import email_key
from .app import App
from .campaign import Campaign, Step
from .errors import NotFound
from .invite import event_uid
from .message import CalendarSpec
from .store import tables
from .transports.base import Message


@dataclass(frozen=True, slots=True)
class Preview:
    message: Message
    html_path: Path
    ics_path: Path | None = None


def preview(app: App, campaign_id: str, step_id: str, email: str) -> Preview:
    campaign = app.project.campaign(campaign_id)
    step = campaign.step(step_id)
    if step is None:
        known = ", ".join(s.id for s in campaign.steps)
        raise NotFound(f"unknown step '{step_id}' in {campaign_id} (steps are: {known})")
    person = next((p for p in app.project.directory.people if p.key == email_key(email)), None)
    if person is None:
        raise NotFound(f"no stakeholder {email} in stakeholders/")
    prepared = app.composer.prepare(campaign, step, now=app.clock.now(),
                                    calendar=_calendar(app, campaign, step))
    message = prepared.message(person, "preview" + "0" * 25)
    folder = app.settings.resolved_outbox_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9.@-]+", "_", f"{campaign.id}.{step.id}.{person.key}")
    path = folder / f"{name}.html"
    path.write_text(message.html, encoding="utf-8")
    ics = None
    if message.calendar is not None:
        ics = folder / f"{name}.ics"
        ics.write_bytes(message.calendar.ics)
    return Preview(message, path, ics)


def _calendar(app: App, campaign: Campaign, step: Step) -> CalendarSpec | None:
    """The calendar an invitation step would carry now: the event's UID and SEQUENCE as stored,
    or those of a first invitation (nothing is written)."""
    event = campaign.event(step.event) if step.event else None
    if event is None or step.kind not in ("invite", "cancel"):
        return None
    e = tables.events
    with app.store.read() as conn:
        row = conn.execute(select(e.c.uid, e.c.sequence, e.c.status).where(
            e.c.campaign == campaign.id, e.c.event == event.id)).first()
    uid = row.uid if row else event_uid(campaign.id, event.id,
                                        event.organiser.email.rpartition("@")[2])
    cancelled = step.kind == "cancel" or event.status == "cancelled"
    return CalendarSpec(uid, row.sequence if row else 0, "CANCEL" if cancelled else "REQUEST")

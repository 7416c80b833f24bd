"""One step rendered for one stakeholder, for a person to look at before sending."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ._types import email_key
from .app import App
from .dispatch import compose
from .errors import NotFound
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
    with app.store.read() as conn:
        prepared, _ = compose(conn, app.composer, campaign, step, app.clock.now(), record=False)
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

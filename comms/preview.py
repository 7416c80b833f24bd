"""One step rendered for one stakeholder, for a person to look at before sending."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._files import private_dir, write_private
from ._types import email_key, file_safe
from .app import App
from .audience import Stakeholder
from .campaign import Step
from .dispatch import compose
from .errors import NotFound, suggestion
from .message import Pairing
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
        raise NotFound(f"unknown step '{step_id}' in {campaign_id} (steps are: {known})"
                       + suggestion(step_id, [s.id for s in campaign.steps]))
    person = next((p for p in app.project.directory.people if p.key == email_key(email)), None)
    if person is None:
        raise NotFound(f"no stakeholder {email} in stakeholders/")
    pairing = pairing_of(app, step, person) if step.pairs is not None else None
    with app.store.read() as conn:
        prepared, _ = compose(conn, app.composer, campaign, step, app.clock.now(), record=False)
    message = prepared.message(person if pairing is None else pairing.mentee,
                               "preview" + "0" * 25, pairing)
    folder = private_dir(app.settings.resolved_outbox_dir / "previews")
    name = file_safe(f"{campaign.id}.{step.id}.{person.key}")
    path = folder / f"{name}.html"
    write_private(path, message.html)
    ics = None
    if message.calendar is not None:
        ics = folder / f"{name}.ics"
        write_private(ics, message.calendar.ics)
    return Preview(message, path, ics)


def pairing_of(app: App, step: Step, person: Stakeholder) -> Pairing:
    """The pair of the round that ``person`` is in (as mentee, else as mentor)."""
    pairs = app.project.rounds.of(step.pairs or "")
    pair = next((p for p in pairs if p.mentee == person.key), None) or next(
        (p for p in pairs if p.mentor == person.key), None)
    if pair is None:
        raise NotFound(f"{person.email} is in no pair of pairs/{step.pairs}.csv")
    people = {p.key: p for p in app.project.directory.people}
    return Pairing(mentor=people[pair.mentor], mentee=people[pair.mentee], note=pair.note)

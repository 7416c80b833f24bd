"""A test send: one real message through the configured transport to the person checking it,
rendered as one stakeholder of the step would get it, ``[TEST]`` before its subject. The ledger
records nothing, so the real send still reaches everyone; its links (RSVP, check-in, feedback,
unsubscribe) carry a test send id, for which the web app shows "this was a test" and records
nothing."""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from ._types import email_key, normalise_email
from .audience import Stakeholder, from_row
from .campaign import Campaign, Step
from .dispatch import compose
from .errors import CommsError, NotFound, TemplateError
from .store import stakeholders as people
from .targeting import audience_of
from .transports.base import Address, Message

if TYPE_CHECKING:
    from .app import App

TEST_PREFIX = "test"  # send ids of test sends start so; no stored send id does (hex only)


def is_test(uid: str) -> bool:
    return uid.startswith(TEST_PREFIX)


def send_test(app: App, campaign: Campaign, step: Step, to: str,
              as_email: str | None = None) -> Message:
    """Send the step once to ``to``, rendered for ``as_email`` (default: the first person of
    the step's audience); nothing is recorded. Returns the message sent."""
    try:
        address = normalise_email(to)
    except ValueError as exc:
        raise NotFound(f"--test-to: {exc}") from None
    person = _person(app, campaign, step, as_email)
    pairing = None
    if step.pairs is not None:
        from .preview import pairing_of

        pairing = pairing_of(app, step, person)
        person = pairing.mentee
    uid = TEST_PREFIX + secrets.token_hex(14)
    with app.store.read() as conn:
        prepared, _ = compose(conn, app.composer, campaign, step, app.clock.now(), record=False)
    try:
        message = prepared.message(person, uid, pairing)
    except TemplateError as exc:
        raise CommsError(exc.location_message()) from None
    message = replace(message, subject=f"[TEST] {message.subject}",
                      to=Address(email=address, name=person.full_name), also_to=(),
                      calendar=(prepared.calendar.part_for(address, person.full_name)
                                if prepared.calendar else None))
    app.transport.send(message)
    return message


def _person(app: App, campaign: Campaign, step: Step, as_email: str | None) -> Stakeholder:
    if as_email is not None:
        found = next((p for p in app.project.directory.people if p.key == email_key(as_email)),
                     None)
        if found is None:
            raise NotFound(f"--as: no stakeholder {as_email} in stakeholders/")
        return found
    app.sync_directory()
    with app.store.read() as conn:
        first = people.reached(conn, audience_of(campaign, step)).first()
    if first is None:
        raise NotFound(f"{campaign.id}/{step.id} reaches nobody: name a stakeholder with --as")
    return from_row(dict(first))

"""``only_if`` as SQL over stakeholders, evaluated when a step is sent (not when it is planned)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, not_, select, true

from .campaign import OnlyIf
from .store import tables
from .tracking.responses import HUMAN, Kind


def condition(campaign: str, only_if: OnlyIf | None) -> ColumnElement[bool]:
    """True for the stakeholders who meet every condition of ``only_if`` (roles/tags excluded:
    they narrow the audience itself)."""
    if only_if is None:
        return true()
    st, r, a = tables.stakeholders, tables.rsvps, tables.attendance
    parts: list[ColumnElement[bool]] = []
    if only_if.rsvp is not None and only_if.event is not None:
        answered = select(r.c.id).where(r.c.stakeholder_id == st.c.id, r.c.campaign == campaign,
                                        r.c.event == only_if.event)
        if only_if.rsvp == "none":
            parts.append(~answered.exists())
        else:
            parts.append(answered.where(r.c.status == only_if.rsvp).exists())
    for event, wanted in ((only_if.attended, True), (only_if.not_attended, False)):
        if event is not None:
            came = select(a.c.id).where(a.c.stakeholder_id == st.c.id, a.c.campaign == campaign,
                                        a.c.event == event).exists()
            parts.append(came if wanted else not_(came))
    for step, kinds, wanted in ((only_if.not_opened, (Kind.OPENED,), False),
                                (only_if.not_clicked, (Kind.CLICKED,), False),
                                (only_if.responded, tuple(HUMAN), True),
                                (only_if.not_responded, tuple(HUMAN), False)):
        if step is not None:
            found = _responded(campaign, step, kinds)
            parts.append(found if wanted else not_(found))
    return and_(true(), *parts)


def _responded(campaign: str, step: str, kinds: tuple[Kind, ...]) -> ColumnElement[bool]:
    st, resp, s = tables.stakeholders, tables.responses, tables.sends
    of_step = select(s.c.id).where(s.c.campaign == campaign, s.c.step == step,
                                   s.c.stakeholder_id == st.c.id)
    return select(resp.c.id).where(
        resp.c.stakeholder_id == st.c.id, resp.c.kind.in_(kinds), resp.c.machine.is_(False),
        (resp.c.send_id.in_(of_step)) | and_(resp.c.campaign == campaign, resp.c.step == step),
    ).exists()

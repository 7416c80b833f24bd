"""A :class:`~comms.targeting.Target` as SQL: who it reaches, and what a new send for each of
them would become.

:func:`selection` is the one query: the people the target reaches who have no send for its key
yet, each with the state a send would be created in (``waiting`` for an ``after`` delay that has
not passed, ``missed`` beyond catch-up, ``skipped`` by a condition, ``suppressed``, else
``pending``). The ledger materialises it; a dry run and ``plan`` count it; preflight reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from .._types import email_key
from ..campaign import Audience
from ..conditions import Condition, given
from . import tables

if TYPE_CHECKING:
    from ..targeting import Target

st, s = tables.stakeholders, tables.sends
WAITING = "waiting"  # not a ledger state: an after-step's delay has not passed (no row yet)


def reach(target: Target) -> ColumnElement[bool]:
    """Everyone the target reaches, with or without a send, suppressed or not (not paused)."""
    conds: list[ColumnElement[bool]] = [st.c.active == true()]
    if target.audience is not None:
        conds.append(audience(target.audience))
    if target.people is not None:
        conds.append(st.c.id.in_(target.people) if target.people else false())
    for _, condition, value in given(target.only_if):
        if not condition.send_time:
            conds.append(_compile(target, condition, value))
    if target.exclude:
        conds.append(st.c.email.not_in(target.exclude))
    if target.holders is not None:
        conds.append(_holders(target))
    if target.pairs is not None:
        conds.append(_paired(target.pairs))
    if target.attendees_of is not None:
        conds.append(_attendees(target.campaign, target.attendees_of))
    return and_(*conds)


def selection(target: Target, now: Any) -> Select[Any]:
    """(stakeholder id, state) of everyone reached who has no send for the key yet."""
    whens: list[Any] = []
    query = select(st.c.id.label("stakeholder_id"))
    parent = None
    if target.after is not None:
        parent = _parent(target)
        query = query.join(parent, parent.c.stakeholder_id == st.c.id)
        rule = target.after
        if rule.delay is not None:
            whens.append((parent.c.sent_at > literal(now - rule.delay, tables.UtcDateTime()),
                          literal(WAITING)))
            if rule.missed_before is not None:
                whens.append((parent.c.sent_at < literal(rule.missed_before - rule.delay,
                                                         tables.UtcDateTime()),
                              literal("missed")))
    condition = send_time(target)
    if condition is not None:
        whens.append((~condition, literal("skipped")))
    whens.append((suppressed(), literal("suppressed")))
    if target.pairs is not None:
        whens.append((_mentor_suppressed(target.pairs), literal("suppressed")))
    state = case(*whens, else_=literal("pending")).label("state")
    unsent = ~select(s.c.id).where(target.key.where(), s.c.stakeholder_id == st.c.id).exists()
    where = and_(reach(target), unsent, false() if target.paused else true())
    return query.add_columns(state).where(where)


def send_time(target: Target) -> ColumnElement[bool] | None:
    """The target's conditions checked at the moment of sending (None: there are none)."""
    parts = [_compile(target, condition, value)
             for _, condition, value in given(target.only_if) if condition.send_time]
    return and_(*parts) if parts else None


def suppressed() -> ColumnElement[bool]:
    """The stakeholder's address is on the suppression list."""
    sup = tables.suppressions
    return select(sup.c.id).where(sup.c.email == st.c.email).exists()


def audience(spec: Audience) -> ColumnElement[bool]:
    """An audience filter: roles, boroughs, organisations (any of each), tags (all), exclusions."""
    conds: list[ColumnElement[bool]] = []
    conds += _any_of(spec.roles, spec.boroughs, spec.organisations)
    conds += [_tagged(t) for t in spec.tags]
    ex = spec.exclude
    excluded = _any_of(ex.roles, ex.boroughs, ex.organisations)
    excluded += [_tagged(t) for t in ex.tags]
    if ex.emails:
        excluded.append(_in_list(st.c.email, [email_key(e) for e in ex.emails]))
    conds += [not_(c) for c in excluded]
    return and_(true(), *conds)


SMALL_LIST = 100  # longer lists go to the database as one JSON parameter, not one per value


def _in_list(column: ColumnElement[Any], values: list[str]) -> ColumnElement[bool]:
    """``column IN values`` for a list of any length: short lists bind one parameter per value;
    long ones (550,000 excluded addresses) one JSON parameter, which databases cap nowhere."""
    if len(values) <= SMALL_LIST:
        return column.in_(values)
    return InJsonArray(column, json.dumps(values))


class InJsonArray(ColumnElement[bool]):
    """``column IN (the strings of a JSON array)``, the array bound as one parameter."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("array", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], array: str) -> None:
        self.column = column
        self.array = bindparam(None, array, type_=String(), unique=True)


@compiles(InJsonArray)
def _in_json_sqlite(element: InJsonArray, compiler: SQLCompiler, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN (SELECT value FROM "
            f"json_each({compiler.process(element.array, **kw)}))")


@compiles(InJsonArray, "postgresql")
def _in_json_postgresql(element: InJsonArray, compiler: SQLCompiler, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN (SELECT json_array_elements_text("
            f"CAST({compiler.process(element.array, **kw)} AS json)))")


# --- the compilers, one per kind of condition (comms/conditions.py) ---------------------------


def _compile(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    return _COMPILERS[condition.test](target, condition, value)


def _rsvp(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    r = tables.rsvps
    event = target.only_if.event if target.only_if is not None else None
    answered = select(r.c.id).where(r.c.stakeholder_id == st.c.id,
                                    r.c.campaign == target.campaign, r.c.event == event)
    if value == "none":
        return ~answered.exists()
    return answered.where(r.c.status == value).exists()


def _rsvp_event(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    return true()  # the event an ``rsvp`` condition is about: no test of its own


def _attendance(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    a = tables.attendance
    came = select(a.c.id).where(a.c.stakeholder_id == st.c.id,
                                a.c.campaign == target.campaign, a.c.event == value).exists()
    return came if condition.wanted else not_(came)


def _response(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    resp = tables.responses
    campaign = target.campaign
    of_step = select(s.c.id).where(s.c.campaign == campaign, s.c.step == value,
                                   s.c.stakeholder_id == st.c.id)
    found = select(resp.c.id).where(
        resp.c.stakeholder_id == st.c.id, resp.c.kind.in_([str(k) for k in condition.kinds]),
        resp.c.machine.is_(False),
        (resp.c.send_id.in_(of_step)) | and_(resp.c.campaign == campaign, resp.c.step == value),
    ).exists()
    return found if condition.wanted else not_(found)


def _roles(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    return st.c.role.in_([role.lower() for role in value])


def _tags(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    return and_(true(), *(_tagged(t) for t in value))


def _pair(target: Target, condition: Condition, value: Any) -> ColumnElement[bool]:
    answer = select(tables.pairs.c.answer).where(tables.pairs.c.round == target.pairs,
                                                 tables.pairs.c.mentee_id == st.c.id)
    answered = {"met": ["met"], "not_yet": ["not_yet"]}
    if value in answered:
        return answer.where(tables.pairs.c.answer.in_(answered[value])).exists()
    if value == "not_met":
        return ~answer.where(tables.pairs.c.answer == "met").exists()
    return ~answer.where(tables.pairs.c.answer.is_not(None)).exists()  # no_answer


_COMPILERS = {"rsvp": _rsvp, "rsvp_event": _rsvp_event, "attendance": _attendance,
              "response": _response, "pair": _pair, "roles": _roles, "tags": _tags}


# --- pieces -----------------------------------------------------------------------------------


def _parent(target: Target) -> Any:
    """Per person: when their send of the parent step first went (any occurrence)."""
    assert target.after is not None
    query = (select(s.c.stakeholder_id, func.min(s.c.sent_at).label("sent_at"))
             .where(s.c.campaign == target.campaign, s.c.step == target.after.step,
                    s.c.status == "sent"))
    if target.after.parents_up_to is not None:
        query = query.where(s.c.id <= target.after.parents_up_to)
    return query.group_by(s.c.stakeholder_id).subquery("parent")


def _holders(target: Target) -> ColumnElement[bool]:
    """The person was sent the event's calendar (and, with ``below``, holds an older
    SEQUENCE), whatever they answered."""
    assert target.holders is not None
    h = target.holders
    sent = select(s.c.id).where(s.c.campaign == target.campaign, s.c.step.in_(h.steps),
                                s.c.stakeholder_id == st.c.id, s.c.status == "sent")
    conds: list[ColumnElement[bool]] = [sent.exists()]
    if h.below is not None:
        conds.append(~sent.where(s.c.sequence >= h.below).exists())
    return and_(*conds)


def _attendees(campaign: str, event: str) -> ColumnElement[bool]:
    """Recorded as attended, once any attendance of the event is recorded; else accepted."""
    a, r = tables.attendance, tables.rsvps
    sheet = select(a.c.id).where(a.c.campaign == campaign, a.c.event == event)
    came = sheet.where(a.c.stakeholder_id == st.c.id).exists()
    accepted = select(r.c.id).where(r.c.campaign == campaign, r.c.event == event,
                                    r.c.stakeholder_id == st.c.id,
                                    r.c.status == "accepted").exists()
    return or_(and_(sheet.exists(), came), and_(~sheet.exists(), accepted))


def _paired(round_id: str) -> ColumnElement[bool]:
    """A pairs step reaches the mentee of each active pair of the round whose mentor is
    active too (the send is recorded against the mentee: one per pair)."""
    p, mentor = tables.pairs, tables.stakeholders.alias("mentor")
    return select(p.c.id).join(mentor, mentor.c.id == p.c.mentor_id).where(
        p.c.round == round_id, p.c.mentee_id == st.c.id, p.c.active,
        mentor.c.active == true()).exists()


def _mentor_suppressed(round_id: str) -> ColumnElement[bool]:
    """The mentor of the person's pair is on the suppression list: the pair is skipped."""
    p, mentor, sup = tables.pairs, tables.stakeholders.alias("mentor"), tables.suppressions
    return select(p.c.id).join(mentor, mentor.c.id == p.c.mentor_id).join(
        sup, sup.c.email == mentor.c.email).where(p.c.round == round_id,
                                                  p.c.mentee_id == st.c.id).exists()


def _tagged(tag: str) -> ColumnElement[bool]:
    return st.c.tags.like(f"%;{tag.lower()};%")


def _any_of(roles: Sequence[str], boroughs: Sequence[str],
            organisations: Sequence[str]) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if roles:
        out.append(st.c.role.in_([r.lower() for r in roles]))
    for column, values in ((st.c.borough, boroughs), (st.c.organisation, organisations)):
        if values:
            out.append(func.lower(column).in_([v.lower() for v in values]))
    return out


"""Engagement figures computed in the store: one pass over sends and responses into two scratch
tables (per person and step, per person and campaign), then small GROUP BY queries over those.

Every count is of people, not of messages or events: a person who opened a message five times,
or was sent three occurrences of a monthly step, counts once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)

from ..campaign import Campaign
from ..responses import HUMAN, Kind
from ..store import tables
from ..store.tables import UtcDateTime
from ..store.targets import reach, suppressed
from ..targeting import audience_of

#: The counted figures of a campaign, a step or a group, in their documented order.
COUNTS = ("audience", "sent", "delivered", "bounced", "opened", "clicked", "replied",
          "unsubscribed", "responded")
FLAGS = COUNTS[1:]
UNDELIVERED = ("bounced", "dropped")
UNSUBSCRIBING = (Kind.UNSUBSCRIBED, Kind.GROUP_UNSUBSCRIBED)
GROUPINGS = ("borough", "organisation", "role")

_scratch = MetaData()
person_step = Table(
    "report_person_step", _scratch,
    Column("campaign", String(64)), Column("step", String(64)), Column("stakeholder_id", Integer),
    *(Column(flag, Integer) for flag in FLAGS), Column("first_response", UtcDateTime()),
    prefixes=["TEMPORARY"],
)
person_campaign = Table(
    "report_person_campaign", _scratch,
    Column("campaign", String(64)), Column("stakeholder_id", Integer),
    *(Column(flag, Integer) for flag in FLAGS), Column("first_response", UtcDateTime()),
    prefixes=["TEMPORARY"],
)


answers = Table(
    "report_answers", _scratch,
    Column("send_id", Integer, primary_key=True), *(Column(flag, Integer) for flag in FLAGS[3:]),
    Column("first_response", UtcDateTime()),
    prefixes=["TEMPORARY"],
)
SCRATCH = (answers, person_step, person_campaign)
#: Each response kind as bits: opened 1, clicked 2, replied 4, unsubscribed 8, a human response 32.
BITS = {"opened": 1, "clicked": 2, "replied": 4, "unsubscribed": 8}
HUMAN_BIT = 32
_KIND_BITS = {str(kind): (BITS["opened"] if kind == Kind.OPENED else 0)
              | (BITS["clicked"] if kind == Kind.CLICKED else 0)
              | (BITS["replied"] if kind == Kind.REPLIED else 0)
              | (BITS["unsubscribed"] if kind in UNSUBSCRIBING else 0)
              | (HUMAN_BIT if kind in HUMAN else 0) for kind in Kind}
_KIND_BITS = {kind: bit for kind, bit in _KIND_BITS.items() if bit}  # delivery events: no bits


@contextmanager
def engagement(conn: Connection, campaigns: Sequence[Campaign]) -> Iterator[None]:
    """Fill the scratch tables for ``campaigns`` for the length of the block (one connection)."""
    for table in SCRATCH:
        table.drop(conn, checkfirst=True)
        table.create(conn)
    try:
        _fill(conn, campaigns)
        yield
    finally:
        for table in reversed(SCRATCH):
            table.drop(conn, checkfirst=True)


def _fill(conn: Connection, campaigns: Sequence[Campaign]) -> None:
    """Three passes: responses per send; per person and step (sends and what answered them,
    and answers that came without a send); per person and campaign."""
    s, r = tables.sends, tables.responses
    ids = [c.id for c in campaigns]
    bits = case(_KIND_BITS, value=r.c.kind, else_=0)
    counted = r.c.machine.is_(False)  # people, not pre-fetches or scanners (machine_counts)
    each = select(r.c.send_id, bits.label("k"), r.c.occurred_at).where(
        r.c.kind.in_(list(_KIND_BITS)), r.c.send_id.is_not(None), counted).subquery("each")
    # ix_responses_send covers (send_id, kind, machine, occurred_at): read in send order, no sort
    send_id = each.c.send_id.label("send_id")
    conn.execute(insert(answers).from_select(
        ["send_id", *FLAGS[3:], "first_response"],
        select(send_id, *(func.max(each.c.k.op("&")(bit)) // bit for bit in BITS.values()),
               func.max(each.c.k.op("&")(HUMAN_BIT)) // HUMAN_BIT,
               func.min(case((each.c.k >= HUMAN_BIT, each.c.occurred_at), else_=null())))
        .where(each.c.k > 0).group_by(send_id)))
    a = answers
    zero = literal(0)
    undelivered = func.coalesce(s.c.delivery, "").in_(UNDELIVERED)
    is_sent = s.c.status == "sent"
    per_send = select(
        s.c.campaign, s.c.step, s.c.stakeholder_id, case((is_sent, 1), else_=0).label("sent"),
        case((and_(is_sent, ~undelivered), 1), else_=0).label("delivered"),
        case((and_(is_sent, undelivered), 1), else_=0).label("bounced"),
        *(func.coalesce(a.c[f], 0).label(f) for f in FLAGS[3:]), a.c.first_response,
    ).select_from(s.outerjoin(a, a.c.send_id == s.c.id)).where(
        s.c.campaign.in_(ids))
    k = bits
    unsent = select(
        r.c.campaign, _attributed_step(campaigns).label("step"), r.c.stakeholder_id, zero, zero, zero,
        *(case((k.op("&")(bit) > 0, 1), else_=0) for bit in BITS.values()),
        case((k >= HUMAN_BIT, 1), else_=0), case((k >= HUMAN_BIT, r.c.occurred_at), else_=null()),
    ).where(r.c.send_id.is_(None), r.c.stakeholder_id.is_not(None), r.c.campaign.in_(ids),
            counted, k > 0)
    both = union_all(per_send, unsent).subquery("both")
    conn.execute(insert(person_step).from_select(
        ["campaign", "step", "stakeholder_id", *FLAGS, "first_response"],
        select(both.c.campaign, both.c.step, both.c.stakeholder_id,
               *(func.max(both.c[f]) for f in FLAGS), func.min(both.c.first_response))
        .group_by(both.c.campaign, both.c.step, both.c.stakeholder_id)))
    ps = person_step
    conn.execute(insert(person_campaign).from_select(
        ["campaign", "stakeholder_id", *FLAGS, "first_response"],
        select(ps.c.campaign, ps.c.stakeholder_id, *(func.max(ps.c[f]) for f in FLAGS),
               func.min(ps.c.first_response))
        .group_by(ps.c.campaign, ps.c.stakeholder_id)))


def _attributed_step(campaigns: Sequence[Campaign]) -> Any:
    """The step of a response that came without a send: the one it names, or for an RSVP (a
    calendar reply, a manual answer) the first invitation step of its event."""
    r = tables.responses
    whens: list[Any] = [(r.c.step.is_not(None), r.c.step)]
    for c in campaigns:
        for event in c.events:
            invite = next((st.id for st in c.steps if st.kind == "invite" and st.event == event.id),
                          None)
            if invite is not None:
                whens.append((and_(r.c.campaign == c.id, r.c.event == event.id), literal(invite)))
    return case(*whens, else_=null())


def _sums(table: Table) -> list[Any]:
    return [func.coalesce(func.sum(table.c[f]), 0).label(f) for f in FLAGS]


def machine_counts(conn: Connection, campaign: Campaign) -> dict[str | None, dict[str, int]]:
    """Per step of the campaign (and None: the campaign), how many people's messages were
    opened or clicked by machines (pre-fetches, scanners): shown beside the people's figures."""
    s, r = tables.sends, tables.responses
    kinds = {"machine_opened": Kind.OPENED, "machine_clicked": Kind.CLICKED}
    machine = select(s.c.step, s.c.stakeholder_id, r.c.kind).join(r, r.c.send_id == s.c.id).where(
        s.c.campaign == campaign.id, r.c.machine.is_(True),
        r.c.kind.in_([str(k) for k in kinds.values()])).distinct().subquery("machine")
    out: dict[str | None, dict[str, int]] = {}
    for step, kind, people in conn.execute(
            select(machine.c.step, machine.c.kind, func.count()).group_by(machine.c.step,
                                                                        machine.c.kind)):
        out.setdefault(step, dict.fromkeys(kinds, 0))[f"machine_{kind}"] = people
    for kind in kinds.values():
        people = conn.execute(select(func.count(func.distinct(machine.c.stakeholder_id)))
                              .where(machine.c.kind == str(kind))).scalar_one()
        out.setdefault(None, dict.fromkeys(kinds, 0))[f"machine_{kind}"] = people
    return out


def step_counts(conn: Connection) -> dict[tuple[str, str], dict[str, int]]:
    """Per (campaign, step): sent … responded."""
    ps = person_step
    rows = conn.execute(select(ps.c.campaign, ps.c.step, *_sums(ps))
                        .where(ps.c.step.is_not(None)).group_by(ps.c.campaign, ps.c.step))
    return {(row.campaign, row.step): {f: int(row._mapping[f]) for f in FLAGS} for row in rows}


def audience(conn: Connection, campaign: Campaign, step: str | None = None) -> int:
    """The people the audience (narrowed by the step's roles/tags) matches now, and anyone who
    was sent a message of it, whatever the audience says today."""
    st = tables.stakeholders
    found = campaign.step(step) if step else None
    return int(conn.execute(select(func.count()).select_from(st).where(
        or_(reach(audience_of(campaign, found)), _was_sent(campaign.id, step)))).scalar_one())


def _was_sent(campaign: str, step: str | None) -> ColumnElement[bool]:
    st = tables.stakeholders
    if step is None:
        pc = person_campaign
        return select(pc.c.stakeholder_id).where(
            pc.c.campaign == campaign, pc.c.stakeholder_id == st.c.id, pc.c.sent == 1).exists()
    ps = person_step
    return select(ps.c.stakeholder_id).where(
        ps.c.campaign == campaign, ps.c.step == step, ps.c.stakeholder_id == st.c.id,
        ps.c.sent == 1).exists()


def group_counts(conn: Connection, campaign: Campaign, by: str) -> dict[str | None, dict[str, int]]:
    """Per group of ``by`` (borough, organisation or role): audience, sent … responded."""
    st, pc = tables.stakeholders, person_campaign
    column = st.c[by]
    joined = st.outerjoin(pc, and_(pc.c.stakeholder_id == st.c.id, pc.c.campaign == campaign.id))
    in_audience = or_(reach(audience_of(campaign)), pc.c.sent == 1)
    rows = conn.execute(select(column.label("grp"), func.count().label("audience"), *_sums(pc))
                        .select_from(joined).where(in_audience).group_by(column)
                        .order_by(column))
    return {(row.grp or None): {c: int(row._mapping[c]) for c in COUNTS} for row in rows}


def campaign_counts(conn: Connection, campaign: Campaign) -> dict[str, int]:
    pc = person_campaign
    row = conn.execute(select(*_sums(pc)).where(pc.c.campaign == campaign.id)).one()
    return {"audience": audience(conn, campaign), **{f: int(row._mapping[f]) for f in FLAGS}}


def first_responses(conn: Connection, campaign: str) -> list[tuple[str, int]]:
    """People by the UTC hour of their first human response: ("YYYY-MM-DD HH", n), in order."""
    pc = person_campaign
    if conn.dialect.name == "postgresql":
        hour: Any = func.to_char(literal_column("first_response AT TIME ZONE 'UTC'"),
                                 "YYYY-MM-DD HH24")
    else:
        hour = func.substr(pc.c.first_response, 1, 13)
    rows = conn.execute(select(hour.label("hour"), func.count()).where(
        pc.c.campaign == campaign, pc.c.first_response.is_not(None)).group_by(hour).order_by(hour))
    return [(str(h), int(n)) for h, n in rows]


def goal_value(conn: Connection, campaign: Campaign) -> int | None:
    goal = campaign.goal
    if goal is None:
        return None
    if goal.metric == "accepted":
        r = tables.rsvps
        query = select(func.count(func.distinct(r.c.stakeholder_id))).where(
            r.c.campaign == campaign.id, r.c.status == "accepted")
        if goal.event:
            query = query.where(r.c.event == goal.event)
        return int(conn.execute(query).scalar_one())
    pc = person_campaign
    return int(conn.execute(select(func.count()).where(
        pc.c.campaign == campaign.id, pc.c[goal.metric] == 1)).scalar_one())


def programme_counts(conn: Connection) -> dict[str | None, dict[str, int]]:
    """Per borough, across every campaign in the scratch tables: ``directory`` (the people in
    the directory, and anyone no longer in it who was reached or responded), ``reached`` (sent
    at least one message), ``responded`` (any human response): each person counted once."""
    st, pc = tables.stakeholders, person_campaign
    person = select(pc.c.stakeholder_id, func.max(pc.c.sent).label("reached"),
                    func.max(pc.c.responded).label("responded")
                    ).group_by(pc.c.stakeholder_id).subquery("person")
    reached, responded = func.coalesce(person.c.reached, 0), func.coalesce(person.c.responded, 0)
    rows = conn.execute(
        select(st.c.borough.label("grp"), func.count().label("directory"),
               func.coalesce(func.sum(reached), 0).label("reached"),
               func.coalesce(func.sum(responded), 0).label("responded"))
        .select_from(st.outerjoin(person, person.c.stakeholder_id == st.c.id))
        .where(or_(st.c.active == true(), reached == 1, responded == 1))
        .group_by(st.c.borough).order_by(st.c.borough))
    return {(row.grp or None): {k: int(row._mapping[k]) for k in ("directory", "reached",
                                                                   "responded")}
            for row in rows}


def event_counts(conn: Connection, campaign: Campaign, event_id: str,
                 invite_steps: list[str]) -> dict[str, int]:
    """invited, accepted, tentative, declined, waitlisted, no_response, attended."""
    s, r, a = tables.sends, tables.rsvps, tables.attendance
    statuses: dict[str, int] = dict(conn.execute(select(r.c.status, func.count()).where(
        r.c.campaign == campaign.id, r.c.event == event_id).group_by(r.c.status)).all())
    invited = select(s.c.stakeholder_id).where(
        s.c.campaign == campaign.id, s.c.step.in_(invite_steps or [""]), s.c.status == "sent"
    ).distinct().subquery()
    answered = select(r.c.id).where(r.c.campaign == campaign.id, r.c.event == event_id,
                                    r.c.stakeholder_id == invited.c.stakeholder_id).exists()
    row = conn.execute(select(func.count(), func.coalesce(func.sum(case((answered, 0), else_=1)), 0))
                       .select_from(invited)).one()
    attended = conn.execute(select(func.count()).where(
        a.c.campaign == campaign.id, a.c.event == event_id)).scalar_one()
    return {"invited": int(row[0]),
            **{k: int(statuses.get(k, 0)) for k in ("accepted", "tentative", "declined",
                                                   "waitlisted")},
            "no_response": int(row[1]), "attended": int(attended)}


def chase(conn: Connection, campaign: Campaign, step: str | None) -> list[dict[str, Any]]:
    """People sent the campaign (or step) who have neither responded nor unsubscribed."""
    st, ps, pc = tables.stakeholders, person_step, person_campaign
    mine = select(ps.c.stakeholder_id, func.max(ps.c.bounced).label("bounced")).where(
        ps.c.campaign == campaign.id, ps.c.sent == 1)
    if step is not None:
        mine = mine.where(ps.c.step == step)
    people = mine.group_by(ps.c.stakeholder_id).subquery("people")
    left = select(pc.c.stakeholder_id).where(pc.c.campaign == campaign.id,
                                             pc.c.stakeholder_id == st.c.id,
                                             pc.c.unsubscribed == 1).exists()
    responded = select(ps.c.stakeholder_id).where(
        ps.c.campaign == campaign.id, ps.c.stakeholder_id == st.c.id, ps.c.responded == 1)
    if step is not None:
        responded = responded.where(ps.c.step == step)
    rows = conn.execute(
        select(st.c.first_name, st.c.last_name, st.c.display_email, st.c.organisation,
               st.c.borough, st.c.role, st.c.job_title, st.c.attributes, people.c.bounced)
        .join(people, people.c.stakeholder_id == st.c.id)
        .where(~responded.exists(), ~left, ~suppressed())
        .order_by(st.c.borough, st.c.organisation, st.c.last_name, st.c.first_name)).all()
    return [row._asdict() for row in rows]

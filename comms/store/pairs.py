"""Mentoring pairs in the store: mirrored from pairs/ROUND.csv, with each pair's check-in answer.

A pair's state is derived, never stored twice: ``met`` or ``not yet`` from its answer, else
``introduced`` once a send of an ``introduce`` step reached it, else ``not introduced``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update

from ..pairs import Pair
from ..responses import Kind, Response
from . import responses, tables
from .stakeholders import ids_by_email
from .upsert import upsert

p, s, st = tables.pairs, tables.sends, tables.stakeholders
ANSWER_KINDS = {"met": Kind.PAIR_MET, "not_yet": Kind.PAIR_NOT_YET}


def sync(conn: Connection, rounds: Mapping[str, Sequence[Pair]], *, now: datetime) -> None:
    """Mirror every round: new pairs added, a changed mentor or note updated (a new mentor
    clears the answer), pairs gone from their file made inactive."""
    emails = sorted({a for pairs in rounds.values() for pair in pairs
                     for a in (pair.mentor, pair.mentee)})
    ids = ids_by_email(conn, emails)
    held = {(row.round, row.mentee_id): row for row in conn.execute(
        select(p.c.round, p.c.mentee_id, p.c.mentor_id))}
    rows, rematched = [], []
    for round_id, pairs in rounds.items():
        for pair in pairs:
            if pair.mentor not in ids or pair.mentee not in ids:
                continue  # forgotten people are not paired again
            mentee, mentor = ids[pair.mentee], ids[pair.mentor]
            old = held.get((round_id, mentee))
            if old is not None and old.mentor_id != mentor:
                rematched.append((round_id, mentee))
            rows.append({"round": round_id, "mentee_id": mentee, "mentor_id": mentor,
                         "note": pair.note, "active": True, "updated_at": now})
    upsert(conn, p, rows, ["round", "mentee_id"], ["mentor_id", "note", "active", "updated_at"])
    for round_id, mentee in rematched:
        conn.execute(update(p).where(p.c.round == round_id, p.c.mentee_id == mentee)
                     .values(answer=None, answered_at=None))
    present = {(r["round"], r["mentee_id"]) for r in rows}
    gone = [key for key in held if key not in present]
    for round_id, mentee in gone:
        conn.execute(update(p).where(p.c.round == round_id, p.c.mentee_id == mentee,
                                     p.c.active).values(active=False, updated_at=now))


def of_send(conn: Connection, send_id: int, round_id: str) -> dict[str, Any] | None:
    """The pair a send of a pairs step went to (its stakeholder is the mentee)."""
    row = conn.execute(select(p).join(s, s.c.stakeholder_id == p.c.mentee_id)
                       .where(s.c.id == send_id, p.c.round == round_id)).mappings().first()
    return dict(row) if row else None


def members(conn: Connection, round_id: str, mentee_ids: Iterable[int]
            ) -> dict[int, dict[str, Any]]:
    """For each mentee id: the pair's note and both people's stakeholder rows (``mentor``,
    ``mentee``)."""
    wanted = sorted(set(mentee_ids))
    if not wanted:
        return {}
    mentor, mentee = st.alias(), st.alias()
    columns = [*(c.label(f"a_{c.name}") for c in mentor.c),
               *(c.label(f"b_{c.name}") for c in mentee.c)]
    rows = conn.execute(select(p.c.id, p.c.mentee_id, p.c.note, *columns)
                        .join(mentor, mentor.c.id == p.c.mentor_id)
                        .join(mentee, mentee.c.id == p.c.mentee_id)
                        .where(p.c.round == round_id, p.c.active,
                               p.c.mentee_id.in_(wanted))).mappings()
    return {row["mentee_id"]: {
        "id": row["id"], "note": row["note"],
        "mentor": {c.name: row[f"a_{c.name}"] for c in st.c},
        "mentee": {c.name: row[f"b_{c.name}"] for c in st.c}} for row in rows}


def answer(conn: Connection, pair_id: int, given: str, *, send_id: int, now: datetime) -> None:
    """Record a check-in answer (``met`` or ``not_yet``); a later one replaces it, and every
    answer stays in responses."""
    row = conn.execute(select(p).where(p.c.id == pair_id)).mappings().one()
    conn.execute(update(p).where(p.c.id == pair_id).values(answer=given, answered_at=now))
    for person in (row["mentee_id"], row["mentor_id"]):
        responses.insert(conn, [Response(
            kind=ANSWER_KINDS[given], occurred_at=now, send_id=send_id if person ==
            row["mentee_id"] else None, stakeholder_id=person, detail=row["round"],
            raw=json.dumps({"round": row["round"], "answer": given}))], received_at=now)


def listing(conn: Connection, round_id: str | None,
            introductions: Mapping[str, Sequence[tuple[str, str]]]) -> list[dict[str, Any]]:
    """Each active pair (of one round or all) with its state. ``introductions`` gives, per
    round, the (campaign, step) of the introduce steps that name it."""
    mentor, mentee = st.alias(), st.alias()
    query = (select(p.c.id, p.c.round, p.c.note, p.c.answer, p.c.answered_at,
                    mentor.c.display_email.label("mentor"),
                    mentee.c.display_email.label("mentee"),
                    mentee.c.borough.label("borough"), p.c.mentee_id)
             .join(mentor, mentor.c.id == p.c.mentor_id)
             .join(mentee, mentee.c.id == p.c.mentee_id)
             .where(p.c.active).order_by(p.c.round, p.c.id))
    if round_id is not None:
        query = query.where(p.c.round == round_id)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    sent = _introduced(conn, introductions)
    for row in rows:
        answered = {"met": "met", "not_yet": "not yet"}.get(row.pop("answer") or "")
        introduced = (row["round"], row.pop("mentee_id")) in sent
        row["state"] = answered or ("introduced" if introduced else "not introduced")
    return rows


def _introduced(conn: Connection, introductions: Mapping[str, Sequence[tuple[str, str]]]
                ) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for round_id, steps in introductions.items():
        if not steps:
            continue
        which = [and_(s.c.campaign == c, s.c.step == step) for c, step in steps]
        found |= {(round_id, sid) for sid in conn.execute(
            select(s.c.stakeholder_id).where(or_(*which), s.c.status == "sent")).scalars()}
    return found


def summary(conn: Connection, introductions: Mapping[str, Sequence[tuple[str, str]]]
            ) -> dict[str, int]:
    """Active pairs, how many were introduced (by ``introductions``: per round, the
    (campaign, step) of its introduce steps) and how many have met."""
    row = conn.execute(select(func.count(), func.sum(case((p.c.answer == "met", 1), else_=0)))
                       .where(p.c.active)).one()
    active = {(r, m) for r, m in conn.execute(select(p.c.round, p.c.mentee_id).where(p.c.active))}
    introduced = len(active & _introduced(conn, introductions))
    return {"pairs": row[0] or 0, "introduced": introduced, "met": row[1] or 0}


def suppressed(conn: Connection, key: Any, round_id: str) -> list[str]:
    """The pairs a step's key skipped because one of the two is suppressed, by name
    ("mentee & mentor"), never by address."""
    mentor, mentee = st.alias(), st.alias()
    rows = conn.execute(
        select(mentee.c.first_name, mentee.c.last_name, mentor.c.first_name,
               mentor.c.last_name)
        .select_from(s).join(p, and_(p.c.mentee_id == s.c.stakeholder_id, p.c.round == round_id))
        .join(mentee, mentee.c.id == p.c.mentee_id).join(mentor, mentor.c.id == p.c.mentor_id)
        .where(key.where(), s.c.status == "suppressed"))
    return sorted(f"{a} {b} & {c} {d}".replace("  ", " ").strip() for a, b, c, d in rows)

"""The facts the timeline needs (comms/plan.py), read from their owners in one read transaction."""

from __future__ import annotations

from sqlalchemy import Connection

from ..plan import Facts, Parents
from ..project import Project
from . import campaigns, occurrences, sends


def load(conn: Connection, project: Project) -> Facts:
    states = campaigns.states(conn)
    parents = {}
    for campaign in project.campaigns.values():
        for step in campaign.steps:
            if step.after_step is not None:
                parents[(campaign.id, step.id)] = Parents(
                    *sends.after_parents(conn, campaign.id, step.id, step.after_step.step or ""))
    return Facts(
        first_seen={c: first for c, (first, _) in states.items()},
        paused={c: paused for c, (_, paused) in states.items() if paused is not None},
        processed=occurrences.processed(conn),
        now_seen=occurrences.now_steps_seen(conn),
        sent=sends.sent_counts(conn),
        parents=parents)


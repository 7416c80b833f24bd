"""Where every step stands: due, sent, pending, failed, uncertain — and which sends are uncertain."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .plan import first_due
from .project import Project
from .store import Store, runs
from .store import sends as ledger


@dataclass(frozen=True, slots=True)
class Status:
    steps: list[dict[str, Any]]
    uncertain: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "uncertain": [
            {**u, "claimed_at": u["claimed_at"].isoformat() if u["claimed_at"] else None}
            for u in self.uncertain]}


def status(project: Project, store: Store, *, timezone: str, now: datetime,
           campaign_id: str | None = None) -> Status:
    """Per step counts; claims left by processes that died are turned into ``uncertain`` first."""
    with store.write() as conn:
        ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
        counts = ledger.counts(conn, campaign_id)
        uncertain = ledger.uncertain(conn, campaign_id)
    campaigns = [project.campaign(campaign_id)] if campaign_id else project.campaigns.values()
    rows = []
    for campaign in campaigns:
        for step in campaign.steps:
            c = counts.get((campaign.id, step.id), Counter())
            due = first_due(project, campaign, step, timezone=timezone, now=now)
            rows.append({"campaign": campaign.id, "step": step.id,
                         "due": due.isoformat() if due else None,
                         **{state: c.get(state, 0) for state in ledger.STATES}})
    return Status(rows, uncertain)

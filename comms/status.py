"""Where every step stands: due, sent, pending, failed, uncertain — and which sends are uncertain."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .app import App
from .plan import first_due
from .store import runs
from .store import sends as ledger


@dataclass(frozen=True, slots=True)
class Status:
    steps: list[dict[str, Any]]
    uncertain: list[dict[str, Any]]
    upcoming: list[dict[str, Any]]
    missed: list[dict[str, Any]]
    last_run: str | None

    def as_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "uncertain": _iso(self.uncertain),
                "next": _iso(self.upcoming), "missed": _iso(self.missed),
                "last_run": self.last_run}


def _iso(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows]


def status(app: App, campaign_id: str | None = None) -> Status:
    """Per step counts, the next due occurrences, what was missed, the scheduler's last run.

    Claims left by processes that died are turned into ``uncertain`` first."""
    from .service import Service, last_tick, missed

    project, store, now = app.project, app.store, app.clock.now()
    timezone = app.settings.timezone
    with store.write() as conn:
        ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
        counts = ledger.counts(conn, campaign_id)
        uncertain = ledger.uncertain(conn, campaign_id)
        missed_rows = missed(conn, campaign_id)
        last = last_tick(conn)
    upcoming = [u for u in Service(app).upcoming(now)
                if campaign_id is None or u["campaign"] == campaign_id]
    campaigns = [project.campaign(campaign_id)] if campaign_id else project.campaigns.values()
    rows = []
    for campaign in campaigns:
        for step in campaign.steps:
            c = counts.get((campaign.id, step.id), Counter())
            due = first_due(project, campaign, step, timezone=timezone, now=now)
            rows.append({"campaign": campaign.id, "step": step.id,
                         "due": due.isoformat() if due else None,
                         **{state: c.get(state, 0) for state in ledger.STATES}})
    return Status(rows, uncertain, upcoming, missed_rows, last)

"""Engagement reports: who was reached and who responded, by campaign, step, group and event.

``report()`` computes the figures in the store (GROUP BY, never row by row in Python) and returns
a ``Report``; ``Report.render(fmt)`` presents it as a table, CSV, JSON or one self-contained HTML
page. ``chase()`` lists the people who have not responded yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from . import build, metrics
from .text import csv_text

if TYPE_CHECKING:
    from ..app import App

FORMATS = ("table", "csv", "json", "html")
GROUPINGS = metrics.GROUPINGS
CHASE_COLUMNS = ("name", "email", "phone", "organisation", "borough", "role", "job_title", "note")


@dataclass(frozen=True, slots=True)
class Report:
    """The report in the shape of its JSON (see the README, "Reports")."""

    data: dict[str, Any]

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.data, indent=2, ensure_ascii=False)
        if fmt == "html":
            from .html import render_html

            return render_html(self.data)
        from .text import render_csv, render_table

        return render_csv(self.data) if fmt == "csv" else render_table(self.data)


def report(app: App, *, campaign: str | None = None, by: str = "borough") -> Report:
    """The engagement report for one campaign or all, with groups of ``by``."""
    if by not in GROUPINGS:
        raise NotFound(f"unknown grouping '{by}' (groupings are: {', '.join(GROUPINGS)})")
    project = app.project
    chosen = [project.campaign(campaign)] if campaign else list(project.campaigns.values())
    now = app.clock.now()
    with app.store.scratch() as conn, metrics.engagement(conn, chosen):
        by_step = metrics.step_counts(conn)
        sections = [build.campaign_section(conn, c, by=by, timezone=app.settings.timezone,
                                           by_step=by_step) for c in chosen]
    return Report({"generated_at": now.isoformat(), "timezone": app.settings.timezone, "by": by,
                   "campaigns": sections})


def chase(app: App, campaign: str, step: str | None = None) -> list[dict[str, Any]]:
    """The people sent the campaign (or step) who have not responded and may still be written
    to (suppressed addresses left out, as targeting leaves them out): for the team to phone."""
    chosen = app.project.campaign(campaign)
    if step is not None and chosen.step(step) is None:
        known = ", ".join(s.id for s in chosen.steps)
        raise NotFound(f"unknown step '{step}' in {campaign} (steps are: {known})")
    with app.store.scratch() as conn, metrics.engagement(conn, [chosen]):
        rows = metrics.chase(conn, chosen, step)
    return build.chase_rows(rows)


__all__ = ["CHASE_COLUMNS", "FORMATS", "GROUPINGS", "Report", "chase", "csv_text", "report"]

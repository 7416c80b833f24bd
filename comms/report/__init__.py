"""Engagement reports: who was reached and who responded, across the programme and by campaign,
step, group and event.

``report()`` computes the figures in the store (GROUP BY, never row by row in Python) and returns
a ``Report``: a programme overview, then a section per campaign; what the transport cannot see is
``None`` ("not tracked"), never 0. ``Report.render(fmt)`` presents it as a table, CSV, JSON or one
self-contained HTML page. ``chase()`` lists the people who have not responded yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..campaign import Tracking
from ..errors import NotFound
from . import build, metrics
from .observed import for_campaign, observed
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
    """The engagement report for one campaign or all, with groups of ``by``; the overview always
    covers every campaign of the project (the programme)."""
    if by not in GROUPINGS:
        raise NotFound(f"unknown grouping '{by}' (groupings are: {', '.join(GROUPINGS)})")
    project = app.project
    every = list(project.campaigns.values())
    chosen = [project.campaign(campaign)] if campaign else every
    now, zone, seen = app.clock.now(), app.settings.timezone, observed(app.settings)
    default = Tracking(opens=app.settings.track_opens, clicks=app.settings.track_clicks)
    seen_in = {c.id: for_campaign(seen, c.tracking or default) for c in every}
    with app.store.scratch() as conn, metrics.engagement(conn, every):
        by_step = metrics.step_counts(conn)
        events = {c.id: build.events(conn, c, now=now, timezone=zone) for c in every}
        goals = {c.id: build.goal(conn, c, seen_in[c.id]) for c in every}
        overview = build.overview(conn, every, events_of=events, goals_of=goals)
        sections = [build.campaign_section(conn, c, by=by, timezone=zone, by_step=by_step,
                                           seen=seen_in[c.id], events=events[c.id],
                                           goal=goals[c.id])
                    for c in chosen]
    return Report({"generated_at": now.isoformat(), "timezone": zone, "by": by,
                   "transport": seen.transport, "tracked": seen.tracked,
                   "not_tracked_because": seen.because, "rates_over": seen.rates_over,
                   "overview": overview, "campaigns": sections})


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

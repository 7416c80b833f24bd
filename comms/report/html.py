"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, no scripts.

Chart geometry is computed here as plain numbers; the template (``comms/report_templates``)
draws it, and autoescaping covers every name that came from the directory or the campaign files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .build import ratio
from .text import equity_sentence, goal_sentence, group_name, percent

TEMPLATES = Path(__file__).resolve().parent.parent / "report_templates"
WIDTH = 640  # every chart's viewBox width
LABEL = 170  # room for the labels left of the bars
BAR = 360  # the longest bar
ROW = 30

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(percent=percent, group_name=group_name)
_env.globals.update(equity_sentence=equity_sentence, goal_sentence=goal_sentence)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: str  # as shown at the end of the bar
    y: float
    width: float
    extra: float = 0.0  # a second, lighter segment after the first (tentative answers)
    outline: float | None = None  # a frame of this width (an event's capacity)


@dataclass(frozen=True, slots=True)
class Chart:
    height: float
    bars: list[Bar]
    marker: float | None = None  # x of a vertical reference line (the overall rate)

    @property
    def summary(self) -> str:
        """The chart in words, for its <desc>."""
        return "; ".join(f"{bar.label} {bar.value}" for bar in self.bars)


@dataclass(frozen=True, slots=True)
class Line:
    height: float
    points: str  # SVG polyline points
    dots: list[tuple[float, float]]
    x_labels: list[tuple[float, str]]
    y_labels: list[tuple[float, str]]


def render_html(data: dict[str, Any]) -> str:
    sections = [{**s, "charts": charts(s)} for s in data["campaigns"]]
    return _env.get_template("report.html.j2").render(report=data, sections=sections)


def charts(section: dict[str, Any]) -> dict[str, Any]:
    return {"funnel": funnel(section["totals"]), "groups": group_bars(section),
            "timeline": timeline(section["timeline"]), "events": event_fill(section["events"])}


def funnel(totals: dict[str, Any]) -> Chart:
    """Audience → sent → delivered → opened → clicked → responded, as bars over the audience."""
    stages = ("audience", "sent", "delivered", "opened", "clicked", "responded")
    top = max(totals[s] for s in stages) or 1
    bars = [Bar(stage.capitalize(), f"{totals[stage]} ({percent(ratio(totals[stage], top))})",
                i * ROW + 8, BAR * totals[stage] / top) for i, stage in enumerate(stages)]
    return Chart(len(stages) * ROW + 16, bars)


def group_bars(section: dict[str, Any]) -> Chart:
    """Each group's share of its audience that responded, with the overall share marked."""
    groups = [g for g in section["groups"] if g["audience"]]
    bars = [Bar(group_name(g["group"]), f"{percent(g['responded_of_audience'])} of {g['audience']}",
                i * ROW + 8, BAR * (g["responded_of_audience"] or 0)) for i, g in enumerate(groups)]
    overall = section["totals"]["responded_of_audience"]
    return Chart(len(groups) * ROW + 16, bars, None if overall is None else LABEL + BAR * overall)


def event_fill(events: list[dict[str, Any]]) -> Chart:
    """Accepted (and tentative) against each event's capacity (or the invited, without one)."""
    bars = []
    for i, e in enumerate(events):
        seats = e["capacity"] or max(e["invited"], e["accepted"] + e["tentative"], 1)
        scale = BAR / max(seats, e["accepted"] + e["tentative"])
        value = f"{e['accepted']} of {e['capacity']}" if e["capacity"] else f"{e['accepted']}"
        if e["waitlisted"]:
            value += f", {e['waitlisted']} waiting"
        bars.append(Bar(e["event"], value, i * ROW + 8, e["accepted"] * scale,
                        e["tentative"] * scale, seats * scale))
    return Chart(len(events) * ROW + 16, bars)


def timeline(days: list[dict[str, Any]]) -> Line | None:
    """People who have responded so far, day by day (a step line over the calendar)."""
    if not days:
        return None
    first, last = date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])
    span = max((last - first).days, 1)
    top = days[-1]["cumulative"] or 1
    height, left, plot_w, plot_h = 200.0, 48.0, WIDTH - 70.0, 150.0

    def x(day: date) -> float:
        return round(left + plot_w * (day - first).days / span, 1)

    def y(value: int) -> float:
        return round(20 + plot_h * (1 - value / top), 1)

    points, dots, previous = [(x(first), y(0))], [], 0
    for d in days:
        day = date.fromisoformat(d["date"])
        points += [(x(day), y(previous)), (x(day), y(d["cumulative"]))]
        dots.append((x(day), y(d["cumulative"])))
        previous = d["cumulative"]
    points.append((x(last + timedelta(days=0)), y(previous)))
    x_labels = [(x(first), first.strftime("%-d %b"))]
    if last != first:
        x_labels.append((x(last), last.strftime("%-d %b")))
    return Line(height, " ".join(f"{a},{b}" for a, b in points), dots, x_labels,
                [(y(0), "0"), (y(top), str(top))])

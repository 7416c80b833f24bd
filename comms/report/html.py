"""The report as one self-contained HTML page: inline CSS, charts as inline SVG, no scripts.

Chart geometry is computed here as plain numbers; the template (``comms/report_templates``)
draws it, and autoescaping covers every name that came from the directory or the campaign files.

Bar charts have no ``viewBox``: their text is drawn at its CSS size (13 px) at any width, never
shrunk with the chart, and every position across is a percentage of the chart's width. Each bar
has its own row: the label on the left and the value on the right above it, the bar below, so
nothing runs past the edge at 390 px or is drawn over another label. The timeline's line is
stretched to the width in a ``viewBox`` (its stroke and dots keep their size), and its labels
are HTML around it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from .build import ratio
from .text import (
    NOT_TRACKED,
    NOTHING,
    equity_sentence,
    goal_sentence,
    group_name,
    percent,
    reach_sentence,
    shown,
    untracked,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "report_templates"
ROW = 44  # a bar's row: the label line, then the bar (21 px down, 16 px high: the template)
FULL = 99.5  # the longest bar, in percent of the chart's width (room for a frame's stroke)
ROOM = 46  # characters a row's label and value share (about 340 px of 13 px text)

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(percent=percent, group_name=group_name)
_env.globals.update(equity_sentence=equity_sentence, goal_sentence=goal_sentence,
                    reach_sentence=reach_sentence, shown=shown, NOTHING=NOTHING,
                    NOT_TRACKED=NOT_TRACKED)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # as shown (shortened to fit beside the value)
    value: str  # as shown at the right of the label
    y: float  # top of the row, px
    width: float  # percent of the chart's width
    extra: float = 0.0  # a second, lighter segment after the first (tentative answers)
    outline: float | None = None  # a frame of this width (an event's capacity)
    tracked: bool = True  # False: no bar, a dashed empty track and "not tracked"
    full_label: str = ""  # the label unshortened, for the row's <title>


@dataclass(frozen=True, slots=True)
class Chart:
    height: float
    bars: list[Bar]
    marker: float | None = None  # percent across of a vertical reference line (overall rate)

    @property
    def summary(self) -> str:
        """The chart in words, for its <desc>."""
        return "; ".join(f"{bar.full_label or bar.label} {bar.value}" for bar in self.bars)


@dataclass(frozen=True, slots=True)
class Line:
    """A step line in a 1000 × 150 plot stretched to the chart's width (its stroke and dots
    keep their size); its labels are HTML beside it, so they never shrink with it."""

    points: str  # polyline points
    dots: list[tuple[float, float]]
    first: str  # the first day, under the left end
    last: str | None  # the last day, under the right end (None: a single day)
    top_label: str  # the total so far, over the right end


def render_html(data: dict[str, Any]) -> str:
    unseen = untracked(data)
    sections = [{**s, "charts": charts(s, unseen)} for s in data["campaigns"]]
    not_tracked = [k for k, seen in data.get("tracked", {}).items() if not seen]
    return _env.get_template("report.html.j2").render(
        report=data, sections=sections, overview=data.get("overview"), unseen=unseen,
        not_tracked=not_tracked)


def charts(section: dict[str, Any], unseen: set[str] | frozenset[str] = frozenset()
           ) -> dict[str, Any]:
    return {"funnel": funnel(section["totals"], unseen), "groups": group_bars(section),
            "timeline": timeline(section["timeline"]), "events": event_fill(section["events"])}


def fit(label: str, value: str) -> str:
    """``label`` shortened (with an ellipsis) so that it and ``value`` share one line."""
    room = max(12, ROOM - len(value))
    return label if len(label) <= room else label[:room - 1].rstrip() + "…"


def _bar(label: str, value: str, i: int, width: float, **more: Any) -> Bar:
    return Bar(fit(label, value), value, i * ROW + 4, round(width, 2), full_label=label, **more)


def _height(bars: list[Bar]) -> float:
    return len(bars) * ROW + 8


def funnel(totals: dict[str, Any], unseen: set[str] | frozenset[str] = frozenset()) -> Chart:
    """Audience → sent → delivered → opened → clicked → responded, as bars over the audience;
    a stage the transport cannot see is an empty track marked "not tracked", not a zero."""
    stages = ("audience", "sent", "delivered", "opened", "clicked", "responded")
    seen = [s for s in stages if s not in unseen and totals[s] is not None]
    top = max(totals[s] for s in seen) or 1
    bars = []
    for i, stage in enumerate(stages):
        if stage in seen:
            value = f"{totals[stage]} ({percent(ratio(totals[stage], top))})"
            bars.append(_bar(stage.capitalize(), value, i, FULL * totals[stage] / top))
        else:
            bars.append(_bar(stage.capitalize(), NOT_TRACKED, i, 0, tracked=False))
    return Chart(_height(bars), bars)


def group_bars(section: dict[str, Any]) -> Chart:
    """Each group's share of its audience that responded, with the overall share marked."""
    groups = [g for g in section["groups"] if g["audience"]]
    bars = [_bar(group_name(g["group"]),
                 f"{percent(g['responded_of_audience'])} of {g['audience']}", i,
                 FULL * min(g["responded_of_audience"] or 0, 1)) for i, g in enumerate(groups)]
    overall = section["totals"]["responded_of_audience"]
    return Chart(_height(bars), bars,
                 None if overall is None else round(FULL * min(overall, 1), 2))


def event_fill(events: list[dict[str, Any]]) -> Chart:
    """Accepted (and tentative) against each event's capacity (or the invited, without one)."""
    bars = []
    for i, e in enumerate(events):
        seats = e["capacity"] or max(e["invited"], e["accepted"] + e["tentative"], 1)
        scale = FULL / max(seats, e["accepted"] + e["tentative"])
        value = f"{e['accepted']} of {e['capacity']}" if e["capacity"] else f"{e['accepted']}"
        if e["waitlisted"]:
            value += f", {e['waitlisted']} waiting"
        bars.append(_bar(e["event"], value, i, e["accepted"] * scale,
                         extra=round(e["tentative"] * scale, 2),
                         outline=round(seats * scale, 2)))
    return Chart(_height(bars), bars)


def timeline(days: list[dict[str, Any]]) -> Line | None:
    """People who have responded so far, day by day (a step line over the calendar)."""
    if not days:
        return None
    first, last = date.fromisoformat(days[0]["date"]), date.fromisoformat(days[-1]["date"])
    span = max((last - first).days, 1)
    top = days[-1]["cumulative"] or 1

    def x(day: date) -> float:  # 1% kept clear at each end, for the dots
        return round(10 + 980 * (day - first).days / span, 1)

    def y(value: int) -> float:  # 5 units kept clear at the top
        return round(5 + 145 * (1 - value / top), 1)

    points, dots, previous = [(x(first), y(0))], [], 0
    for d in days:
        day = date.fromisoformat(d["date"])
        points += [(x(day), y(previous)), (x(day), y(d["cumulative"]))]
        dots.append((x(day), y(d["cumulative"])))
        previous = d["cumulative"]
    points.append((x(last), y(previous)))
    total = days[-1]["cumulative"]
    return Line(" ".join(f"{a},{b}" for a, b in points), dots, first.strftime("%-d %b"),
                last.strftime("%-d %b") if last != first else None,
                f"{total} {'person' if total == 1 else 'people'} by {last.strftime('%-d %b')}")

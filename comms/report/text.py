"""The report as terminal tables and as CSV (the programme overview first, then one row per
campaign, step and group)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .. import output
from .build import RATES
from .metrics import COUNTS

NOT_TRACKED = "not tracked"
NOTHING = "—"  # no figure (yet): nothing to divide by, an event not held
OVERVIEW_COLUMNS = ("directory", "reached", "reached_of_directory", "responded_of_directory",
                    "share_of_directory", "share_of_reached", "share_of_responded", "event",
                    "title", "capacity", "invited", "accepted", "waitlisted", "attended",
                    "mean_feedback", "metric", "target", "value", "progress", "met")
CSV_COLUMNS = ("level", "campaign", "step", "group", *COUNTS, *RATES, "responded_of_audience",
               *OVERVIEW_COLUMNS)
REACH_COLUMNS = ("step", "audience", "sent", "delivered", "bounced", "delivery_rate", "bounce_rate")
RESPONSE_COLUMNS = ("step", "opened", "clicked", "replied", "unsubscribed", "responded",
                    "open_rate", "click_rate", "response_rate")
EVENT_COLUMNS = ("event", "capacity", "invited", "accepted", "tentative", "declined", "waitlisted",
                 "no_response", "attended", "fill_rate", "attendance_rate")
BOROUGH_COLUMNS = ("borough", "directory", "reached", "reached_of_directory", "share_of_directory",
                   "share_of_reached", "responded", "responded_of_directory",
                   "share_of_responded")
PROGRAMME_EVENT_COLUMNS = ("campaign", "event", "capacity", "invited", "accepted", "waitlisted",
                           "attended", "mean_feedback")
#: Each rate's numerator: a rate is "not tracked" when its numerator is.
NUMERATOR = {rate: num for rate, (num, _) in RATES.items()}
PERCENTS = ("_rate", "_of_audience", "_of_directory", "_of_reached", "_of_responded", "progress")


def percent(value: float | None) -> str:
    return NOTHING if value is None else f"{value * 100:.1f}%"


def group_name(value: str | None) -> str:
    return "(none)" if value is None else value


def untracked(data: Mapping[str, Any]) -> set[str]:
    """The figures (and the rates over them) the report's transport cannot see."""
    figures = {k for k, seen in data.get("tracked", {}).items() if not seen}
    return figures | {rate for rate, num in NUMERATOR.items() if num in figures}


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV as Excel writes it (RFC 4180: CRLF, so a cell holding a CR or LF is quoted), every
    cell a spreadsheet would run as a formula neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([output.safe_cell(row.get(c)) for c in columns] for row in rows)
    return buffer.getvalue().removesuffix("\r\n")


def render_csv(data: dict[str, Any]) -> str:
    """The overview (levels ``overview``, ``overview borough``, ``overview event``, ``overview
    goal``), then figures per campaign, step and group; what is not tracked is an empty cell."""
    return csv_text([*_overview_rows(data.get("overview")), *_csv_rows(data)], CSV_COLUMNS)


def _overview_rows(overview: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    if overview is None:
        return
    yield {"level": "overview", **overview, "campaign": ";".join(overview["campaigns"])}
    for b in overview["boroughs"]:
        yield {"level": "overview borough", **b, "group": group_name(b["borough"])}
    for e in overview["events"]:
        yield {"level": "overview event", **e}
    for g in overview["goals"]:
        yield {"level": "overview goal", **g, "title": g["name"]}


def _csv_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for section in data["campaigns"]:
        rows = [{"level": "campaign", **section["totals"]}]
        rows += [{"level": "step", **step} for step in section["steps"]]
        rows += [{"level": section["by"], **g, "group": group_name(g["group"])}
                 for g in section["groups"]]
        for row in rows:
            yield {**row, "campaign": section["campaign"]}


def render_table(data: dict[str, Any]) -> str:
    unseen = untracked(data)
    parts = _overview_table(data)
    for section in data["campaigns"]:
        parts.append(f"{section['campaign']} — {section['name']}")
        steps = [_shown(s, unseen) for s in section["steps"]]
        steps.append(_shown({"step": "(campaign)", **section["totals"]}, unseen))
        parts.append(output.render(steps, REACH_COLUMNS, "table"))
        parts.append(output.render(steps, RESPONSE_COLUMNS, "table"))
        by = section["by"]
        groups = [_shown({**g, by: group_name(g["group"])}, unseen) for g in section["groups"]]
        parts.append(output.render(groups, (by, "audience", "sent", "responded", "response_rate",
                                            "responded_of_audience"), "table"))
        parts.append(f"equity by {by}: {equity_sentence(section['equity'], by)}")
        if section["events"]:
            parts.append(output.render([_shown(e, unseen) for e in section["events"]],
                                       EVENT_COLUMNS, "table"))
        if section["goal"]:
            parts.append(f"goal: {goal_sentence(section['goal'])}")
        parts.append("")
    return "\n".join(parts).rstrip("\n")


def _overview_table(data: dict[str, Any]) -> list[str]:
    parts = []
    if data.get("not_tracked_because"):
        names = ", ".join(k for k, seen in data["tracked"].items() if not seen)
        parts.append(f"not tracked: {names} — {data['not_tracked_because']} (rates are over "
                     f"{data['rates_over']})")
    overview = data.get("overview")
    if overview is None:
        return parts
    count = len(overview["campaigns"])
    parts.append(f"Programme overview — {count} campaign{'' if count == 1 else 's'}, "
                 f"{overview['directory']} people in the directory")
    parts.append(reach_sentence(overview))
    boroughs = [_shown({**b, "borough": group_name(b["borough"])}, set())
                for b in overview["boroughs"]]
    parts.append(output.render(boroughs, BOROUGH_COLUMNS, "table"))
    parts.append(f"equity by borough: {equity_sentence(overview['equity'], 'borough', 'directory')}")
    if overview["events"]:
        parts.append(output.render([_shown(e, set()) for e in overview["events"]],
                                   PROGRAMME_EVENT_COLUMNS, "table"))
    parts += [f"goal of {g['campaign']}: {goal_sentence(g)}" for g in overview["goals"]]
    parts.append("")
    return parts


def reach_sentence(overview: dict[str, Any]) -> str:
    """People reached and responding across the programme, in words."""
    if not overview["reached"]:
        return f"nobody reached yet, of {overview['directory']} in the directory"
    said = (f"reached {overview['reached']} of {overview['directory']} "
            f"({percent(overview['reached_of_directory'])})")
    if not overview["responded"]:
        return f"{said}; no responses yet"
    return (f"{said}; responded {overview['responded']} "
            f"({percent(overview['responded_of_directory'])} of the directory, "
            f"{percent(overview['responded_of_reached'])} of those reached)")


def equity_sentence(equity: dict[str, Any], by: str, of: str = "audience") -> str:
    if equity["groups"] < 2:
        return f"fewer than two groups by {by}"
    low, high = equity["lowest"], equity["highest"]
    if not high["rate"]:
        return "no responses yet"
    sentence = (f"responded of {of} from {percent(low['rate'])} "
                f"({group_name(low['group'])}) to {percent(high['rate'])} "
                f"({group_name(high['group'])}); lowest/highest "
                f"{NOTHING if equity['ratio'] is None else format(equity['ratio'], '.2f')}")
    if equity["lagging"]:
        behind = ", ".join(f"{group_name(g['group'])} {percent(g['rate'])}"
                           for g in equity["lagging"])
        sentence += f"; furthest behind the {percent(equity['overall'])} overall: {behind}"
    return sentence


def goal_sentence(goal: dict[str, Any]) -> str:
    of = f" ({goal['event']})" if goal["event"] else ""
    if goal["value"] is None:
        return f"{goal['target']} {goal['metric']}{of} — {NOT_TRACKED}"
    state = "met" if goal["met"] else f"{goal['remaining']} to go"
    return (f"{goal['value']} of {goal['target']} {goal['metric']}{of} — "
            f"{percent(goal['progress'])}, {state}")


def shown(key: str, value: Any, unseen: set[str]) -> Any:
    """One figure as a reader sees it: "not tracked", "—" for no figure, a percentage."""
    if key in unseen:
        return NOT_TRACKED
    if key.endswith(PERCENTS):
        return percent(value)
    if value is None and key in ("attended", "mean_feedback", "capacity"):
        return NOTHING
    return value


def _shown(row: dict[str, Any], unseen: set[str]) -> dict[str, Any]:
    return {k: shown(k, v, unseen) for k, v in row.items()}

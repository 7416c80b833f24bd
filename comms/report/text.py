"""The report as terminal tables and as CSV (one row per campaign, step and group)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .. import output
from .build import RATES
from .metrics import COUNTS

CSV_COLUMNS = ("level", "campaign", "step", "group", *COUNTS, *RATES, "responded_of_audience")
STEP_COLUMNS = ("step", "audience", "sent", "delivered", "bounced", "opened", "clicked", "replied",
                "unsubscribed", "responded", "open_rate", "click_rate", "response_rate")
EVENT_COLUMNS = ("event", "capacity", "invited", "accepted", "tentative", "declined", "waitlisted",
                 "no_response", "attended", "fill_rate", "attendance_rate")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def group_name(value: str | None) -> str:
    return "(none)" if value is None else value


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV as Excel writes it (RFC 4180: CRLF, so a cell holding a CR or LF is quoted), every
    cell a spreadsheet would run as a formula neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([output.safe_cell(row.get(c)) for c in columns] for row in rows)
    return buffer.getvalue().removesuffix("\r\n")


def render_csv(data: dict[str, Any]) -> str:
    """Figures per campaign, step and group."""
    return csv_text(_csv_rows(data), CSV_COLUMNS)


def _csv_rows(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for section in data["campaigns"]:
        rows = [{"level": "campaign", **section["totals"]}]
        rows += [{"level": "step", **step} for step in section["steps"]]
        rows += [{"level": section["by"], **g, "group": group_name(g["group"])}
                 for g in section["groups"]]
        for row in rows:
            yield {**row, "campaign": section["campaign"]}


def render_table(data: dict[str, Any]) -> str:
    parts = []
    for section in data["campaigns"]:
        parts.append(f"{section['campaign']} — {section['name']}")
        steps = [_shown(s) for s in section["steps"]]
        steps.append(_shown({"step": "(campaign)", **section["totals"]}))
        parts.append(output.render(steps, STEP_COLUMNS, "table"))
        by = section["by"]
        groups = [_shown({**g, by: group_name(g["group"])}) for g in section["groups"]]
        parts.append(output.render(groups, (by, "audience", "sent", "responded", "response_rate",
                                            "responded_of_audience"), "table"))
        parts.append(f"equity by {by}: {equity_sentence(section['equity'], by)}")
        if section["events"]:
            parts.append(output.render([_shown(e) for e in section["events"]], EVENT_COLUMNS,
                                       "table"))
        if section["goal"]:
            parts.append(f"goal: {goal_sentence(section['goal'])}")
        parts.append("")
    return "\n".join(parts).rstrip("\n")


def equity_sentence(equity: dict[str, Any], by: str) -> str:
    if equity["groups"] < 2:
        return f"fewer than two groups by {by}"
    low, high = equity["lowest"], equity["highest"]
    sentence = (f"responded of audience from {percent(low['rate'])} "
                f"({group_name(low['group'])}) to {percent(high['rate'])} "
                f"({group_name(high['group'])}); lowest/highest "
                f"{'–' if equity['ratio'] is None else format(equity['ratio'], '.2f')}")
    if equity["lagging"]:
        behind = ", ".join(f"{group_name(g['group'])} {percent(g['rate'])}"
                           for g in equity["lagging"])
        sentence += f"; furthest behind the {percent(equity['overall'])} overall: {behind}"
    return sentence


def goal_sentence(goal: dict[str, Any]) -> str:
    of = f" ({goal['event']})" if goal["event"] else ""
    state = "met" if goal["met"] else f"{goal['remaining']} to go"
    return (f"{goal['value']} of {goal['target']} {goal['metric']}{of} — "
            f"{percent(goal['progress'])}, {state}")


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {k: percent(v) if k.endswith(("_rate", "_of_audience")) else v for k, v in row.items()}

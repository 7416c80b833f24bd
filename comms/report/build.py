"""The report as one nested structure whose keys are the JSON report's (documented in the README)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from ..campaign import Campaign
from ..events import calendar_steps
from . import metrics

RATES = {  # key: (numerator, denominator)
    "delivery_rate": ("delivered", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "open_rate": ("opened", "delivered"),
    "click_rate": ("clicked", "delivered"),
    "reply_rate": ("replied", "delivered"),
    "unsubscribe_rate": ("unsubscribed", "delivered"),
    "response_rate": ("responded", "delivered"),
}
LAGGING = 3  # groups named as lagging furthest behind


def ratio(part: int | float, whole: int | float) -> float | None:
    """``part / whole`` rounded to four places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def figures(counts: Mapping[str, int]) -> dict[str, Any]:
    """Counts with their rates (over delivered; bounces and deliveries over sent)."""
    out: dict[str, Any] = {k: counts.get(k, 0) for k in metrics.COUNTS}
    out.update({key: ratio(out[num], out[den]) for key, (num, den) in RATES.items()})
    return out


def campaign_section(conn: Connection, campaign: Campaign, *, by: str, timezone: str,
                     by_step: Mapping[tuple[str, str], Mapping[str, int]]) -> dict[str, Any]:
    steps = [{"step": step.id, "kind": step.kind,
              **figures({"audience": metrics.audience(conn, campaign, step.id),
                         **by_step.get((campaign.id, step.id), {})})}
             for step in campaign.steps]
    totals = figures(metrics.campaign_counts(conn, campaign))
    groups = [{"group": name, **figures(counts),
               "responded_of_audience": ratio(counts["responded"], counts["audience"])}
              for name, counts in metrics.group_counts(conn, campaign, by).items()]
    return {
        "campaign": campaign.id,
        "name": campaign.name,
        "totals": {**totals, "responded_of_audience": ratio(totals["responded"],
                                                            totals["audience"])},
        "steps": steps,
        "by": by,
        "groups": groups,
        "equity": equity(groups, totals),
        "events": events(conn, campaign),
        "goal": goal(conn, campaign),
        "timeline": timeline(metrics.first_responses(conn, campaign.id), timezone),
    }


def equity(groups: list[dict[str, Any]], totals: Mapping[str, Any]) -> dict[str, Any]:
    """How evenly groups responded, each normalised by its size (responded of audience)."""
    rated = [(g["group"], g["responded_of_audience"]) for g in groups if g["audience"]]
    overall = ratio(totals["responded"], totals["audience"]) or 0.0
    if not rated:
        return {"groups": 0, "lowest": None, "highest": None, "ratio": None, "spread": None,
                "overall": overall, "lagging": []}
    low = min(rated, key=lambda g: (g[1], str(g[0])))
    high = max(rated, key=lambda g: (g[1], str(g[0])))
    behind = sorted((g for g in rated if g[1] < overall), key=lambda g: (g[1], str(g[0])))
    return {
        "groups": len(rated),
        "lowest": {"group": low[0], "rate": low[1]},
        "highest": {"group": high[0], "rate": high[1]},
        "ratio": ratio(low[1], high[1]),
        "spread": round(high[1] - low[1], 4),
        "overall": overall,
        "lagging": [{"group": name, "rate": rate, "gap": round(overall - rate, 4)}
                    for name, rate in behind[:LAGGING]],
    }


def events(conn: Connection, campaign: Campaign) -> list[dict[str, Any]]:
    out = []
    for event in campaign.events:
        counts = metrics.event_counts(conn, campaign, event.id, list(calendar_steps(campaign, event)))
        out.append({
            "event": event.id, "title": event.title, "starts": event.starts.isoformat(),
            "capacity": event.capacity, **counts,
            "fill_rate": ratio(counts["accepted"], event.capacity or 0),
            "attendance_rate": ratio(counts["attended"], counts["accepted"]),
        })
    return out


def goal(conn: Connection, campaign: Campaign) -> dict[str, Any] | None:
    value = metrics.goal_value(conn, campaign)
    if campaign.goal is None or value is None:
        return None
    target = campaign.goal.target
    return {"metric": campaign.goal.metric, "event": campaign.goal.event, "target": target,
            "value": value, "progress": ratio(value, target), "remaining": max(0, target - value),
            "met": value >= target}


def timeline(hours: list[tuple[str, int]], timezone: str) -> list[dict[str, Any]]:
    """New responders per local day, with the running total."""
    zone = ZoneInfo(timezone)
    days: dict[str, int] = {}
    for hour, count in hours:
        local = datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=UTC).astimezone(zone)
        day = local.date().isoformat()
        days[day] = days.get(day, 0) + count
    out, total = [], 0
    for day in sorted(days):
        total += days[day]
        out.append({"date": day, "responded": days[day], "cumulative": total})
    return out


def chase_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chase list as the programme team reads it: who, where, how to reach them."""
    out = []
    for row in rows:
        attributes = json.loads(row["attributes"] or "{}")
        phone = next((str(attributes[k]) for k in ("phone", "telephone", "mobile")
                      if attributes.get(k)), "")
        out.append({"name": f"{row['first_name']} {row['last_name']}".strip(),
                    "email": row["display_email"], "phone": phone,
                    "organisation": row["organisation"], "borough": row["borough"],
                    "role": row["role"], "job_title": row["job_title"],
                    "note": "bounced: check the address" if row["bounced"] else ""})
    return out

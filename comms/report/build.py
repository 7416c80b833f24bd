"""The report as one nested structure whose keys are the JSON report's (documented in the README)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from ..campaign import Campaign, Event
from ..events import calendar_steps
from ..pairs import introductions
from ..schedule import localise
from ..store import feedback
from ..store import pairs as stored_pairs
from . import metrics
from .observed import Observed

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
NOT_HELD, NO_SHEET = "not held yet", "no sign-in sheet yet"
#: An event's figures in the overview (with its campaign first and ``mean_feedback`` last).
OVERVIEW_EVENT = ("event", "title", "starts", "capacity", "invited", "accepted", "waitlisted",
                  "attended", "attendance_note")


def ratio(part: int | float, whole: int | float) -> float | None:
    """``part / whole`` rounded to four places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def figures(counts: Mapping[str, int], seen: Observed) -> dict[str, Any]:
    """Counts with their rates (over delivered, or over sent where deliveries are not seen;
    bounces and deliveries over sent); ``None`` for what the transport cannot see."""
    out: dict[str, Any] = {k: counts.get(k, 0) if seen.sees(k) else None
                           for k in metrics.COUNTS}
    for key, (num, den) in RATES.items():
        whole = out[seen.rates_over if den == "delivered" else den]
        out[key] = None if out[num] is None or whole is None else ratio(out[num], whole)
    return out


def campaign_section(conn: Connection, campaign: Campaign, *, by: str, timezone: str,
                     by_step: Mapping[tuple[str, str], Mapping[str, int]], seen: Observed,
                     events: list[dict[str, Any]], goal: dict[str, Any] | None
                     ) -> dict[str, Any]:
    machines = metrics.machine_counts(conn, campaign)
    steps = [{"step": step.id, "kind": step.kind,
              **figures({"audience": metrics.audience(conn, campaign, step.id),
                         **by_step.get((campaign.id, step.id), {})}, seen),
              **_machine(machines.get(step.id), seen)}
             for step in campaign.steps]
    counts = metrics.campaign_counts(conn, campaign)
    totals = {**figures(counts, seen), **_machine(machines.get(None), seen)}
    groups = [{"group": name, **figures(found, seen),
               "responded_of_audience": ratio(found["responded"], found["audience"])}
              for name, found in metrics.group_counts(conn, campaign, by).items()]
    return {
        "campaign": campaign.id,
        "name": campaign.name,
        "tracked": seen.tracked,
        "not_tracked_because": seen.because,
        "totals": {**totals, "responded_of_audience": ratio(counts["responded"],
                                                            counts["audience"])},
        "steps": steps,
        "by": by,
        "groups": groups,
        "equity": equity(groups, counts),
        "events": events,
        "goal": goal,
        "timeline": timeline(metrics.first_responses(conn, campaign.id), timezone),
    }


def _machine(found: Mapping[str, int] | None, seen: Observed) -> dict[str, int | None]:
    """People whose message machines opened or clicked (beside the people's own figures)."""
    return {f"machine_{k}": (found or {}).get(f"machine_{k}", 0) if seen.sees(k) else None
            for k in ("opened", "clicked")}


def equity(groups: list[dict[str, Any]], totals: Mapping[str, int]) -> dict[str, Any]:
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


def events(conn: Connection, campaign: Campaign, *, now: datetime,
           timezone: str) -> list[dict[str, Any]]:
    """Answers and attendance per event. ``attended`` is ``None`` (with ``attendance_note``
    saying why) before the event starts and until a sign-in sheet is imported: not 0."""
    out = []
    for event in campaign.events:
        counts: dict[str, Any] = metrics.event_counts(conn, campaign, event.id,
                                                      list(calendar_steps(campaign, event)))
        note = attendance_note(event, counts["attended"], now=now, timezone=timezone)
        if note is not None:
            counts["attended"] = None
        out.append({
            "event": event.id, "title": event.title, "starts": event.starts.isoformat(),
            "capacity": event.capacity, **counts,
            "fill_rate": ratio(counts["accepted"], event.capacity or 0),
            "attendance_rate": None if note else ratio(counts["attended"], counts["accepted"]),
            "attendance_note": note,
        })
    return out


def attendance_note(event: Event, attended: int, *, now: datetime, timezone: str) -> str | None:
    """Why there is no attendance figure yet (None: there is one)."""
    if now < localise(event.starts, ZoneInfo(event.timezone or timezone)):
        return NOT_HELD
    return NO_SHEET if attended == 0 else None  # a sign-in sheet lists at least one person


def goal(conn: Connection, campaign: Campaign, seen: Observed) -> dict[str, Any] | None:
    """The campaign's goal and how far it has come (``value`` … ``met`` are ``None`` when the
    transport cannot see its metric, clicks without SendGrid's event webhook)."""
    if campaign.goal is None:
        return None
    target = campaign.goal.target
    shape = {"metric": campaign.goal.metric, "event": campaign.goal.event, "target": target}
    value = metrics.goal_value(conn, campaign) if seen.sees(campaign.goal.metric) else None
    if value is None:
        return {**shape, "value": None, "progress": None, "remaining": None, "met": None}
    return {**shape, "value": value, "progress": ratio(value, target),
            "remaining": max(0, target - value), "met": value >= target}


def overview(conn: Connection, campaigns: Sequence[Campaign], *,
             events_of: Mapping[str, list[dict[str, Any]]],
             goals_of: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The programme across every campaign: people reached and responding, overall and per
    borough (each normalised by its size in the directory), every event, every goal."""
    counts = metrics.programme_counts(conn)
    total = {k: sum(c[k] for c in counts.values()) for k in ("directory", "reached", "responded")}
    boroughs = [{
        "borough": name, **c,
        "reached_of_directory": ratio(c["reached"], c["directory"]),
        "responded_of_directory": ratio(c["responded"], c["directory"]),
        "share_of_directory": ratio(c["directory"], total["directory"]),
        "share_of_reached": ratio(c["reached"], total["reached"]),
        "share_of_responded": ratio(c["responded"], total["responded"]),
    } for name, c in counts.items()]
    rated = [{"group": b["borough"], "audience": b["directory"],
              "responded_of_audience": b["responded_of_directory"]} for b in boroughs]
    return {
        "campaigns": [c.id for c in campaigns],
        **total,
        "reached_of_directory": ratio(total["reached"], total["directory"]),
        "responded_of_directory": ratio(total["responded"], total["directory"]),
        "responded_of_reached": ratio(total["responded"], total["reached"]),
        "boroughs": boroughs,
        "equity": equity(rated, {"responded": total["responded"],
                                 "audience": total["directory"]}),
        "events": [{"campaign": c.id, **{k: e[k] for k in OVERVIEW_EVENT},
                    "mean_feedback": mean_feedback(conn, c, e["event"])}
                   for c in campaigns for e in events_of[c.id]],
        "goals": [{"campaign": c.id, "name": c.name, **found} for c in campaigns
                  if (found := goals_of[c.id]) is not None],
        "mentoring": stored_pairs.summary(conn, introductions(campaigns)),
    }


def mean_feedback(conn: Connection, campaign: Campaign, event: str) -> float | None:
    """The mean 1–5 feedback rating of the event (None: no rating yet)."""
    return feedback.mean(conn, campaign.id, event)


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

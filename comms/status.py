"""Where every step stands, read-only: the timeline with its recipients (``comms plan``), and per
step the ledger's counts, the next due occurrences, what was missed, what is uncertain and
whether the campaign is paused (``comms status``, ``/healthz``).

Nothing here decides anything: *when* comes from the timeline (comms/plan.py), *who* from
targeting (comms/targeting.py), *what state* from the ledger (comms/store/sends.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import plan, targeting
from .app import App
from .approval import fingerprint
from .campaign import Campaign, Step
from .plan import CONDITIONAL, ONCE, Facts, Occurrence
from .store import Conn, approvals, meta, occurrences, pairs, runs
from .store import facts as store_facts
from .store import sends as ledger
from .store.sends import Key

NEXT = ("due", "waiting", "planned", "expected")  # states of what is still to come


@dataclass(frozen=True, slots=True)
class Status:
    steps: list[dict[str, Any]]
    uncertain: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    upcoming: list[dict[str, Any]]
    missed: list[dict[str, Any]]
    last_run: str | None
    paused: dict[str, datetime]  # campaign → paused since
    approvals: list[dict[str, Any]]  # who approved which campaign, when; still current?
    skipped_pairs: list[dict[str, Any]]  # pairs a step skipped, one of the two suppressed

    def as_json(self) -> dict[str, Any]:
        return {"steps": _iso(self.steps), "uncertain": _iso(self.uncertain),
                "failed": self.failed,
                "next": _iso(self.upcoming), "missed": _iso(self.missed),
                "last_run": self.last_run,
                "paused": {c: at.isoformat() for c, at in self.paused.items()},
                "approvals": _iso(self.approvals), "skipped_pairs": self.skipped_pairs}


def timeline(app: App, *, campaign_id: str | None = None,
             since: datetime | None = None) -> list[Occurrence]:
    """``comms plan``: every occurrence in time order, with its state and recipients."""
    now = app.clock.now()
    with app.store.read() as conn:
        facts = store_facts.load(conn, app.project)
        return plan.timeline(app.project, facts, now=now, timezone=app.settings.timezone,
                             count=_counter(conn, now), campaign_id=campaign_id, since=since)


def upcoming(app: App, *, limit: int = 10, campaign_id: str | None = None
             ) -> list[dict[str, Any]]:
    """The next occurrences still to go, soonest first (what ``status`` and ``/healthz`` show)."""
    now = app.clock.now()
    with app.store.read() as conn:
        facts = store_facts.load(conn, app.project)
    rows = plan.timeline(app.project, facts, now=now, timezone=app.settings.timezone,
                         count=_uncounted, campaign_id=campaign_id)
    return _coming(rows, now)[:limit]


def next_due(app: App) -> datetime | None:
    """When the service must next wake."""
    found = upcoming(app, limit=1)
    return found[0]["due"] if found else None


def status(app: App, campaign_id: str | None = None, *, settle_dead: bool = True) -> Status:
    """Per step counts and when it is due next, the next due occurrences, what was missed, the
    uncertain sends, the paused campaigns and the scheduler's last run.

    With ``settle_dead``, claims left by processes that died are turned into ``uncertain``
    first."""
    project, store, now = app.project, app.store, app.clock.now()
    zone_name = app.settings.timezone
    if settle_dead:
        with store.write() as conn:
            ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
    with store.read() as conn:
        counts = ledger.counts(conn, campaign_id)
        uncertain = ledger.uncertain(conn, campaign_id)
        failed = ledger.failed(conn, campaign_id)
        missed_rows = occurrences.missed(conn, campaign_id)
        last = meta.get(conn, "service:last_tick")
        facts = store_facts.load(conn, project)
        held = approvals.listing(conn)
        skipped = [{"campaign": c.id, "step": s.id, "pair": name}
                   for c in ([project.campaign(campaign_id)] if campaign_id
                             else project.campaigns.values())
                   for s in c.steps if s.pairs and counts.get((c.id, s.id), Counter())["suppressed"]
                   for name in pairs.suppressed(conn, Key(c.id, s.id, ONCE), s.pairs)]
    rows = plan.timeline(project, facts, now=now, timezone=zone_name, count=_uncounted,
                         campaign_id=campaign_id)
    rows_by_step = _next_by_step(rows)
    campaigns = [project.campaign(campaign_id)] if campaign_id else project.campaigns.values()
    steps = []
    for campaign in campaigns:
        for step in campaign.steps:
            c = counts.get((campaign.id, step.id), Counter())
            row = rows_by_step.get((campaign.id, step.id))
            steps.append({"campaign": campaign.id, "step": step.id,
                          "due": row.when if row else None,
                          "state": _state(campaign, step, row, facts),
                          **{state: c.get(state, 0) for state in ledger.STATES}})
    paused = {c: at for c, at in facts.paused.items() if campaign_id in (None, c)}
    signed = [{"campaign": a["campaign"], "approver": a["approver"],
               "approved_at": a["approved_at"],
               "current": a["files"] == fingerprint(project, project.campaigns[a["campaign"]])}
              for a in held if a["campaign"] in project.campaigns
              and campaign_id in (None, a["campaign"])]
    return Status(steps, uncertain, failed, _coming(rows, now)[:10], missed_rows, last, paused,
                  signed, skipped)


def _coming(rows: list[Occurrence], now: datetime) -> list[dict[str, Any]]:
    """The occurrences still to go with a firm time, soonest first (what is late goes now)."""
    return [{"campaign": o.campaign, "step": o.step, "occurrence": o.occurrence,
             "due": max(now, o.due), "state": o.state}
            for o in rows if o.due is not None and o.state in NEXT]


def _uncounted(*_: object) -> str:
    return ""  # the next due times need no recipient counts


def _next_by_step(rows: list[Occurrence]) -> dict[tuple[str, str], Occurrence]:
    """Per step: its next occurrence still to come, else its last one."""
    out: dict[tuple[str, str], Occurrence] = {}
    for row in rows:
        key = (row.campaign, row.step)
        held = out.get(key)
        if held is None or (held.state not in NEXT and row.state in NEXT):
            out[key] = row
    return out


def _state(campaign: Campaign, step: Step, row: Occurrence | None, facts: Facts) -> str:
    if campaign.id in facts.paused:
        return "paused"
    return row.state if row else "planned"


def _counter(conn: Conn, now: datetime) -> plan.Recipients:
    """Recipients of an occurrence, from targeting: who it would reach now (conditions
    evaluated now) when due now; else, for a step whose conditions are evaluated at the moment
    of sending, that label."""
    def count(campaign: Campaign, step: Step, occurrence: str, due_now: bool) -> int | str:
        if not due_now and plan.is_conditional(step):
            return CONDITIONAL
        key = ONCE if occurrence == plan.PER_RECIPIENT else occurrence
        target = targeting.for_step(campaign, step, key)
        found = ledger.forecast(conn, target, now)
        if step.after_step is None:
            return found.would_send
        reached = found.would_send + (0 if due_now else found.waiting)
        if reached or due_now or found.already_sent:
            return reached
        return ledger.forecast(conn, replace(target, after=None), now).would_send  # expected
    return count


def _iso(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows]

"""The service's heart: each tick sends what has fallen due, once. Clock-injected, no threads.

``comms run`` calls ``tick`` at the due times the plan gives (comms/scheduler.py); tests call it
with a simulated clock. Both use the same plan functions as ``comms plan``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from . import events
from .app import App
from .campaign import Campaign, Step
from .dispatch import Dispatcher, Summary
from .errors import ConfigError, ConfigErrors
from .plan import HORIZON, Due, event_start, occurrences, schedule_of, zone_of
from .project import Project, load_project
from .schedule import next_allowed
from .store import sends as ledger
from .store import tables
from .store.upsert import insert_ignore, upsert

log = logging.getLogger(__name__)
DEFAULT_CATCH_UP = timedelta(hours=24)
LAST_TICK = "service:last_tick"


@dataclass
class TickReport:
    summaries: list[Summary] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.summaries)


@dataclass(frozen=True, slots=True)
class CampaignState:
    first_seen: datetime
    paused_at: datetime | None


class Service:
    """Sends every step at the right moment under the sending policies, exactly once."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._files = files_fingerprint(app.project)
        self.dispatchers: list[Dispatcher] = []
        self.stopping = False

    @property
    def project(self) -> Project:
        return self.app.project

    # --- files --------------------------------------------------------------------------

    def reload(self) -> list[ConfigError]:
        """Pick up changed files: a valid change replaces the plan; an invalid one is logged
        (``path:line: message``) and the previous plan keeps running."""
        current = files_fingerprint(self.project)
        if current == self._files:
            return []
        self._files = current
        try:
            fresh = load_project(self.project.root)
        except ConfigErrors as exc:
            problems = exc.errors
        else:
            problems = fresh.errors
        if problems:
            for problem in problems:
                log.error("not reloaded: %s", problem.location_message())
            return problems
        self.app.replace_project(fresh)
        log.info("reloaded the project: %d campaigns", len(fresh.campaigns))
        return []

    # --- ticking ------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Send everything due by now that has not been sent, in every campaign not paused."""
        self.reload()
        report = TickReport()
        now = self.app.clock.now()
        self.app.sync_directory()
        for campaign in self.project.campaigns.values():
            state = self._state(campaign, now)
            if state.paused_at is not None or self.stopping:
                continue
            dispatcher = self._dispatcher(campaign)
            report.summaries += dispatcher.send_event_changes(campaign)
            for step in campaign.steps:
                if self.stopping:
                    break
                self._step(campaign, step, state, now, dispatcher, report)
        with self.app.store.write() as conn:
            upsert(conn, tables.meta, [{"key": LAST_TICK, "value": now.isoformat()}], ["key"],
                   ["value"])
        return report

    def help_dispatch(self) -> list[Summary]:
        """What every process does, scheduler or not: send sends already created."""
        with self.app.store.read() as conn:
            keys = ledger.pending_keys(conn)
        summaries = []
        for key in keys:
            campaign = self.project.campaigns.get(key.campaign)
            step = events.step_for(campaign, key.step) if campaign else None
            if campaign is None or step is None or self.stopping:
                continue
            summaries.append(self._dispatcher(campaign).deliver_pending(campaign, step,
                                                                        key.occurrence))
        return summaries

    def stop(self) -> None:
        """Claim nothing more; what is being sent is finished."""
        self.stopping = True
        for dispatcher in self.dispatchers:
            dispatcher.stopping.set()

    def _dispatcher(self, campaign: Campaign) -> Dispatcher:
        schedule = schedule_of(self.project, campaign)
        dispatcher = self.app.dispatcher(max_per_minute=schedule.max_per_minute if schedule else None)
        self.dispatchers = [dispatcher]
        return dispatcher

    def _step(self, campaign: Campaign, step: Step, state: CampaignState, now: datetime,
              dispatcher: Dispatcher, report: TickReport) -> None:
        catch_up = self._catch_up(campaign)
        starts = event_start(campaign, step, self.app.settings.timezone)
        if step.after is not None:
            schedule = schedule_of(self.project, campaign)
            if next_allowed(now, schedule) != now or (starts is not None and now >= starts):
                return
            summary = dispatcher.send(campaign, step, missed_before=now - catch_up)
            if summary.sent or summary.failed or summary.missed:
                report.summaries.append(summary)
            return
        for due in self._dues(campaign, step, state, now, end=now):
            if self._processed(campaign, due):
                continue
            reason = None
            if now - due.due > catch_up:
                hours = catch_up.total_seconds() / 3600
                reason = (f"fell due at {due.due.isoformat()} while comms was not running or "
                          f"the campaign was paused, more than {hours:g} h ago (catch-up)")
            elif starts is not None and now >= starts:
                reason = "the event had started"
            if reason:
                self._mark(campaign, due, "missed", reason, now)
                report.missed.append(f"{campaign.id}/{step.id} {due.occurrence}: {reason}")
                log.warning("missed %s/%s %s: %s", campaign.id, step.id, due.occurrence, reason)
                continue
            report.summaries.append(dispatcher.send(campaign, step, occurrence=due.occurrence))
            self._mark(campaign, due, "done", None, now)

    def _dues(self, campaign: Campaign, step: Step, state: CampaignState, now: datetime, *,
              end: datetime) -> list[Due]:
        first_seen = self._seen_now_step(campaign, step, now) if step.now else now
        found = occurrences(campaign, step, schedule=schedule_of(self.project, campaign),
                            zone=zone_of(self.project, campaign, self.app.settings.timezone),
                            start=state.first_seen, end=end, first_seen=first_seen)
        return [d for d in found if d.due <= end]

    def _catch_up(self, campaign: Campaign) -> timedelta:
        if campaign.catch_up_hours is not None:
            return timedelta(hours=campaign.catch_up_hours)
        schedule = schedule_of(self.project, campaign)
        return timedelta(hours=schedule.catch_up_hours) if schedule else DEFAULT_CATCH_UP

    # --- what comes next ----------------------------------------------------------------

    def upcoming(self, now: datetime, limit: int = 10) -> list[dict[str, Any]]:
        """The next due occurrences, soonest first (per-recipient steps: their next recipient)."""
        rows: list[dict[str, Any]] = []
        for campaign in self.project.campaigns.values():
            state = self._state(campaign, now, record=False)
            if state.paused_at is not None:
                continue
            for step in campaign.steps:
                due = self._next_for_step(campaign, step, state, now)
                if due is not None:
                    rows.append({"campaign": campaign.id, "step": step.id,
                                 "occurrence": due[1], "due": due[0]})
        rows.sort(key=lambda r: r["due"])
        return rows[:limit]

    def next_due(self) -> datetime | None:
        upcoming = self.upcoming(self.app.clock.now(), limit=1)
        return upcoming[0]["due"] if upcoming else None

    def _next_for_step(self, campaign: Campaign, step: Step, state: CampaignState,
                       now: datetime) -> tuple[datetime, str] | None:
        if step.after is not None:
            first = self._first_waiting_recipient(campaign, step)
            if first is None:
                return None
            return max(now, next_allowed(first + step.after.delta,
                                         schedule_of(self.project, campaign))), "per recipient"
        for due in self._dues(campaign, step, state, now, end=now + HORIZON):
            if not self._processed(campaign, due):
                return max(now, due.due), due.occurrence
        return None

    def _first_waiting_recipient(self, campaign: Campaign, step: Step) -> datetime | None:
        assert step.after is not None
        s = tables.sends
        child = s.alias("child")
        with self.app.store.read() as conn:
            return conn.execute(select(func.min(s.c.sent_at)).where(
                s.c.campaign == campaign.id, s.c.step == step.after.step, s.c.status == "sent",
                ~select(child.c.id).where(child.c.campaign == campaign.id,
                                          child.c.step == step.id,
                                          child.c.stakeholder_id == s.c.stakeholder_id).exists(),
            )).scalar()

    # --- the store ----------------------------------------------------------------------

    def _state(self, campaign: Campaign, now: datetime, *, record: bool = True) -> CampaignState:
        """When the service first saw the campaign (recorded now if never), and any pause."""
        c = tables.campaign_state
        query = select(c.c.first_seen, c.c.paused_at).where(c.c.campaign == campaign.id)
        if not record:
            with self.app.store.read() as conn:
                row = conn.execute(query).first()
            return CampaignState(row.first_seen, row.paused_at) if row else CampaignState(now, None)
        with self.app.store.write() as conn:
            insert_ignore(conn, c, [{"campaign": campaign.id, "first_seen": now}], ["campaign"])
            row = conn.execute(query).one()
        return CampaignState(row.first_seen, row.paused_at)

    def _seen_now_step(self, campaign: Campaign, step: Step, now: datetime) -> datetime:
        """A ``now: true`` step falls due when the service first sees it."""
        o = tables.occurrences
        query = select(o.c.due_at).where(o.c.campaign == campaign.id, o.c.step == step.id,
                                         o.c.occurrence == "once")
        with self.app.store.read() as conn:
            seen = conn.execute(query).scalar()
        if seen is not None:
            return seen
        with self.app.store.write() as conn:
            insert_ignore(conn, o, [{"campaign": campaign.id, "step": step.id,
                                     "occurrence": "once", "due_at": now, "status": "seen"}],
                          ["campaign", "step", "occurrence"])
            return conn.execute(select(o.c.due_at).where(
                o.c.campaign == campaign.id, o.c.step == step.id, o.c.occurrence == "once")).scalar_one()

    def _processed(self, campaign: Campaign, due: Due) -> bool:
        o = tables.occurrences
        with self.app.store.read() as conn:
            status = conn.execute(select(o.c.status).where(
                o.c.campaign == campaign.id, o.c.step == due.step.id,
                o.c.occurrence == due.occurrence)).scalar()
        return status in ("done", "missed")

    def _mark(self, campaign: Campaign, due: Due, status: str, reason: str | None,
              now: datetime) -> None:
        o = tables.occurrences
        row = {"campaign": campaign.id, "step": due.step.id, "occurrence": due.occurrence,
               "due_at": due.due, "status": status, "reason": reason, "processed_at": now}
        with self.app.store.write() as conn:
            upsert(conn, o, [row], ["campaign", "step", "occurrence"],
                   ["status", "reason", "processed_at"])


def set_paused(conn: Connection, campaign: str, paused: bool, now: datetime) -> bool:
    """Pause (nothing is sent) or resume (what fell due meanwhile goes, within catch-up)."""
    c = tables.campaign_state
    insert_ignore(conn, c, [{"campaign": campaign, "first_seen": now}], ["campaign"])
    result = conn.execute(update(c).where(
        c.c.campaign == campaign,
        c.c.paused_at.is_(None) if paused else c.c.paused_at.is_not(None))
        .values(paused_at=now if paused else None))
    return (result.rowcount or 0) > 0


def missed(conn: Connection, campaign: str | None = None) -> list[dict[str, Any]]:
    o = tables.occurrences
    query = select(o.c.campaign, o.c.step, o.c.occurrence, o.c.due_at, o.c.reason).where(
        o.c.status == "missed").order_by(o.c.due_at)
    if campaign:
        query = query.where(o.c.campaign == campaign)
    return [dict(r) for r in conn.execute(query).mappings()]


def last_tick(conn: Connection) -> str | None:
    m = tables.meta
    return conn.execute(select(m.c.value).where(m.c.key == LAST_TICK)).scalar()


def files_fingerprint(project: Project) -> str:
    """A hash of every file the project reads (names, sizes, modification times)."""
    digest = hashlib.sha256()
    for folder in ("campaigns", "templates", "schedules", "stakeholders"):
        base = project.root / folder
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    info = path.stat()
                    digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()




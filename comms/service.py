"""The service's heart: each tick sends what has fallen due, once. Clock-injected, no threads.

``comms run`` calls ``tick`` at the due times the timeline gives (comms/scheduler.py); ``comms
send CAMPAIGN`` calls ``cycle`` for one campaign; tests call both with a simulated clock. What is
due comes from the timeline (comms/plan.py), who gets it from targeting (comms/targeting.py).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from . import approval, events, status, targeting
from .app import App
from .campaign import Campaign, Step
from .dispatch import Dispatcher, Progress, Summary
from .errors import ConfigError, ConfigErrors
from .plan import Decision, decide, schedule_of, zone_of
from .plan import occurrences as occurrences_of
from .project import Project, load_project
from .store import campaigns, meta, occurrences
from .store import facts as store_facts
from .store import sends as ledger

log = logging.getLogger(__name__)
LAST_TICK = "service:last_tick"


@dataclass
class TickReport:
    summaries: list[Summary] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # campaigns not approved (as they are)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self.summaries)


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
        self.app.sync_directory()
        for campaign in self.project.campaigns.values():
            if self.stopping:
                break
            refusals = approval.problems(self.app, campaign)
            if refusals:
                for line in refusals:
                    log.error("not sent: %s", line)
                report.refused += refusals
                continue
            self.cycle(campaign, report)
        with self.app.store.write() as conn:
            meta.put(conn, LAST_TICK, self.app.clock.now().isoformat())
        return report

    def cycle(self, campaign: Campaign, report: TickReport | None = None, *,
              dry_run: bool = False, resend_uncertain: bool = False,
              progress: Progress | None = None) -> TickReport:
        """One round of one campaign, as ``comms run`` and ``comms send CAMPAIGN`` do it: event
        changes, then what the timeline says is due (sent, waiting or missed), then any sends
        left pending (notices, a stopped run's claims given back). A dry run counts and renders
        the same, writing nothing."""
        report = report if report is not None else TickReport()
        now = self.app.clock.now()
        if not dry_run:
            with self.app.store.write() as conn:
                campaigns.first_seen(conn, campaign.id, now)
                for step in campaign.steps:
                    if step.now:
                        occurrences.see_now_step(conn, campaign.id, step.id, now)
        with self.app.store.read() as conn:
            facts = store_facts.load(conn, self.project)
            watermark = ledger.high_water(conn)
        if campaign.id in facts.paused:
            report.paused.append(campaign.id)
            return report
        dispatcher = self._dispatcher(campaign, progress)
        if not dry_run:
            self.app.rsvps.expire_offers(campaign)  # a lapsed offer's seat passes on
        report.summaries += dispatcher.send_event_changes(campaign, dry_run=dry_run)
        zone = zone_of(self.project, campaign, self.app.settings.timezone)
        for decision in decide(self.project, campaign, facts, now=now,
                               timezone=self.app.settings.timezone):
            if self.stopping:
                break
            self._act(campaign, decision, dispatcher, report, zone, now, dry_run=dry_run,
                      resend_uncertain=resend_uncertain, watermark=watermark)
        if not dry_run:
            report.summaries += [s for s in self._pending(campaign.id) if s.sent or s.failed]
        return report

    def send_now(self, campaign: Campaign, steps: list[Step], *, dry_run: bool = False,
                 resend_uncertain: bool = False, progress: Progress | None = None
                 ) -> TickReport:
        """``comms send CAMPAIGN --step S``: these steps now, whatever their time and the
        schedule's window (an ``after`` step still only to people sent its parent). A paused
        campaign sends nothing."""
        report = TickReport()
        with self.app.store.read() as conn:
            paused = campaigns.paused_at(conn, campaign.id) is not None
        if paused:
            report.paused.append(campaign.id)
            return report
        dispatcher = self._dispatcher(campaign, progress)
        report.summaries += dispatcher.send_event_changes(campaign, dry_run=dry_run)
        for step in steps:
            if self.stopping:
                break
            target = targeting.for_step(campaign, step, respect_delay=False)
            summary = dispatcher.run(campaign, step, target, dry_run=dry_run,
                                     resend_uncertain=resend_uncertain)
            report.summaries.append(summary)
            now = self.app.clock.now()
            if not dry_run and step.cron is None and step.after_step is None \
                    and not (summary.failed or summary.uncertain or summary.paused) \
                    and self._fell_due(campaign, step, now):
                # its one occurrence, due already, has gone: shown sent, not still due
                with self.app.store.write() as conn:
                    occurrences.mark(conn, campaign.id, step.id, summary.occurrence, due_at=now,
                                     status="done", reason="sent with --step", now=now)
        return report

    def _fell_due(self, campaign: Campaign, step: Step, now: datetime) -> bool:
        """Whether the one occurrence of a step with a set time is due by now."""
        found = occurrences_of(campaign, step, schedule=schedule_of(self.project, campaign),
                               zone=zone_of(self.project, campaign, self.app.settings.timezone),
                               start=now, end=now, first_seen=now)
        return bool(found) and found[0].due <= now

    def retry_failed(self, campaign: Campaign, steps: list[Step], *,
                     progress: Progress | None = None) -> TickReport:
        """``comms send CAMPAIGN --retry-failed``: failed sends of these steps go again (after
        the cause, a template or an address, was fixed)."""
        report = TickReport()
        with self.app.store.write() as conn:
            ledger.reopen_failed(conn, campaign.id, [s.id for s in steps])
        self._dispatcher(campaign, progress)
        report.summaries += self._pending(campaign.id)
        return report

    def _act(self, campaign: Campaign, decision: Decision, dispatcher: Dispatcher,
             report: TickReport, zone: ZoneInfo, now: datetime, *, dry_run: bool,
             resend_uncertain: bool, watermark: int) -> None:
        step, occurrence = decision.step, decision.occurrence
        where = f"{campaign.id}/{step.id} {occurrence}"
        if decision.action == "wait":
            report.waiting.append(decision.line(campaign.id, zone))
        elif decision.action == "miss":
            report.missed.append(f"{where}: {decision.reason}")
            if not dry_run:
                self._mark(campaign, decision, "missed", now)
                log.warning("missed %s: %s", where, decision.reason)
        elif decision.action == "done":
            if not dry_run:
                self._mark(campaign, decision, "done", now)
        else:
            target = targeting.for_step(campaign, step, occurrence,
                                        missed_before=decision.missed_before,
                                        parents_up_to=watermark)
            summary = dispatcher.run(campaign, step, target, dry_run=dry_run,
                                     resend_uncertain=resend_uncertain)
            if step.after_step is None:
                report.summaries.append(summary)
                if not dry_run:
                    self._mark(campaign, decision, "done", now)
            elif summary.sent or summary.failed or summary.missed or summary.would_send:
                report.summaries.append(summary)

    def next_due(self) -> datetime | None:
        """When the service must next wake (the timeline's next occurrence still to go)."""
        return status.next_due(self.app)

    def help_dispatch(self) -> list[Summary]:
        """What every process does, scheduler or not: send sends already created."""
        return self._pending(None)

    def _pending(self, campaign_id: str | None) -> list[Summary]:
        """Deliver the pending sends of one campaign (or all), paused campaigns left out; with
        provider events settling uncertain sends, those still unheard of go again first."""
        if self.app.resolves_uncertain:
            quiet = timedelta(minutes=self.app.settings.uncertain_resolve_minutes)
            with self.app.store.write() as conn:
                resent = ledger.resolve_uncertain(conn, older_than=self.app.clock.now() - quiet)
            if resent:
                log.warning("%d uncertain send(s) with no provider event for %g min: sent again",
                            resent, quiet.total_seconds() / 60)
        with self.app.store.read() as conn:
            keys = [k for k in ledger.pending_keys(conn)
                    if campaign_id in (None, k.campaign)]
            paused = campaigns.paused(conn)
        summaries = []
        for key in keys:
            campaign = self.project.campaigns.get(key.campaign)
            step = events.step_for(campaign, key.step) if campaign else None
            if campaign is None or step is None or self.stopping or key.campaign in paused:
                continue
            summaries.append(self._dispatcher(campaign).deliver_pending(campaign, step,
                                                                        key.occurrence))
        return summaries

    def stop(self) -> None:
        """Claim nothing more; what is being sent is finished."""
        self.stopping = True
        for dispatcher in self.dispatchers:
            dispatcher.stopping.set()

    def _dispatcher(self, campaign: Campaign, progress: Progress | None = None) -> Dispatcher:
        schedule = schedule_of(self.project, campaign)
        dispatcher = self.app.dispatcher(
            max_per_minute=schedule.max_per_minute if schedule else None,
            rate_name=f"schedule:{schedule.id}" if schedule else "schedule", progress=progress)
        self.dispatchers = [dispatcher]
        if self.stopping:
            dispatcher.stopping.set()
        return dispatcher

    def _mark(self, campaign: Campaign, decision: Decision, status: str, now: datetime) -> None:
        with self.app.store.write() as conn:
            occurrences.mark(conn, campaign.id, decision.step.id, decision.occurrence,
                             due_at=decision.due, status=status, reason=decision.reason, now=now)


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

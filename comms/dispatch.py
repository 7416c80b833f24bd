"""Dispatch: claim sends in the store, compose, hand to the transport, record; exactly once.

At most ``concurrency`` sends are claimed and not yet recorded at any moment, so a crash leaves
at most that many ``uncertain`` (maybe sent, maybe not); they are reported, never re-sent silently.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, and_

from . import events
from .audience import from_row, matches
from .campaign import Campaign, Event, Step
from .clock import Clock
from .conditions import condition
from .errors import CommsError, PermanentError, TemplateError, TransientError
from .message import CalendarSpec, Composer, PreparedStep
from .store import Store, runs, tables
from .store import sends as ledger
from .store.sends import ONCE
from .transports.base import Transport

HEARTBEAT_SECONDS = 10.0
MAX_BACKOFF = 300.0


@dataclass
class Summary:
    """What one dispatch of one step did."""

    campaign: str
    step: str
    occurrence: str
    sent: int = 0
    already_sent: int = 0
    suppressed: int = 0
    failed: int = 0
    uncertain: int = 0
    would_send: int = 0
    skipped: int = 0
    missed: int = 0
    resent_uncertain: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.campaign}/{self.step}:"]
        if self.would_send:
            parts.append(f"{self.would_send} would be sent (dry run),")
        if self.resent_uncertain:
            parts.append(f"{self.resent_uncertain} uncertain sent again,")
        parts.append(f"{self.sent} sent, {self.already_sent} already sent, "
                     f"{self.suppressed} suppressed, {self.failed} failed, "
                     f"{self.uncertain} uncertain")
        if self.skipped:
            parts.append(f"({self.skipped} skipped: condition not met)")
        if self.missed:
            parts.append(f"({self.missed} missed: due beyond the catch-up window)")
        return " ".join(parts)


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    concurrency: int = 8
    max_attempts: int = 5
    max_per_minute: int | None = None
    backoff_base: float = 1.0


class Dispatcher:
    def __init__(self, store: Store, transport: Transport, composer: Composer, *, clock: Clock,
                 policy: Policy, progress: Progress | None = None) -> None:
        self.store = store
        self.transport = transport
        self.composer = composer
        self.clock = clock
        self.policy = policy
        self.progress = progress
        self.stopping = threading.Event()  # set: claim nothing more, finish what is under way

    def send(self, campaign: Campaign, step: Step, *, occurrence: str = ONCE,
             respect_delay: bool = True, dry_run: bool = False,
             resend_uncertain: bool = False, missed_before: datetime | None = None) -> Summary:
        """Send ``step`` to everyone in the audience who has not had it for this occurrence.

        ``resend_uncertain`` also sends again what a stopped process left uncertain.
        """
        audience = matches(campaign.audience, step.only_if)
        event = campaign.event(step.event_id) if step.event_id else None
        if event is not None and step.kind in ("invite", "cancel"):
            audience = and_(audience, events.not_organiser(event))
            if step.kind == "cancel":
                audience = and_(audience, events.invited_not_declined(campaign, event))
        after = None
        if step.after is not None:
            after = (step.after.step, step.after.delta if respect_delay else None)
        target = _Target(audience, after, condition(campaign.id, step.only_if), missed_before)
        return self._run(campaign, step, ledger.Key(campaign.id, step.id, occurrence), target,
                         dry_run=dry_run, resend_uncertain=resend_uncertain)

    def send_campaign(self, campaign: Campaign, steps: Iterable[Step], *,
                      respect_delay: bool = True, dry_run: bool = False,
                      resend_uncertain: bool = False) -> Iterator[Summary]:
        """One cycle for a campaign: changes of its events first, then the given steps."""
        if not dry_run:
            yield from self.send_event_changes(campaign)
        for step in steps:
            yield self.send(campaign, step, respect_delay=respect_delay, dry_run=dry_run,
                            resend_uncertain=resend_uncertain)

    def send_event_changes(self, campaign: Campaign) -> list[Summary]:
        """Updates (same UID, SEQUENCE + 1) or cancellations to everyone invited who has not
        declined, for each event whose time, place, link, title or status changed."""
        summaries = []
        for event in campaign.events:
            invites = [s.id for s in campaign.steps if s.kind == "invite" and s.event == event.id]
            with self.store.write() as conn:
                if not invites or not ledger.any_sent(conn, campaign.id, invites):
                    continue
                state = events.sync_event(conn, campaign, event, timezone=self.composer.timezone,
                                          now=self.clock.now())
            cancel_steps = [s for s in campaign.steps if s.kind == "cancel" and s.event == event.id]
            if state.sequence == 0 or (state.status == "cancelled" and cancel_steps):
                continue
            step = events.change_step(event, cancelled=state.status == "cancelled")
            audience = and_(matches(campaign.audience), events.not_organiser(event),
                            events.invited_not_declined(campaign, event, below=state.sequence))
            key = ledger.Key(campaign.id, step.id, f"seq-{state.sequence}")
            summaries.append(self._run(campaign, step, key, _Target(audience, None, None)))
        return summaries

    def notify(self, campaign: Campaign, event: Event, kind: str,
               stakeholder_ids: list[int]) -> Summary:
        """Send a built-in RSVP message (``waitlisted`` or ``promoted``) to these people."""
        step = events.notice_step(event, kind)
        audience = tables.stakeholders.c.id.in_(stakeholder_ids)
        key = ledger.Key(campaign.id, step.id, ONCE)
        return self._run(campaign, step, key, _Target(audience, None, None))

    def deliver_pending(self, campaign: Campaign, step: Step, occurrence: str) -> Summary:
        """Help another process: send sends it has already created (claims skip each other)."""
        key = ledger.Key(campaign.id, step.id, occurrence)
        summary = Summary(campaign.id, step.id, occurrence)
        now = self.clock.now()
        prepared, sequence = self._prepare(campaign, step, now, dry_run=False)
        if prepared is None:
            return summary
        with self.store.write() as conn:
            ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
            run_id = runs.start(conn, "dispatch", now)
        try:
            self._deliver(prepared, key, run_id, summary, sequence)
        finally:
            with self.store.write() as conn:
                runs.finish(conn, run_id, self.clock.now())
        return summary

    def _run(self, campaign: Campaign, step: Step, key: ledger.Key, target: _Target, *,
             dry_run: bool = False, resend_uncertain: bool = False) -> Summary:
        summary = Summary(campaign.id, step.id, key.occurrence)
        now = self.clock.now()
        prepared, sequence = self._prepare(campaign, step, now, dry_run=dry_run)
        if prepared is None:
            summary.failures.append("the event is cancelled: no invitations are sent")
            return summary
        if dry_run:
            return self._dry_run(prepared, key, target.audience, summary)
        with self.store.write() as conn:
            ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
            before = ledger.key_counts(conn, key)
            ledger.reopen_retryable(conn, key)
            if resend_uncertain:
                summary.resent_uncertain = ledger.reopen_uncertain(conn, key)
            ledger.materialise(conn, key, target.audience, now, after=target.after,
                               condition=target.condition, missed_before=target.missed_before)
            ledger.mark_suppressed(conn, key)
            run_id = runs.start(conn, "send", now)
            pending = ledger.key_counts(conn, key)["pending"]
        summary.already_sent = before["sent"]
        if self.progress:
            self.progress.start(f"{campaign.id}/{step.id}", pending)
        try:
            self._deliver(prepared, key, run_id, summary, sequence)
        finally:
            with self.store.write() as conn:
                runs.finish(conn, run_id, self.clock.now())
                after_counts = ledger.key_counts(conn, key)
        summary.suppressed = after_counts["suppressed"]
        summary.uncertain = after_counts["uncertain"]
        summary.skipped = after_counts["skipped"]
        summary.missed = after_counts["missed"]
        return summary

    def _prepare(self, campaign: Campaign, step: Step, now: datetime, *,
                 dry_run: bool) -> tuple[PreparedStep | None, int | None]:
        """Compose once per step; for event steps, bring the event's state up to date first."""
        event = campaign.event(step.event_id) if step.event_id else None
        if event is None:
            return self.composer.prepare(campaign, step, now=now), None
        writer = self.store.read if dry_run else self.store.write
        with writer() as conn:
            state = events.sync_event(conn, campaign, event, timezone=self.composer.timezone,
                                      now=now, cancel=step.kind == "cancel")
            seats = events.seats_left(conn, campaign.id, event)
        spec = None
        if step.kind in ("invite", "cancel"):
            cancelled = state.status == "cancelled"
            if step.kind == "invite" and cancelled:
                return None, None
            spec = CalendarSpec(state.uid, state.sequence, "CANCEL" if cancelled else "REQUEST")
        prepared = self.composer.prepare(campaign, step, now=now, seats_left=seats, calendar=spec)
        return prepared, state.sequence if spec else None

    def _dry_run(self, prepared: PreparedStep, key: ledger.Key, audience: Any,
                 summary: Summary) -> Summary:
        with self.store.read() as conn:
            for row in ledger.unsent_audience(conn, key, audience):
                prepared.message(from_row(row), "0" * 32)  # renders: errors surface now
                summary.would_send += 1
        return summary

    def _deliver(self, prepared: PreparedStep, key: ledger.Key, run_id: str,
                 summary: Summary, sequence: int | None) -> None:
        limit = max(1, self.policy.concurrency)
        refill = max(1, limit // 2)  # claim and record in batches, not one message at a time
        bucket = _Bucket(self.policy.max_per_minute, self.clock)
        in_flight: dict[Future[_Result], int] = {}
        done: list[_Result] = []
        exhausted = False
        last_beat = self.clock.now()
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="comms-send") as pool:
            try:
                while True:
                    now = self.clock.now()
                    stop = self.stopping.is_set()
                    free = 0 if exhausted or stop else bucket.take(limit - len(in_flight))
                    with self.store.write() as conn:
                        self._record(conn, run_id, done, summary, now)
                        done = []
                        claimed = (ledger.claim(conn, key, run_id, free, now, sequence=sequence)
                                   if free else [])
                        if (now - last_beat).total_seconds() >= HEARTBEAT_SECONDS:
                            runs.heartbeat(conn, run_id, now)
                            last_beat = now
                    if free and len(claimed) < free:
                        exhausted = True
                    bucket.give_back(free - len(claimed))
                    for job in claimed:
                        in_flight[pool.submit(self._attempt, prepared, job)] = job.id
                    if not in_flight:
                        if exhausted or stop or not self._has_pending(key):
                            break
                        bucket.wait()
                        continue
                    # Wait for results: all of them at the end, at least one when this round
                    # claimed nothing (stopping, rate-limited), else until half the window is free.
                    settle = exhausted or stop or not claimed
                    while in_flight and (settle or limit - len(in_flight) < refill):
                        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in finished:
                            del in_flight[future]
                            done.append(future.result())
                        settle = exhausted or stop
            except BaseException:
                # Interrupted: claims not yet started go back; those under way finish first.
                for future in list(in_flight):
                    if future.cancel():
                        with self.store.write() as conn:
                            ledger.release(conn, run_id, [in_flight.pop(future)])
                for future in in_flight:
                    try:
                        done.append(future.result())
                    except BaseException:
                        pass
                raise
            finally:
                if done:
                    with self.store.write() as conn:
                        self._record(conn, run_id, done, summary, self.clock.now())

    def _has_pending(self, key: ledger.Key) -> bool:
        with self.store.read() as conn:
            return ledger.key_counts(conn, key)["pending"] > 0

    def _record(self, conn: Connection, run_id: str, results: list[_Result], summary: Summary,
                now: datetime) -> None:
        if not results:
            return
        ledger.record(conn, run_id, [r.outcome for r in results],
                      [a for r in results for a in r.attempts], now)
        for result in results:
            if result.outcome.status == "sent":
                summary.sent += 1
            else:
                summary.failed += 1
                if len(summary.failures) < 20:
                    summary.failures.append(f"{result.email}: {result.outcome.error}")
        if self.progress:
            self.progress.advance(len(results))

    def _attempt(self, prepared: PreparedStep, job: ledger.Claimed) -> _Result:
        person = from_row(job.stakeholder)
        attempts: list[ledger.Attempt] = []

        def failed(error: str, *, retryable: bool) -> _Result:
            return _Result(person.email, ledger.Outcome(
                send_id=job.id, status="failed", attempts=len(attempts), error=error,
                retryable=retryable), attempts)

        try:
            message = prepared.message(person, job.uid)
        except TemplateError as exc:
            return failed(str(exc), retryable=False)
        for n in range(1, self.policy.max_attempts + 1):
            try:
                provider_id = self.transport.send(message)
            except TransientError as exc:
                attempts.append(ledger.Attempt(send_id=job.id, at=self.clock.now(),
                                               outcome="transient", status_code=exc.status,
                                               detail=str(exc)))
                if n == self.policy.max_attempts:
                    return failed(f"gave up after {n} attempts: {exc}", retryable=True)
                self.clock.sleep(self._backoff(n, exc.retry_after))
            except (PermanentError, CommsError) as exc:
                status = getattr(exc, "status", None)
                attempts.append(ledger.Attempt(send_id=job.id, at=self.clock.now(),
                                               outcome="permanent", status_code=status,
                                               detail=str(exc)))
                return failed(str(exc), retryable=False)
            else:
                attempts.append(ledger.Attempt(send_id=job.id, at=self.clock.now(),
                                               outcome="sent"))
                return _Result(person.email, ledger.Outcome(
                    send_id=job.id, status="sent", attempts=n, provider_id=provider_id), attempts)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(MAX_BACKOFF, self.policy.backoff_base * 2 ** (attempt - 1))
        delay *= 1 + random.random() * 0.25
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_BACKOFF))
        return delay


@dataclass(frozen=True, slots=True)
class _Target:
    """Who a send run reaches: the audience, an ``after`` rule, and a send-time condition."""

    audience: ColumnElement[bool]
    after: tuple[str, timedelta | None] | None
    condition: ColumnElement[bool] | None
    missed_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Result:
    email: str
    outcome: ledger.Outcome
    attempts: list[ledger.Attempt]


class _Bucket:
    """A per-minute rate limit on claims (no limit when ``per_minute`` is None)."""

    def __init__(self, per_minute: int | None, clock: Clock) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self.tokens = float(per_minute or 0)
        self.stamp = clock.now()

    def take(self, wanted: int) -> int:
        if self.per_minute is None:
            return max(0, wanted)
        now = self.clock.now()
        elapsed = (now - self.stamp).total_seconds()
        self.stamp = now
        self.tokens = min(float(self.per_minute), self.tokens + elapsed * self.per_minute / 60)
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted

    def give_back(self, unused: int) -> None:
        if self.per_minute is not None and unused > 0:
            self.tokens += unused

    def wait(self) -> None:
        if self.per_minute is not None:
            self.clock.sleep(max(0.01, (1 - self.tokens) * 60 / self.per_minute))


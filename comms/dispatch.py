"""Dispatch: claim sends in the store, compose, hand to the transport, record; exactly once.

At most ``concurrency`` sends are claimed and not yet recorded at any moment (for a transport
whose :class:`~comms.transports.base.Limits` allow it, a concurrency that adapts to the provider,
with a batch claimed ahead of it, all up to ``max_in_flight``), so a crash leaves at most that
many ``uncertain`` (maybe sent, maybe not); they are reported, never re-sent silently. Rate
limits are kept in the store (comms.store.ratelimit), shared by every process using it.

Each claim's attempts (compose, send, back off, send again) are written once, as steps; a
runner carries them out: a pool of threads, or, for a transport with an async sender (SendGrid),
one event loop on which hundreds of requests can wait on a distant provider at once.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import deque
from collections.abc import Coroutine, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from . import events, targeting
from .audience import from_row
from .campaign import Campaign, Event, Step
from .clock import Clock
from .errors import (
    AmbiguousError,
    CommsError,
    PermanentError,
    TemplateError,
    TransientError,
    TransportError,
)
from .events import EventCancelled
from .message import Composer, Pairing, PreparedStep
from .stopping import ForcedStop
from .store import Conn, Store, ratelimit, rsvps, runs
from .store import campaigns as stored_campaigns
from .store import events as stored_events
from .store import pairs as stored_pairs
from .store import sends as ledger
from .targeting import Target
from .transports.base import NO_LIMITS, AsyncSender, Limits, Message, Transport

MAX_BACKOFF = 300.0  # seconds: the longest wait between attempts comms chooses itself
MAX_RETRY_AFTER = 3600.0  # seconds: the longest a provider's Retry-After is honoured for
# A send reaches the provider within this much of its rate grant (the claim's transaction, the
# hand-off, the request on the wire): a grant is held a minute and this long, so that no 60 s
# of arrivals hold more than a per-minute limit (at the cost of under 1% of its rate).
LAG = timedelta(seconds=0.5)


@dataclass
class Summary:
    """What one dispatch of one step did (or, for a dry run, would do)."""

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
    waiting: int = 0
    resent_uncertain: int = 0
    still_failed: int = 0  # failed sends of this occurrence, from this run or earlier ones
    paused: bool = False
    dry_run: bool = False
    failures: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)  # a dry run: who would be sent it
    suppressed_pairs: list[str] = field(default_factory=list)  # "mentee & mentor", by name

    def line(self) -> str:
        parts = [f"{self.campaign}/{self.step}:"]
        if self.paused:
            return f"{parts[0]} paused — `comms resume {self.campaign}` to continue"
        if self.resent_uncertain:
            parts.append(f"{self.resent_uncertain} uncertain sent again,")
        sent = f"{self.would_send} would be sent" if self.dry_run else f"{self.sent} sent"
        parts.append(f"{sent}, {self.already_sent} already sent, {self.suppressed} suppressed, "
                     f"{self.failed} failed, {self.uncertain} uncertain")
        if self.suppressed_pairs:
            parts.append(f"(pairs skipped, one of the two suppressed: "
                         f"{'; '.join(self.suppressed_pairs)})")
        if self.skipped:
            parts.append(f"({self.skipped} skipped: condition not met)")
        if self.missed:
            parts.append(f"({self.missed} missed: due beyond the catch-up window)")
        if self.waiting:
            parts.append(f"({self.waiting} waiting for their delay)")
        if self.still_failed > self.failed:
            parts.append(f"({self.still_failed} failed in all: `comms send {self.campaign} "
                         "--retry-failed` once the cause is fixed)")
        if self.dry_run:
            parts.append("— dry run: nothing sent, nothing written")
        return " ".join(parts)

    def take(self, forecast: ledger.Forecast) -> None:
        """The counts a forecast (before a run, or after it) gives."""
        self.already_sent = forecast.already_sent
        self.suppressed, self.skipped = forecast.suppressed, forecast.skipped
        self.missed, self.waiting = forecast.missed, forecast.waiting
        self.uncertain, self.still_failed = forecast.uncertain, forecast.failed


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """How a dispatcher sends. ``concurrency`` is where sending starts (and stays, unless the
    transport's limits let it adapt, up to ``max_in_flight`` when set here, else theirs);
    ``max_per_minute`` is shared by every dispatcher on the store using the same ``rate_name``."""

    concurrency: int = 8
    max_attempts: int = 5
    max_per_minute: int | None = None
    backoff_base: float = 1.0
    max_in_flight: int | None = None
    rate_name: str = "schedule"


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

    def send(self, campaign: Campaign, step: Step, *, respect_delay: bool = True,
             dry_run: bool = False, resend_uncertain: bool = False) -> Summary:
        """Send one step of a campaign file now (its single occurrence): to everyone targeting
        says it reaches, nobody while the campaign is paused."""
        with self.store.read() as conn:
            paused = stored_campaigns.paused_at(conn, campaign.id) is not None
        target = targeting.for_step(campaign, step, paused=paused, respect_delay=respect_delay)
        return self.run(campaign, step, target, dry_run=dry_run, resend_uncertain=resend_uncertain)

    def run(self, campaign: Campaign, step: Step, target: Target, *, dry_run: bool = False,
            resend_uncertain: bool = False) -> Summary:
        """Send ``step`` to everyone ``target`` reaches who has not had it for its occurrence
        (a dry run counts and renders the same people, writing nothing).

        ``resend_uncertain`` also sends again what a stopped process left uncertain.
        """
        key = target.key
        summary = Summary(campaign.id, step.id, key.occurrence, paused=target.paused,
                          dry_run=dry_run)
        if target.paused:
            return summary
        now = self.clock.now()
        if dry_run:
            return self._dry_run(campaign, step, target, summary, now, resend_uncertain)
        try:
            prepared, sequence = self._prepare(campaign, step, now)
        except EventCancelled as exc:
            summary.failures.append(str(exc))
            return summary
        with self.store.write() as conn:
            ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
            before = ledger.key_counts(conn, key)
            ledger.reopen_retryable(conn, key)
            if resend_uncertain:
                summary.resent_uncertain = ledger.reopen_uncertain(conn, key)
            ledger.materialise(conn, target, now)
            ledger.mark_suppressed(conn, key)
            run_id = runs.start(conn, "send", now)
            pending = ledger.key_counts(conn, key)["pending"]
        if self.progress:
            self.progress.start(f"{campaign.id}/{step.id}", pending)
        try:
            self._deliver(prepared, key, run_id, summary, sequence)
        finally:
            with self.store.write() as conn:
                runs.finish(conn, run_id, self.clock.now())
        with self.store.read() as conn:
            summary.take(ledger.forecast(conn, target, self.clock.now()))
            if step.pairs is not None and summary.suppressed:
                summary.suppressed_pairs = stored_pairs.suppressed(conn, key, step.pairs)
        summary.already_sent = before["sent"]
        return summary

    def send_event_changes(self, campaign: Campaign, *, dry_run: bool = False) -> list[Summary]:
        """Updates (same UID, SEQUENCE + 1) or cancellations to everyone invited who has not
        declined, for each event whose time, place, link, title or status changed. Bringing the
        stored event state up to date is part of a real run; a dry run computes it."""
        summaries = []
        for event in campaign.events:
            invites = [s.id for s in campaign.steps if s.kind == "invite" and s.event == event.id]
            transaction = self.store.read if dry_run else self.store.write
            with transaction() as conn:
                if not invites or not ledger.any_sent(conn, campaign.id, invites):
                    continue
                state = (stored_events.current(conn, campaign, event) if dry_run else
                         stored_events.sync(conn, campaign, event,
                                            timezone=self.composer.timezone, now=self.clock.now()))
            cancel_steps = [s for s in campaign.steps if s.kind == "cancel" and s.event == event.id]
            if state.sequence == 0 or (state.status == "cancelled" and cancel_steps):
                continue
            step = events.change_step(event, cancelled=state.status == "cancelled")
            target = targeting.for_change(campaign, event, step, state.sequence)
            summaries.append(self.run(campaign, step, target, dry_run=dry_run))
        return summaries

    def notify(self, campaign: Campaign, event: Event, kind: str,
               stakeholder_ids: list[int], *, paused: bool = False) -> Summary:
        """Send a built-in RSVP message (``waitlisted`` or ``promoted``) to these people; while
        the campaign is paused it is recorded and goes once it is resumed."""
        step = events.notice_step(event, kind)
        target = targeting.for_notice(campaign, step, stakeholder_ids)
        if not paused:
            return self.run(campaign, step, target)
        with self.store.write() as conn:
            ledger.materialise(conn, target, self.clock.now())
        return Summary(campaign.id, step.id, target.key.occurrence, paused=True)

    def deliver_pending(self, campaign: Campaign, step: Step, occurrence: str) -> Summary:
        """Send sends already created (by another process, or a stopped run; claims skip each
        other)."""
        key = ledger.Key(campaign.id, step.id, occurrence)
        summary = Summary(campaign.id, step.id, occurrence)
        now = self.clock.now()
        try:
            prepared, sequence = self._prepare(campaign, step, now)
        except EventCancelled:
            return summary
        with self.store.write() as conn:
            ledger.mark_uncertain(conn, runs.dead_runs(conn, now))
            ledger.mark_suppressed(conn, key)
            run_id = runs.start(conn, "dispatch", now)
        try:
            self._deliver(prepared, key, run_id, summary, sequence)
        finally:
            with self.store.write() as conn:
                runs.finish(conn, run_id, self.clock.now())
        return summary

    def _prepare(self, campaign: Campaign, step: Step, now: datetime
                 ) -> tuple[PreparedStep, int | None]:
        """Compose once per step; for event steps, bring the stored event state up to date first
        (a real run only)."""
        if not step.event_id:
            return self.composer.prepare(campaign, step, now=now), None
        with self.store.write() as conn:
            return compose(conn, self.composer, campaign, step, now, record=True)

    def _dry_run(self, campaign: Campaign, step: Step, target: Target, summary: Summary,
                 now: datetime, resend_uncertain: bool) -> Summary:
        """Counts and renders, in a read-only transaction: what the real run would do now."""
        with self.store.read() as conn:
            try:
                prepared, _ = compose(conn, self.composer, campaign, step, now, record=False)
            except EventCancelled as exc:
                summary.failures.append(str(exc))
                return summary
            forecast = ledger.forecast(conn, target, now, resend_uncertain=resend_uncertain)
            rows = list(ledger.would_send(conn, target, now))
            pairings = pairings_of(conn, step, [row["id"] for row in rows])
            for row in rows:  # rendered: errors surface now
                prepared.message(from_row(row), "0" * 32, pairings.get(row["id"]))
                summary.people.append(row["email"])
        summary.take(forecast)
        summary.would_send = forecast.would_send
        return summary

    def _deliver(self, prepared: PreparedStep, key: ledger.Key, run_id: str,
                 summary: Summary, sequence: int | None) -> None:
        """Claim, hand to the transport, record; at most ``window.claims`` claimed and
        unrecorded, ``window.limit`` of them with the transport.

        Stopping (``stopping`` set) claims nothing more and lets what is in flight finish; a
        forced stop leaves what is in flight uncertain. A result is dropped from memory only once
        the transaction recording it has committed."""
        limits = self._limits()
        window = self._window(paced=bool(limits))
        bucket = _Buckets(self.store, limits, self.clock, self.stopping)
        in_flight: dict[Future[_Result], int] = {}  # with the transport: maybe sent
        finished: SimpleQueue[Future[_Result]] = SimpleQueue()  # in the order they finish
        queued: deque[tuple[ledger.Claimed, Pairing | None]] = deque()  # claimed, not started
        done: list[_Result] = []
        exhausted = False
        beating = self.clock.every(runs.HEARTBEAT, lambda: self._beat(run_id))

        def start(pool: _Runner) -> None:
            while queued and len(in_flight) < window.limit and not self.stopping.is_set():
                job, pairing = queued.popleft()
                future = pool.submit(self._attempt(prepared, job, pairing))
                in_flight[future] = job.id
                future.add_done_callback(finished.put)

        def unrecorded() -> int:
            return len(in_flight) + len(queued)

        with self._runner(window) as pool:
            try:
                while True:
                    now = self.clock.now()
                    stop = self.stopping.is_set()
                    room = 0 if exhausted or stop else max(0, window.claims - unrecorded())
                    free = bucket.take(room, now) if room else 0
                    with self.store.write() as conn:
                        self._record(conn, run_id, done, now)
                        if stop and queued:  # never handed to the transport: pending again
                            ledger.release(conn, run_id, [job.id for job, _ in queued])
                            queued.clear()
                        claimed = (ledger.claim(conn, key, run_id, free, now, sequence=sequence)
                                   if free else [])
                        pairings = pairings_of(conn, prepared.step, [
                            job.stakeholder["stakeholder_id"] for job in claimed])
                        bucket.give_back(conn, free - len(claimed), now)
                    self._count(done, summary)
                    done = []
                    if free and len(claimed) < free:
                        exhausted = True
                    queued.extend((job, pairings.get(job.stakeholder["stakeholder_id"]))
                                  for job in claimed)
                    start(pool)
                    if not in_flight:
                        if exhausted or stop or not self._has_pending(key):
                            break
                        self.clock.wait(max(0.01, bucket.wait), self.stopping)
                        continue
                    # Wait for results: all of them at the end, at least one when this round
                    # claimed nothing (stopping, rate-limited), else until half the claims are
                    # recorded-to-be; the threads take the next claimed as each finishes.
                    settle = exhausted or stop or not claimed
                    while in_flight and (settle or window.claims - unrecorded() < window.refill):
                        for future in _all_of(finished):
                            del in_flight[future]
                            result = future.result()
                            window.observe(result)
                            done.append(result)
                        start(pool)
                        settle = exhausted or self.stopping.is_set()
            except ForcedStop:
                # A second signal: nothing more is waited for. What went is recorded; what is
                # still with the transport is uncertain, as the ledger will say.
                self.stopping.set()
                pool.shutdown(wait=False, cancel_futures=True)
                done += [f.result() for f in in_flight if f.done() and not f.cancelled()]
                with self.store.write() as conn:
                    self._record(conn, run_id, done, self.clock.now())
                    ledger.release(conn, run_id, [in_flight[f] for f in in_flight
                                                  if f.cancelled()]
                                   + [job.id for job, _ in queued])
                    ledger.mark_uncertain(conn, [run_id])
                done = []
                raise
            except BaseException:
                # Interrupted: claims not yet started go back; those under way finish first.
                self.stopping.set()
                unstarted = [job.id for job, _ in queued]
                for future in list(in_flight):
                    if future.cancel():
                        unstarted.append(in_flight.pop(future))
                if unstarted:
                    with self.store.write() as conn:
                        ledger.release(conn, run_id, unstarted)
                for future in in_flight:
                    try:
                        done.append(future.result())
                    except BaseException:
                        pass
                raise
            finally:
                beating.stop()
                if done:
                    with self.store.write() as conn:
                        self._record(conn, run_id, done, self.clock.now())
                    self._count(done, summary)

    def _window(self, *, paced: bool) -> _Window:
        """Concurrency as the transport allows: fixed, or adapting up to ``max_in_flight``;
        ``paced``: under a rate limit."""
        start = max(1, self.policy.concurrency)
        most = self._transport_limits().max_in_flight
        if most is None:
            return _Window(start, start, paced=paced)
        if self.policy.max_in_flight is not None:
            most = self.policy.max_in_flight
        return _Window(min(start, most), max(1, most), paced=paced)

    def _transport_limits(self) -> Limits:
        limits = getattr(self.transport, "limits", NO_LIMITS)
        return limits if isinstance(limits, Limits) else NO_LIMITS

    def _limits(self) -> list[ratelimit.Limit]:
        """The store's buckets this dispatcher draws on: the schedule's, the transport's."""
        found = []
        if self.policy.max_per_minute:
            found.append(ratelimit.Limit.per_minute(self.policy.rate_name,
                                                    self.policy.max_per_minute, lag=LAG))
        caps, name = self._transport_limits(), getattr(self.transport, "name", "transport")
        if caps.per_minute:
            found.append(ratelimit.Limit.per_minute(f"transport:{name}:minute", caps.per_minute,
                                                    lag=LAG))
        if caps.per_day:
            found.append(ratelimit.Limit.per_day(f"transport:{name}:day", caps.per_day))
        return found

    def _beat(self, run_id: str) -> None:
        """This run is alive (from the clock's timer, whatever the sends are doing)."""
        try:
            with self.store.write() as conn:
                runs.heartbeat(conn, run_id, self.clock.now())
        except CommsError:
            pass  # the store is away: the next beat tries again

    def _has_pending(self, key: ledger.Key) -> bool:
        with self.store.read() as conn:
            return ledger.key_counts(conn, key)["pending"] > 0

    def _record(self, conn: Conn, run_id: str, results: list[_Result], now: datetime) -> None:
        if results:
            ledger.record(conn, run_id, [r.outcome for r in results if r.outcome is not None],
                          [a for r in results for a in r.attempts], now)
            ledger.release(conn, run_id, [r.send_id for r in results if r.outcome is None])

    def _count(self, results: list[_Result], summary: Summary) -> None:
        """Add committed results to the summary (and the progress bar)."""
        for result in results:
            outcome = result.outcome
            if outcome is None:
                continue  # given back unsent: the next run sends it
            if outcome.status == "sent":
                summary.sent += 1
            elif outcome.status == "uncertain":
                summary.uncertain += 1
                if len(summary.failures) < 20:
                    summary.failures.append(f"{result.email}: uncertain: {outcome.error}")
            else:
                summary.failed += 1
                if len(summary.failures) < 20:
                    summary.failures.append(f"{result.email}: {outcome.error}")
        if self.progress and results:
            self.progress.advance(len(results))

    def _runner(self, window: _Window) -> _Runner:
        """Where attempts run: on one event loop for a transport that offers an async sender
        (SendGrid, SMTP: as many in flight as the window allows, no thread each), else on
        threads."""
        if callable(getattr(self.transport, "open_async", None)):
            return _EventLoop(self.transport, self.clock, self.stopping)
        return _Threads(self.transport, self.clock, self.stopping, window.ceiling)

    def _attempt(self, prepared: PreparedStep, job: ledger.Claimed,
                 pairing: Pairing | None = None) -> _Steps:
        """One claim's attempts, as steps a runner carries out: each ``_Send`` yielded is
        answered with the provider id (or has the transport's error thrown in), each ``_Wait``
        with whether stopping cut it short; the result is what the steps return."""
        person = from_row(job.stakeholder)
        attempts: list[ledger.Attempt] = []
        throttled: list[float] = []  # each 429/5xx: its Retry-After (0 when none)

        def outcome(status: str, error: str | None = None, *, retryable: bool = False,
                    provider_id: str | None = None, latency: float | None = None) -> _Result:
            return _Result(person.email, job.id, ledger.Outcome(
                send_id=job.id, status=status, attempts=len(attempts), error=error,
                retryable=retryable, provider_id=provider_id), attempts, latency, throttled)

        def attempt(kind: str, exc: TransportError | None = None) -> None:
            attempts.append(ledger.Attempt(send_id=job.id, at=self.clock.now(), outcome=kind,
                                           status_code=exc.status if exc else None,
                                           detail=str(exc) if exc else None))

        if prepared.step.pairs is not None and pairing is None:
            return outcome("failed", f"no pair in round '{prepared.step.pairs}' any more")
        try:
            message = prepared.message(person, job.uid, pairing)
        except TemplateError as exc:
            return outcome("failed", exc.location_message())
        for n in range(1, self.policy.max_attempts + 1):
            started = self.clock.now()
            try:
                provider_id = yield _Send(message)
            except AmbiguousError as exc:
                attempt("uncertain", exc)
                return outcome("uncertain", str(exc))
            except TransientError as exc:
                attempt("transient", exc)
                if exc.status is not None and (exc.status == 429 or exc.status >= 500):
                    throttled.append(min(exc.retry_after or 0.0, MAX_RETRY_AFTER))
                if n == self.policy.max_attempts:
                    return outcome("failed", f"gave up after {n} attempts: {exc}",
                                   retryable=True)
                if (yield _Wait(self._backoff(n, exc.retry_after))):
                    return _Result(person.email, job.id, None, attempts,  # stopping: unsent
                                   throttled=throttled)
            except (PermanentError, CommsError) as exc:
                attempt("permanent", exc if isinstance(exc, TransportError) else None)
                return outcome("failed", str(exc))
            else:
                attempt("sent")
                return outcome("sent", provider_id=provider_id,
                               latency=(self.clock.now() - started).total_seconds())
        return outcome("failed", "no attempt was allowed (COMMS_MAX_ATTEMPTS)")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(MAX_BACKOFF, self.policy.backoff_base * 2 ** (attempt - 1))
        delay *= 1 + random.random() * 0.25
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay


def _all_of(finished: SimpleQueue[Future[_Result]]) -> list[Future[_Result]]:
    """What has finished: waits for one, then takes every other already there (a wait
    that costs the same however many are in flight)."""
    futures = [finished.get()]
    while True:
        try:
            futures.append(finished.get_nowait())
        except Empty:
            return futures


@dataclass(frozen=True, slots=True)
class _Result:
    """What became of one claim: its outcome, or None when it was given back unsent."""

    email: str
    send_id: int
    outcome: ledger.Outcome | None
    attempts: list[ledger.Attempt]
    latency: float | None = None  # seconds the transport took to accept it
    throttled: Sequence[float] = ()  # the provider's 429/5xx on the way: each Retry-After


@dataclass(frozen=True, slots=True)
class _Send:
    message: Message


@dataclass(frozen=True, slots=True)
class _Wait:
    seconds: float


_Steps = Generator[_Send | _Wait, Any, _Result]


def _advance(steps: _Steps, answer: tuple[bool, Any]) -> _Send | _Wait:
    """The next step, given the last one's answer: ``(True, value)`` is sent in, ``(False,
    error)`` thrown in; ``StopIteration`` carries the result."""
    ok, value = answer
    return steps.send(value) if ok else steps.throw(value)


class _Runner(Protocol):
    def submit(self, steps: _Steps) -> Future[_Result]: ...
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None: ...
    def __enter__(self) -> _Runner: ...
    def __exit__(self, *exc: object) -> None: ...


class _Threads:
    """Each attempt on a thread of a pool, blocking on the transport."""

    def __init__(self, transport: Transport, clock: Clock, stopping: threading.Event,
                 workers: int) -> None:
        self._transport, self._clock, self._stopping = transport, clock, stopping
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="comms-send")

    def submit(self, steps: _Steps) -> Future[_Result]:
        return self._pool.submit(self._run, steps)

    def _run(self, steps: _Steps) -> _Result:
        answer: tuple[bool, Any] = (True, None)
        while True:
            try:
                step = _advance(steps, answer)
            except StopIteration as done:
                return done.value
            try:
                answer = (True, self._transport.send(step.message) if isinstance(step, _Send)
                          else self._clock.wait(step.seconds, self._stopping))
            except BaseException as exc:
                answer = (False, exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __enter__(self) -> _Threads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _EventLoop:
    """Each attempt a task on one event loop (its own thread), sending with the transport's
    async sender: as many in flight as the window allows, one thread for all. A future is
    running once its task has begun (from then on it may be sent) and cannot be cancelled,
    as with threads; the clock's waits (backoff) run on the loop's executor."""

    def __init__(self, transport: Transport, clock: Clock, stopping: threading.Event) -> None:
        self._clock, self._stopping = clock, stopping
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unstarted: set[Future[_Result]] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop.run_forever, name="comms-send-loop",
                                        daemon=True)
        self._thread.start()
        self._sender: AsyncSender = self._call(self._open(transport))

    @staticmethod
    async def _open(transport: Transport) -> AsyncSender:
        return transport.open_async()  # type: ignore[attr-defined]

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def submit(self, steps: _Steps) -> Future[_Result]:
        future: Future[_Result] = Future()
        self._unstarted.add(future)
        self._loop.call_soon_threadsafe(self._start, steps, future)
        return future

    def _start(self, steps: _Steps, future: Future[_Result]) -> None:
        self._unstarted.discard(future)
        if not future.set_running_or_notify_cancel():
            steps.close()  # cancelled before it began: never sent
            return
        task = self._loop.create_task(self._run(steps, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, steps: _Steps, future: Future[_Result]) -> None:
        answer: tuple[bool, Any] = (True, None)
        try:
            while True:
                try:
                    step = _advance(steps, answer)
                except StopIteration as done:
                    future.set_result(done.value)
                    return
                try:
                    answer = (True, await self._sender.send(step.message)
                              if isinstance(step, _Send) else await self._loop.run_in_executor(
                                  None, self._clock.wait, step.seconds, self._stopping))
                except Exception as exc:  # the loop's own cancellation ends the task below
                    answer = (False, exc)
        except BaseException as exc:
            future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the loop: at once (``wait=False``: what is in flight is left as it is), or once
        every task has ended and the sender's connections are closed. ``cancel_futures``: what
        has not begun never will."""
        if cancel_futures:
            for future in list(self._unstarted):
                future.cancel()
        if self._stopped:  # stopped at once before: nothing runs on the loop any more
            return
        self._stopped = True
        if wait:
            self._call(self._drain())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if wait:
            self._thread.join()
            self._loop.close()

    async def _drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._sender.close()

    def __enter__(self) -> _EventLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _Buckets:
    """The rate limits a dispatch draws on: kept in the store, shared by every process
    using it (nothing to take, no transaction, when there are none)."""

    def __init__(self, store: Store, limits: list[ratelimit.Limit], clock: Clock,
                 stopping: threading.Event) -> None:
        self.store, self.limits, self.clock, self.stopping = store, limits, clock, stopping
        self.wait = 0.0  # after a take that granted nothing: seconds until one is allowed

    def take(self, wanted: int, now: datetime) -> int:
        if not self.limits:
            return max(0, wanted)
        with self.store.write() as conn:
            grant = ratelimit.take(conn, self.limits, wanted, now)
        self.wait = grant.wait
        return grant.granted

    def give_back(self, conn: Conn, unused: int, now: datetime) -> None:
        if self.limits and unused > 0:
            ratelimit.give_back(conn, self.limits, unused, now)


class _Window:
    """How many sends may be in flight: fixed (``ceiling`` = ``start``), or adapting to the
    provider between 1 and ``ceiling``.

    Judged once per window of ``limit`` results: a 429 or 5xx in it halves the window (each
    message itself waits out the provider's Retry-After or X-RateLimit-Reset before it is tried
    again); a window with none and few ambiguous results, whose median latency is high
    (``SLOW``) and not yet swollen by queueing (within ``QUEUEING`` of the best seen), doubles
    it: with a slow provider more in flight is more sent per second, with a fast one more threads
    would only queue for the CPU."""

    SLOW = 0.02  # seconds: below this, the threads already keep up
    QUEUEING = 2.0  # median latency this many times the best: the extra in flight only waits
    RARE = 0.01  # the share of ambiguous results a growing window may have
    BATCH = 64  # when adapting: claimed at least this many ahead (within ``ceiling``)

    def __init__(self, start: int, ceiling: int, *, paced: bool = False) -> None:
        self.limit, self.ceiling = start, ceiling
        self.adaptive = ceiling > start
        self.paced = paced
        self._latencies: list[float] = []
        self._seen = self._ambiguous = self._throttled = 0
        self._best: float | None = None

    @property
    def claims(self) -> int:
        """How many sends may be claimed and not yet recorded: those in flight and, when
        adapting, a batch queued ahead of the threads, so that claiming and recording take one
        transaction per ``BATCH // 2`` messages however few are in flight (all within
        ``ceiling``, the bound on what a crash can leave uncertain).

        Under a rate limit (``paced``) nothing is queued ahead: what is claimed was granted and
        is handed over at once, so the limit counts sends as they reach the provider (a batch
        granted ahead would go at the pace of the window, which may be faster the next minute
        than the last, and crowd one minute of arrivals)."""
        if self.paced or not self.adaptive:
            return self.limit
        return min(self.ceiling, max(self.limit, self.BATCH))

    @property
    def refill(self) -> int:
        # claim and record in batches, not one at a time, of at most BATCH // 2: a large
        # window stays nearly full rather than draining by half between claims
        return max(1, min(self.claims // 2, self.BATCH // 2))

    def observe(self, result: _Result) -> None:
        if not self.adaptive:
            return
        self._seen += 1
        self._throttled += len(result.throttled)
        if result.latency is not None:
            self._latencies.append(result.latency)
        elif result.outcome is not None and result.outcome.status == "uncertain":
            self._ambiguous += 1
        if self._seen >= self.limit:
            self._judge()

    def _judge(self) -> None:
        latencies = sorted(self._latencies)
        if self._throttled:
            self.limit = max(1, self.limit // 2)
        elif latencies and self._ambiguous <= self.RARE * self._seen:
            median = latencies[len(latencies) // 2]
            self._best = median if self._best is None else min(self._best, median)
            if self.SLOW <= median <= self.QUEUEING * self._best:
                self.limit = min(self.ceiling, self.limit * 2)
        self._latencies = []
        self._seen = self._ambiguous = self._throttled = 0


def pairings_of(conn: Conn, step: Step, mentee_ids: list[int]) -> dict[int, Pairing]:
    """For a pairs step: each mentee's pair, both people (empty for any other step)."""
    if step.pairs is None or not mentee_ids:
        return {}
    found = stored_pairs.members(conn, step.pairs, mentee_ids)
    return {mentee: Pairing(mentor=from_row(pair["mentor"]), mentee=from_row(pair["mentee"]),
                            note=pair["note"]) for mentee, pair in found.items()}


def compose(conn: Conn, composer: Composer, campaign: Campaign, step: Step, now: datetime, *,
            record: bool) -> tuple[PreparedStep, int | None]:
    """The step composed once for all its recipients, with the calendar it carries and that
    calendar's SEQUENCE. For event steps the event state is recorded first (``record``: a real
    run) or only computed (dry runs and ``comms preview``), so all three carry the same calendar.
    A REQUEST for a cancelled event is :class:`EventCancelled`."""
    event = campaign.event(step.event_id) if step.event_id else None
    if event is None:
        return composer.prepare(campaign, step, now=now), None
    cancel = events.cancels_event(step)
    state = (stored_events.sync(conn, campaign, event, timezone=composer.timezone, now=now,
                                cancel=cancel) if record
             else stored_events.current(conn, campaign, event, cancel=cancel))
    spec = events.calendar_spec(state, step)
    seats = rsvps.seats_left(conn, campaign.id, event)
    prepared = composer.prepare(campaign, step, now=now, seats_left=seats, calendar=spec)
    return prepared, spec.sequence if spec else None

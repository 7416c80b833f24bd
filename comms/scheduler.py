"""The only importer of APScheduler: wakes the service at the due times the plan gives.

Every ``comms run`` process dispatches; one of them, elected by a lock in the store, also
schedules. If it dies, another takes the lock at its next poll (``COMMS_SERVICE_POLL_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from .app import App
from .errors import CommsError
from .service import Service
from .stopping import ForcedStop, Stop
from .store import runs
from .store import sends as ledger
from .store.lock import SchedulerLock

log = logging.getLogger(__name__)
logging.getLogger("apscheduler").setLevel(logging.ERROR)  # overlapping wakes are expected
logging.getLogger("alembic").setLevel(logging.WARNING)


class Scheduler:
    def __init__(self, service: Service, lock: SchedulerLock, *, poll_seconds: float) -> None:
        self.service = service
        self.lock = lock
        self.poll_seconds = poll_seconds
        self.leading = False
        self._busy = threading.Lock()
        self._aps = BackgroundScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})

    def start(self, *, paused: bool = False) -> None:
        """Wake now, then every ``poll_seconds`` and at each due time (``paused``: plan the
        wakes but run none, for tests that drive ``wake`` themselves)."""
        self._aps.add_job(self.wake, "interval", seconds=self.poll_seconds, id="poll",
                          next_run_time=self._now())
        self._aps.start(paused=paused)

    def wake_for_due(self) -> datetime | None:
        """When the wake planned for the next due time (sooner than the next poll) will run."""
        job = self._aps.get_job("due")
        return job.next_run_time if job is not None else None

    def wake(self) -> None:
        """One round: tick if this process holds the scheduler, then help send what is pending."""
        with self._busy:
            try:
                if self.lock.try_acquire():
                    if not self.leading:
                        log.info("this process holds the scheduler")
                        self.leading = True
                    self.service.tick()
                    self._wake_at(self.service.next_due())
                self.service.help_dispatch()
            except CommsError as exc:
                log.error("%s", exc)

    def _wake_at(self, due: datetime | None) -> None:
        """Wake at ``due`` when that comes before the next poll."""
        if due is None or self.service.stopping:
            return
        now = self._now()
        if due - now < timedelta(seconds=self.poll_seconds):
            self._aps.add_job(self.wake, "date", run_date=max(due, now), id="due",
                              replace_existing=True)

    def _now(self) -> datetime:
        return self.service.app.clock.now()

    def stop(self, *, wait: bool = True) -> None:
        """Claim nothing more, let the sends under way finish (unless not ``wait``), release
        the lock."""
        self.service.stop()
        self._aps.shutdown(wait=wait)
        if wait:
            with self._busy:
                self.lock.release()
        else:
            self.lock.release()


def run_service(app: App, *, web: bool, host: str, port: int, stop: Stop) -> None:
    """``comms run``: scheduler + dispatch (+ the web app) in one process until ``stop`` is
    requested (SIGTERM or SIGINT): then nothing more is claimed, what is in flight is finished
    and recorded, and the scheduler lock is released. A second signal stops at once; what is
    still in flight is marked uncertain."""
    service = Service(app)
    lock = SchedulerLock(app.store)
    if app.store.dialect == "sqlite" and not lock.try_acquire():
        raise CommsError(f"{lock.holder()} already schedules this SQLite database; a second "
                         "scheduler would send twice. Stop it first, or use PostgreSQL "
                         "(COMMS_DATABASE_URL) to run several processes.")
    scheduler = Scheduler(service, lock, poll_seconds=app.settings.service_poll_seconds)
    stop.on_stop(service.stop)
    scheduler.start()
    try:
        if web:
            from .web import serve

            serve(app, host=host, port=port, stop=stop)
        else:
            stop.requested.wait()
    except ForcedStop:
        log.warning("stopping now: what is still being sent is left uncertain")
        scheduler.stop(wait=False)
        with app.store.write() as conn:
            ledger.mark_uncertain(conn, runs.of_this_process(conn))
        raise
    log.info("stopping: finishing the sends under way")
    scheduler.stop()

"""Liveness that cannot lie: a run's heartbeat comes from a timer of its own, so a sender waiting
out a long Retry-After is never presumed dead; a run whose heartbeat stops is. On an injected
clock: the timers fire as simulated time passes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from comms.app import App
from comms.settings import load_settings
from comms.store import runs
from comms.transports.sendgrid import SendGridTransport
from tests.conftest import FakeClock
from tests.sinks.sendgrid_server import Reply, SendGridSink
from tests.transports.helpers import API_KEY

ELSEWHERE = ("another-host.example", 1)  # a process on another machine checking the runs


def test_a_sender_waiting_out_a_ten_minute_retry_after_is_never_presumed_dead(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    with SendGridSink(api_key=API_KEY) as sink:
        sink.script(Reply(429, headers={"Retry-After": "600"}))
        transport = SendGridTransport(API_KEY, host=sink.url, timeout=5)
        app = App(load_settings(project_dir, database_url=store_url, transport="sendgrid",
                                concurrency=1), clock=clock, transport=transport)
        app.sync_directory()
        seen: list[tuple[bool, timedelta]] = []

        def check() -> None:  # what any other process would conclude, every 7 s
            with app.store.write() as conn:
                live = [r for r in _unfinished(app) if r not in runs.dead_runs(
                    conn, clock.now(), me=ELSEWHERE)]
                seen.append((bool(live), clock.now() - start))

        start = clock.now()
        checker = clock.every(7, check)
        campaign = app.project.campaign("pct-leads-briefing")
        summary = app.dispatcher().send(campaign, campaign.steps[0])
        checker.stop()
    assert (summary.sent, summary.uncertain, summary.failed) == (6, 0, 0)
    assert 600 in [round(s) for s in clock.slept]  # the Retry-After was honoured in full
    waiting = [live for live, at in seen if at < timedelta(seconds=600)]
    assert len(waiting) >= 80 and all(waiting)  # alive at every check through the wait
    app.close()


def test_a_run_whose_heartbeat_stopped_is_dead_to_others_not_to_itself(
        store_url: str, clock: FakeClock) -> None:
    from comms.store import Store

    store = Store(store_url)
    with store.write() as conn:
        run_id = runs.start(conn, "send", clock.now())
    clock.advance(seconds=runs.STALE_AFTER.total_seconds() - 1)
    with store.read() as conn:
        assert run_id not in runs.dead_runs(conn, clock.now(), me=ELSEWHERE)
    clock.advance(seconds=2)
    with store.read() as conn:
        assert run_id in runs.dead_runs(conn, clock.now(), me=ELSEWHERE)
        assert run_id not in runs.dead_runs(conn, clock.now())  # this process: alive
    store.dispose()


def _unfinished(app: App) -> list[str]:
    from sqlalchemy import select

    from comms.store import tables

    with app.store.read() as conn:
        return list(conn.execute(select(tables.runs.c.id).where(
            tables.runs.c.finished_at.is_(None))).scalars())

"""Dispatch: exactly once per key, suppression, per-recipient delays, failures, dead claims."""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, update

from comms.app import App
from comms.settings import load_settings
from comms.store import runs, tables
from comms.store import sends as ledger
from comms.suppression import AddressHasher, suppress

from .conftest import FakeClock


def make_app(project_dir: Path, store_url: str, clock: FakeClock, **flags: object) -> App:
    app = App(load_settings(project_dir, database_url=store_url, **flags), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    return app


def outbox(app: App) -> list[Path]:
    folder = app.settings.resolved_outbox_dir
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_step_sent_once_to_its_audience(project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("nmdi-awareness")
    launch = campaign.steps[0]
    first = app.dispatcher().send(campaign, launch)
    assert (first.sent, first.already_sent, first.failed) == (80, 0, 0)
    files = outbox(app)
    assert len(files) == 80
    recipients = set()
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(str(msg["To"].addresses[0].addr_spec).lower())
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Unsubscribe"].startswith("<http://localhost:8000/u/")
        assert msg["Message-ID"] == f"<{path.stem}@sel-learning.example>"
        assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None
    managers = {p.key for p in app.project.directory.people if p.role == "manager"}
    assert recipients == managers
    second = app.dispatcher().send(campaign, launch)
    assert (second.sent, second.already_sent) == (0, 80)
    assert len(outbox(app)) == 80
    app.close()


def test_suppressed_addresses_are_never_sent(project_dir: Path, store_url: str,
                                             clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("pct-leads-briefing")
    leads = [p.email for p in app.project.directory.people if p.role == "pct_lead"]
    hasher = AddressHasher(app.store)
    with app.store.write() as conn:
        suppress(conn, hasher, leads[:2], reason="unsubscribed", source="test",
                 now=clock.now())
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.suppressed) == (4, 2)
    sent_to = {email.message_from_bytes(p.read_bytes())["To"] for p in outbox(app)}
    assert not any(lead in to for lead in leads[:2] for to in sent_to)
    app.close()


def test_after_step_waits_per_recipient(project_dir: Path, store_url: str,
                                        clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("nmdi-awareness")
    launch, follow_up = campaign.steps
    app.dispatcher().send(campaign, launch)
    clock.advance(days=6, hours=23)
    assert app.dispatcher().send(campaign, follow_up).sent == 0
    clock.advance(hours=1)
    assert app.dispatcher().send(campaign, follow_up).sent == 80
    assert app.dispatcher().send(campaign, follow_up).sent == 0
    app.close()


def test_after_step_goes_only_to_recipients_of_its_parent(project_dir: Path, store_url: str,
                                                          clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("nmdi-awareness")
    summary = app.dispatcher().send(campaign, campaign.steps[1], respect_delay=False)
    assert summary.sent == 0
    app.close()


def test_render_failure_fails_that_send_only(project_dir: Path, store_url: str,
                                             clock: FakeClock) -> None:
    template = project_dir / "templates" / "briefings" / "pct-leads.txt.j2"
    template.write_text("Hello {{ stakeholder.attributes.pager }}\n", encoding="utf-8")
    csv = project_dir / "stakeholders" / "sel-directory.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[0] += ",pager"
    lines[1:] = [line + (",555" if i else ",") for i, line in enumerate(lines[1:])]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("pct-leads-briefing")
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.failed) == (5, 1)
    assert summary.failures[0].startswith("marta.adeyemi@bexley-ct.nhs.example: ")
    assert "templates/briefings/pct-leads.txt.j2:1" in summary.failures[0]
    assert "stakeholder.attributes has no attribute 'pager' (stakeholder.attributes is empty)" \
        in summary.failures[0]
    app.close()


def test_dry_run_writes_and_sends_nothing(project_dir: Path, store_url: str,
                                          clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("mentor-recruitment")
    summary = app.dispatcher().send(campaign, campaign.steps[0], dry_run=True)
    assert (summary.would_send, summary.sent) == (75, 0)
    assert outbox(app) == []
    with app.store.read() as conn:
        assert conn.execute(select(tables.sends.c.id)).first() is None
    app.close()


def test_claims_of_a_dead_process_become_uncertain_not_resent(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("pct-leads-briefing")
    key = ledger.Key(campaign.id, "briefing", "once")
    gone = subprocess.Popen(["true"])
    gone.wait()
    from comms.targeting import for_step

    with app.store.write() as conn:
        ledger.materialise(conn, for_step(campaign, campaign.steps[0]), clock.now())
        run_id = runs.start(conn, "send", clock.now())
        conn.execute(update(tables.runs).values(pid=gone.pid))
        claimed = ledger.claim(conn, key, run_id, 2, clock.now())
    assert len(claimed) == 2
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.uncertain) == (4, 2)
    from comms.status import status

    report = status(app)
    assert {u["uid"] for u in report.uncertain} == {c.uid for c in claimed}
    assert len(outbox(app)) == 4
    again = app.dispatcher().send(campaign, campaign.steps[0])
    assert (again.sent, again.uncertain) == (0, 2)  # never re-sent silently
    asked = app.dispatcher().send(campaign, campaign.steps[0], resend_uncertain=True)
    assert (asked.resent_uncertain, asked.sent, asked.uncertain) == (2, 2, 0)
    assert len(outbox(app)) == 6
    app.close()


def test_rate_limit_spreads_sends_over_minutes(project_dir: Path, clock: FakeClock,
                                               tmp_path: Path) -> None:
    app = make_app(project_dir, f"sqlite:///{tmp_path / 'r.db'}", clock)
    campaign = app.project.campaign("pct-leads-briefing")
    start = clock.now()
    summary = app.dispatcher(max_per_minute=4).send(campaign, campaign.steps[0])
    assert summary.sent == 6
    elapsed = (clock.now() - start).total_seconds()
    # 4 at once, the other 2 once those are a minute old: no 60 s holds more than 4
    assert elapsed == pytest.approx(60, abs=1)
    app.close()


class _Slowing:
    """A provider that takes 10 s (on the test's clock) over its second to ninth sends, and no
    time over the others; what it receives, and when, is kept. Its first reply being instant,
    the window judges the slow ones as queueing and keeps one send in flight: one at a time,
    on one clock."""

    name = "slowing"

    def __init__(self, clock: FakeClock) -> None:
        from comms.transports.base import Limits

        self.limits = Limits(max_in_flight=64)  # the window adapts, claiming ahead
        self.clock, self.arrived = clock, []

    def send(self, message: object) -> str:
        self.arrived.append(self.clock.now())
        if 2 <= len(self.arrived) <= 9:
            self.clock.sleep(10)
        return f"slowing-{len(self.arrived)}"

    def close(self) -> None:
        pass


def test_rate_limit_counts_sends_as_they_reach_the_provider(
        project_dir: Path, clock: FakeClock, tmp_path: Path) -> None:
    """A grant is spent as it is made: sends claimed ahead of a slow provider, and handed over
    once it speeds up, would crowd more than the limit into a minute of arrivals."""
    slowing = _Slowing(clock)
    app = App(load_settings(project_dir, database_url=f"sqlite:///{tmp_path / 'r.db'}"),
              clock=clock, transport=slowing)
    app.sync_directory()
    campaign = app.project.campaign("mentor-recruitment")
    summary = app.dispatcher(max_per_minute=8).send(campaign, campaign.steps[0])
    assert summary.sent == 75 == len(slowing.arrived)
    seconds = [(at - slowing.arrived[0]).total_seconds() for at in slowing.arrived]
    most = max(sum(1 for t in seconds if start <= t < start + 60) for start in seconds)
    assert most <= 8, " ".join(f"{t:g}" for t in seconds)
    app.close()


def test_two_processes_sending_one_step_send_each_message_once(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    """Two dispatchers with their own engines race on the same step (SKIP LOCKED on PostgreSQL)."""
    import threading

    apps = [make_app(project_dir, store_url, clock) for _ in range(2)]
    campaign = apps[0].project.campaign("mentor-recruitment")
    results = []
    barrier = threading.Barrier(2)

    def go(app: App) -> None:
        barrier.wait()
        results.append(app.dispatcher().send(campaign, campaign.steps[0]))

    threads = [threading.Thread(target=go, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.sent for r in results) == 75
    assert sum(r.failed for r in results) == 0
    assert len(outbox(apps[0])) == 75
    for app in apps:
        app.close()


@pytest.fixture
def sendgrid(tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.sinks.sendgrid_server import SendGridSink

    with SendGridSink(api_key="SG.test-key", log=tmp_path / "sg.jsonl") as sink:
        yield sink


def sendgrid_app(project_dir: Path, tmp_path: Path, clock: FakeClock, url: str) -> App:
    return make_app(project_dir, f"sqlite:///{tmp_path / 'sg.db'}", clock, transport="sendgrid",
                    sendgrid_api_key="SG.test-key", sendgrid_host=url, concurrency=2)


def test_rate_limit_reply_is_retried_after_the_reset(project_dir: Path, tmp_path: Path,
                                                     clock: FakeClock, sendgrid) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.sinks.sendgrid_server import Reply

    sendgrid.script(Reply(429, {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": str(int(time.time()) + 30)},
                          {"errors": [{"message": "too many requests", "field": None}]}),
                    Reply(503, {}, b"unavailable"))
    app = sendgrid_app(project_dir, tmp_path, clock, sendgrid.url)
    campaign = app.project.campaign("pct-leads-briefing")
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.failed) == (6, 0)
    assert len(sendgrid.messages) == 6
    assert any(28 <= s <= 31 for s in clock.slept), clock.slept  # waited for the reset
    to = {m["payload"]["personalizations"][0]["to"][0]["email"] for m in sendgrid.messages}
    assert len(to) == 6
    for m in sendgrid.messages:
        assert set(m["payload"]["personalizations"][0]["custom_args"]) == {"send_id"}
    with app.store.read() as conn:
        rows = conn.execute(select(tables.attempts.c.outcome, tables.attempts.c.status_code)
                            .order_by(tables.attempts.c.id)).all()
    assert sorted(r.status_code for r in rows if r.outcome == "transient") == [429, 503]
    app.close()


def test_permanent_error_fails_one_send_and_the_rest_go_on(
        project_dir: Path, tmp_path: Path, clock: FakeClock, sendgrid) -> None:  # type: ignore[no-untyped-def]
    from tests.sinks.sendgrid_server import Reply

    sendgrid.script(Reply(400, {}, {"errors": [{"message": "Does not contain a valid address.",
                                                "field": "personalizations.0.to.0.email"}]}))
    app = sendgrid_app(project_dir, tmp_path, clock, sendgrid.url)
    campaign = app.project.campaign("pct-leads-briefing")
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.failed) == (5, 1)
    assert "Does not contain a valid address." in summary.failures[0]
    again = app.dispatcher().send(campaign, campaign.steps[0])
    assert (again.sent, again.failed) == (0, 0)  # permanent: not retried by the next run
    app.close()


def test_transient_failures_exhausted_are_retried_by_the_next_run(
        project_dir: Path, tmp_path: Path, clock: FakeClock, sendgrid) -> None:  # type: ignore[no-untyped-def]
    from tests.sinks.sendgrid_server import Reply

    sendgrid.script(*[Reply(500, {}, b"boom")] * 3)
    app = make_app(project_dir, f"sqlite:///{tmp_path / 'sg.db'}", clock, transport="sendgrid",
                   sendgrid_api_key="SG.test-key", sendgrid_host=sendgrid.url, concurrency=1,
                   max_attempts=3)
    campaign = app.project.campaign("pct-leads-briefing")
    first = app.dispatcher().send(campaign, campaign.steps[0])
    assert (first.sent, first.failed) == (5, 1)
    assert "gave up after 3 attempts" in first.failures[0]
    assert len(clock.slept) == 2 and clock.slept[1] > clock.slept[0]  # exponential backoff
    second = app.dispatcher().send(campaign, campaign.steps[0])
    assert (second.sent, second.already_sent) == (1, 5)
    assert len({m["payload"]["personalizations"][0]["to"][0]["email"]
                for m in sendgrid.messages}) == 6
    app.close()


def test_one_recipients_failure_of_any_kind_fails_that_send_and_can_be_retried(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    from comms.service import Service
    from comms.status import status

    template = project_dir / "templates" / "briefings" / "pct-leads.txt.j2"
    template.write_text("Seats each: {{ 100 // (stakeholder.attributes.seats | int) }}\n",
                        encoding="utf-8")
    csv = project_dir / "stakeholders" / "sel-directory.csv"
    original = csv.read_text(encoding="utf-8")
    lines = original.splitlines()
    lines[0] += ",seats"
    lines[1:] = [line + (",4" if i else ",0") for i, line in enumerate(lines[1:])]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    app = make_app(project_dir, store_url, clock)
    campaign = app.project.campaign("pct-leads-briefing")
    summary = app.dispatcher().send(campaign, campaign.steps[0])
    assert (summary.sent, summary.failed, summary.uncertain) == (5, 1, 0)
    assert "templates/briefings/pct-leads.txt.j2:1" in summary.failures[0]
    assert "division" in summary.failures[0]
    [failed] = status(app).failed
    assert (failed["step"], failed["email"]) == ("briefing", "marta.adeyemi@bexley-ct.nhs.example")
    again = app.dispatcher().send(campaign, campaign.steps[0])  # a plain rerun leaves it be
    assert (again.sent, again.failed, again.still_failed) == (0, 0, 1)
    assert "1 failed in all: `comms send pct-leads-briefing --retry-failed`" in again.line()
    csv.write_text("\n".join(line + ",4" if i else line + ",seats"
                             for i, line in enumerate(original.splitlines())) + "\n", "utf-8")
    app = make_app(project_dir, store_url, clock)
    retried = Service(app).retry_failed(app.project.campaign("pct-leads-briefing"),
                                        list(campaign.steps))
    assert sum(s.sent for s in retried.summaries) == 1
    assert status(app).failed == [] and len(outbox(app)) == 6
    app.close()

"""Exactly once under real network faults, judged from the servers' own logs.

A fault proxy sits between comms and the SendGrid-contract server (or the SMTP server) and, on a
tenth of the requests, resets or hangs before or after forwarding, drops the reply, or answers
429/5xx itself. For every fault:

- nobody is lost: everyone received the message or is listed as uncertain;
- nothing is sent twice silently (no duplicate at all: what may have arrived is never retried);
- SendGrid: once the event webhook has reported what arrived and the resolution delay has
  passed, the uncertain sends that never arrived go again: everyone exactly once, 0 uncertain;
- SMTP (no webhook): ``--resend-uncertain`` completes the audience; only uncertain people may
  get the message twice.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from comms.app import App
from comms.service import Service
from comms.settings import load_settings
from comms.store import tables
from comms.suppression import AddressHasher
from comms.tracking.ingest import ingest
from comms.tracking.providers.sendgrid import parse_events
from comms.transports.base import Limits
from comms.transports.sendgrid import SendGridTransport
from comms.transports.smtp import SmtpTransport
from tests.conftest import FakeClock, only_new_stakeholders
from tests.faults.proxy import (
    DROP_REPLY,
    HANG_AFTER,
    HANG_BEFORE,
    RESET_AFTER,
    RESET_BEFORE,
    STATUS,
    Fault,
    FaultProxy,
    fraction,
)
from tests.sinks.sendgrid_server import SendGridSink
from tests.sinks.smtp_server import SmtpSink
from tests.transports.helpers import API_KEY

N = 120
FAULTS = {
    "reset-before": RESET_BEFORE, "reset-after": RESET_AFTER, "hang-before": HANG_BEFORE,
    "hang-after": HANG_AFTER, "drop-reply": DROP_REPLY,
    "429": STATUS(429, {"Retry-After": "1"}), "503": STATUS(503),
}
SMTP_FAULTS = {k: v for k, v in FAULTS.items() if k not in ("429", "503")}


def project(project_dir: Path) -> Path:
    """The example project with N managers as its only stakeholders."""
    only_new_stakeholders(project_dir)
    with open(project_dir / "stakeholders" / "managers.csv", "w", newline="",
              encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "first_name", "last_name", "role", "tags"])
        writer.writerows([f"m{i:04d}@practices.nhs.example", f"M{i}", "Okafor", "manager",
                          "primary-care"] for i in range(N))
    return project_dir


def everyone() -> set[str]:
    return {f"m{i:04d}@practices.nhs.example" for i in range(N)}


def make_app(project_dir: Path, store_url: str, clock: FakeClock, through: object,
             **settings: object) -> App:
    app = App(load_settings(project(project_dir), database_url=store_url, concurrency=8,
                            secret_key="a-test-signing-key-of-enough-length-0123456789",
                            **settings), clock=clock, transport=through)  # type: ignore[arg-type]
    app.sync_directory()
    return app


def uncertain(app: App) -> set[str]:
    s, st = tables.sends, tables.stakeholders
    with app.store.read() as conn:
        return set(conn.execute(select(st.c.email).join(s, s.c.stakeholder_id == st.c.id)
                                .where(s.c.status == "uncertain")).scalars())


def attempts_saying_uncertain(app: App) -> int:
    with app.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.attempts).where(
            tables.attempts.c.outcome == "uncertain")).scalar_one())


def launch(app: App) -> None:
    campaign = app.project.campaign("nmdi-awareness")
    app.dispatcher().send(campaign, campaign.steps[0])


@pytest.mark.parametrize("runner", ["threads", "event loop"])
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_sendgrid_faults_lose_nobody_duplicate_nobody_and_resolve_by_webhook(
        fault: str, runner: str, project_dir: Path, store_url: str) -> None:
    """Through a thread per send (the transport's async sender hidden), and (as
    ``make_transport`` configures SendGrid, with a window that adapts) through the
    dispatcher's event loop."""
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    with SendGridSink(api_key=API_KEY) as sink, FaultProxy(
            "127.0.0.1", int(urlsplit(sink.url).port or 0),
            plan=fraction(0.1, FAULTS[fault], seed=fault)) as proxy:
        transport = SendGridTransport(API_KEY, host=proxy.url, timeout=0.5)
        if runner == "event loop":
            transport.limits = Limits(max_in_flight=64)  # type: ignore[attr-defined]
        else:  # no async sender: a blocking send on a thread each
            transport.open_async = None  # type: ignore[assignment,method-assign]
        app = make_app(project_dir, store_url, clock, transport, transport="sendgrid",
                       sendgrid_webhook_public_key="configured", max_attempts=5)
        launch(app)
        received = Counter(_recipients(sink))
        listed = uncertain(app)
        assert max(received.values()) == 1, "a request whose fate was unknown was repeated"
        assert everyone() - set(received) <= listed, "lost, and not listed as uncertain"
        if _ambiguous(FAULTS[fault]):
            assert len(listed) == attempts_saying_uncertain(app) > 0
        else:
            assert listed == set() and set(received) == everyone()  # known unsent: retried
        # The webhook reports what SendGrid took; the rest has no event when the delay is up.
        proxy.plan = None
        batch = [{"event": "processed", "send_id": m["payload"]["personalizations"][0]
                  ["custom_args"]["send_id"], "sg_event_id": uuid.uuid4().hex,
                  "timestamp": int(clock.now().timestamp()), "email": "x@example"}
                 for m in sink.messages]
        ingest(app.store, parse_events(batch), now=clock.now(), hasher=AddressHasher(app.store))
        clock.advance(minutes=16)
        Service(app).help_dispatch()
        final = Counter(_recipients(sink))
        assert set(final) == everyone() and max(final.values()) == 1
        assert uncertain(app) == set()
        app.close()
    assert proxy.errors == []


@pytest.mark.parametrize("fault", list(SMTP_FAULTS), ids=list(SMTP_FAULTS))
def test_smtp_faults_lose_nobody_and_repeat_only_the_uncertain(
        fault: str, project_dir: Path, store_url: str) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    with SmtpSink() as sink, FaultProxy(sink.host, sink.port, "smtp",
                                        plan=fraction(0.1, SMTP_FAULTS[fault], seed=fault)) as proxy:
        transport = SmtpTransport("127.0.0.1", proxy.port, timeout=0.5)
        app = make_app(project_dir, store_url, clock, transport, transport="smtp")
        launch(app)
        received = Counter(r.casefold() for m in sink.messages for r in m.rcpt_tos)
        listed = uncertain(app)
        assert max(received.values()) == 1, "a transaction whose fate was unknown was repeated"
        assert everyone() - set(received) <= listed, "lost, and not listed as uncertain"
        if fault.endswith("-before"):
            assert listed == set() and set(received) == everyone()  # at MAIL FROM: retried
        proxy.plan = None
        campaign = app.project.campaign("nmdi-awareness")
        app.dispatcher().send(campaign, campaign.steps[0], resend_uncertain=True)
        final = Counter(r.casefold() for m in sink.messages for r in m.rcpt_tos)
        twice = {e for e, n in final.items() if n > 1}
        assert set(final) == everyone() and max(final.values()) <= 2
        assert twice <= listed, "sent twice, never listed as uncertain"
        assert uncertain(app) == set()
        app.close()
    assert proxy.errors == []


def test_without_a_webhook_uncertain_sends_stay_listed(project_dir: Path, store_url: str) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    with SendGridSink(api_key=API_KEY) as sink, FaultProxy(
            "127.0.0.1", int(urlsplit(sink.url).port or 0),
            plan=fraction(0.1, RESET_AFTER, seed=3)) as proxy:
        app = make_app(project_dir, store_url, clock,
                       SendGridTransport(API_KEY, host=proxy.url, timeout=0.5),
                       transport="sendgrid")
        launch(app)
        listed = uncertain(app)
        assert listed
        proxy.plan = None
        clock.advance(hours=2)
        Service(app).help_dispatch()
        assert uncertain(app) == listed  # never re-sent without being asked
        app.close()


def _ambiguous(fault: Fault) -> bool:
    """Faults after the request was written: the client cannot know whether it arrived."""
    return fault.kind.name in ("RESET_BEFORE", "RESET_AFTER", "HANG_BEFORE", "HANG_AFTER",
                               "DROP_REPLY")


def _recipients(sink: SendGridSink) -> list[str]:
    return [m["payload"]["personalizations"][0]["to"][0]["email"].casefold()
            for m in sink.messages]

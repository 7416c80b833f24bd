"""What network faults do to one send of N messages, judged from the servers' own logs.

    .venv/bin/python bench/bench_faults.py [--n 5000] [--smtp]

A fault proxy (tests/faults/proxy.py) sits between comms and the SendGrid-contract server (or,
with ``--smtp``, the SMTP server) and faults a share of the requests: resets and hangs before
and after forwarding, dropped replies, 429 and 503. For each fault it prints how many people
received the message, twice, not at all, and how many sends were listed uncertain; then (for
SendGrid) what is left once the event webhook has reported what arrived and the resolution delay
has passed, and (for SMTP) after an explicit ``--resend-uncertain``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from comms.app import App  # noqa: E402
from comms.service import Service  # noqa: E402
from comms.settings import load_settings  # noqa: E402
from comms.store import tables  # noqa: E402
from comms.suppression import AddressHasher  # noqa: E402
from comms.tracking.ingest import ingest  # noqa: E402
from comms.tracking.providers.sendgrid import parse_events  # noqa: E402
from comms.transports.sendgrid import SendGridTransport  # noqa: E402
from comms.transports.smtp import SmtpTransport  # noqa: E402
from tests.faults.proxy import (  # noqa: E402
    DROP_REPLY,
    HANG_AFTER,
    HANG_BEFORE,
    RESET_AFTER,
    RESET_BEFORE,
    STATUS,
    FaultProxy,
    fraction,
)
from tests.sinks.sendgrid_server import SendGridSink  # noqa: E402
from tests.sinks.smtp_server import SmtpSink  # noqa: E402

KEY = "SG.bench-key"
FAULTS = [("reset after forwarding", RESET_AFTER, 0.10), ("hang after forwarding", HANG_AFTER, 0.02),
          ("reset before forwarding", RESET_BEFORE, 0.10),
          ("hang before forwarding", HANG_BEFORE, 0.02), ("reply dropped", DROP_REPLY, 0.10),
          ("429 Retry-After 1", STATUS(429, {"Retry-After": "1"}), 0.10),
          ("503", STATUS(503), 0.10)]


class Clock:
    """The system clock, with an offset to step over the resolution delay."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, 0.05))  # backoff and Retry-After, shortened for the bench

    def wait(self, seconds: float, event: object) -> bool:
        self.sleep(seconds)
        return False

    def every(self, seconds: float, call: object) -> object:
        from comms.clock import SystemClock

        return SystemClock().every(seconds, call)  # type: ignore[arg-type]


def project(work: Path, n: int) -> Path:
    root = work / "project"
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(ROOT / part, root / part)
    (root / "stakeholders").mkdir()
    with open(root / "stakeholders" / "managers.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "first_name", "last_name", "role", "tags"])
        writer.writerows([f"m{i:05d}@practices.nhs.example", f"M{i}", "Okafor", "manager",
                          "primary-care"] for i in range(n))
    return root


def run(name: str, fault: object, share: float, n: int, smtp: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="comms-bench-faults-"))
    clock = Clock()
    try:
        sink = SmtpSink() if smtp else SendGridSink(api_key=KEY)
        with sink:
            port = sink.port if isinstance(sink, SmtpSink) else int(urlsplit(sink.url).port or 0)
            with FaultProxy("127.0.0.1", port, "smtp" if smtp else "http",
                            plan=fraction(share, fault, seed=name)) as proxy:  # type: ignore[arg-type]
                transport = (SmtpTransport("127.0.0.1", proxy.port, timeout=1) if smtp else
                             SendGridTransport(KEY, host=proxy.url, timeout=1))
                settings = load_settings(project(work, n), database_url=f"sqlite:///{work}/c.db",
                                         transport="smtp" if smtp else "sendgrid",
                                         sendgrid_webhook_public_key="bench",
                                         secret_key="bench-signing-key-of-enough-length-0123456789")
                app = App(settings, clock=clock, transport=transport)  # type: ignore[arg-type]
                app.sync_directory()
                campaign = app.project.campaign("nmdi-awareness")
                started = time.monotonic()
                app.dispatcher().send(campaign, campaign.steps[0])
                took = time.monotonic() - started
                first = _received(sink)
                listed = _uncertain(app)
                proxy.plan = None
                if smtp:
                    app.dispatcher().send(campaign, campaign.steps[0], resend_uncertain=True)
                else:
                    batch = [{"event": "processed", "sg_event_id": uuid.uuid4().hex,
                              "send_id": m["payload"]["personalizations"][0]["custom_args"]
                              ["send_id"], "timestamp": int(clock.now().timestamp())}
                             for m in sink.messages]  # type: ignore[union-attr]
                    ingest(app.store, parse_events(batch), now=clock.now(),
                           hasher=AddressHasher(app.store))
                    clock.offset += timedelta(minutes=16)
                    Service(app).help_dispatch()
                final = _received(sink)
                left = _uncertain(app)
                app.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"fault": f"{name} ({share:.0%})", "faulted": len(proxy.faulted),
            "received": len(first), "twice": sum(1 for v in first.values() if v > 1),
            "missing": n - len(first), "uncertain": len(listed), "seconds": round(took, 1),
            "after": f"{len(final)} received, {sum(1 for v in final.values() if v > 1)} twice, "
                     f"{len(left)} uncertain"}


def _received(sink: object) -> Counter[str]:
    if isinstance(sink, SmtpSink):
        return Counter(r.casefold() for m in sink.messages for r in m.rcpt_tos)
    return Counter(m["payload"]["personalizations"][0]["to"][0]["email"].casefold()
                   for m in sink.messages)  # type: ignore[attr-defined]


def _uncertain(app: App) -> set[int]:
    with app.store.read() as conn:
        return set(conn.execute(select(tables.sends.c.id).where(
            tables.sends.c.status == "uncertain")).scalars())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--smtp", action="store_true")
    args = parser.parse_args()
    rows = [run(name, fault, share, args.n, args.smtp) for name, fault, share in FAULTS
            if not (args.smtp and name[0].isdigit())]
    after = "after --resend-uncertain" if args.smtp else "after the webhook and resolution"
    print(f"N = {args.n}, {'SMTP' if args.smtp else 'SendGrid contract'}, concurrency 8")  # noqa: T201
    print(f"| fault | faulted | received | twice | missing | uncertain | s | {after} |")  # noqa: T201
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    for r in rows:
        print(f"| {r['fault']} | {r['faulted']} | {r['received']} | {r['twice']} | "  # noqa: T201
              f"{r['missing']} | {r['uncertain']} | {r['seconds']} | {r['after']} |")


if __name__ == "__main__":
    main()

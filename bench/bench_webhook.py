"""How fast `comms serve` takes SendGrid Event Webhook batches, next to two baselines.

100,000 signed events (10 per send over 10,000 sends: processed, deferred, delivered, opens with
machine opens among them, clicks, and some bounces, unsubscribes and spam reports) go in
1,000-event batches to ``POST /webhooks/sendgrid`` of ``comms serve`` on 127.0.0.1, itself a
process over a fresh SQLite store, from keep-alive HTTP clients in this process: once over one
connection, once over four (SendGrid posts concurrently). Then, in the same run, two baselines
served by this same file in their own process:

- ``naive``: verify with sendgrid's helper, parse, then per event look the send up, insert the
  response and update the send, committing each event (the first handler one would write);
- ``floor``: verify and parse only, no store (what HTTP, the signature and ``json`` cost).

    .venv/bin/python bench/bench_webhook.py [--events 100000] [--batch 1000] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMS = Path(sys.executable).parent / "comms"
EVENTS_PER_SEND = 10
TARGET = 20_000  # events/s
NAIVE_EVENTS = 10_000  # the naive baseline takes a slice: at its pace the whole run takes minutes


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


# -- inputs -------------------------------------------------------------------------------------

def make_store(path: Path, sends: int) -> list[str]:
    """A migrated SQLite store with ``sends`` sent messages to generated people; their uids."""
    from sqlalchemy import insert

    from comms.store import Store, tables

    store = Store(f"sqlite:///{path}")
    now = datetime.now(UTC)
    uids = [f"{i:08d}{'b3c9e1f2' * 3}" for i in range(sends)]
    with store.write() as conn:
        conn.execute(insert(tables.stakeholders), [
            {"id": i + 1, "email": f"person{i:05d}@practices.nhs.example",
             "display_email": f"person{i:05d}@practices.nhs.example", "updated_at": now}
            for i in range(sends)])
        conn.execute(insert(tables.sends), [
            {"uid": uid, "campaign": "nmdi-awareness", "step": "launch", "occurrence": "once",
             "stakeholder_id": i + 1, "status": "sent", "created_at": now, "sent_at": now}
            for i, uid in enumerate(uids)])
    store.dispose()
    return uids


def make_events(uids: Sequence[str]) -> list[dict[str, Any]]:
    """Ten events per send, in the order SendGrid would report them (so a batch spans ~1,000 sends)."""
    start = int(time.time()) - 3600
    waves: list[tuple[str, dict[str, Any]]] = [
        ("processed", {}), ("deferred", {"attempt": "1"}), ("delivered", {}),
        ("open", {"sg_machine_open": True}), ("open", {"sg_machine_open": False}),
        ("open", {"sg_machine_open": False}), ("click", {"url": "https://nmdi.example/register"}),
        ("click", {"url": "https://nmdi.example/faq"}), ("open", {"sg_machine_open": False}),
        ("click", {"url": "https://nmdi.example/register"})]
    events = []
    for w, (word, extra) in enumerate(waves):
        for i, uid in enumerate(uids):
            if w == 9 and i % 50 == 0:
                word, extra = "bounce", {"type": "bounce", "status": "5.1.1", "reason": "no user"}
            elif w == 9 and i % 50 == 1:
                word, extra = "unsubscribe", {}
            elif w == 9 and i % 50 == 2:
                word, extra = "spamreport", {}
            elif w == 9:
                word, extra = waves[9]
            events.append({
                "email": f"person{i:05d}@practices.nhs.example", "timestamp": start + 60 * w + i % 60,
                "event": word, "sg_event_id": f"{uid}-{w}", "sg_message_id": f"m{uid}.filter.1",
                "category": ["nmdi-awareness"], "send_id": uid, **extra})
    return events


class Signer:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())
        self._algorithm = ec.ECDSA(hashes.SHA256())
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        sig = base64.b64encode(self._key.sign(ts.encode() + body, self._algorithm)).decode()
        return {"X-Twilio-Email-Event-Webhook-Signature": sig,
                "X-Twilio-Email-Event-Webhook-Timestamp": ts, "Content-Type": "application/json"}


# -- servers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(cmd: Sequence[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    import httpx

    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the server did not start; see {log}")
            time.sleep(0.1)
    try:
        yield url + "/webhooks/sendgrid"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def comms_server(project: Path, database: Path, public_key: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    env.update(COMMS_DATABASE_URL=f"sqlite:///{database}", COMMS_SENDGRID_WEBHOOK_PUBLIC_KEY=public_key,
               COMMS_TRANSPORT="outbox", COMMS_OUTBOX_DIR=str(project / "outbox"))
    cmd = [str(COMMS), "serve", "--host", "127.0.0.1", "--port", str(port), "--project", str(project)]
    with server(cmd, env, port, log) as url:
        yield url


@contextmanager
def baseline_server(kind: str, database: Path, public_key: str, log: Path) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve-baseline", kind, "--port", str(port),
           "--database", str(database), "--public-key", public_key]
    with server(cmd, dict(os.environ), port, log) as url:
        yield url


def serve_baseline(kind: str, port: int, database: Path, public_key: str) -> None:
    """A baseline handler under uvicorn (run in its own process by the bench)."""
    import uvicorn
    from sendgrid.helpers.eventwebhook import EventWebhook
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from comms.responses import later
    from comms.tracking.providers.sendgrid import WORDS as SENDGRID

    verifier = EventWebhook(public_key)
    db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    lock = threading.Lock()

    def store(events: list[dict[str, Any]]) -> None:
        with lock:
            for e in events:
                found = db.execute("SELECT id, stakeholder_id, campaign, step, delivery FROM sends "
                                   "WHERE uid = ?", (e.get("send_id"),)).fetchone()
                if found is None:
                    continue
                kind = SENDGRID[e["event"]]
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT OR IGNORE INTO responses (send_id, stakeholder_id, campaign, step, "
                           "kind, machine, provider_event_id, occurred_at, received_at, raw) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (*found[:4], kind.value, bool(e.get("sg_machine_open")), e["sg_event_id"],
                            datetime.fromtimestamp(e["timestamp"], UTC).isoformat(),
                            datetime.now(UTC).isoformat(), json.dumps(e)))
                state = later(found[4], kind)
                if state != found[4]:
                    db.execute("UPDATE sends SET delivery = ? WHERE id = ?", (state, found[0]))
                db.execute("COMMIT")

    async def hook(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await request.body()
        if not verifier.verify_signature(
                body.decode(), request.headers["X-Twilio-Email-Event-Webhook-Signature"],
                request.headers["X-Twilio-Email-Event-Webhook-Timestamp"]):
            return JSONResponse({"error": "bad signature"}, 403)
        events = json.loads(body)
        if kind == "naive":
            await run_in_threadpool(store, events)
        return JSONResponse({"received": len(events)})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/webhooks/sendgrid", hook, methods=["POST"]),
                            Route("/healthz", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


# -- the client ---------------------------------------------------------------------------------

@dataclass
class Result:
    label: str
    events: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def line(self) -> str:
        return (f"{self.label:<34} {self.events:>8,} {self.seconds:>8.2f} {self.rate:>10,.0f} "
                f"{self.quantile(0.5):>8.1f} {self.quantile(0.99):>8.1f}")


def post_all(label: str, url: str, bodies: list[bytes], signer: Signer, connections: int,
             per_batch: int) -> Result:
    """POST the bodies over ``connections`` keep-alive connections; every answer must be 200."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    next_body = iter(range(len(bodies)))
    guard = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                with guard:
                    i = next(next_body, None)
                if i is None:
                    return
                headers = signer.headers(bodies[i])
                started = time.perf_counter()
                answer = client.post(url, content=bodies[i], headers=headers)
                took = time.perf_counter() - started
                with guard:
                    latencies.append(took)
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if failures:
        sys.exit(f"{label}: {len(failures)} batches failed, first: {failures[0]}")
    return Result(label, len(bodies) * per_batch, seconds, latencies)


def check(database: Path, expected: int) -> str:
    db = sqlite3.connect(database)
    stored = db.execute("SELECT count(*) FROM responses").fetchone()[0]
    states = dict(db.execute("SELECT delivery, count(*) FROM sends GROUP BY delivery").fetchall())
    suppressed = db.execute("SELECT count(*) FROM suppressions").fetchone()[0]
    db.close()
    note = f"{stored:,} responses, deliveries {states}, {suppressed} suppressed"
    if stored != expected:
        note += f"  <-- expected {expected:,} responses"
    return note


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--serve-baseline", choices=["naive", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--public-key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.port, args.database, args.public_key)
        return

    work = Path(tempfile.mkdtemp(prefix="comms-bench-webhook-"))
    try:
        project = work / "project"
        for part in ("campaigns", "templates", "schedules", "stakeholders"):
            shutil.copytree(ROOT / part, project / part)
        template = work / "template.db"
        uids = make_store(template, args.events // EVENTS_PER_SEND)
        events = make_events(uids)
        bodies = [json.dumps(events[i:i + args.batch]).encode()
                  for i in range(0, len(events), args.batch)]
        signer = Signer()
        say(f"{len(events):,} events in {len(bodies)} batches of {args.batch:,} "
            f"(~{len(bodies[0]) // 1024} KB each), {len(uids):,} sends; {os.cpu_count()} CPUs")
        say()
        say(f"{'run':<34} {'events':>8} {'seconds':>8} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        results: dict[str, Result] = {}
        notes = []
        for connections in (1, 4):
            database = work / f"comms-{connections}.db"
            shutil.copyfile(template, database)
            with comms_server(project, database, signer.public, work / f"serve-{connections}.log") as url:
                label = f"comms serve, {connections} connection{'s' if connections > 1 else ''}"
                results[label] = post_all(label, url, bodies, signer, connections, args.batch)
                say(results[label].line())
                retry = "comms serve, all again (duplicates)" if connections == 1 else None
                if retry:
                    results[retry] = post_all(retry, url, bodies, signer, 1, args.batch)
                    say(results[retry].line())
            notes.append(f"{connections} connection(s): {check(database, len(events))}")
        stride = max(1, len(bodies) * args.batch // NAIVE_EVENTS)
        naive_bodies = bodies[::stride]  # every wave of the stream, as in the full run
        database = work / "naive.db"
        shutil.copyfile(template, database)
        with baseline_server("naive", database, signer.public, work / "naive.log") as url:
            label = "naive: per-event queries + commits"
            results["naive"] = post_all(label, url, naive_bodies, signer, 1, args.batch)
            say(results["naive"].line())
        with baseline_server("floor", template, signer.public, work / "floor.log") as url:
            label = "floor: verify + parse, no store"
            results["floor"] = post_all(label, url, bodies, signer, 1, args.batch)
            say(results["floor"].line())
        say()
        for note in notes:
            say(f"  {note}")
        comms = results["comms serve, 1 connection"]
        best = max(r.rate for k, r in results.items() if k.startswith("comms serve,") and "again" not in k)
        say()
        say(f"comms / naive: {comms.rate / results['naive'].rate:.1f}x events/s "
            f"(one connection); comms / floor: {comms.rate / results['floor'].rate:.0%} of the "
            "verify-and-parse ceiling")
        verdict = "PASS" if best >= TARGET else "FAIL"
        say(f"target >= {TARGET:,} events/s through the web app: {best:,.0f} events/s  {verdict}")
        say(f"p99 batch latency (one connection): {comms.quantile(0.99):.1f} ms")
    finally:
        if args.keep:
            say(f"\nwork folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Several `comms send` workers on one PostgreSQL store, against a SendGrid contract far away.

    .venv/bin/python bench/bench_workers.py --postgres postgresql://127.0.0.1/test \\
        [--latency 0.15] [-n 6000] [--limit-n 1300]

Two parts, each worker its own process, all started together on a fresh schema (the directory is
imported first, by `comms plan`), the SendGrid-contract server of `tests/sinks/` holding each
reply for ``--latency`` seconds:

1. **Scale-out:** N managers, no per-minute limit, one worker and then two: msgs/s at the server
   (first to last arrival) and how many recipients got the message twice. Target: two workers
   >= 1.8 x one, and none twice.
2. **One limit for all:** the schedule's ``max_per_minute: 600`` kept, three workers, ``--limit-n``
   managers (about two minutes' worth): the most arrivals in any 60 s, and the arrivals of the
   first full minute. Targets: at most 600, and within 2% of 600.

Arrivals are timed by watching the server's log every 5 ms. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_send as b


@dataclass
class Result:
    workers: int
    n: int
    arrivals: list[float]  # seconds from the first arrival, one per message
    per_recipient: Counter[str]
    exits: list[int]

    @property
    def rate(self) -> float:
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0.0
        return (len(self.arrivals) - 1) / span if span else 0.0

    @property
    def twice(self) -> int:
        return sum(1 for count in self.per_recipient.values() if count > 1)

    def most_in(self, seconds: float) -> int:
        """The most arrivals in any window of ``seconds``."""
        most, start = 0, 0
        for end, at in enumerate(self.arrivals):
            while at - self.arrivals[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def between(self, start: float, end: float) -> int:
        return sum(1 for at in self.arrivals if start <= at < end)


@contextmanager
def schema(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards: the store's URL."""
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


def run(workers: int, n: int, base: str, work: Path, *, keep_limit: bool) -> Result:
    folder = work / f"w{workers}-n{n}"
    folder.mkdir()
    project = b.make_project(folder / "project", n, keep_limit=keep_limit)
    log = folder / "sendgrid.jsonl"
    with schema(base) as url, b.sink("sendgrid", log) as server:
        env = b.comms_env(folder / "unused.db", COMMS_TRANSPORT="sendgrid",
                          COMMS_SENDGRID_API_KEY=b.API_KEY, COMMS_SENDGRID_HOST=server.address)
        env["COMMS_DATABASE_URL"] = url
        subprocess.run([str(b.COMMS), "plan", "nmdi-awareness", "--project", str(project)],
                       env=env, check=True, capture_output=True)
        processes = []
        for i in range(workers):
            with open(folder / f"worker-{i}.stderr", "w", encoding="utf-8") as err:
                processes.append(subprocess.Popen(
                    [str(b.COMMS), "send", "nmdi-awareness", "--step", "launch", "--project",
                     str(project)], env=env, stdout=subprocess.DEVNULL, stderr=err))
        times: list[float] = []
        with open(log, "rb") as grown:  # only what was appended since the last look
            while True:
                running = [p for p in processes if p.poll() is None]
                arrived = grown.read().count(b"\n")
                if arrived:
                    times += [time.perf_counter()] * arrived
                if not running:
                    break
                time.sleep(0.005)
    recipients: Counter[str] = Counter()
    for line in log.read_text(encoding="utf-8").splitlines():
        for to in json.loads(line)["payload"]["personalizations"][0]["to"]:
            recipients[to["email"]] += 1
    first = times[0] if times else 0.0
    return Result(workers, n, [t - first for t in times], recipients,
                  [p.returncode for p in processes])


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", required=True, help="a PostgreSQL URL (schemas are made "
                        "and dropped in it)")
    parser.add_argument("--latency", type=float, default=0.15)
    parser.add_argument("-n", type=int, default=6000, help="managers for the scale-out part")
    parser.add_argument("--limit-n", type=int, default=1300, help="managers for the limit part")
    args = parser.parse_args(argv)
    b.LATENCY = args.latency
    b.compile_comms()
    work = Path(tempfile.mkdtemp(prefix="comms-bench-workers-"))
    b.say(f"PostgreSQL, SendGrid contract at {args.latency * 1000:g} ms; work folder {work}")
    one = run(1, args.n, args.postgres, work, keep_limit=False)
    two = run(2, args.n, args.postgres, work, keep_limit=False)
    limited = run(3, args.limit_n, args.postgres, work, keep_limit=True)
    b.say("")
    b.say("| workers | N | received | recipients twice | msgs/s | exit codes |")
    b.say("|---|---|---|---|---|---|")
    for r in (one, two, limited):
        b.say(f"| {r.workers} | {r.n:,} | {len(r.arrivals):,} | {r.twice} | {r.rate:,.0f} | "
              f"{' '.join(map(str, r.exits))} |")
    b.say("")
    ratio = two.rate / one.rate if one.rate else 0.0
    b.say(f"{mark(ratio >= 1.8 and two.twice == 0)}: two workers >= 1.8 x one, none twice "
          f"({ratio:.2f} x, {two.twice} twice)")
    most = limited.most_in(60.0)
    full = limited.between(0.0, 60.0)
    b.say(f"{mark(most <= 600)}: three workers under max_per_minute 600: at most 600 in any "
          f"60 s ({most})")
    b.say(f"{mark(abs(full - 600) <= 12)}: ... and within 2% of 600 in a full minute ({full}, "
          f"the first 60 s)")
    b.say(f"{mark(limited.twice == 0 and len(limited.per_recipient) == limited.n)}: every one "
          f"of {limited.n:,} once ({len(limited.per_recipient):,} reached, {limited.twice} twice)")


if __name__ == "__main__":
    main()

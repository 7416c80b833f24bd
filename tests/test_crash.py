"""A sender killed mid-run, against a real SMTP server: nothing lost, duplicates only on request.

``comms send`` runs as its own process, is SIGKILLed once the SMTP sink has logged a few hundred
messages, and is started again. Judged from the sink's own log: whoever did not arrive is listed
as uncertain (at most ``concurrency`` of them); ``--resend-uncertain`` then completes the
audience, and only uncertain recipients may get the message twice.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

pytestmark = pytest.mark.slow

COMMS = Path(sys.executable).parent / "comms"
CONCURRENCY = 8
MANAGERS = 1200
KILL_AFTER = 300
DEADLINE = 40.0  # seconds for any one wait; the whole test takes a few
COLUMNS = ["email", "first_name", "last_name", "role", "organisation", "borough", "job_title",
           "tags"]
BOROUGHS = ["Bexley", "Bromley", "Greenwich", "Lambeth", "Lewisham", "Southwark"]


@dataclass(frozen=True)
class Sink:
    port: int
    log: Path

    def recipients(self) -> Counter[str]:
        """How many messages each address received, from the sink's log."""
        if not self.log.exists():
            return Counter()
        counts: Counter[str] = Counter()
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.endswith("}"):  # a line being written is not counted yet
                for address in json.loads(line)["rcpt_tos"]:
                    counts[address.casefold()] += 1
        return counts


def managers(n: int) -> list[dict[str, str]]:
    """``n`` primary-care managers on the example's columns, under a ``.example`` domain."""
    return [{
        "email": f"manager{i:05d}@practices.nhs.example",
        "first_name": f"Sam{i}", "last_name": f"Okafor{i}", "role": "manager",
        "organisation": f"{BOROUGHS[i % 6]} PCT", "borough": BOROUGHS[i % 6],
        "job_title": "Practice Manager", "tags": "primary-care;nmdi-cohort-1",
    } for i in range(n)]


@pytest.fixture
def big_project(project_dir: Path) -> Path:
    """The example project with 1,200 managers as its only stakeholders and no rate limit."""
    for old in (project_dir / "stakeholders").iterdir():
        old.unlink()
    with open(project_dir / "stakeholders" / "managers.csv", "w", newline="",
              encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(managers(MANAGERS))
    schedule = project_dir / "schedules" / "uk-working-hours.yaml"
    lines = schedule.read_text(encoding="utf-8").splitlines(keepends=True)
    schedule.write_text("".join(x for x in lines if not x.startswith("max_per_minute:")),
                        encoding="utf-8")
    return project_dir


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[Sink]:
    """The aiosmtpd sink as its own process, logging one JSON line per accepted message."""
    need(COMMS.exists(), f"no comms console script at {COMMS} (pip install -e .)")
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        need(False, "aiosmtpd is not installed (pip install -e '.[test]')")
    log = tmp_path / "smtp.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.sinks.smtp_server", "--port", "0", "--log", str(log)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        if not port.isdigit():
            server.kill()
            pytest.fail(f"the SMTP sink did not start: {server.communicate()[1]}")
        yield Sink(int(port), log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def sender_env(sink: Sink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    env.update(COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST="127.0.0.1",
               COMMS_SMTP_PORT=str(sink.port), COMMS_CONCURRENCY=str(CONCURRENCY))
    return env


def comms(project: Path, sink: Sink, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMS), *args, "--project", str(project)], env=sender_env(sink),
                          capture_output=True, text=True, timeout=DEADLINE)


def send_launch(project: Path, sink: Sink, *flags: str) -> None:
    done = comms(project, sink, "send", "nmdi-awareness", "--step", "launch", *flags)
    assert done.returncode == 0, done.stderr


def uncertain(project: Path, sink: Sink) -> list[dict[str, str]]:
    done = comms(project, sink, "status", "nmdi-awareness", "--format", "json")
    assert done.returncode == 0, done.stderr
    return [u for u in json.loads(done.stdout)["uncertain"] if u["step"] == "launch"]


def kill_midway(project: Path, sink: Sink) -> int:
    """Start a send, SIGKILL it once ``KILL_AFTER`` messages arrived; how many had then."""
    sender = subprocess.Popen(
        [str(COMMS), "send", "nmdi-awareness", "--step", "launch", "--project", str(project)],
        env=sender_env(sink), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + DEADLINE
    try:
        while (arrived := sum(sink.recipients().values())) < KILL_AFTER:
            if sender.poll() is not None:
                pytest.fail(f"the sender ended (exit {sender.returncode}) after {arrived} "
                            f"messages, before it could be killed: {sender.communicate()[1]}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {arrived} messages arrived in {DEADLINE:g} s")
            time.sleep(0.005)
        sender.send_signal(signal.SIGKILL)
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.wait(timeout=DEADLINE)
    assert sender.returncode == -signal.SIGKILL, "the sender finished before the kill"
    return arrived


def test_killed_sender_loses_nobody_and_repeats_only_the_uncertain(
        big_project: Path, smtp_sink: Sink, request: pytest.FixtureRequest) -> None:
    everyone = {m["email"] for m in managers(MANAGERS)}

    at_kill = kill_midway(big_project, smtp_sink)
    assert at_kill < MANAGERS, "the whole audience arrived before the kill: nothing was tested"

    send_launch(big_project, smtp_sink)  # the restart: sends what was never claimed
    received = smtp_sink.recipients()
    listed = uncertain(big_project, smtp_sink)
    listed_emails = {u["email"].casefold() for u in listed}
    missing = everyone - set(received)
    assert set(received) <= everyone
    assert missing <= listed_emails, f"lost, and not reported: {sorted(missing - listed_emails)}"
    assert len(listed) <= CONCURRENCY, f"{len(listed)} uncertain, more than the concurrency"
    assert max(received.values()) == 1, "a restart without --resend-uncertain sent twice"
    assert all(u["campaign"] == "nmdi-awareness" and u["occurrence"] and u["uid"]
               and u["claimed_at"] for u in listed)

    send_launch(big_project, smtp_sink, "--resend-uncertain")
    received = smtp_sink.recipients()
    twice = {email for email, n in received.items() if n > 1}
    assert set(received) == everyone, f"lost: {sorted(everyone - set(received))}"
    assert max(received.values()) <= 2
    assert len(twice) <= CONCURRENCY
    assert twice <= listed_emails, f"sent twice, never uncertain: {sorted(twice - listed_emails)}"
    assert uncertain(big_project, smtp_sink) == []

    request.node.user_properties += [  # shown in a --junitxml report
        ("arrived_at_kill", at_kill), ("missing_after_restart", len(missing)),
        ("uncertain", len(listed)), ("received_twice", len(twice))]

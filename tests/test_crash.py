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

from tests.conftest import ROOT, need, only_new_stakeholders

pytestmark = pytest.mark.slow

COMMS = Path(sys.executable).parent / "comms"
#: A local test rig: links to this machine are fine, and the key is a test key.
TEST_RIG = {"COMMS_ALLOW_INSECURE_LINKS": "true",
            "COMMS_SECRET_KEY": "a-test-signing-key-of-enough-length-0123456789"}
CONCURRENCY = 8
MAX_IN_FLIGHT = 128  # over SendGrid: where the adaptive window may grow to, and the bound
SENDGRID_KEY = "SG.crash-test-key"
MANAGERS = 1200
KILL_AFTER = 300
DEADLINE = 40.0  # seconds for any one wait; the whole test takes a few
COLUMNS = ["email", "first_name", "last_name", "role", "organisation", "borough", "job_title",
           "tags"]
BOROUGHS = ["Bexley", "Bromley", "Greenwich", "Lambeth", "Lewisham", "Southwark"]


@dataclass(frozen=True)
class Sink:
    port: int | str  # the SMTP sink's port, or the SendGrid sink's URL
    log: Path
    kind: str = "smtp"

    def recipients(self) -> Counter[str]:
        """How many messages each address received, from the sink's log."""
        if not self.log.exists():
            return Counter()
        counts: Counter[str] = Counter()
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.endswith("}"):  # a line being written is not counted yet
                record = json.loads(line)
                addresses = (record["rcpt_tos"] if self.kind == "smtp" else
                             [to["email"] for p in record["payload"]["personalizations"]
                              for to in p["to"]])
                for address in addresses:
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
    only_new_stakeholders(project_dir)
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
    yield from _sink_process("smtp", tmp_path / "smtp.jsonl")


@pytest.fixture
def sendgrid_sink(tmp_path: Path) -> Iterator[Sink]:
    """The SendGrid-contract sink as its own process, 50 ms away: the sender's window grows."""
    need(COMMS.exists(), f"no comms console script at {COMMS} (pip install -e .)")
    yield from _sink_process("sendgrid", tmp_path / "sendgrid.jsonl", "--latency", "0.05",
                             "--api-key", SENDGRID_KEY)


def _sink_process(kind: str, log: Path, *options: str) -> Iterator[Sink]:
    server = subprocess.Popen(
        [sys.executable, "-m", f"tests.sinks.{kind}_server", "--port", "0", "--log", str(log),
         *options], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        if not address:
            server.kill()
            pytest.fail(f"the {kind} sink did not start: {server.communicate()[1]}")
        yield Sink(int(address) if kind == "smtp" else address, log, kind)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def sender_env(sink: Sink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    if sink.kind == "smtp":
        env.update(COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST="127.0.0.1",
                   COMMS_SMTP_PORT=str(sink.port))
    else:
        env.update(COMMS_TRANSPORT="sendgrid", COMMS_SENDGRID_API_KEY=SENDGRID_KEY,
                   COMMS_SENDGRID_HOST=str(sink.port), COMMS_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT))
    env.update(COMMS_CONCURRENCY=str(CONCURRENCY), **TEST_RIG)
    return env


def comms(project: Path, sink: Sink, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMS), *args, "--project", str(project)], env=sender_env(sink),
                          capture_output=True, text=True, timeout=DEADLINE)


LAUNCH = ("nmdi-awareness", "launch")
INTRO = ("mentoring", "intro")


def send_launch(project: Path, sink: Sink, *flags: str, step: tuple[str, str] = LAUNCH) -> None:
    done = comms(project, sink, "send", step[0], "--step", step[1], *flags)
    assert done.returncode == 0, done.stderr


def uncertain(project: Path, sink: Sink, step: tuple[str, str] = LAUNCH) -> list[dict[str, str]]:
    done = comms(project, sink, "status", step[0], "--format", "json")
    assert done.returncode == 0, done.stderr
    return [u for u in json.loads(done.stdout)["uncertain"] if u["step"] == step[1]]


def kill_midway(project: Path, sink: Sink, step: tuple[str, str] = LAUNCH) -> int:
    """Start a send, SIGKILL it once ``KILL_AFTER`` messages arrived; how many had then."""
    sender = subprocess.Popen(
        [str(COMMS), "send", step[0], "--step", step[1], "--project", str(project)],
        env=sender_env(sink), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + DEADLINE
    try:
        while (arrived := sum(sink.recipients().values())) < KILL_AFTER * (1 + (step == INTRO)):
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


@pytest.mark.parametrize(("sink_fixture", "bound"), [("smtp_sink", CONCURRENCY),
                                                      ("sendgrid_sink", MAX_IN_FLIGHT)])
def test_killed_sender_loses_nobody_and_repeats_only_the_uncertain(
        big_project: Path, sink_fixture: str, bound: int, request: pytest.FixtureRequest) -> None:
    """Over SMTP the bound is the concurrency; over SendGrid, where the window adapts and a
    batch is claimed ahead of it, ``COMMS_MAX_IN_FLIGHT``."""
    sink: Sink = request.getfixturevalue(sink_fixture)
    everyone = {m["email"] for m in managers(MANAGERS)}

    at_kill = kill_midway(big_project, sink)
    assert at_kill < MANAGERS, "the whole audience arrived before the kill: nothing was tested"

    send_launch(big_project, sink)  # the restart: sends what was never claimed
    received = sink.recipients()
    listed = uncertain(big_project, sink)
    listed_emails = {u["email"].casefold() for u in listed}
    missing = everyone - set(received)
    assert set(received) <= everyone
    assert missing <= listed_emails, f"lost, and not reported: {sorted(missing - listed_emails)}"
    assert len(listed) <= bound, f"{len(listed)} uncertain, more than the bound ({bound})"
    assert max(received.values()) == 1, "a restart without --resend-uncertain sent twice"
    assert all(u["campaign"] == "nmdi-awareness" and u["occurrence"] and u["uid"]
               and u["claimed_at"] for u in listed)

    send_launch(big_project, sink, "--resend-uncertain")
    received = sink.recipients()
    twice = {email for email, n in received.items() if n > 1}
    assert set(received) == everyone, f"lost: {sorted(everyone - set(received))}"
    assert max(received.values()) <= 2
    assert len(twice) <= bound
    assert twice <= listed_emails, f"sent twice, never uncertain: {sorted(twice - listed_emails)}"
    assert uncertain(big_project, sink) == []

    request.node.user_properties += [  # shown in a --junitxml report
        ("arrived_at_kill", at_kill), ("missing_after_restart", len(missing)),
        ("uncertain", len(listed)), ("received_twice", len(twice))]


MENTORING = """id: mentoring
name: Mentoring
sender: {email: nmdi@sel-learning.example, name: SEL Learning Alliance}
audience: {roles: [manager]}
steps:
  - id: intro
    kind: introduce
    pairs: cohort-1
    template: mentoring/intro
    subject: "NMDI mentoring: {{ mentee.first_name }}, meet {{ mentor.first_name }}"
    now: true
"""


@pytest.fixture
def paired_project(big_project: Path) -> Path:
    """1,200 managers, each paired with a mentor of their own, and a campaign introducing
    them."""
    with open(big_project / "stakeholders" / "mentors.csv", "w", newline="",
              encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({**m, "email": m["email"].replace("manager", "mentor"),
                          "role": "mentor", "tags": ""} for m in managers(MANAGERS))
    (big_project / "pairs").mkdir()
    (big_project / "pairs" / "cohort-1.csv").write_text("mentor,mentee\n" + "".join(
        f"{m['email'].replace('manager', 'mentor')},{m['email']}\n" for m in managers(MANAGERS)),
        encoding="utf-8")
    (big_project / "campaigns" / "mentoring.yaml").write_text(MENTORING, encoding="utf-8")
    return big_project


def test_killed_introductions_go_once_per_pair_and_repeat_only_the_uncertain(
        paired_project: Path, smtp_sink: Sink) -> None:
    """The kill test for ``introduce``: one message per pair, to both people."""
    pair_of = {m["email"]: m["email"].replace("manager", "mentor") for m in managers(MANAGERS)}
    everyone = set(pair_of) | set(pair_of.values())

    at_kill = kill_midway(paired_project, smtp_sink, INTRO)
    assert at_kill < len(everyone), "every pair was introduced before the kill"
    send_launch(paired_project, smtp_sink, step=INTRO)
    received = smtp_sink.recipients()
    listed = {u["email"].casefold() for u in uncertain(paired_project, smtp_sink, INTRO)}
    assert all(received[mentee] == received[mentor] for mentee, mentor in pair_of.items())
    missing = set(pair_of) - set(received)
    assert missing <= listed, f"pairs lost, and not reported: {sorted(missing - listed)}"
    assert len(listed) <= CONCURRENCY
    assert max(received.values()) == 1

    send_launch(paired_project, smtp_sink, "--resend-uncertain", step=INTRO)
    received = smtp_sink.recipients()
    assert set(received) == everyone
    twice = {mentee for mentee in pair_of if received[mentee] > 1}
    assert twice <= listed and max(received.values()) <= 2
    assert uncertain(paired_project, smtp_sink, INTRO) == []

"""SIGTERM and SIGINT are clean stops for `comms send`, `comms run` and `comms run` with the web
app: nothing more is claimed, what is in flight finishes and is recorded, 0 uncertain; `send`
exits 130 or 143, `run` 0. A second signal forces the stop, and what was in flight is listed as
uncertain. Judged from a real SMTP server's own log (it answers each final dot after 20 ms, so
sends are in flight when the signal comes)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.sinks.sendgrid_server import SendGridSink
from tests.test_crash import (  # noqa: F401
    COMMS,
    MANAGERS,
    MAX_IN_FLIGHT,
    SENDGRID_KEY,
    Sink,
    big_project,
    managers,
    sender_env,
)

pytestmark = pytest.mark.slow
DEADLINE = 40.0


@pytest.fixture
def slow_sink(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sink]:
    """The SMTP sink as its own process, answering each final dot after 20 ms (or the
    ``latency`` mark's seconds)."""
    need(COMMS.exists(), f"no comms console script at {COMMS} (pip install -e .)")
    mark = request.node.get_closest_marker("latency")
    latency = mark.args[0] if mark else 0.02
    log = tmp_path / "smtp.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.sinks.smtp_server", "--port", "0", "--log", str(log),
         "--latency", str(latency)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    assert port.isdigit(), server.communicate()[1]
    try:
        yield Sink(int(port), log)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def now_project(big_project: Path) -> Path:  # noqa: F811
    """The 1,200-manager project whose launch is due now, with no sending window."""
    campaigns = big_project / "campaigns"
    for path in campaigns.iterdir():
        if path.name != "nmdi-awareness.yaml":
            path.unlink()
    path = campaigns / "nmdi-awareness.yaml"
    text = path.read_text(encoding="utf-8").replace("send_at: 2026-12-01 09:00", "now: true")
    path.write_text("\n".join(line for line in text.splitlines()
                              if not line.startswith("schedule:")) + "\n", encoding="utf-8")
    return big_project


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


COMMANDS = {
    "send": ["send", "nmdi-awareness", "--step", "launch"],
    "run": ["run", "--no-web"],
    "run-web": ["run", "--port", "PORT"],
}


def start(command: str, project: Path, sink: Sink, log: Path) -> subprocess.Popen[bytes]:
    args = [a.replace("PORT", str(free_port())) for a in COMMANDS[command]]
    return subprocess.Popen([str(COMMS), *args, "--project", str(project)],
                            env=sender_env(sink), stdout=subprocess.DEVNULL,
                            stderr=open(log, "a"))


def wait_for_arrivals(sink: Sink, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while sum(sink.recipients().values()) < count:
        assert process.poll() is None, "the sender ended before the signal"
        assert time.monotonic() < deadline, "sending did not start"
        time.sleep(0.01)


def status(project: Path, sink: Sink) -> dict:  # type: ignore[type-arg]
    done = subprocess.run([str(COMMS), "status", "--format", "json", "--project", str(project)],
                          env=sender_env(sink), capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    found: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return found


def finish(command: str, project: Path, sink: Sink, log: Path) -> None:
    """A second process sends the rest; then everyone has had the message exactly once."""
    everyone = {m["email"] for m in managers(MANAGERS)}
    process = start(command, project, sink, log)
    deadline = time.monotonic() + DEADLINE * 2
    try:
        while set(sink.recipients()) != everyone:
            assert time.monotonic() < deadline, "the rest did not go"
            if command == "send" and process.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) in (0, 143)
    received = sink.recipients()
    assert set(received) == everyone and max(received.values()) == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_signal_stops_cleanly_leaving_nothing_uncertain(
        command: str, signum: int, now_project: Path, slow_sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "sender.log"
    process = start(command, now_project, slow_sink, log)
    wait_for_arrivals(slow_sink, 200, process)
    process.send_signal(signum)
    code = process.wait(timeout=DEADLINE)
    assert code == (128 + signum if command == "send" else 0), log.read_text(encoding="utf-8")
    arrived = sum(slow_sink.recipients().values())
    assert arrived < MANAGERS, "stopped mid-campaign"
    found = status(now_project, slow_sink)
    [launch] = [row for row in found["steps"] if row["step"] == "launch"]
    assert found["uncertain"] == []
    assert (launch["claimed"], launch["uncertain"], launch["sent"]) == (0, 0, arrived)
    assert "Traceback" not in log.read_text(encoding="utf-8")
    finish(command, now_project, slow_sink, log)


@pytest.mark.latency(2.0)
def test_a_second_signal_forces_the_stop_and_lists_what_was_in_flight(
        now_project: Path, slow_sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "sender.log"
    process = start("send", now_project, slow_sink, log)
    wait_for_arrivals(slow_sink, 8, process)  # the first eight wait 2 s for their replies
    signal_twice(process, log, now_project, slow_sink, bound=8)


def signal_twice(process: subprocess.Popen[bytes], log: Path, project: Path, sink: Sink, *,
                 bound: int) -> None:
    """A signal, then a second once the first is heard: exit 143 at once, with at most
    ``bound`` listed uncertain and none lost unlisted."""
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE
    while "stopping: " not in log.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=DEADLINE) == 143, log.read_text(encoding="utf-8")
    received = sink.recipients()
    found = status(project, sink)
    [launch] = [row for row in found["steps"] if row["step"] == "launch"]
    listed = {u["email"].casefold() for u in found["uncertain"]}
    assert launch["claimed"] == 0 and launch["uncertain"] == len(listed) <= bound
    assert launch["sent"] + len(listed & set(received)) == len(received)  # none lost unlisted
    assert "what was still being sent is listed as uncertain" in log.read_text(encoding="utf-8")


@pytest.fixture
def far_sendgrid(tmp_path: Path) -> Iterator[tuple[SendGridSink, Sink]]:
    """The SendGrid-contract sink answering each request after 3 s (in this process, so the test
    sees a request arrive before its reply leaves): sends wait on the dispatcher's event loop
    when the signals come."""
    log = tmp_path / "sendgrid.jsonl"
    with SendGridSink(api_key=SENDGRID_KEY, log=log, latency=3.0) as server:
        yield server, Sink(server.url, log, "sendgrid")


def test_a_second_signal_forces_the_stop_of_the_event_loop_too(
        now_project: Path, far_sendgrid: tuple[SendGridSink, Sink], tmp_path: Path) -> None:
    """Through SendGrid the requests under way are tasks on one event loop: the forced stop
    leaves them as they are (uncertain, at most the window's claims) and exits at once."""
    server, sink = far_sendgrid
    log = tmp_path / "sender.log"
    process = start("send", now_project, sink, log)
    deadline = time.monotonic() + DEADLINE
    while server.requests < 1:  # one is with the provider, its reply 3 s away
        assert process.poll() is None, "the sender ended before the signal"
        assert time.monotonic() < deadline, "sending did not start"
        time.sleep(0.01)
    signal_twice(process, log, now_project, sink, bound=MAX_IN_FLIGHT)

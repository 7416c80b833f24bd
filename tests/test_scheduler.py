"""Several `comms run` processes on one PostgreSQL store: one scheduler, all dispatch, no double
sends; when the scheduler's process is killed another takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_crash import COMMS, MANAGERS, TEST_RIG, Sink, big_project, smtp_sink  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
HOLDS = "this process holds the scheduler"


@pytest.fixture
def programme(big_project: Path) -> Path:  # noqa: F811
    campaigns = big_project / "campaigns"
    for path in campaigns.iterdir():
        if path.name != "nmdi-awareness.yaml":
            path.unlink()
    path = campaigns / "nmdi-awareness.yaml"
    text = path.read_text(encoding="utf-8").replace("send_at: 2026-12-01 09:00", "now: true")
    path.write_text("\n".join(line for line in text.splitlines()
                              if not line.startswith("schedule:")) + "\n", encoding="utf-8")
    return big_project


def wait_for(condition, what: str, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("processes", [2, 3])
def test_one_scheduler_all_dispatch_and_takeover(processes: int, programme: Path,
                                                 postgres_url: str, smtp_sink: Sink,  # noqa: F811
                                                 tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    env.update(**TEST_RIG, COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST="127.0.0.1",
               COMMS_SMTP_PORT=str(smtp_sink.port), COMMS_CONCURRENCY="4",
               COMMS_DATABASE_URL=postgres_url, COMMS_SERVICE_POLL_SECONDS="0.5")
    logs = [tmp_path / f"run{i}.log" for i in range(processes)]
    procs = [subprocess.Popen([str(COMMS), "run", "--no-web", "--project", str(programme)],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
             for log in logs]
    try:
        def holders() -> list[int]:
            return [i for i, log in enumerate(logs) if HOLDS in log.read_text(encoding="utf-8")]

        wait_for(lambda: holders(), "a scheduler to be elected")
        wait_for(lambda: sum(smtp_sink.recipients().values()) >= 200, "sending to start")
        assert len(holders()) == 1, "exactly one process schedules"
        leader = holders()[0]
        procs[leader].send_signal(signal.SIGKILL)
        procs[leader].wait()
        wait_for(lambda: len(holders()) == 2, "another process to take the scheduler over")
        wait_for(lambda: sum(smtp_sink.recipients().values()) >= MANAGERS - 4
                 and _settled(smtp_sink), "the rest of the audience", seconds=90)
        received = smtp_sink.recipients()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("a process did not stop on SIGTERM")
    assert max(received.values()) == 1, "nobody receives the message twice"
    missing = MANAGERS - len(received)
    assert 0 <= missing <= 4  # at most the killed process's in-flight claims (concurrency 4)
    survivors = [p for i, p in enumerate(procs) if i != leader]
    assert all(p.returncode == 0 for p in survivors), [p.returncode for p in survivors]
    status = subprocess.run([str(COMMS), "status", "--format", "json", "--project",
                             str(programme)], env=env, capture_output=True, text=True, timeout=60)
    import json

    uncertain = {u["email"] for u in json.loads(status.stdout)["uncertain"]}
    expected = {f"manager{i:05d}@practices.nhs.example" for i in range(MANAGERS)}
    assert expected - set(received) <= uncertain


def _settled(sink: Sink, quiet: float = 1.5) -> bool:
    """Nothing new has arrived for a moment."""
    return not sink.log.exists() or time.time() - sink.log.stat().st_mtime > quiet





def test_sigterm_mid_campaign_finishes_sends_under_way(programme: Path, smtp_sink: Sink,  # noqa: F811
                                                       tmp_path: Path) -> None:
    """SQLite, one process: SIGTERM while sending → exit 0, nothing uncertain; a restart sends
    the rest, nobody twice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    env.update(**TEST_RIG, COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST="127.0.0.1",
               COMMS_SMTP_PORT=str(smtp_sink.port), COMMS_CONCURRENCY="4",
               COMMS_DATABASE_URL=f"sqlite:///{tmp_path / 'comms.db'}")
    command = [str(COMMS), "run", "--no-web", "--project", str(programme)]

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "run.log", "a"))

    first = start()
    wait_for(lambda: sum(smtp_sink.recipients().values()) >= 200, "sending to start")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    stopped_at = sum(smtp_sink.recipients().values())
    assert stopped_at < MANAGERS, "stopped mid-campaign"
    status = subprocess.run([str(COMMS), "status", "--format", "json", "--project",
                             str(programme)], env=env, capture_output=True, text=True, timeout=60)
    import json

    report = json.loads(status.stdout)
    assert report["uncertain"] == []
    [launch] = [row for row in report["steps"] if row["step"] == "launch"]
    assert launch["sent"] == stopped_at and launch["claimed"] == 0
    second = start()
    try:
        wait_for(lambda: len(smtp_sink.recipients()) == MANAGERS and _settled(smtp_sink),
                 "the rest of the audience", seconds=90)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert max(smtp_sink.recipients().values()) == 1

"""Output that fits: tables fit an 80-column terminal (cells wrap, low-priority columns go,
addresses stay whole) and print every value whole when piped; every table takes --format;
help shows examples; completion knows the project's ids; a rate limit that sets the pace says so."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from comms.cli import cli
from comms.progress import Pace, _Bar

COMMS = Path(sys.executable).parent / "comms"
NOW = "2026-12-07T09:30:00+00:00"


def longest(project: Path, command: list[str]) -> str:
    """The longest address the command lists: anyone's, or an invited manager's."""
    rows = list(csv.DictReader((project / "stakeholders" / "sel-directory.csv").open(
        encoding="utf-8")))
    if command[0] == "events":
        rows = [r for r in rows if r["role"] == "manager" and "primary-care" in r["tags"]]
    return max((r["email"] for r in rows), key=len)


def env() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    return {**found, "COMMS_NOW": NOW}


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example programme with its workshop invitations sent (so rosters have rows)."""
    from .conftest import PROJECT_PARTS, ROOT

    project = tmp_path_factory.mktemp("output") / "project"
    for part in PROJECT_PARTS:
        import shutil

        shutil.copytree(ROOT / part, project / part)
    done = subprocess.run([str(COMMS), "send", "workshops", "--step", "invite", "--project",
                           str(project)], env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return project


def in_terminal(args: list[str], columns: int = 80) -> str:
    """What a command prints in a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    import fcntl

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen([str(COMMS), *args], stdin=slave, stdout=slave, stderr=slave,
                               env={**env(), "TERM": "xterm", "COLUMNS": str(columns)},
                               close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        assert ready, "the command printed nothing for 60 s"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=60) == 0
    text = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


@pytest.mark.parametrize("command", [["status"], ["contacts", "list"],
                                     ["events", "roster", "ws1"]])
def test_tables_fit_80_columns_in_a_terminal_and_keep_addresses_whole(
        sent: Path, command: list[str]) -> None:
    shown = in_terminal([*command, "--project", str(sent)])
    lines = [line.rstrip() for line in shown.splitlines()]
    assert max(len(line) for line in lines) <= 80, shown
    assert "…" not in shown
    if command != ["status"]:
        assert longest(sent, command) in shown  # whole, on one line
        addresses = re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", shown)
        assert len(addresses) >= 10 and all(a.endswith(".example") for a in addresses)


@pytest.mark.parametrize("command", [["status"], ["contacts", "list"],
                                     ["events", "roster", "ws1"]])
def test_piped_tables_print_every_value_whole(sent: Path, command: list[str]) -> None:
    done = subprocess.run([str(COMMS), *command, "--project", str(sent)], env=env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and "left out to fit" not in done.stdout
    if command == ["status"]:
        assert "uncertain" in done.stdout and "suppressed" in done.stdout
    else:
        assert longest(sent, command) in done.stdout


@pytest.mark.parametrize("command", [["plan"], ["status"], ["contacts", "list"],
                                     ["suppress", "list"], ["events", "roster", "ws1"],
                                     ["events", "feedback", "ws1"], ["pairs", "status"],
                                     ["report"], ["report", "chase", "workshops"]])
def test_every_table_takes_csv_and_json(sent: Path, command: list[str]) -> None:
    runner = CliRunner()
    as_csv = runner.invoke(cli, [*command, "--format", "csv", "--project", str(sent)],
                           env={"COMMS_NOW": NOW})
    assert as_csv.exit_code == 0, as_csv.output
    assert list(csv.reader(io.StringIO(as_csv.output)))[0]  # a header row
    as_json = runner.invoke(cli, [*command, "--format", "json", "--project", str(sent)],
                            env={"COMMS_NOW": NOW})
    assert as_json.exit_code == 0, as_json.output
    json.loads(as_json.output)


def test_preview_speaks_json(sent: Path) -> None:
    manager = next(line.split(",")[0] for line in (sent / "stakeholders" / "sel-directory.csv")
                   .read_text(encoding="utf-8").splitlines() if ",manager," in line)
    shown = CliRunner().invoke(cli, ["preview", "workshops", "invite", "--to", manager,
                                     "--format", "json", "--project", str(sent)],
                               env={"COMMS_NOW": NOW})
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)
    assert [a["email"] for a in found["to"]] == [manager]
    assert found["subject"].startswith("Invitation: ") and found["calendar_path"].endswith(".ics")


def test_validate_and_send_speak_json_for_scripts(sent: Path) -> None:
    runner = CliRunner()
    checked = runner.invoke(cli, ["validate", "--format", "json", "--project", str(sent)])
    assert checked.exit_code == 0 and json.loads(checked.output) == {"ok": True, "problems": []}
    again = runner.invoke(cli, ["send", "workshops", "--step", "invite", "--format", "json",
                                "--project", str(sent)], env={"COMMS_NOW": NOW})
    assert again.exit_code == 0, again.output
    [summary] = json.loads(again.output[again.output.index("{"):])["summaries"]
    assert (summary["step"], summary["sent"], summary["already_sent"]) == ("invite", 0, 80)


@pytest.mark.parametrize("command", ["send", "plan", "report", "init"])
def test_help_shows_an_example(command: str) -> None:
    shown = CliRunner().invoke(cli, [command, "--help"]).output
    assert "Example" in shown and f"comms {command}" in shown


def test_the_command_list_is_never_cut() -> None:
    shown = CliRunner().invoke(cli, ["--help"]).output
    commands = shown[shown.index("Commands:"):]
    assert "..." not in commands and "…" not in commands
    assert "the uncertain\n" in commands or "uncertain sends by name" in commands


def test_completion_knows_campaigns_steps_and_events(sent: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_PROJECT_DIR", str(sent))
    complete = ShellComplete(cli, {}, "comms", "_COMMS_COMPLETE").get_completions
    assert [c.value for c in complete(["send"], "wor")] == ["workshops"]
    assert [c.value for c in complete(["preview", "workshops"], "")] == [
        "chase", "invite", "ws1-feedback"]
    assert [c.value for c in complete(["events", "roster"], "")] == ["ws1"]


def test_a_rate_limit_that_sets_the_pace_is_announced_with_the_finish() -> None:
    said: list[str] = []
    at = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    pace = Pace(600, "schedule uk-working-hours", lambda: at, ZoneInfo("Europe/London"))
    bar = _Bar(None, pace, said.append)
    bar.start("nmdi-awareness/launch", 5000)
    assert said == ["nmdi-awareness/launch: 5,000 to send at 600 a minute at most (schedule "
                    "uk-working-hours's max_per_minute): about 8 min 20 s, done Mon 7 Dec 2026 "
                    "09:38"]
    _Bar(None, pace, said.append).start("quick/step", 200)  # 20 s: not worth a line
    assert len(said) == 1

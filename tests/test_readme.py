"""The README's two set-up commands: one runs the example programme, one runs the tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("campaigns", "templates", "schedules", "stakeholders", "pairs")


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_exactly_two_setup_commands() -> None:
    example, tests = setup_commands()
    assert example.startswith(
        "python3 -m venv .venv && .venv/bin/pip install -c requirements.lock -e . && ")
    assert tests == ("python3 -m venv .venv && .venv/bin/pip install -c requirements.lock "
                     "-e '.[test]' && .venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci


def test_example_command_runs_the_programme(tmp_path: Path) -> None:
    """Everything after the install step, run in a fresh copy with this environment's comms."""
    example = setup_commands()[0]
    steps = example.split(" && ")[2:]
    for part in PROJECT_PARTS:
        shutil.copytree(ROOT / part, tmp_path / part)
    bin_dir = str(Path(sys.executable).parent) + "/"
    for step in steps:
        result = subprocess.run(step.replace(".venv/bin/", bin_dir), shell=True, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
    messages = list((tmp_path / "outbox").glob("*.eml"))
    assert len(messages) == 80
    assert (tmp_path / "comms.db").is_file()
    assert "Traceback" not in result.stderr

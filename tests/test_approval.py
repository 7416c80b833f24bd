"""Two-person sign-off: with ``require_approval``, send and run refuse a campaign that is not
approved or changed since, naming the files; under git the approver is not the last author."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from comms.app import App
from comms.cli import cli
from comms.service import Service
from comms.settings import load_settings

from .conftest import FakeClock, need

ENV = {"COMMS_NOW": "2026-12-01T09:30:00+00:00"}


def run(project_dir: Path, *args: str) -> object:
    return CliRunner().invoke(cli, [*args, "--project", str(project_dir)], env=ENV)


@pytest.fixture
def guarded(project_dir: Path) -> Path:
    (project_dir / "comms.toml").write_text("require_approval = true\n", encoding="utf-8")
    return project_dir


def test_send_refuses_until_approved_and_again_after_a_change(guarded: Path) -> None:
    refused = run(guarded, "send", "nmdi-awareness", "--step", "launch")
    assert refused.exit_code == 2  # type: ignore[attr-defined]
    assert refused.output.strip() == (  # type: ignore[attr-defined]
        "error: nmdi-awareness is not approved: a second person runs `comms approve "
        "nmdi-awareness --by EMAIL` (comms.toml: require_approval)")
    assert not (guarded / "outbox").exists()
    dry = run(guarded, "send", "nmdi-awareness", "--step", "launch", "--dry-run")
    assert dry.exit_code == 0  # type: ignore[attr-defined]

    approved = run(guarded, "approve", "nmdi-awareness", "--by", "chair@sel-learning.example")
    assert approved.exit_code == 0, approved.output  # type: ignore[attr-defined]
    assert approved.output.startswith(  # type: ignore[attr-defined]
        "nmdi-awareness: approved by chair@sel-learning.example (7 files: ")
    for name in ("campaigns/nmdi-awareness.yaml", "templates/awareness/launch.html.j2",
                 "templates/layouts/email.html.j2", "schedules/uk-working-hours.yaml"):
        assert name in approved.output  # type: ignore[attr-defined]
    status = json.loads(run(guarded, "status", "--format", "json").output)  # type: ignore[attr-defined]
    [signed] = status["approvals"]
    assert (signed["campaign"], signed["approver"], signed["current"]) == (
        "nmdi-awareness", "chair@sel-learning.example", True)

    layout = guarded / "templates" / "layouts" / "email.html.j2"
    layout.write_text(layout.read_text(encoding="utf-8") + "<!-- changed -->\n", encoding="utf-8")
    changed = run(guarded, "send", "nmdi-awareness", "--step", "launch")
    assert changed.exit_code == 2  # type: ignore[attr-defined]
    assert changed.output.strip() == (  # type: ignore[attr-defined]
        "error: nmdi-awareness changed since chair@sel-learning.example approved it: "
        "templates/layouts/email.html.j2 (approve it again)")
    assert "changed since: approve it again" in run(guarded, "status").output  # type: ignore[attr-defined]

    assert run(guarded, "approve", "nmdi-awareness", "--by",
               "chair@sel-learning.example").exit_code == 0  # type: ignore[attr-defined]
    sent = run(guarded, "send", "nmdi-awareness", "--step", "launch")
    assert sent.exit_code == 0 and "80 sent" in sent.output  # type: ignore[attr-defined]
    revoked = run(guarded, "approve", "nmdi-awareness", "--revoke")
    assert revoked.output.strip() == "nmdi-awareness: approval withdrawn"  # type: ignore[attr-defined]
    assert run(guarded, "send", "nmdi-awareness").exit_code == 2  # type: ignore[attr-defined]


def test_only_listed_approvers_may_approve(guarded: Path) -> None:
    (guarded / "comms.toml").write_text(
        'require_approval = true\napprovers = ["chair@sel-learning.example"]\n', encoding="utf-8")
    result = run(guarded, "approve", "workshops", "--by", "someone@sel-learning.example")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert result.output.strip() == (  # type: ignore[attr-defined]
        "error: someone@sel-learning.example is not an approver (approvers: "
        "chair@sel-learning.example)")


def test_under_git_the_last_author_cannot_approve(guarded: Path) -> None:
    need(shutil.which("git") is not None, "git is not installed")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(guarded), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=author@sel-learning.example", "-c", "user.name=Author", "add", ".")
    git("-c", "user.email=author@sel-learning.example", "-c", "user.name=Author",
        "commit", "-q", "-m", "the programme")
    own = run(guarded, "approve", "workshops", "--by", "Author@sel-learning.example")
    assert own.exit_code == 2  # type: ignore[attr-defined]
    assert own.output.strip() == (  # type: ignore[attr-defined]
        "error: Author@sel-learning.example made the last change to workshops's files: another "
        "person must approve it")
    other = run(guarded, "approve", "workshops", "--by", "chair@sel-learning.example")
    assert other.exit_code == 0, other.output  # type: ignore[attr-defined]


def test_the_service_sends_nothing_of_an_unapproved_campaign(guarded: Path, store_url: str,
                                                             clock: FakeClock) -> None:
    app = App(load_settings(guarded, database_url=store_url), clock=clock)
    clock.advance(minutes=30)  # the launch is due
    report = Service(app).tick()
    assert report.sent == 0
    assert any(line.startswith("nmdi-awareness is not approved") for line in report.refused)
    app.close()

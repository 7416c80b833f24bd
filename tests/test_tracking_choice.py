"""Tracking is each campaign's choice and off by default: SendGrid's ``tracking_settings`` are
set on every request as the campaign says, comms's own links are never rewritten
(``clicktracking="off"``), the honeypot is one hidden link, and ``validate`` warns about opens."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from comms.app import App
from comms.cli import cli
from comms.dispatch import compose
from comms.settings import load_settings
from comms.transports.sendgrid import build_payload

from .conftest import FakeClock

BASE = "https://comms.sel-learning.example"
LINK = '<p><a href="https://www.england.nhs.example/nmdi">the national programme</a></p>'


def tracked(project_dir: Path, tracking: str | None) -> None:
    """Give nmdi-awareness a tracking key, and its launch a link to somewhere else."""
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    text = path.read_text(encoding="utf-8")
    if tracking is not None:
        text = text.replace("schedule: uk-working-hours\n",
                            f"schedule: uk-working-hours\ntracking: {tracking}\n")
    path.write_text(text, encoding="utf-8")
    launch = project_dir / "templates" / "awareness" / "launch.html.j2"
    launch.write_text(launch.read_text(encoding="utf-8").replace(
        "{% endblock %}", LINK + "\n{% endblock %}"), encoding="utf-8")


def launch_message(project_dir: Path, clock: FakeClock, **flags: object) -> object:
    app = App(load_settings(project_dir, base_url=BASE, allow_insecure_links=True, **flags),
              clock=clock)
    campaign = app.project.campaign("nmdi-awareness")
    person = next(p for p in app.project.directory.people if p.role == "manager")
    with app.store.read() as conn:
        prepared, _ = compose(conn, app.composer, campaign, campaign.steps[0], clock.now(),
                              record=False)
    message = prepared.message(person, "a" * 32)
    app.close()
    return message


def anchors(html: str) -> list[str]:
    return re.findall(r"<a\b[^>]*>", html)


def test_nothing_is_tracked_by_default_and_own_links_are_never_rewritten(
        project_dir: Path, clock: FakeClock) -> None:
    tracked(project_dir, None)
    message = launch_message(project_dir, clock)
    payload = build_payload(message)  # type: ignore[arg-type]
    assert payload["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False}, "subscription_tracking": {"enable": False}}
    html = message.html  # type: ignore[attr-defined]
    own = [a for a in anchors(html) if f'href="{BASE}/' in a]
    assert own, "the launch has an unsubscribe link"
    assert all(a.startswith('<a clicktracking="off"') for a in own)
    [other] = [a for a in anchors(html) if "england.nhs.example" in a]
    assert "clicktracking" not in other


def test_a_campaign_turns_tracking_on_and_the_project_sets_the_default(
        project_dir: Path, clock: FakeClock) -> None:
    tracked(project_dir, "{opens: true, clicks: true}")
    payload = build_payload(launch_message(project_dir, clock))  # type: ignore[arg-type]
    assert payload["tracking_settings"]["click_tracking"]["enable"] is True
    assert payload["tracking_settings"]["open_tracking"]["enable"] is True
    workshop_default = App(load_settings(project_dir, base_url=BASE, allow_insecure_links=True,
                                         track_clicks=True), clock=clock)
    assert workshop_default.composer.tracking.clicks is True  # for campaigns without the key
    assert workshop_default.composer.tracking.opens is False
    workshop_default.close()


def test_the_honeypot_is_one_hidden_tracked_link(project_dir: Path, clock: FakeClock) -> None:
    tracked(project_dir, "{clicks: true, honeypot: true}")
    html = launch_message(project_dir, clock).html  # type: ignore[attr-defined]
    [trap] = [a for a in anchors(html) if "/h/" in a]
    assert f'href="{BASE}/h/{"a" * 32}"' in trap
    assert 'aria-hidden="true"' in trap and 'tabindex="-1"' in trap and "display:none" in trap
    assert "clicktracking" not in trap  # it must be tracked to be seen
    assert html.index(trap) < html.lower().rindex("</body>")


def test_validate_warns_when_opens_are_tracked_and_refuses_a_honeypot_without_clicks(
        project_dir: Path) -> None:
    tracked(project_dir, "{opens: true}")
    result = CliRunner().invoke(cli, ["validate", "--project", str(project_dir)])
    assert result.exit_code == 0, result.output
    assert ("campaigns/nmdi-awareness.yaml:7: warning: tracking.opens: opens are tracked with a "
            "pixel, which needs the recipients' consent under PECR (README: Tracking and "
            "consent)") in result.output
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("tracking: {opens: true}",
                                                             "tracking: {honeypot: true}"),
                    encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", "--project", str(project_dir)])
    assert result.exit_code == 2
    assert result.output.splitlines()[0].startswith("campaigns/nmdi-awareness.yaml:7: ")
    assert "honeypot needs clicks: true" in result.output
    assert "steering-pack" not in result.output  # no follow-on line for the same cause

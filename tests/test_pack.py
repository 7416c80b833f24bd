"""The steering-group pack (``kind: report``): an email-safe body whose figures are the report's
at that moment, the full HTML report and the CSV attached, once per occurrence, previewable."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from comms.app import App
from comms.cli import cli
from comms.report import report
from comms.settings import load_settings

from .conftest import FakeClock


def make_app(project_dir: Path, store_url: str, clock: FakeClock) -> App:
    app = App(load_settings(project_dir, database_url=store_url), clock=clock)
    app.project.raise_errors()
    app.sync_directory()
    return app


class Figures(HTMLParser):
    """The text of every element carrying ``data-figure``, by its path."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append(dict(attrs).get("data-figure"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1] and data.strip():
            self.found[self._open[-1]] = data.strip()


def lookup(data: dict[str, Any], path: str) -> Any:
    """``campaigns.ID.groups.NAME.responded`` and the like, in the report's JSON ("(none)":
    the group of people without one)."""
    here: Any = data
    parts = path.split(".")
    while parts:
        key: Any = parts.pop(0)
        if isinstance(here, list):
            key = None if key == "(none)" else key
            here = next(item for item in here if key in (
                item.get("campaign"), item.get("group"), item.get("borough"), item.get("event")))
        else:
            here = here[key]
    return here


def pack_messages(app: App) -> list[email.message.EmailMessage]:
    folder = app.settings.resolved_outbox_dir
    found = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
             for p in sorted(folder.glob("*.eml"))]
    return [m for m in found if str(m["Subject"]).startswith("NMDI steering group pack")]


def test_the_pack_is_email_safe_carries_the_report_and_matches_its_figures(
        project_dir: Path, store_url: str, clock: FakeClock) -> None:
    app = make_app(project_dir, store_url, clock)
    awareness = app.project.campaign("nmdi-awareness")
    assert app.dispatcher().send(awareness, awareness.steps[0]).sent == 80
    pack = app.project.campaign("steering-pack")
    expected = report(app, by="borough").data  # the moment the pack is built (its own sends
    first = app.dispatcher().send(pack, pack.steps[0])  # come after; the clock does not move)
    assert first.sent == 4
    messages = pack_messages(app)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
        p.email for p in app.project.directory.people if p.role == "steering")
    message = messages[0]
    html = message.get_body(("html",))
    assert html is not None
    body = html.get_content()
    assert "<svg" not in body.lower() and "<script" not in body.lower()
    assert "<table" in body
    attached = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attached) == {"engagement-report.html", "engagement-report.csv"}
    assert attached["engagement-report.html"].get_content_type() == "text/html"
    assert "<html" in attached["engagement-report.html"].get_content()
    csv_text = attached["engagement-report.csv"].get_content()
    assert csv_text.splitlines()[0].lstrip("\ufeff")  # a header row

    parser = Figures()
    parser.feed(body)
    assert len(parser.found) >= 10
    for path, shown in parser.found.items():
        assert shown == str(lookup(expected, path)), path
    assert parser.found["campaigns.nmdi-awareness.totals.sent"] == "80"

    again = app.dispatcher().send(pack, pack.steps[0])
    assert (again.sent, again.already_sent) == (0, 4)  # once per occurrence
    app.close()


def test_the_pack_previews_and_the_report_json_agrees(project_dir: Path) -> None:
    env = {"COMMS_NOW": "2027-01-01T09:30:00+00:00"}
    steering = next(line.split(",")[0] for line in (project_dir / "stakeholders" /
                    "sel-directory.csv").read_text(encoding="utf-8").splitlines()
                    if ",steering," in line)
    result = CliRunner().invoke(cli, ["preview", "steering-pack", "monthly", "--to", steering,
                                      "--project", str(project_dir)], env=env)
    assert result.exit_code == 0, result.output
    assert "Subject: NMDI steering group pack — 1 January 2027" in result.output
    html_path = re.search(r"(\S+\.html)", result.output)
    assert html_path is not None
    assert "The programme at a glance" in Path(html_path.group(1)).read_text(encoding="utf-8") \
        or "NMDI awareness" in Path(html_path.group(1)).read_text(encoding="utf-8")
    as_json = CliRunner().invoke(cli, ["report", "--format", "json", "--project",
                                       str(project_dir)], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert {c["campaign"] for c in json.loads(as_json.output)["campaigns"]} >= {
        "nmdi-awareness", "workshops", "mentoring", "mentor-recruitment"}


@pytest.mark.browser
def test_the_pack_email_reads_in_a_browser_without_scripts_or_sideways_scrolling(
        project_dir: Path, clock: FakeClock, tmp_path: Path) -> None:
    """The pack's HTML body in headless Chromium at a mail client's 600 px, with scripts off:
    nothing scrolls sideways, nothing is fetched, the bars are table cells. With
    ``COMMS_WRITE_SCREENSHOTS=1`` the picture goes to docs/pack-email.png."""
    from .conftest import ROOT
    from .test_web_browser import CHROMIUM_ARGS, chromium

    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from .conftest import need

        need(False, "the playwright Python package is not installed")
        raise
    app = make_app(project_dir, f"sqlite:///{tmp_path / 'comms.db'}", clock)
    awareness = app.project.campaign("nmdi-awareness")
    app.dispatcher().send(awareness, awareness.steps[0])
    pack = app.project.campaign("steering-pack")
    app.dispatcher().send(pack, pack.steps[0])
    html = pack_messages(app)[0].get_body(("html",))
    assert html is not None
    page_file = tmp_path / "pack.html"
    page_file.write_text(html.get_content(), encoding="utf-8")
    app.close()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 600, "height": 900},
                                      java_script_enabled=False)
        page = context.new_page()
        fetched: list[str] = []
        page.on("request", lambda r: fetched.append(r.url) if r.url != page_file.as_uri()
                else None)
        page.goto(page_file.as_uri())
        sizes = page.evaluate("[document.documentElement.scrollWidth, "
                              "document.documentElement.clientWidth, "
                              "document.querySelectorAll('svg').length, "
                              "document.querySelectorAll('td[style*=\"background\"]').length]")
        if os.environ.get("COMMS_WRITE_SCREENSHOTS") == "1":
            page.screenshot(path=str(ROOT / "docs" / "pack-email.png"), full_page=False)
        browser.close()
    scroll, client, svgs, bars = sizes
    assert scroll <= client == 600
    assert svgs == 0 and bars >= 6
    assert fetched == []

"""The RSVP page in a real browser: headless Chromium (Debian's) against a real server on loopback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from comms.app import App

from .conftest import FakeClock, need
from .test_web import links, make_app, running, statuses

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def chromium() -> str:
    path = os.environ.get("COMMS_TEST_CHROMIUM") or shutil.which("chromium")
    need(path is not None and Path(path).exists(), "no chromium (set COMMS_TEST_CHROMIUM)")
    assert path is not None
    return path


def test_rsvp_page_in_headless_chromium(project_dir: Path, clock: FakeClock) -> None:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "the playwright Python package is not installed")
        raise
    app: App = make_app(project_dir, f"sqlite:///{project_dir / 'comms.db'}", clock)
    person, tokens = sorted(links(app).items())[0]
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with running(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            response = page.goto(f"{base}/rsvp/{tokens['accepted']}")
            assert response is not None and response.status == 200
            assert page.get_attribute("html", "lang") == "en-GB"
            heading = page.get_by_role("heading", level=1)
            assert heading.is_visible() and heading.inner_text() == "Confirm your answer"
            page.screenshot(path=str(ARTIFACTS / "rsvp-confirm.png"), full_page=True)
            button = page.get_by_role("button", name="Yes, I will attend")
            assert button.is_visible()
            assert person not in statuses(app)  # seeing the page records nothing

            with page.expect_navigation():
                button.click()
            done = page.get_by_role("heading", level=1)
            assert done.inner_text() == "You are coming"
            assert page.get_by_text("39 of 40 left").is_visible()
            page.screenshot(path=str(ARTIFACTS / "rsvp-accepted.png"), full_page=True)
        finally:
            browser.close()
    assert statuses(app)[person] == ("accepted", "link")
    assert problems == []
    app.close()

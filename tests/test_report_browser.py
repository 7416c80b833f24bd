"""The HTML report in a real browser: headless Chromium (Debian's), no console errors, charts drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms.report import report

from .conftest import FakeClock
from .test_report import build
from .test_web_browser import ARTIFACTS, CHROMIUM_ARGS, chromium

pytestmark = pytest.mark.browser


def test_html_report_in_headless_chromium(tmp_path: Path, clock: FakeClock) -> None:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from .conftest import need

        need(False, "the playwright Python package is not installed")
        raise
    app = build(tmp_path / "project", f"sqlite:///{tmp_path / 'comms.db'}", clock)
    page_file = tmp_path / "report.html"
    page_file.write_text(report(app).render("html"), encoding="utf-8")
    app.close()
    problems: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, width in (("report", 1100), ("report-phone", 390)):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc: problems.append(str(exc)))
                page.goto(page_file.as_uri())
                assert page.get_attribute("html", "lang") == "en-GB"
                assert page.get_by_role("heading", level=1).inner_text() == "Engagement report"
                charts = page.locator("svg[role=img]")
                assert charts.count() == 4
                for i in range(4):
                    chart = charts.nth(i)
                    assert chart.is_visible() and chart.bounding_box()["width"] > 200  # type: ignore[index]
                    assert chart.locator("title").text_content()
                assert page.locator("svg rect.bar").count() >= 6 + 3 + 1
                assert page.locator("svg polyline").count() == 1
                assert page.get_by_role("img", name="Funnel for Reach <test> & co").is_visible()
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= width + 1, "the page scrolls sideways (tables scroll in their box)"
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
                page.emulate_media(media="print")
                assert page.get_by_role("table", name="New responders per day").is_visible()
                page.close()
        finally:
            browser.close()
    assert problems == []

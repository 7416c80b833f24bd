"""The HTML report on a screen and on paper, in headless Chromium, at 1000 px and 390 px wide:
no sideways scrolling, no cut or overlapping label, chart text of at least 12 px, a text
alternative for every chart, the programme overview on the first screen, each campaign on a page
of its own, and nothing fetched from anywhere (one self-contained page).

Two reports are measured: the hand-built one of tests/test_report.py, and the example programme
at the repository root (six boroughs, four campaigns, a workshop with a long title) sent to the
outbox, with answers made up deterministically, each rendered as if sent through SendGrid (every
figure tracked) and through the outbox (deliveries, bounces, opens and clicks not tracked).

With ``COMMS_WRITE_SCREENSHOTS=1`` the first screens of the example at both widths are written
to docs/report-1000.png and docs/report-390.png (the pictures are made by this test, nowhere else).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from comms.app import App
from comms.report import report
from comms.settings import load_settings
from comms.store import tables
from comms.store.rsvps import record_answer

from .conftest import PROJECT_PARTS, ROOT, FakeClock
from .test_report import build
from .test_web_browser import CHROMIUM_ARGS, chromium

pytestmark = pytest.mark.browser

WIDTHS = (1000, 390)
FIRST_SCREEN = 800
DOCS = ROOT / "docs"
SENDGRID = {"transport": "sendgrid", "sendgrid_webhook_insecure": True, "track_opens": True,
            "track_clicks": True}
LONG_NAME = "South London and Maudsley NHS Foundation Trust — Community Services Directorate"
KEEN = {"Lambeth": 0.9, "Southwark": 0.8, "Greenwich": 0.7, "Lewisham": 0.6, "Bromley": 0.45}
# Bexley answers nothing at all: the lagging borough the overview must name.

# What the page looks like to a reader, measured in the page (sizes in CSS px).
MEASURE = """() => {
  const doc = document.documentElement;
  const out = {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth, charts: [],
               overflowing: [], small: [], cut: [], overlapping: [], requests: []};
  for (const svg of document.querySelectorAll("svg.chart")) {
    const box = svg.getBoundingClientRect();
    const title = svg.querySelector(":scope > title");
    const named = (svg.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
      .map(id => document.getElementById(id)).filter(Boolean).map(e => e.textContent.trim());
    out.charts.push({role: svg.getAttribute("role"), label: svg.getAttribute("aria-label"),
                     title: title ? title.textContent.trim() : "", named: named.join(" "),
                     width: box.width});
    const texts = [...svg.querySelectorAll("text")];
    const boxes = texts.map(t => t.getBoundingClientRect());
    texts.forEach((t, i) => {
      const size = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
      if (size < 12) out.small.push(`${t.textContent} ${size}px`);
      const b = boxes[i];
      if (b.left < box.left - 0.5 || b.right > box.right + 0.5 || b.top < box.top - 0.5
          || b.bottom > box.bottom + 0.5) out.cut.push(t.textContent);
      for (let j = 0; j < i; j++) {
        const o = boxes[j];
        if (b.left < o.right && o.left < b.right && b.top < o.bottom && o.top < b.bottom)
          out.overlapping.push(`${texts[j].textContent} / ${t.textContent}`);
      }
    });
  }
  const labels = "h1, h2, h3, p, li, caption, th, td, .label, .big, .tag, .why";
  const clipped = el => {  // hidden on purpose, for screen readers (a card's column heads)
    for (let a = el; a; a = a.parentElement) if (getComputedStyle(a).clipPath === "inset(50%)")
      return true;
    return false;
  };
  for (const el of document.querySelectorAll(labels)) {
    if (clipped(el)) continue;
    if (el.clientWidth && el.scrollWidth > el.clientWidth + 1)
      out.overflowing.push(`${el.tagName} ${el.textContent.trim().slice(0, 40)}`);
    const box = el.getBoundingClientRect();
    if (box.width && (box.left < -0.5 || box.right > doc.clientWidth + 0.5))
      out.overflowing.push(`off screen: ${el.tagName} ${el.textContent.trim().slice(0, 40)}`);
  }
  return out;
}"""


def programme(root: Path, clock: FakeClock) -> App:
    """The example programme: the first step of every campaign sent to the outbox, then
    opens, clicks and answers made up by borough (Bexley none), attendance at the workshop."""
    for part in PROJECT_PARTS:
        shutil.copytree(ROOT / part, root / part)
    app = App(load_settings(root, database_url=f"sqlite:///{root / 'comms.db'}",
                            outbox_dir=root / "outbox"), clock=clock)
    app.sync_directory()
    for campaign in app.project.campaigns.values():
        app.dispatcher().send(campaign, campaign.steps[0], respect_delay=False)
    rnd = random.Random(14)
    s, st = tables.sends, tables.stakeholders
    with app.store.write() as conn:
        sent = conn.execute(select(s.c.id, s.c.campaign, s.c.step, s.c.stakeholder_id,
                                   st.c.borough).join(st, st.c.id == s.c.stakeholder_id)
                            .where(s.c.status == "sent").order_by(s.c.id)).all()
        for send_id, campaign, step, person, borough in sent:
            keen = KEEN.get(borough, 0.0)
            day = datetime(2026, 12, 7, 9, tzinfo=UTC) + timedelta(
                days=rnd.choice([0, 0, 1, 1, 2, 3, 5, 8]), hours=rnd.randrange(8))
            delivery = "bounced" if rnd.random() < 0.04 else "delivered"
            conn.execute(s.update().where(s.c.id == send_id).values(delivery=delivery))
            kinds = ["opened"] if rnd.random() < 0.8 else []
            if delivery == "delivered" and rnd.random() < keen:
                kinds.append("clicked" if campaign != "mentor-recruitment" else "replied")
            for kind in kinds:
                conn.execute(insert(tables.responses).values(
                    send_id=send_id, stakeholder_id=person, campaign=campaign, step=step,
                    kind=kind, occurred_at=day, received_at=day))
            if campaign == "workshops" and delivery == "delivered" and rnd.random() < keen:
                answer = rnd.choices(["accepted", "tentative", "declined"], [7, 1, 2])[0]
                outcome = record_answer(conn, campaign="workshops", event="ws1",
                                        stakeholder_id=person, answer=answer, source="link",
                                        now=day, send_id=send_id)
                if outcome.status == "accepted" and rnd.random() < 0.85:
                    conn.execute(insert(tables.attendance).values(
                        campaign="workshops", event="ws1", stakeholder_id=person,
                        recorded_at=datetime(2027, 1, 14, 10, tzinfo=UTC)))
    clock.current = datetime(2027, 1, 20, 9, tzinfo=UTC)  # after the workshop
    return app


def html_of(app: App, **settings: Any) -> str:
    """The HTML report of ``app``'s store, made with ``settings`` (the transport) changed."""
    if settings:
        app = App(app.settings.model_copy(update=settings), clock=app.clock)
    return report(app).render("html")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("layout")
    example = programme(folder / "example", FakeClock(datetime(2026, 12, 7, 9, tzinfo=UTC)))
    small = build(folder / "small", f"sqlite:///{folder / 'small.db'}", FakeClock())
    made = {"example": html_of(example, **SENDGRID), "example-outbox": html_of(example),
            "small": html_of(small, **SENDGRID), "small-outbox": html_of(small)}
    with small.store.write() as conn:  # a name far longer than a chart's row
        conn.execute(tables.stakeholders.update().where(tables.stakeholders.c.borough == "Beta")
                     .values(organisation=LONG_NAME))
    made["long-names"] = report(small, by="organisation").render("html")
    example.close()
    small.close()
    files = {}
    for name, html in made.items():
        files[name] = folder / f"{name}.html"
        files[name].write_text(html, encoding="utf-8")
    yield files


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        from .conftest import need

        need(False, "the playwright Python package is not installed")
        raise
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Any, page_file: Path, width: int) -> tuple[Any, list[str]]:
    """The page at ``width`` × 800, and every request it made other than for itself."""
    page = browser.new_page(viewport={"width": width, "height": FIRST_SCREEN})
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.url != page_file.as_uri() else None)
    page.goto(page_file.as_uri())
    return page, fetched


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["example", "example-outbox", "small", "small-outbox",
                                  "long-names"])
def test_reads_at_the_width_without_scrolling_sideways_or_cutting_labels(
        browser: Any, pages: dict[str, Path], name: str, width: int) -> None:
    page, fetched = open_page(browser, pages[name], width)
    found = page.evaluate(MEASURE)
    assert found["scrollWidth"] <= found["clientWidth"] == width
    assert found["overflowing"] == []
    assert found["small"] == [], "chart text is drawn smaller than 12 px"
    assert found["cut"] == [], "chart text runs past its chart's edge"
    assert found["overlapping"] == [], "chart labels are drawn over each other"
    assert len(found["charts"]) >= 4
    for chart in found["charts"]:
        assert chart["role"] == "img"
        assert chart["label"] or chart["title"]
        assert chart["named"].startswith(chart["title"]) and chart["width"] > 300
    assert fetched == [], "the report fetched something: it must be one self-contained page"
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["example", "small"])
def test_the_overview_comes_first(browser: Any, pages: dict[str, Path], name: str,
                                  width: int) -> None:
    page, _ = open_page(browser, pages[name], width)
    overview = page.locator("#overview")
    heading = page.get_by_role("heading", name="Programme overview")
    assert heading.is_visible()
    first = page.evaluate("document.querySelector('main section').id")
    assert first == "overview", "the overview opens the report, before any campaign"
    box = overview.bounding_box()
    assert box is not None and box["y"] >= 0
    if width == 1000:  # the whole overview on the first screen, no scrolling
        assert box["y"] + box["height"] <= FIRST_SCREEN
    else:  # on a phone, at least its headline figures
        tiles = page.locator("#overview .tiles").bounding_box()
        assert tiles is not None and tiles["y"] + tiles["height"] <= FIRST_SCREEN
    if os.environ.get("COMMS_WRITE_SCREENSHOTS") == "1" and name == "example":
        page.screenshot(path=str(DOCS / f"report-{width}.png"))
    page.close()


@pytest.mark.parametrize("name", ["example", "example-outbox"])
def test_no_width_between_a_small_phone_and_a_desktop_scrolls_sideways(
        browser: Any, pages: dict[str, Path], name: str) -> None:
    page, _ = open_page(browser, pages[name], 1000)
    wider = {}
    for width in range(320, 1281, 40):
        page.set_viewport_size({"width": width, "height": FIRST_SCREEN})
        scrolled = page.evaluate("document.documentElement.scrollWidth")
        if scrolled > width:
            wider[width] = scrolled
    assert wider == {}
    page.close()


def test_a_long_name_is_shortened_in_a_chart_and_whole_in_its_table(
        browser: Any, pages: dict[str, Path]) -> None:
    page, _ = open_page(browser, pages["long-names"], 390)
    chart = page.get_by_role("img", name="Share of each organisation that responded")
    labels = chart.locator("text.label").all_text_contents()
    shortened = [label for label in labels if label.endswith("…")]
    assert len(shortened) == 1 and LONG_NAME.startswith(shortened[0][:-1])
    assert LONG_NAME in chart.locator("desc").text_content()  # whole for a screen reader
    assert page.get_by_role("rowheader", name=LONG_NAME).first.is_visible()
    page.close()


def test_wide_tables_fold_into_cards_on_a_phone(browser: Any, pages: dict[str, Path]) -> None:
    wide, _ = open_page(browser, pages["example"], 1000)
    phone, _ = open_page(browser, pages["example"], 390)
    rows = "table.cards tbody tr"
    assert wide.locator(rows).count() == phone.locator(rows).count() > 10
    assert wide.eval_on_selector(rows, "tr => getComputedStyle(tr).display") == "table-row"
    assert phone.eval_on_selector(rows, "tr => getComputedStyle(tr).display") == "grid"
    # a card: its heading across the top, the figures below it, two to a line
    card = phone.locator(rows).first
    heading = card.locator("th").bounding_box()
    cells = [card.locator("td").nth(i).bounding_box() for i in range(2)]
    assert heading is not None and cells[0] is not None and cells[1] is not None
    assert cells[0]["y"] >= heading["y"] + heading["height"] - 1
    assert cells[0]["y"] == cells[1]["y"] and cells[1]["x"] > cells[0]["x"] + cells[0]["width"]
    # each figure in a card says what it is
    cell = phone.locator("table.cards td[data-label='Responded']").first
    label = cell.evaluate("td => getComputedStyle(td, '::before').content")
    assert label == '"Responded"'
    assert phone.get_by_role("table", name=re.compile("^People reached and responding")).is_visible()
    wide.close()
    phone.close()


def test_each_campaign_prints_on_a_page_of_its_own(browser: Any, pages: dict[str, Path]) -> None:
    page, _ = open_page(browser, pages["example"], 688)  # A4 less the margins, in CSS px
    page.emulate_media(media="print")
    width = page.evaluate("[document.documentElement.scrollWidth, "
                          "document.documentElement.clientWidth]")
    assert width[0] <= width[1] == 688, "the printed page is cut at its right edge"
    breaks = page.eval_on_selector_all(
        "main > section", "all => all.map(s => [s.id || s.className, "
        "getComputedStyle(s).breakBefore])")
    campaigns = page.locator("section.campaign").count()
    assert campaigns == len(list((ROOT / "campaigns").glob("*.yaml"))) > 1
    assert breaks[0] == ["overview", "auto"]
    assert breaks[1:] == [["campaign", "page"]] * campaigns
    pdf = page.pdf(format="A4")
    pages_printed = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages_printed >= 1 + campaigns  # the overview, then a page (or more) per campaign
    page.close()


def test_what_the_outbox_cannot_see_reads_not_tracked(browser: Any,
                                                        pages: dict[str, Path]) -> None:
    page, _ = open_page(browser, pages["example-outbox"], 390)
    note = page.locator("#not-tracked")
    assert "outbox" in note.inner_text() and "opened" in note.inner_text()
    funnel = page.get_by_role("img", name=re.compile("^Funnel for NMDI workshops"))
    texts = funnel.locator("text").all_text_contents()
    for stage in ("Delivered", "Opened", "Clicked"):
        assert texts[texts.index(stage) + 1] == "not tracked"
    for label in ("Delivered", "Bounced", "Opened", "Clicked", "Open rate", "Click rate"):
        cells = page.locator(f"td[data-label='{label}']")
        assert cells.count() > 0
        assert set(cells.all_inner_texts()) == {"not tracked"}
    page.close()

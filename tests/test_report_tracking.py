"""What the transport cannot see is "not tracked", never 0 or 0.0%, in every format.

The store of tests/test_report.py (figures worked out there), reported as if sent through the
outbox, an SMTP server, SendGrid without its event webhook, or SendGrid's sandbox: deliveries,
bounces, opens and clicks are unknown; replies, unsubscribes and answers to invitations (which comms
records itself) still count, and rates are over messages sent.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comms.app import App
from comms.report import report
from comms.report.observed import observed
from comms.settings import load_settings

from .conftest import FakeClock
from .test_report import TRACKED, build, counts

UNSEEN = ("delivered", "bounced", "opened", "clicked")
UNSEEN_RATES = ("delivery_rate", "bounce_rate", "open_rate", "click_rate")
BLIND = {  # settings: a word the reason must give
    "outbox": ({"transport": "outbox"}, "outbox"),
    "smtp": ({"transport": "smtp"}, "SMTP"),
    "sendgrid without webhook": ({"transport": "sendgrid"}, "COMMS_SENDGRID_WEBHOOK_PUBLIC_KEY"),
    "sendgrid sandbox": ({**TRACKED, "sendgrid_sandbox": True}, "sandbox"),
}


@pytest.fixture
def store(tmp_path: Path, store_url: str, clock: FakeClock) -> Iterator[App]:
    app = build(tmp_path / "project", store_url, clock)
    yield app
    app.close()


def as_sent_by(app: App, settings: dict[str, Any]) -> App:
    """The same project and store, with other transport settings (validated as loaded)."""
    return App(load_settings(app.settings.project_dir,
                             database_url=app.settings.resolved_database_url, **settings),
               clock=app.clock)


@pytest.mark.parametrize("name", list(BLIND))
def test_the_transport_decides_what_is_tracked(tmp_path: Path, name: str) -> None:
    settings, word = BLIND[name]
    seen = observed(load_settings(tmp_path, **settings))
    assert seen.tracked == {"audience": True, "sent": True, "delivered": False, "bounced": False,
                            "opened": False, "clicked": False, "replied": True,
                            "unsubscribed": True, "responded": True}
    assert seen.because is not None and word in seen.because
    assert seen.rates_over == "sent"
    everything = observed(load_settings(tmp_path, **TRACKED))
    assert all(everything.tracked.values()) and everything.because is None
    assert everything.rates_over == "delivered"
    keyed = observed(load_settings(tmp_path, transport="sendgrid",
                                   sendgrid_webhook_public_key="MFkwEwYHKoZIzj0CAQYIKoZIzj0D"))
    assert keyed.because is None


@pytest.mark.parametrize("name", list(BLIND))
def test_unseen_figures_are_null_in_json(store: App, name: str) -> None:
    app = as_sent_by(store, BLIND[name][0])
    data = json.loads(report(app, campaign="reach").render("json"))
    assert {k for k, seen in data["tracked"].items() if not seen} == set(UNSEEN)
    assert BLIND[name][1] in data["not_tracked_because"] and data["rates_over"] == "sent"
    section = data["campaigns"][0]
    launch, invite = section["steps"]
    # the figures of tests/test_report.py, less what cannot be seen
    assert counts(launch) == (9, 9, None, None, None, None, 1, 1, 2)
    assert counts(invite) == (9, 6, None, None, None, None, 0, 0, 5)
    assert counts(section["totals"]) == (9, 9, None, None, None, None, 1, 1, 5)
    groups = {g["group"]: g for g in section["groups"]}
    assert counts(groups["Gamma"]) == (2, 2, None, None, None, None, 0, 0, 0)
    for row in [launch, invite, section["totals"], *section["groups"]]:
        assert all(row[k] is None for k in UNSEEN + UNSEEN_RATES)
    # replies, unsubscribes and responses over sent (deliveries cannot be seen)
    assert launch["response_rate"] == 0.2222 and invite["response_rate"] == 0.8333
    assert section["totals"]["reply_rate"] == 0.1111
    assert section["totals"]["response_rate"] == section["totals"]["responded_of_audience"]
    assert section["equity"]["overall"] == 0.5556  # equity needs no provider events


def test_unseen_figures_read_not_tracked_in_the_table(store: App) -> None:
    table = report(as_sent_by(store, {"transport": "smtp"}), campaign="reach").render("table")
    assert table.startswith("not tracked: delivered, bounced, opened, clicked — an SMTP server")
    assert "(rates are over sent)" in table.splitlines()[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if cells[0] in ("launch", "invite", "(campaign)"):
            rows.setdefault(cells[0], []).append(cells)
    reach, response = rows["invite"]
    # step, audience, sent, delivered, bounced, delivery rate, bounce rate
    assert reach == ["invite", "9", "6"] + ["not tracked"] * 4
    # step, opened, clicked, replied, unsubscribed, responded, open rate, click rate, response rate
    assert response == ["invite", "not tracked", "not tracked", "0", "0", "5", "not tracked",
                        "not tracked", "83.3%"]
    assert "0.0%" not in "".join(rows["invite"][1][1:3] + rows["invite"][1][6:8])


def test_unseen_figures_are_empty_cells_in_csv(store: App) -> None:
    text = report(as_sent_by(store, {"transport": "outbox"}), campaign="reach").render("csv")
    table = [r for r in csv.DictReader(io.StringIO(text, newline=""))
             if r["level"] in ("campaign", "step", "borough")]
    assert len(table) == 1 + 2 + 3
    for row in table:
        assert [row[k] for k in UNSEEN + UNSEEN_RATES] == [""] * 8
        assert row["sent"] and row["responded"] and row["response_rate"]
    assert table[0]["response_rate"] == "0.5556"


def test_unseen_figures_read_not_tracked_in_html(store: App) -> None:
    html = report(as_sent_by(store, {"transport": "outbox"}), campaign="reach").render("html")
    assert re.search(r'id="not-tracked"><strong>Not tracked:</strong> delivered, bounced, '
                     r"opened, clicked — the outbox transport", html)
    cells = re.findall(r'data-label="(Delivered|Bounced|Opened|Clicked|Delivery rate|'
                       r'Bounce rate|Open rate|Click rate)"( class="nt")?>([^<]*)<', html)
    assert len(cells) == 3 * 8 + 3 * 3  # steps and campaign: 8 each; groups: delivered, opened, clicked
    assert {(flag, value) for _, flag, value in cells} == {(' class="nt"', "not tracked")}
    funnel = html[html.index('<svg class="chart"'):html.index("</svg>")]
    for stage in ("Delivered", "Opened", "Clicked"):
        assert re.search(rf'class="label">{stage}</text>\s*<text [^>]*class="value untracked">'
                         r"not tracked</text>", funnel)
    assert "Delivered not tracked; Opened not tracked; Clicked not tracked" in funnel  # <desc>
    assert re.search(r'class="label">Responded</text>\s*<text [^>]*>5 \(55\.6%\)</text>',
                     funnel)
    assert 'class="value">0 (0.0%)' not in funnel


def test_with_the_webhook_every_figure_counts(store: App) -> None:
    html = report(store, campaign="reach").render("html")
    assert 'id="not-tracked"' not in html and "not tracked" not in html
    assert re.search(r'class="label">Clicked</text>\s*<text [^>]*>1 \(11\.1%\)</text>', html)

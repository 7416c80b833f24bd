"""The steering-group pack: what a ``kind: report`` step sends — the engagement report of its
campaigns as an email-safe body (tables and inline CSS, no SVG or script), with the full HTML
report and the CSV attached. Built once per occurrence, from the same ``report()`` as
``comms report``, so its figures are the report's at that moment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .campaign import ReportSpec, Step
from .transports.base import Attachment

if TYPE_CHECKING:
    from .app import App

_BODY = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates" / "comms"),
                    autoescape=True, undefined=StrictUndefined, trim_blocks=True)
HTML_NAME, CSV_NAME = "engagement-report.html", "engagement-report.csv"


@dataclass(frozen=True, slots=True)
class Pack:
    data: dict[str, Any]  # the report's JSON, its sections narrowed to the step's campaigns
    body: Markup  # email-safe HTML of the figures, for the template as ``report_body``
    attachments: tuple[Attachment, ...]


EMPTY_PACK = Pack(data={"campaigns": []}, body=Markup(""), attachments=())


def build_pack(app: App, step: Step) -> Pack:
    from .report import report

    spec = step.report or ReportSpec()
    full = report(app, by=spec.by)
    chosen = set(spec.campaigns)
    data = dict(full.data)
    if chosen:
        data["campaigns"] = [c for c in data["campaigns"] if c["campaign"] in chosen]
    narrowed = type(full)(data)
    body = _BODY.get_template("pack-body.html.j2").render(
        overview=data.get("overview"), campaigns=data["campaigns"],
        generated_at=data["generated_at"])
    return Pack(data=data, body=Markup(body), attachments=(
        Attachment(filename=HTML_NAME, content_type="text/html; charset=utf-8",
                   data=narrowed.render("html").encode("utf-8")),
        Attachment(filename=CSV_NAME, content_type="text/csv; charset=utf-8",
                   data=("\ufeff" + narrowed.render("csv")).encode("utf-8"))))

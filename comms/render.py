"""The one Jinja2 environment: subject, HTML (CSS inlined) and text for each recipient."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ._text import html_to_text
from .errors import TemplateError

HTML_SUFFIX = ".html.j2"
BUILTIN = Path(__file__).parent / "templates"  # defaults a project's templates/ may override
TEXT_SUFFIX = ".txt.j2"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class StepTemplates:
    """A step's templates, compiled once and rendered for every recipient."""

    name: str
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template | None


class Renderer:
    """Owns the sandboxed environment; compiles each step's templates once."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader([templates_dir, BUILTIN]),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"),
                                                default_for_string=False),
            auto_reload=False,
            keep_trailing_newline=True,
        )
        self._inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
        self._compiled: dict[tuple[str, str], StepTemplates] = {}

    def exists(self, template: str) -> bool:
        return any((folder / f"{template}{HTML_SUFFIX}").is_file()
                   for folder in (self.templates_dir, BUILTIN))

    def compile(self, template: str, subject: str) -> StepTemplates:
        """Compile (once per process) a step's subject, HTML body and optional text twin."""
        key = (template, subject)
        compiled = self._compiled.get(key)
        if compiled is None:
            try:
                text_name = f"{template}{TEXT_SUFFIX}"
                has_text = any((folder / text_name).is_file()
                               for folder in (self.templates_dir, BUILTIN))
                compiled = StepTemplates(
                    name=template,
                    subject=self.env.from_string(subject),
                    html=self.env.get_template(f"{template}{HTML_SUFFIX}"),
                    text=self.env.get_template(text_name) if has_text else None,
                )
            except jinja2.TemplateSyntaxError as exc:
                path = self._display(exc.filename) if exc.filename else f"subject of {template}"
                raise TemplateError(f"template syntax: {exc.message}", path=path,
                                    line=exc.lineno) from None
            except jinja2.TemplateNotFound as exc:
                raise TemplateError(f"template not found: templates/{exc.name}") from None
            self._compiled[key] = compiled
        return compiled

    def render(self, step: StepTemplates, context: Mapping[str, Any], *, who: str = "") -> Rendered:
        """Render for one recipient; errors name the template, its line and the recipient."""
        try:
            subject = step.subject.render(context)
            html = step.html.render(context)
            text = step.text.render(context) if step.text is not None else None
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
            raise self._locate(exc, step, who) from None
        subject = " ".join(subject.replace("\x00", " ").split())
        html = self._inliner.inline(html)
        return Rendered(subject=subject, html=html, text=text if text is not None else html_to_text(html))

    def _locate(self, exc: Exception, step: StepTemplates, who: str) -> TemplateError:
        path, line = f"subject of {step.name}", None
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename and frame.filename.endswith((HTML_SUFFIX, TEXT_SUFFIX)):
                path, line = self._display(frame.filename), frame.lineno
                break
            if frame.filename == "<template>":
                break
        message = getattr(exc, "message", None) or str(exc)
        return TemplateError(message + (f" (rendering for {who})" if who else ""),
                             path=path, line=line)

    def _display(self, filename: str) -> str:
        path = Path(filename)
        if not path.is_absolute():
            path = self.templates_dir / path
        if path.resolve().is_relative_to(BUILTIN.resolve()):
            return str(Path("comms/templates") / path.resolve().relative_to(BUILTIN.resolve()))
        try:
            return str(Path("templates") / path.resolve().relative_to(self.templates_dir.resolve()))
        except ValueError:
            return filename

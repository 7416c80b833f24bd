"""Rendering: sandboxed, strict, autoescaped, CSS inlined, text always, templates compiled once."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms.audience import Stakeholder
from comms.errors import TemplateError
from comms.render import Renderer, html_to_text

LAYOUT = """<html><head><style>.note { color: #005eb8; } p { margin: 0 0 12px; }</style></head>
<body>{% block content %}{% endblock %}</body></html>
"""
BODY = """{% extends "layout.html.j2" %}
{% block content %}
<p class="note">Dear {{ stakeholder.first_name }},</p>
<p>See <a href="https://nmdi.example/about">the programme</a>.</p>
{% endblock %}
"""


def person(first: str = "Siobhán") -> Stakeholder:
    return Stakeholder(email="s@x.example", first_name=first, last_name="O'Connor", role="manager")


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "layout.html.j2").write_text(LAYOUT, encoding="utf-8")
    (tmp_path / "hello.html.j2").write_text(BODY, encoding="utf-8")
    return tmp_path


def test_render_inlines_css_and_derives_text(templates: Path) -> None:
    renderer = Renderer(templates)
    step = renderer.compile("hello", "{{ stakeholder.first_name }}, welcome")
    out = renderer.render(step, {"stakeholder": person()})
    assert out.subject == "Siobhán, welcome"
    assert '<p class="note" style="margin: 0 0 12px;color: #005eb8;">' in out.html
    assert "<style>" not in out.html
    assert out.text == "Dear Siobhán,\n\nSee the programme <https://nmdi.example/about>.\n"


def test_text_twin_is_used_when_present(templates: Path) -> None:
    (templates / "hello.txt.j2").write_text("Hi {{ stakeholder.first_name }} & co\n", "utf-8")
    renderer = Renderer(templates)
    out = renderer.render(renderer.compile("hello", "s"), {"stakeholder": person()})
    assert out.text == "Hi Siobhán & co\n"  # text is not HTML-escaped


def test_html_autoescapes_stakeholder_data(templates: Path) -> None:
    renderer = Renderer(templates)
    out = renderer.render(renderer.compile("hello", "s"),
                          {"stakeholder": person("<script>alert(1)</script>")})
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html


def test_subject_line_breaks_cannot_make_headers(templates: Path) -> None:
    renderer = Renderer(templates)
    step = renderer.compile("hello", "Hi {{ stakeholder.first_name }}")
    out = renderer.render(step, {"stakeholder": person("Ann\r\nBcc: all@evil.example\x00")})
    assert out.subject == "Hi Ann Bcc: all@evil.example"
    assert "\r" not in out.subject and "\n" not in out.subject and "\x00" not in out.subject


def test_undefined_variable_names_template_line_and_recipient(templates: Path) -> None:
    (templates / "hello.txt.j2").write_text("Hi\n\n{{ stakeholder.nickname }}\n", "utf-8")
    renderer = Renderer(templates)
    with pytest.raises(TemplateError) as info:
        renderer.render(renderer.compile("hello", "s"), {"stakeholder": person()},
                        who="s@x.example")
    assert info.value.location_message() == (
        "templates/hello.txt.j2:3: 'comms.audience.Stakeholder object' has no attribute "
        "'nickname' (rendering for s@x.example)")


def test_syntax_error_names_template_and_line(templates: Path) -> None:
    (templates / "broken.html.j2").write_text("<p>\n{% if x %}\n</p>\n", "utf-8")
    with pytest.raises(TemplateError) as info:
        Renderer(templates).compile("broken", "s")
    assert info.value.location_message().startswith("templates/broken.html.j2:2: template syntax:")


def test_sandbox_refuses_unsafe_attributes(templates: Path) -> None:
    (templates / "evil.html.j2").write_text("{{ stakeholder.__class__.__init__.__globals__ }}",
                                            "utf-8")
    renderer = Renderer(templates)
    with pytest.raises(TemplateError) as info:
        renderer.render(renderer.compile("evil", "s"), {"stakeholder": person()})
    assert "unsafe" in str(info.value) or "has no attribute" in str(info.value)


def test_templates_compile_once_per_process(templates: Path) -> None:
    renderer = Renderer(templates)
    first = renderer.compile("hello", "subject")
    (templates / "hello.html.j2").write_text("changed", "utf-8")
    assert renderer.compile("hello", "subject") is first
    assert renderer.render(first, {"stakeholder": person()}).html != "changed"


def test_html_to_text_skips_head_and_lists_items() -> None:
    html = ("<html><head><title>T</title><style>p{}</style></head><body><h1>News</h1>"
            "<ul><li>One</li><li>Two</li></ul></body></html>")
    assert html_to_text(html) == "News\n\n- One\n\n- Two\n"

"""Rendering: sandboxed, strict, autoescaped, CSS inlined, text always, templates compiled once."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms import render
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
        "templates/hello.txt.j2:3: stakeholder has no attribute 'nickname' (stakeholder has: "
        "email, first_name, last_name, full_name, role, organisation, borough, job_title, tags, "
        "attributes) (rendering for s@x.example)")


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


@pytest.mark.parametrize("reach", ["__class__", "__slots__", "__init__.__globals__",
                                   "__dataclass_fields__", "attributes.__class__", "_replace"])
def test_a_view_gives_its_fields_and_nothing_past_them(templates: Path, reach: str) -> None:
    """Stakeholder is one of comms's views (read without the sandbox's checks on each field):
    what is not one of its fields still meets the sandbox."""
    import comms.message  # noqa: F401  (declares the views)

    assert "first_name" in render._VIEWS[Stakeholder]
    (templates / "evil.html.j2").write_text(f"{{{{ stakeholder.first_name }}}} "
                                            f"{{{{ stakeholder.{reach} }}}}", "utf-8")
    renderer = Renderer(templates)
    with pytest.raises(TemplateError, match="unsafe|has no attribute|undefined"):
        renderer.render(renderer.compile("evil", "s"), {"stakeholder": person()})


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


def refusal(templates: Path, text: str, *, name: str = "bad") -> str:
    """The located message of rendering ``text`` (as ``templates/bad.html.j2``)."""
    path = templates / f"{name}.html.j2"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    renderer = Renderer(templates)
    with pytest.raises(TemplateError) as info:
        renderer.render(renderer.compile(name, "s"), {"stakeholder": person()}, who="s@x.example")
    return info.value.location_message()


@pytest.mark.parametrize(("text", "message"), [
    ("<p>\n{{ 1 / 0 }}", "templates/bad.html.j2:2: ZeroDivisionError: division by zero"),
    ("{% for i in range(10**9) %}.{% endfor %}",
     "templates/bad.html.j2:1: range(1000000000) has 1,000,000,000 numbers (at most 100,000)"),
    ("\n\n{{ 'x' * 10**10 }}", "templates/bad.html.j2:3: this would make a text of "
                               "10,000,000,000 characters (at most 1,000,000)"),
    ("{{ ([0] * 10**10)|length }}", "templates/bad.html.j2:1: this would make a list of "
                                    "10,000,000,000 items (at most 100,000)"),
    ("{{ 'x'|center(10**10) }}", "templates/bad.html.j2:1: this would make a text of"),
    ("{{ 'x'.rjust(10**12) }}", "templates/bad.html.j2:1: this would make a text of"),
    ("{{ '%10000000000s'|format('x') }}", "templates/bad.html.j2:1: a format width of "
                                          "10000000000 characters"),
    ("{{ '{:>10000000000}'.format('x') }}", "templates/bad.html.j2:1: a format width of"),
    ("{{ 7 ** (10**9) }}", "templates/bad.html.j2:1: 7 ** 1000000000 is a number too large"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}", "templates/bad.html.j2:1: this would make a text of 1,048,576 characters"),
    ("{% set s = 'x' * 100000 %}{{ s.replace('x', s) }}", "templates/bad.html.j2:1: this would "
                                                          "make a text of 10,000,000,000"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "templates/bad.html.j2:1: the template loops more than 200,000 times for one message"),
    ("{% for i in range(90000) %}" + "padding " * 20 + "{% endfor %}",
     "templates/bad.html.j2:1: the message would be more than 5,000,000 characters long"),
    ("{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}\n{{ again(1) }}",
     "templates/bad.html.j2:1: templates nest too deeply"),
    ("{{ lipsum(10**8) }}", "templates/bad.html.j2:1: lipsum makes at most 100 paragraphs"),
])
def test_what_no_message_needs_is_refused_at_its_line(templates: Path, text: str,
                                                     message: str) -> None:
    assert refusal(templates, text).startswith(message)


def test_huge_multiplication_is_refused_before_it_is_made(templates: Path) -> None:
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    refusal(templates, "{{ 'x' * 10**10 }}{{ [0] * 10**10 }}")
    assert time.monotonic() - started < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # kB


@pytest.mark.parametrize(("files", "message"), [
    ({"bad": '<p>\n{% include "bad.html.j2" %}'},
     "templates/bad.html.j2:2: templates include or extend each other in a loop: "
     "templates/bad.html.j2 → templates/bad.html.j2"),
    ({"bad": '{% include "part.html.j2" %}', "part": '{% include "bad.html.j2" %}'},
     "templates/part.html.j2:1: templates include or extend each other in a loop: "
     "templates/bad.html.j2 → templates/part.html.j2 → templates/bad.html.j2"),
    ({"bad": '{% extends "bad.html.j2" %}'},
     "templates/bad.html.j2:1: templates include or extend each other in a loop"),
    ({"bad": '<p>\n\n{% include "missing.html.j2" %}'},
     "templates/bad.html.j2:3: template not found: templates/missing.html.j2"),
    ({"bad": '{% extends "layout.html.j2" %}', "layout": "<p>\n{% if x %}\n"},
     "templates/layout.html.j2:2: template syntax: Unexpected end of template"),
])
def test_template_references_are_checked_when_compiled(templates: Path, files: dict[str, str],
                                                      message: str) -> None:
    for name, text in files.items():
        (templates / f"{name}.html.j2").write_text(text, "utf-8")
    with pytest.raises(TemplateError) as info:
        Renderer(templates).compile("bad", "s")
    assert info.value.location_message().startswith(message)


def test_optional_includes_may_be_missing(templates: Path) -> None:
    (templates / "opt.html.j2").write_text('a{% include "nope.html.j2" ignore missing %}b', "utf-8")
    renderer = Renderer(templates)
    assert renderer.render(renderer.compile("opt", "s"), {}).html.endswith("ab</body></html>")


def test_template_not_in_utf8_names_its_line(templates: Path) -> None:
    (templates / "bad.html.j2").write_bytes(b"<p>ok</p>\n<p>caf\xe9</p>\n")
    with pytest.raises(TemplateError) as info:
        Renderer(templates).compile("bad", "s")
    assert info.value.location_message() == ("templates/bad.html.j2:2: not UTF-8: byte 0xe9 at "
                                             "column 7 cannot be read (save the file as UTF-8)")


def test_ordinary_templates_are_untouched_by_the_bounds(templates: Path) -> None:
    text = ("{% for i in range(3) %}{{ i }}{% endfor %} {{ 'ab' ~ 'c' }} {{ [1, 2]|join(',') }} "
            "{{ '%05d'|format(3) }} {{ '{:>4}'.format('a') }} {{ 'a'.center(3) }} {{ '%s-%s' % "
            "(1, 2) }} {{ 'x' * 3 }} {{ 2 ** 10 }} {{ 'a b'.replace(' ', '_') }}")
    (templates / "fine.html.j2").write_text(text, "utf-8")
    renderer = Renderer(templates)
    out = renderer.render(renderer.compile("fine", "s"), {"stakeholder": person()})
    assert "012 abc 1,2 00003    a  a  1-2 xxx 1024 a_b" in out.html

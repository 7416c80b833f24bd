"""CSS inlined once per step: the same bytes as inlining each message, for awkward templates
and awkward people, and inlining actually skipped where a template allows it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from comms import inlining, render
from comms.audience import Stakeholder
from comms.inlining import MAX_VARIANTS, Skeleton
from comms.render import Renderer

STYLE = "<style>p { margin: 0 0 12px; } .note { color: #005eb8; } a { color: #330072; }</style>"
PAGE = "<html><head>{style}</head><body>{body}</body></html>\n"

PLAIN = """<p class="note">Dear {{ stakeholder.first_name }} {{ stakeholder.last_name }},</p>
<p><a href="{{ unsubscribe_url }}" title="for {{ stakeholder.email }}">unsubscribe</a></p>"""
BRANCHING = """<p>Dear {{ stakeholder.first_name }},</p>
{% if stakeholder.role == "mentor" %}<p class="note">Thank you for mentoring.</p>
{% else %}<p>Welcome, {{ stakeholder.role }}.</p>{% endif %}
{% if stakeholder.organisation %}<p>at {{ stakeholder.organisation }}</p>{% endif %}"""
TEMPLATES = {
    "plain": PAGE.format(style=STYLE, body=PLAIN),
    "branching": PAGE.format(style=STYLE, body=BRANCHING),
    "filtered": PAGE.format(style=STYLE, body="<p>{{ stakeholder.first_name|upper }} "
                            "{{ stakeholder.last_name|length }}</p>"),
    "class": PAGE.format(style="<style>.mentor { color: red; } p { margin: 0; }</style>",
                         body='<p class="{{ stakeholder.role }}">{{ stakeholder.first_name }}</p>'),
    "style attribute": PAGE.format(style=STYLE,
                                   body='<p style="color: {{ stakeholder.borough }}">hi</p>'),
    "in a sheet": PAGE.format(style="<style>p { color: {{ stakeholder.borough }}; }</style>",
                              body="<p>{{ stakeholder.first_name }}</p>"),
    "attribute selector": PAGE.format(
        style='<style>a[title*="Ann"] { color: red; } p { margin: 0; }</style>',
        body='<p><a href="/x" title="{{ stakeholder.first_name }}">x</a></p>'),
    "empty selector": PAGE.format(style="<style>b:empty { display: none; }</style>",
                                  body="<p><b>{{ stakeholder.organisation }}</b></p>"),
    "comment": PAGE.format(style=STYLE, body="<!-- {{ stakeholder.first_name }} --><p>x</p>"),
    "bare ampersand": PAGE.format(style=STYLE, body="<p>&{{ stakeholder.first_name }}</p>"),
    "in a table": PAGE.format(style=STYLE, body="<table>{{ stakeholder.organisation }}<tr><td>"
                              "{{ stakeholder.first_name }}</td></tr></table>"),
    "no personal value": PAGE.format(style=STYLE, body="<p class='note'>To all.</p>"),
}
NAMES = ["Ann", "O'Neil", "Zoë", "Mary Ann", "AT&T", "Bo<b>", 'Say "hi"', "tab\there",
         " spaced ", "", "non\xa0breaking", "cr\rlf", "\ue000", "x" * 300]
ROLES = ["manager", "mentor", "pct-lead"]
ORGANISATIONS = ["Bexley PCT", "", "A & B", "<i>"]


def people() -> list[Stakeholder]:
    return [Stakeholder(email=f"p{n}@x.example", first_name=name, last_name=NAMES[-n % len(NAMES)],
                        role=ROLES[n % len(ROLES)], organisation=ORGANISATIONS[n % 4],
                        borough="red" if n % 2 else "blue")
            for n, name in enumerate(NAMES * 3)]


def context(person: Stakeholder, n: int) -> dict[str, Any]:
    return {"campaign": "c", "now": "shared", "stakeholder": person,
            "unsubscribe_url": f"https://comms.example/u/{n}.t0k3n?a=1&b=2"}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTML inlined: a message whole, or a skeleton."""
    seen: list[str] = []
    whole = inlining.inline

    def inline(html: str) -> str:
        seen.append(html)
        return whole(html)

    monkeypatch.setattr(render, "inline", inline)
    monkeypatch.setattr(inlining, "inline", inline)
    return seen


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_skeleton_gives_the_bytes_inlining_each_message_gives(
        tmp_path: Path, name: str, counted: list[str]) -> None:
    (tmp_path / "t.html.j2").write_text(TEMPLATES[name], encoding="utf-8")
    renderer = Renderer(tmp_path)
    step = renderer.compile("t", "s")
    skeleton = Skeleton(shared=("campaign", "now"))
    everyone = people()
    whole = [renderer.render(step, context(p, n)).html for n, p in enumerate(everyone)]
    counted.clear()
    once = [renderer.render(step, context(p, n), skeleton=skeleton).html
            for n, p in enumerate(everyone)]
    assert once == whole
    if name in ("plain", "no personal value"):  # inlined once, and again for the odd ones out
        odd = sum(1 for p in everyone if p.first_name != p.first_name.strip() or not p.first_name
                  or any(c in p.first_name + p.last_name for c in '<>"\r\ue000')
                  or not p.last_name or p.last_name != p.last_name.strip())
        assert len(counted) == (1 + odd if name == "plain" else 1)
    elif name in ("branching", "filtered", "in a table"):  # a skeleton per shape, some whole
        assert len(counted) < len(everyone)
    else:  # a marker inlining could see: every message inlined whole
        assert len(counted) == len(everyone)


def test_a_value_chooses_a_skeleton_and_their_number_is_bounded(
        tmp_path: Path, counted: list[str]) -> None:
    body = '<p>Dear {{ stakeholder.first_name }},</p><p class="note">{{ stakeholder.borough|upper }}</p>'
    (tmp_path / "t.html.j2").write_text(PAGE.format(style=STYLE, body=body), encoding="utf-8")
    renderer = Renderer(tmp_path)
    step = renderer.compile("t", "s")
    skeleton = Skeleton(shared=("campaign", "now"))
    boroughs = [f"borough {n}" for n in range(MAX_VARIANTS + 5)]
    everyone = [Stakeholder(email=f"p{n}@x.example", first_name=f"Name{n}", last_name="Smith",
                            role="manager", organisation="PCT", borough=boroughs[n % len(boroughs)])
                for n in range(len(boroughs) * 4)]
    once = [renderer.render(step, context(p, n), skeleton=skeleton).html
            for n, p in enumerate(everyone)]
    inlined = len(counted)
    counted.clear()
    whole = [renderer.render(step, context(p, n)).html for n, p in enumerate(everyone)]
    assert once == whole
    # one inlining per skeleton; beyond the bound, each of the other boroughs' people whole
    assert inlined == MAX_VARIANTS + 5 * 4


def test_threads_rendering_a_step_together_learn_its_skeleton_once(
        tmp_path: Path, counted: list[str]) -> None:
    (tmp_path / "t.html.j2").write_text(TEMPLATES["plain"], encoding="utf-8")
    renderer = Renderer(tmp_path)
    step = renderer.compile("t", "s")
    skeleton = Skeleton(shared=("campaign", "now"))
    everyone = [Stakeholder(email=f"p{n}@x.example", first_name=f"Name{n}", last_name="Smith",
                            role="manager") for n in range(64)]
    start = threading.Barrier(8)

    def send(part: list[int]) -> list[str]:
        start.wait()
        return [renderer.render(step, context(everyone[n], n), skeleton=skeleton).html
                for n in part]

    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(send, [list(range(k, 64, 8)) for k in range(8)]))
    assert len(counted) == 1
    whole = [renderer.render(step, context(p, n)).html for n, p in enumerate(everyone)]
    assert sorted(html for part in done for html in part) == sorted(whole)

"""CSS inlined once per step, not once per recipient.

Inlining parses the whole HTML and matches every selector against it: the costliest part of
rendering a message. Most of a step's HTML is the same for everyone; what differs is each
person's own values (their name, their links). So the first message of a step also renders
a *skeleton*: the HTML with each personal value replaced by a marker, inlined once. A later
recipient's HTML is the skeleton's inlined form with their values put back, but only when:

- their rendered HTML is exactly the skeleton with their (escaped) values in the markers'
  places: a template that branches or filters on a personal value falls back, for that person,
  to inlining their own HTML;
- each marker stands where inlining cannot see it: in text outside ``<style>``, ``<script>``
  and comments, or inside an ``href``, ``alt`` or ``title`` attribute, and no style sheet uses
  an attribute selector or ``:empty`` (the only selectors that read text or attribute values);
- each value inlining would write as it stands (no ``<``, ``>``, ``"``, CR or NUL; not empty
  nor edged with spaces, which the HTML parser treats differently in some places).

Otherwise a message is inlined whole, as before, so the HTML sent is the same either way
(``tests/test_inlining.py`` checks both paths give identical bytes).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from markupsafe import escape

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: no directory or template has them
_MARK = re.compile(f"{_OPEN}([0-9]+){_CLOSE}")
_TAG = re.compile(r"""<[a-z!/?][^"'<>]*(?:(?:"[^"]*"|'[^']*')[^"'<>]*)*>""")  # quotes may hold >
_ATTRIBUTE = re.compile(r"""\s(?:href|alt|title)\s*=\s*["'][^"'<>]*\Z""")
_RAW_TEXT = (("<style", "</style"), ("<script", "</script"), ("<!--", "-->"))
_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style", re.IGNORECASE | re.DOTALL)
_ENTITY_OPEN = re.compile(r"&[#A-Za-z0-9]*\Z")  # the template's own "&", completed by a value
_UNWRITABLE = re.compile(r"[<>\"\r\x00\ue000\ue001]|\A\s|\s\Z|\A\Z")

_inliner: Any = None  # css_inline, loaded by the first message (0.5 s to import)
_loading = threading.Lock()


def inline(html: str) -> str:
    """``html`` with its ``<style>`` rules moved into style attributes."""
    global _inliner
    if _inliner is None:
        with _loading:
            if _inliner is None:
                import css_inline

                _inliner = css_inline.CSSInliner(keep_style_tags=False,
                                                 load_remote_stylesheets=False)
    return str(_inliner.inline(html))


MAX_VARIANTS = 16  # skeletons a step learns: one per shape its HTML takes (by role, say)
Render = Callable[[Mapping[str, Any]], str]  # the step's HTML for a context ("" if it fails)


class Skeleton:
    """One step's HTML, inlined once for everyone whose HTML differs from it only by their own
    values. ``shared`` are the context's keys that are the same for every recipient.

    A recipient whose HTML no skeleton yet fits has their context probed one text at a time:
    a text that shows in the HTML as itself (a name, a link) is *personal* and becomes a
    marker; one that changes the HTML otherwise (a role a template branches on) *chooses* the
    skeleton, which then serves only those who share that value. A step learns at most
    ``MAX_VARIANTS`` skeletons; beyond them, messages are inlined whole."""

    def __init__(self, shared: Iterable[str]) -> None:
        self._shared = frozenset(shared)
        self._lock = threading.Lock()
        self._variants: list[_Variant] = []
        self._learnt = 0  # skeletons tried, kept or not

    def html(self, raw: str, context: Mapping[str, Any], render: Render) -> str | None:
        """This recipient's inlined HTML from a skeleton, or None: inline ``raw`` itself."""
        values = self._texts(context)
        known = self._variants
        fitting = next((v for v in known if v.fits(raw, values)), None)
        if fitting is None:
            with self._lock:  # one learns at a time; another may have learnt this shape
                fitting = next((v for v in self._variants[len(known):] if v.fits(raw, values)),
                               None)
                if fitting is None:
                    if self._learnt >= MAX_VARIANTS:
                        return None
                    self._learnt += 1
                    fitting = self._learn(raw, context, values, render)
                    if fitting is None or not fitting.fits(raw, values):
                        return None
                    self._variants = [*self._variants, fitting]  # readers: old list or this
        return fitting.fill(values)

    def _learn(self, raw: str, context: Mapping[str, Any], values: list[str],
               render: Render) -> _Variant | None:
        personal = frozenset(
            index for index, value in enumerate(values)
            if (marked := render(self._marked(context, frozenset((index,)))))
            and marked.replace(_marker(index), str(escape(value))) == raw)
        chosen = {index: value for index, value in enumerate(values) if index not in personal}
        return _Variant.of(render(self._marked(context, personal)), len(values), chosen)

    def _texts(self, context: Mapping[str, Any]) -> list[str]:
        values: list[str] = []
        for key, value in context.items():
            if key not in self._shared:
                _texts(value, values)
        return values

    def _marked(self, context: Mapping[str, Any], marks: frozenset[int]) -> dict[str, Any]:
        count = itertools.count()
        return {key: value if key in self._shared else _marked(value, marks, count)
                for key, value in context.items()}


class _Variant:
    """One skeleton: its HTML as rendered (``raw``) and as inlined, each split at the
    markers; for whom (``width`` texts, with these values ``chosen``)."""

    __slots__ = ("chosen", "inlined", "inlined_marks", "marks", "raw", "width")

    def __init__(self, raw: str, width: int, chosen: dict[int, str]) -> None:
        self.raw, self.marks = _split(raw)
        self.inlined, self.inlined_marks = _split(inline(raw))
        self.width, self.chosen = width, chosen

    @classmethod
    def of(cls, raw: str, width: int, chosen: dict[int, str]) -> _Variant | None:
        if not raw or not _sound(raw):
            return None
        variant = cls(raw, width, chosen)
        return variant if sorted(variant.inlined_marks) == sorted(variant.marks) else None

    def fits(self, raw: str, values: list[str]) -> bool:
        """Whether ``raw`` is this skeleton with ``values`` (escaped) in the markers' places."""
        if len(values) != self.width or any(values[i] != v for i, v in self.chosen.items()):
            return False
        expected = [self.raw[0]]
        for at, index in enumerate(self.marks, 1):
            expected += (str(escape(values[index])), self.raw[at])
        return "".join(expected) == raw

    def fill(self, values: list[str]) -> str | None:
        """The inlined skeleton with ``values`` in place, as inlining would write them; None
        if one is a value it would not write as it stands."""
        written: dict[int, str] = {}
        for index in self.marks:
            value = values[index]
            if _UNWRITABLE.search(value):
                return None
            written[index] = str(escape(value)).replace("&#39;", "'").replace("\xa0", "&nbsp;")
        out = [self.inlined[0]]
        for at, index in enumerate(self.inlined_marks, 1):
            out += (written[index], self.inlined[at])
        return "".join(out)


def _marker(index: int) -> str:
    return f"{_OPEN}{index}{_CLOSE}"


def _marked(value: Any, marks: frozenset[int], count: Iterator[int]) -> Any:
    """A copy of ``value`` whose texts numbered in ``marks`` are markers; texts are numbered
    in the order ``_texts`` reads them."""
    if type(value) is str:
        index = next(count)
        return _marker(index) if index in marks else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _marked(getattr(value, f.name), marks, count)
                                              for f in dataclasses.fields(value) if f.init})
    if isinstance(value, Mapping):
        return {key: _marked(item, marks, count) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_marked(item, marks, count) for item in value)
    return value


def _texts(value: Any, into: list[str]) -> None:
    """Every text within ``value``, in the order ``_marked`` numbers them."""
    if type(value) is str:
        into.append(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.init:
                _texts(getattr(value, f.name), into)
    elif isinstance(value, Mapping):
        for item in value.values():
            _texts(item, into)
    elif isinstance(value, tuple | list):
        for item in value:
            _texts(item, into)


def _split(html: str) -> tuple[list[str], list[int]]:
    parts = _MARK.split(html)
    return parts[0::2], [int(index) for index in parts[1::2]]


def _sound(raw: str) -> bool:
    """Whether every marker stands where inlining neither reads nor rewrites it."""
    lower = raw.lower()
    if any("[" in sheet or ":empty" in sheet for sheet in _STYLE.findall(lower)):
        return False
    if lower.count(_OPEN) != len(_MARK.findall(raw)) or lower.count(_CLOSE) != lower.count(_OPEN):
        return False  # the template itself holds one of the marker characters
    tags = [(tag.start(), tag.end()) for tag in _TAG.finditer(lower)]
    for found in _MARK.finditer(raw):
        at = found.start()
        before = lower[:at]
        if _ENTITY_OPEN.search(before[-40:]):
            return False
        within = [start for start, end in tags if start < at < end]
        if within:  # in a tag: only in the value of an attribute no selector reads
            if not _ATTRIBUTE.search(before[within[0]:]):
                return False
            continue
        after_tag = max((end for _, end in tags if end <= at), default=0)
        if "<" in before[after_tag:]:  # a "<" no tag closes: the parser's guess, not ours
            return False
        if any(before.rfind(start) > before.rfind(end) for start, end in _RAW_TEXT):
            return False
    return True

"""The one Jinja2 environment: subject, HTML (CSS inlined) and text for each recipient.

Rendering is sandboxed and bounded, so that no template can take the process down: each
message may loop at most ``MAX_STEPS`` times and take ``MAX_SECONDS``; a text a template makes
(``*``, ``+``, ``~``, ``%``, padding, ``replace``, ``join``, ``format``) is checked against
``MAX_TEXT`` *before* it is made, a list against ``MAX_ITEMS``; what a message outputs is at
most ``MAX_OUTPUT`` characters, and all the text made for it at most ``MAX_MADE``. A template
that includes or extends itself, or a macro that calls itself, ends in a located error.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from ._text import html_to_text
from ._yaml import decode_utf8
from .errors import ConfigError, TemplateError, did_you_mean
from .inlining import Skeleton, inline

HTML_SUFFIX = ".html.j2"
BUILTIN = Path(__file__).parent / "templates"  # defaults a project's templates/ may override
TEXT_SUFFIX = ".txt.j2"

MAX_TEXT = 1_000_000  # characters of one text a template makes
MAX_ITEMS = 100_000  # items of one list or range a template makes (jinja2.sandbox.MAX_RANGE)
MAX_OUTPUT = 5_000_000  # characters one message outputs (subject, HTML and text together)
MAX_MADE = 50_000_000  # characters of all the text made while rendering one message
MAX_STEPS = 200_000  # loop iterations in one message (two full ranges)
MAX_SECONDS = 2.0  # rendering one message
MAX_POWER_BITS = 100_000  # ``a ** b`` of integers: about 30,000 digits
NESTED_TOO_DEEP = ("templates nest too deeply: a template that includes or extends itself, or a "
                   "macro that calls itself without end?")


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
        self.env = BoundedSandbox(
            loader=_Utf8Loader([templates_dir, BUILTIN], display=self._display),
            undefined=StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"),
                                                default_for_string=False),
            auto_reload=False,
            keep_trailing_newline=True,
            bytecode_cache=_COMPILED,
        )
        self._compiled: dict[tuple[str, str], StepTemplates] = {}
        self._checked: set[str] = set()  # templates whose references were read and found sound

    def exists(self, template: str) -> bool:
        return any((folder / f"{template}{HTML_SUFFIX}").is_file()
                   for folder in (self.templates_dir, BUILTIN))

    def has_text(self, template: str) -> bool:
        """Whether a step's template has its ``.txt.j2`` text twin."""
        return any((folder / f"{template}{TEXT_SUFFIX}").is_file()
                   for folder in (self.templates_dir, BUILTIN))

    def compile(self, template: str, subject: str) -> StepTemplates:
        """Compile (once per process) a step's subject, HTML body and optional text twin."""
        key = (template, subject)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compile(template, subject)
            self._compiled[key] = compiled
        return compiled

    def _compile(self, template: str, subject: str) -> StepTemplates:
        text_name = f"{template}{TEXT_SUFFIX}"
        has_text = self.has_text(template)
        reading = f"subject of {template}"
        try:
            compiled_subject = self.env.from_string(subject)
            reading = f"templates/{template}{HTML_SUFFIX}"
            self._check_references(f"{template}{HTML_SUFFIX}")
            html = self.env.get_template(f"{template}{HTML_SUFFIX}")
            reading = f"templates/{text_name}"
            if has_text:
                self._check_references(text_name)
            text = self.env.get_template(text_name) if has_text else None
        except jinja2.TemplateSyntaxError as exc:
            path = self._display(exc.filename) if exc.filename else f"subject of {template}"
            raise TemplateError(f"template syntax: {exc.message}", path=path,
                                line=exc.lineno) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template not found: templates/{exc.name}") from None
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError("template syntax: nested too deeply to read", path=reading,
                                line=1) from None
        except Exception as exc:  # an unreadable file: the message says what
            raise TemplateError(f"cannot read template: {exc}", path=reading, line=1) from None
        for compiled in (compiled_subject, html, text):
            if compiled is not None:  # Jinja copies these into every render's context, and
                compiled.globals = dict(compiled.globals)  # a dict copies 5x faster than a ChainMap
        return StepTemplates(name=template, subject=compiled_subject, html=html, text=text)

    def _check_references(self, name: str, chain: tuple[str, ...] = ()) -> None:
        """Read and parse now every template that ``name`` extends, includes or imports by a
        constant name, and theirs: a syntax error, a missing template or a loop is found at
        its line before anything is rendered."""
        if name in self._checked:
            return
        source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
        shown = self._display(filename or name)
        for target, line, ignore_missing in _references(source, name, filename):
            if target in (*chain, name):
                loop = " → ".join(f"templates/{n}" for n in (*chain, name, target))
                raise TemplateError(f"templates include or extend each other in a loop: {loop}",
                                    path=shown, line=line)
            try:
                self._check_references(target, (*chain, name))
            except jinja2.TemplateNotFound:
                if not ignore_missing:
                    raise TemplateError(f"template not found: templates/{target}", path=shown,
                                        line=line) from None
        self._checked.add(name)

    def files_of(self, template: str) -> list[Path]:
        """The files a step's template reads: its HTML body and text twin, and every template
        they extend, include or import by a constant name."""
        names, seen, found = [f"{template}{HTML_SUFFIX}", f"{template}{TEXT_SUFFIX}"], set(), set()
        while names:
            name = names.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                source, filename, _ = self.env.loader.get_source(self.env, name)  # type: ignore[union-attr]
            except jinja2.TemplateNotFound:
                continue
            found.add(Path(filename or name))
            names += [target for target, _, _ in _references(source, name, filename)]
        return sorted(found)

    def render(self, step: StepTemplates, context: Mapping[str, Any], *, who: str = "",
               skeleton: Skeleton | None = None) -> Rendered:
        """Render for one recipient within the limits above; every error names the template,
        its line and the recipient. With the step's ``skeleton``, CSS is inlined once for the
        step rather than once for each recipient (``comms/inlining.py``)."""
        budget = _BUDGET.set(_Budget())
        try:
            subject = self._part(step.subject, step, context, who)
            html = self._part(step.html, step, context, who)
            text = self._part(step.text, step, context, who) if step.text is not None else None
        finally:
            _BUDGET.reset(budget)
        subject = " ".join(subject.replace("\x00", " ").split())
        inlined = None
        if skeleton is not None:
            inlined = skeleton.html(html, context, lambda marked: self._marked_html(step, marked))
        html = inline(html) if inlined is None else inlined
        return Rendered(subject=subject, html=html, text=text if text is not None else html_to_text(html))

    def _marked_html(self, step: StepTemplates, marked: Mapping[str, Any]) -> str:
        """The step's HTML for a context of markers; "" if the template cannot render it (one
        that does arithmetic on a personal value, say): then every message is inlined whole."""
        budget = _BUDGET.set(_Budget())
        try:
            return step.html.render(marked)
        except Exception:
            return ""
        finally:
            _BUDGET.reset(budget)

    def _part(self, template: jinja2.Template, step: StepTemplates, context: Mapping[str, Any],
              who: str) -> str:
        try:
            return template.render(context)
        except TemplateError:
            raise  # already located (a template that is not UTF-8)
        except Exception as exc:  # anything a template can raise, from 1/0 to RecursionError
            raise self._locate(exc, template, step, who, context) from None

    def _locate(self, exc: Exception, template: jinja2.Template, step: StepTemplates,
                who: str, context: Mapping[str, Any] | None = None) -> TemplateError:
        if isinstance(exc, jinja2.TemplateSyntaxError) and exc.filename:  # an included template
            return TemplateError(f"template syntax: {exc.message}", path=self._display(exc.filename),
                                 line=exc.lineno)
        filename = template.filename if template.filename != "<template>" else None
        path = self._display(filename) if filename else f"subject of {step.name}"
        line = None
        for filename, lineno in reversed(_frames(exc)):
            if filename.endswith((HTML_SUFFIX, TEXT_SUFFIX)):
                path, line = self._display(filename), lineno
                break
            if filename == "<template>":
                break
        if line is None and filename:
            line = 1  # beyond any one line (the message as a whole is too long)
        said = _message(exc, context or {})
        return TemplateError(said + (f" (rendering for {who})" if who else ""),
                             path=path, line=line)

    def display(self, filename: str) -> str:
        """A template file's path as messages show it (``templates/...``)."""
        return self._display(filename)

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


class _MemoryBytecodeCache(jinja2.BytecodeCache):
    """Compiled templates kept for the life of the process, by name and source checksum: a
    changed file compiles anew; an unchanged one (a project reloaded, the same templates in
    another folder) does not. The oldest go beyond ``size``."""

    def __init__(self, size: int = 1000) -> None:
        self._code: dict[str, bytes] = {}
        self._size = size

    def get_bucket(self, environment: jinja2.Environment, name: str, filename: str | None,
                   source: str) -> jinja2.bccache.Bucket:
        checksum = self.get_source_checksum(source)
        bucket = jinja2.bccache.Bucket(environment, f"{name}|{checksum}", checksum)
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()
        while len(self._code) > self._size:
            del self._code[next(iter(self._code))]


_COMPILED = _MemoryBytecodeCache()
_Reference = tuple[str, int, bool]  # (template name, line, ignore missing)


_PARSER = jinja2.Environment(keep_trailing_newline=True)  # the same syntax as BoundedSandbox


def _references(source: str, name: str, filename: str | None) -> tuple[_Reference, ...]:
    """The templates that a template's source extends, includes or imports by constant names
    (a syntax error raises, naming ``filename``)."""
    try:
        return _parsed_references(source, name)
    except jinja2.TemplateSyntaxError as exc:
        exc.filename = filename
        raise


@functools.lru_cache(maxsize=512)
def _parsed_references(source: str, name: str) -> tuple[_Reference, ...]:
    tree = _PARSER.parse(source, name)
    found = []
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        target = getattr(node, "template", None)
        if isinstance(target, nodes.Const) and isinstance(target.value, str):
            found.append((target.value, node.lineno, bool(getattr(node, "ignore_missing", False))))
    return tuple(found)


def _frames(exc: BaseException) -> list[tuple[str, int]]:
    """(file, line) of each frame of the traceback, outermost first (without reading the
    source: a RecursionError has a thousand frames)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def _message(exc: Exception, context: Mapping[str, Any]) -> str:
    """What went wrong, in words: Jinja's own message, else the Python error named."""
    undefined = _undefined(exc)
    if undefined is not None:
        return _undefined_message(undefined, context)
    if isinstance(exc, RecursionError):
        return NESTED_TOO_DEEP
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"template not found: templates/{exc.name}"
    if isinstance(exc, jinja2.TemplateError | TypeError | ValueError | AttributeError):
        return getattr(exc, "message", None) or str(exc)
    if isinstance(exc, MemoryError):
        return "the template needs more memory than there is"
    return f"{type(exc).__name__}: {exc}"


# Fields of an object that templates have no use for (where a directory row came from, the
# address as a lookup key): left out of "stakeholder has: ...".
UNSHOWN = frozenset({"source", "line", "key"})


class _UndefinedError(jinja2.UndefinedError):
    """An undefined value used: carries it, to say what was there instead."""

    def __init__(self, undefined: jinja2.Undefined, message: str | None = None) -> None:
        super().__init__(message)
        self.undefined = undefined


class StrictUndefined(jinja2.StrictUndefined):
    """Jinja's strict undefined, whose error remembers it (``_undefined_message``)."""

    __slots__ = ()

    def __init__(self, hint: str | None = None, obj: Any = jinja2.utils.missing,
                 name: str | None = None, exc: type[jinja2.TemplateRuntimeError] = _UndefinedError,
                 ) -> None:
        super().__init__(hint, obj, name, exc)
        if exc is _UndefinedError:
            self._undefined_exception = functools.partial(_UndefinedError, self)  # type: ignore[assignment]


def _undefined(exc: BaseException) -> jinja2.Undefined | None:
    """The undefined value whose use raised ``exc``."""
    return exc.undefined if isinstance(exc, _UndefinedError) else None


def _undefined_message(undefined: jinja2.Undefined, context: Mapping[str, Any]) -> str:
    """``'evnt' is undefined (did you mean event?)``, or ``stakeholder has no attribute
    'firstname' (did you mean first_name? stakeholder has: email, first_name, ...)``."""
    name, owner = undefined._undefined_name, undefined._undefined_obj
    if undefined._undefined_hint or not isinstance(name, str | int):
        return undefined._undefined_message
    if owner is jinja2.utils.missing:
        match = did_you_mean(str(name), [n for n in context if isinstance(n, str)])
        return f"'{name}' is undefined" + (f" (did you mean {match}?)" if match else "")
    called = _name_of(owner, context)
    has = _shown_names(owner)
    match = did_you_mean(str(name), has)
    mean = f"did you mean {match}? " if match else ""
    listed = f"{called} has: {', '.join(has)}" if has else f"{called} is empty"
    return f"{called} has no attribute {name!r} ({mean}{listed})"


def _name_of(value: Any, context: Mapping[str, Any]) -> str:
    """How a template names ``value``: ``stakeholder``, ``stakeholder.attributes``, else its
    kind (``dict object``)."""
    for name, top in context.items():
        if top is value:
            return str(name)
    for name, top in context.items():
        for field in _shown_names(top):
            try:
                inner = top[field] if isinstance(top, Mapping) else getattr(top, field)
            except Exception:  # a property that fails is not the one
                continue
            if inner is value:
                return f"{name}.{field}"
    return f"{type(value).__name__} object"


def _shown_names(value: Any) -> list[str]:
    """What a template can read of ``value``: a mapping's keys; an object's fields and
    properties (each property after the last field it reads), not methods nor private names."""
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    kind = type(value)
    if kind.__module__ == "builtins":
        return []
    fields = list(getattr(kind, "__dataclass_fields__", None) or getattr(kind, "model_fields", {}))
    properties = [n for n in dir(kind) if not n.startswith("_")
                  and isinstance(getattr(kind, n, None), property) and n not in fields]
    for name in properties:
        reads = getattr(getattr(kind, name).fget, "__code__", None)
        after = [fields.index(n) for n in (reads.co_names if reads else ()) if n in fields]
        fields.insert(max(after) + 1 if after else len(fields), name)
    return [n for n in fields if not n.startswith("_") and n not in UNSHOWN]


class _Utf8Loader(jinja2.FileSystemLoader):
    """Templates from folders, read as UTF-8; a file that is not is named with its line."""

    def __init__(self, searchpath: list[Path], *, display: Callable[[str], str]) -> None:
        super().__init__(searchpath)
        self._show = display

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            return super().get_source(environment, template)
        except UnicodeDecodeError:
            parts = jinja2.loaders.split_template_path(template)
            path = next(p for folder in self.searchpath if (p := Path(folder, *parts)).is_file())
            try:
                decode_utf8(path.read_bytes(), self._show(str(path)))
            except ConfigError as exc:
                raise TemplateError(exc.message, path=exc.path, line=exc.line) from None
            raise


# --- the bounds --------------------------------------------------------------------------------


class RenderLimit(SecurityError):
    """A template went beyond one of the bounds of rendering."""


class _Budget:
    """What one message has spent so far: loop steps, characters output and made, time."""

    __slots__ = ("deadline", "made", "output", "steps")

    def __init__(self) -> None:
        self.steps = self.made = self.output = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise RenderLimit(f"the template loops more than {MAX_STEPS:,} times for one message")
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"rendering one message takes more than {MAX_SECONDS:g} s (a loop "
                              "too long?)")
        if self.output > MAX_OUTPUT:
            raise _too_long(self.output)

    def make(self, size: int) -> None:
        self.made += size
        if self.made > MAX_MADE:
            raise RenderLimit(f"the template makes more than {MAX_MADE:,} characters of text for "
                              "one message")


_BUDGET: ContextVar[_Budget | None] = ContextVar("comms_render_budget", default=None)


def _budget() -> _Budget:
    """The budget of the message being rendered (outside a render: a fresh one)."""
    return _BUDGET.get() or _Budget()


def _too_long(size: int) -> RenderLimit:
    return RenderLimit(f"the message would be more than {MAX_OUTPUT:,} characters long "
                       f"({size:,} so far)")


def _text(size: int, what: str = "text") -> None:
    """Refuse a text (or list) of ``size`` before it is made."""
    limit = MAX_TEXT if what == "text" else MAX_ITEMS
    if isinstance(size, int) and size > limit:
        unit = "characters" if what == "text" else "items"
        raise RenderLimit(f"this would make a {what} of {size:,} {unit} (at most {limit:,})")


def _made(value: Any) -> Any:
    if isinstance(value, str):
        _budget().make(len(value))
    return value


def _size(value: Any, limit: int) -> int:
    """About how many characters ``str(value)`` has, counting a shared part each time it
    appears; counting stops soon after ``limit``."""
    memo: dict[int, int] = {}

    def size(item: Any) -> int:
        if isinstance(item, str):
            return len(item)
        if not isinstance(item, list | tuple | set | frozenset | dict):
            return 8
        if id(item) in memo:
            return memo[id(item)]
        memo[id(item)] = 0  # a container inside itself counts once
        total = 2
        for part in (item.items() if isinstance(item, dict) else item):
            total += size(part) + 2
            if total > limit:
                break
        memo[id(item)] = total
        return total

    return size(value)


_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_FIELD = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")


def _check_widths(specs: Iterable[str], dynamic: bool, args: Iterable[Any]) -> None:
    """Widths and precisions in format specifications, given or taken from ``args``."""
    for number in specs:
        if number and number != "*" and (len(number) > 7 or int(number) > MAX_TEXT):
            raise RenderLimit(f"a format width of {number[:12]}{'...' if len(number) > 12 else ''} "
                              f"characters (at most {MAX_TEXT:,})")
    if dynamic:
        for arg in args:
            if isinstance(arg, int):
                _text(arg)


def _check_percent(fmt: str, values: Any) -> None:
    found = _PERCENT.findall(fmt)
    args = values if isinstance(values, tuple) else (values,)
    _check_widths((n for pair in found for n in pair), any("*" in pair for pair in found), args)


def _check_brace_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    specs = [field.partition(":")[2] for field in _BRACE_FIELD.findall(fmt)]
    numbers = [n for spec in specs if "{" not in spec for n in re.findall(r"\d+", spec)]
    mapping = args[0] if args and isinstance(args[0], Mapping) else {}
    _check_widths(numbers, any("{" in spec for spec in specs),
                  [*args, *kwargs.values(), *mapping.values()])


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sequences = str | list | tuple
    if operator == "*":
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, sequences) and isinstance(times, int):
            _text(len(seq) * times, "text" if isinstance(seq, str) else "list")
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            _text(len(left) + len(right), "text" if isinstance(left, str) else "list")
    elif operator == "**":
        if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
                and left.bit_length() * right > MAX_POWER_BITS):
            raise RenderLimit(f"{left} ** {right} is a number too large to compute")
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, right)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str,
         default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_text_method(text: str, name: str, args: tuple[Any, ...],
                       kwargs: Mapping[str, Any]) -> None:
    """The str methods whose result can be far larger than the text and their arguments."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _text(_arg(args, kwargs, 0, "width", 0))
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            _text(len(text) * tabsize)
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, args[0], args[1], _arg(args, kwargs, 2, "count", -1))
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _text(len(text) * len(args[0]) + _size(args[0], MAX_TEXT))
    elif name in ("format", "format_map"):
        _check_brace_format(text, args, kwargs)


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        times = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _text(len(text) + times * (len(new) - len(old)))


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse, before the call, what would make a text or list beyond the bounds."""
    target = inspect.unwrap(obj)
    owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
    if isinstance(owner, str):
        _check_text_method(owner, name, args, kwargs)
    elif isinstance(owner, int) and name == "to_bytes":
        _text(_arg(args, kwargs, 0, "length", 1))
    elif isinstance(owner, list) and name in ("append", "insert", "extend"):
        added = len(args[0]) if name == "extend" and args and hasattr(args[0], "__len__") else 1
        _text(len(owner) + added, "list")


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_ITEMS + 1
    if length > MAX_ITEMS:
        shown = f"range({', '.join(map(str, args))})"
        raise RenderLimit(f"{shown} has {length:,} numbers (at most {MAX_ITEMS:,})"
                          if length <= MAX_ITEMS * 10 ** 12 else f"{shown} is far too long "
                          f"(at most {MAX_ITEMS:,} numbers)")
    return numbers


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if not (isinstance(n, int) and isinstance(max, int)) or n > 100 or max > 1000:
        raise RenderLimit("lipsum makes at most 100 paragraphs of 1,000 words")
    return jinja2.utils.generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# Filters whose result can be far larger than their input, checked before they run (on the
# arguments by name); every filter's text result is charged to the message's budget.
_FILTER_CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "center": lambda a: _text(a.get("width", 80)),
    "indent": lambda a: _text(len(str(a["s"])) + (str(a["s"]).count("\n") + 1) * (
        a.get("width", 4) if isinstance(a.get("width", 4), int) else len(str(a["width"])))),
    "format": lambda a: _check_percent(str(a["value"]), a.get("args") or a.get("kwargs") or ()),
    "replace": lambda a: _check_replace(str(a["s"]), a["old"], a["new"], a.get("count")),
    "join": lambda a: _text(_size(a["value"], MAX_TEXT) + len(str(a.get("d", ""))) * (
        len(a["value"]) if isinstance(a["value"], list | tuple) else 0)),
    "sum": lambda a: _text(sum(len(v) for v in a["iterable"] if isinstance(v, list | tuple | str))
                           if isinstance(a.get("start"), list | tuple | str)
                           and isinstance(a["iterable"], list | tuple) else 0, "list"),
    "batch": lambda a: _text(a["linecount"], "list"),
    "slice": lambda a: _text(a["slices"], "list"),
    **{name: lambda a: _text(_size(a["value"], MAX_TEXT))
       for name in ("tojson", "pprint", "forceescape", "safe")},
}


def _guarded_filter(name: str, run: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS.get(name)
    try:
        signature = inspect.signature(run) if check else None
    except (TypeError, ValueError):  # a filter without one (a C function): no check
        signature = None

    @functools.wraps(run)  # keeps Jinja's pass_context / pass_eval_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check is not None and signature is not None:
            bound = signature.bind(*args, **kwargs)
            check({**bound.arguments, **bound.arguments.get("kwargs", {})})
        return _made(run(*args, **kwargs))

    return guarded


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles every ``{% for %}`` to iterate ``environment.guard_loop(...)`` and every ``~``
    to ``environment.bounded(...)``."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            guarded = nodes.Call(nodes.EnvironmentAttribute("guard_loop"), [loop.iter], [], None,
                                 None)
            guarded.set_lineno(loop.iter.lineno)
            loop.iter = guarded
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


_VIEWS: dict[type, frozenset[str]] = {}


def views(*classes: type) -> None:
    """Declare dataclasses whose public fields are plain data templates may read: the
    sandbox then reads them without checking each access (a sixth of a message's rendering)."""
    for cls in classes:
        _VIEWS[cls] = frozenset(f.name for f in dataclasses.fields(cls)
                                if not f.name.startswith("_"))


class BoundedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox with the bounds of this module (see the module docstring)."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._printed, **options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _guarded_filter(name, run) for name, run in self.filters.items()}
        self.concat = self._join  # type: ignore[method-assign]  # how templates join their output

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute``: a data field of one of comms's own views (``views``) directly,
        anything else through the sandbox's checks."""
        fields = _VIEWS.get(type(obj))
        if fields is not None and attribute in fields:
            return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any,
                   right: Any) -> Any:
        _check_binop(operator, left, right)
        return _made(self.binop_table[operator](left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        _check_call(__obj, args, kwargs)
        return _made(super().call(__context, __obj, *args, **kwargs))

    def guard_loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """What every ``{% for %}`` iterates: the items, each a step of the budget."""
        budget = _budget()
        for item in iterable:
            budget.step()
            yield item

    def bounded(self, text: str) -> str:
        """The result of ``~``."""
        _text(len(text))
        _budget().make(len(text))
        return text

    @staticmethod
    def _printed(value: Any) -> Any:
        """Every ``{{ value }}``: charged by the characters it prints as, before it is."""
        size = len(value) if isinstance(value, str) else _size(value, MAX_OUTPUT)
        if size > MAX_OUTPUT:
            raise _too_long(size)
        _budget().make(size)
        return value

    @staticmethod
    def _join(parts: Iterable[str]) -> str:
        """A template's output (streamed, counted as it comes) or a buffer (a macro's, a
        block's): refused before it is joined if it is too long."""
        budget = _budget()
        if isinstance(parts, list):
            size = sum(map(len, parts))
            if size > MAX_OUTPUT:
                raise _too_long(size)
            return "".join(parts)
        collected = []
        for part in parts:
            budget.output += len(part)
            if budget.output > 2 * MAX_OUTPUT:  # past what a loop step would have stopped
                raise _too_long(budget.output)
            collected.append(part)
        return "".join(collected)

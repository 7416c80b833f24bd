"""YAML loading that remembers where every value stood, so errors can name the line."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, did_you_mean

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class Located:
    """Parsed YAML data with the 1-based line of each mapping key / sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Sequence[str | int]) -> int:
        """Line of the deepest part of ``loc`` that the file has (the whole file: line 1)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def error(self, loc: Sequence[str | int], message: str, *, warning: bool = False) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line(loc), key=dotted(loc) or None,
                           warning=warning)


def dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MAX_DEPTH = 64  # nesting levels of mappings and sequences (campaign files need about 6)
MAX_REPEATED = 10_000  # values that aliases may add by repeating what an anchor holds
_BRACKETS = re.compile(r"[\[\]{}]")
_TOO_DEEP = (f"YAML syntax: nested more than {MAX_DEPTH} levels deep (a missing closing bracket, "
             "or indentation gone wrong?)")
_NAME_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")  # a name, or << (a merge)
_UNREADABLE = re.compile(yaml.reader.Reader.NON_PRINTABLE.pattern)  # what PyYAML refuses to read


def load(path: Path, display: Path | None = None) -> Located:
    """Parse one YAML document; raise ``ConfigError`` naming the line on a syntax error, a
    byte that is not UTF-8, a control character, nesting deeper than ``MAX_DEPTH`` or aliases
    that repeat more than ``MAX_REPEATED`` values (a "billion laughs" file)."""
    shown = display or path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=shown) from None
    text = decode_utf8(data, shown)
    _refuse_control_characters(text, shown)
    _refuse_deep_brackets(text, shown)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        located = Located(shown, None)
        if node is None:
            return located
        errors: list[ConfigError] = []
        _Walk(located, errors).node(node, ())
        if errors:
            raise errors[0]
        located.data = loader.construct_document(node)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        tab = _tab_before(text, mark)
        if tab is not None:
            raise ConfigError(f"YAML does not allow tabs for indentation; use spaces (line "
                              f"{tab[0]}, column {tab[1]})", path=shown, line=tab[0]) from None
        raise ConfigError(_syntax_message(exc), path=shown, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax: {exc}", path=shown, line=1) from None
    finally:
        loader.dispose()


def decode_utf8(data: bytes, shown: Path | str) -> str:
    """The text of a file that must be UTF-8 (a byte-order mark is allowed); else a
    ``ConfigError`` naming the line of the first byte that is not."""
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        line_start = data.rfind(b"\n", 0, at) + 1
        hint = (" (it looks like UTF-16: save it as UTF-8)"
                if data.startswith((b"\xff\xfe", b"\xfe\xff")) else " (save the file as UTF-8)")
        raise ConfigError(f"not UTF-8: byte 0x{data[at]:02x} at column {at - line_start + 1} "
                          f"cannot be read{hint}", path=shown,
                          line=data.count(b"\n", 0, at) + 1) from None


def _refuse_control_characters(text: str, shown: Path) -> None:
    found = _UNREADABLE.search(text)
    if found:
        char = found.group()
        line = text.count("\n", 0, found.start()) + 1
        raise ConfigError(f"control character U+{ord(char):04X} is not allowed in YAML: delete "
                          "it (write \\u escapes in a double-quoted string for special "
                          "characters)", path=shown, line=line)


def _refuse_deep_brackets(text: str, shown: Path) -> None:
    """Flow collections (``[[[...``) nested too deep, found by counting brackets before PyYAML
    reads them (its scanner looks ahead over every open bracket: quadratic time)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for found in _BRACKETS.finditer(text):
        depth = depth + 1 if found.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_DEPTH:
            raise ConfigError(_TOO_DEEP, path=shown, line=text.count("\n", 0, found.start()) + 1)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    return f"YAML syntax: {exc.problem or exc}"


def _tab_before(text: str, mark: Any) -> tuple[int, int] | None:
    """(line, column), 1-based, of the tab that a syntax error at ``mark`` is most likely
    about: one on its line before it, else one indenting a line of the three above."""
    if mark is None:
        return None
    lines = text.splitlines()
    if mark.line < len(lines) and "\t" in lines[mark.line][:mark.column + 1]:
        return mark.line + 1, lines[mark.line].index("\t") + 1
    for number in range(min(mark.line, len(lines)) - 1, max(mark.line - 4, -1), -1):
        line = lines[number]
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            return number + 1, indent.index("\t") + 1
    return None


class _Checks(yaml.composer.Composer, yaml.constructor.SafeConstructor):
    """Composing that refuses nesting deeper than ``MAX_DEPTH`` (PyYAML's composer is
    recursive: this keeps it far from Python's recursion limit), and constructing that names
    the node of a value it cannot make (a date like 2026-13-45, a number of 5,000 digits)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _TOO_DEEP.removeprefix("YAML syntax: "),
                                                  self.peek_event().start_mark)  # type: ignore[attr-defined]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from None

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date YAML cannot make (2026-13-45) stays text: the model says what it expects."""
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)


_Checks.add_constructor("tag:yaml.org,2002:timestamp",  # type: ignore[type-var]
                        _Checks.construct_yaml_timestamp)

_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)  # libyaml, if built with it
if _CParser is not None:

    class _Loader(_Checks, _CParser, yaml.resolver.Resolver):
        """libyaml reads the events (ten times faster: a list of 550,000 addresses takes
        seconds); composing and constructing are the checked Python above."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(_Checks, yaml.reader.Reader, yaml.scanner.Scanner,  # type: ignore[no-redef]
                  yaml.parser.Parser, yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


class _Walk:
    """Records the line of every key and item; refuses duplicate and non-scalar keys, aliases
    that contain themselves or repeat too much, and nesting too deep (through aliases)."""

    def __init__(self, out: Located, errors: list[ConfigError]) -> None:
        self.out, self.errors = out, errors
        self.seen: set[int] = set()
        self.path: set[int] = set()
        self.repeated = 0

    def node(self, node: yaml.Node, loc: Loc) -> None:
        out = self.out
        out.lines.setdefault(loc, node.start_mark.line + 1)
        if not isinstance(node, yaml.CollectionNode):
            self._count(node, loc)
            return
        if id(node) in self.path:
            raise self._error(loc, "an alias refers to a value that contains it (a loop)")
        if len(loc) >= MAX_DEPTH:
            raise self._error(loc, f"nested more than {MAX_DEPTH} levels deep (through aliases)")
        self._count(node, loc)
        self.path.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._mapping(node, loc)
        else:
            for i, item in enumerate(node.value):
                out.lines[loc + (i,)] = item.start_mark.line + 1
                self.node(item, loc + (i,))
        self.path.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> None:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a key must be a plain name, not a list or mapping",
                                  path=self.out.path, line=line)
            if key_node.tag not in _NAME_TAGS and not key_node.style:
                raise ConfigError(f"the key {key_node.value!r} does not read as a name (YAML "
                                  "takes it for a number, a date, yes/no or null): quote it",
                                  path=self.out.path, line=line)
            key = key_node.value
            if key in seen:
                self.errors.append(ConfigError(f"duplicate key '{key}' (first at line {seen[key]})",
                                               path=self.out.path, line=line))
            seen[key] = line
            self.out.lines[loc + (key,)] = line
            self.node(value_node, loc + (key,))

    def _count(self, node: yaml.Node, loc: Loc) -> None:
        if id(node) not in self.seen:
            self.seen.add(id(node))
            return
        self.repeated += 1
        if self.repeated > MAX_REPEATED:
            raise self._error(loc, f"aliases repeat more than {MAX_REPEATED:,} values (a "
                              "\"billion laughs\" file?): write the values out, or use fewer "
                              "aliases")

    def _error(self, loc: Loc, message: str) -> ConfigError:
        return ConfigError(message, path=self.out.path, line=self.out.line(loc))


def validate(model: type[M], located: Located) -> M:
    """Validate parsed data into ``model``; every pydantic error becomes a located ConfigError."""
    if located.data is not None and not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else "a single value"
        raise ValidationErrors([located.error((), f"expected a mapping of keys (id: ..., name: "
                                              f"...), not {kind}")])
    if located.data is None and model.model_fields:
        required = [field.alias or name for name, field in model.model_fields.items()
                    if field.is_required()]
        if required:
            raise ValidationErrors([located.error((), "the file is empty: write its keys "
                                                  f"(required: {', '.join(required)})")])
    try:
        return model.model_validate(located.data if located.data is not None else {})
    except ValidationError as exc:
        raise ValidationErrors(_located_errors(model, located, exc.errors())) from None


def _located_errors(model: type[BaseModel], located: Located,
                    errors: Sequence[Any]) -> list[ConfigError]:
    """One located error per pydantic error, but a required key that is missing only because
    it is misspelt is said once, as the misspelling (with "did you mean")."""
    found = [(_clean_loc(e["loc"]), e) for e in errors]
    meant = {loc[:-1] + (match,) for loc, e in found if e["type"] == "extra_forbidden"
             and (match := did_you_mean(str(loc[-1]), _keys_at(model, loc)))}
    return [located.error(loc, _message(e, _keys_at(model, loc))) for loc, e in found
            if not (e["type"] == "missing" and loc in meant)]


class ValidationErrors(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.location_message() for e in errors))


def _clean_loc(loc: Sequence[Any]) -> Loc:
    # pydantic adds union-member and validator names to ``loc``; keep only data keys.
    out: list[str | int] = []
    for part in loc:
        if not isinstance(part, str | int):
            out.append(str(part))  # a key YAML read as null, a date, ...
        elif isinstance(part, int) or not (
            part.startswith(("function-", "union[")) or "[" in part or part in {"tagged-union"}
        ):
            out.append(part)
    return tuple(out)


DATE_TIME_ERRORS = frozenset({"datetime_parsing", "datetime_from_date_parsing", "datetime_type"})
DATE_ERRORS = frozenset({"date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact",
                         "date_type"})


def _message(error: Any, keys: Sequence[str] = ()) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        match = did_you_mean(str(error["loc"][-1]), keys)
        return (f"unknown key (did you mean {match}?)" if match else
                "unknown key (check its spelling against the README's key reference)")
    if kind == "missing":
        return "required key is missing"
    if kind in DATE_TIME_ERRORS:
        return (f"{error['input']!r} is not a date and time: write it as YYYY-MM-DD HH:MM, like "
                "2026-12-07 09:00")
    if kind in DATE_ERRORS:
        return f"{error['input']!r} is not a date: write it as YYYY-MM-DD, like 2026-12-07"
    return msg.removeprefix("Value error, ")


def _keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model allows in the mapping that holds the last part of ``loc`` (for
    "did you mean"); none if the way there cannot be followed."""
    kinds: list[Any] = [model]
    for part in loc[:-1]:
        kinds = [inner for kind in kinds for inner in _inside(kind, part)]
    return [field.alias or name for kind in kinds for leaf in _leaves(kind)
            if isinstance(leaf, type) and issubclass(leaf, BaseModel)
            for name, field in leaf.model_fields.items()]


def _leaves(kind: Any) -> list[Any]:
    """The types a value of ``kind`` may have: Annotated, Optional and unions unwrapped."""
    if typing.get_origin(kind) is typing.Annotated:
        return _leaves(typing.get_args(kind)[0])
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(kind) for leaf in _leaves(arg)]
    return [kind]


def _inside(kind: Any, part: str | int) -> list[Any]:
    """The types found at ``part`` (a key or an index) of a value of ``kind``."""
    found = []
    for leaf in _leaves(kind):
        args = typing.get_args(leaf)
        if isinstance(leaf, type) and issubclass(leaf, BaseModel) and isinstance(part, str):
            found += [field.annotation for name, field in leaf.model_fields.items()
                      if part in (name, field.alias)]
        elif isinstance(part, int) and typing.get_origin(leaf) in (list, tuple, Sequence) and args:
            found.append(args[0])
        elif isinstance(part, str) and typing.get_origin(leaf) in (dict, Mapping) and len(args) == 2:
            found.append(args[1])
    return found


def load_model(model: type[M], path: Path, display: Path | None = None) -> tuple[M, Located]:
    """Parse one file and validate it into ``model`` (errors carry the file and line)."""
    located = load(path, display)
    return validate(model, located), located


def json_schema(model: type[BaseModel], title: str) -> dict[str, object]:
    """The JSON Schema of a file kind, for editors' autocompletion."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
